"""One short GPU lease, prepared ahead: QM9 flow matching, two MACE presets, sampling throughput.

    python3 scripts/gpu_session.py DATA_DIR OUT_DIR [--train-s 300] [--smoke]

Runs on the device machine (jax with CUDA, the pure-Python wheels of the pinned stack carried and
put first on PYTHONPATH; see experiments/qm9_generation/README.md, "GPU"). Three trainings share
the GPU at once, each stopped by ``trainer.time_limit_s`` at its first checkpoint after the budget
(the best checkpoint is then tested as usual):

- ``qm9_flow_gpu``: equivariant flow matching on QM9 (EGNN 6 x 128, batch 64, constant lr after
  warm-up); then 1,000 molecules are sampled with 50 Heun steps and written as XYZ, to be scored
  here with ``equilab-eval-molecules`` (RDKit is not on the device);
- ``acac``: ``experiment=acac_mace_cpu`` (the reduced MACE) with ``model.tp=gaunt_s2grid``;
- ``aspirin``: ``experiment=rmd17_mace_cpu data.molecule=aspirin`` with ``model.tp=gaunt_s2grid``.

First, alone on the GPU, ``experiments/qm9_generation/throughput.py`` times the paper-size network
(9 x 256): EDM at 1000 steps and flow matching at 50 Heun steps. Everything is written to OUT_DIR/runs.tar.gz
(run directories without their ``latest`` checkpoints) plus the log; the last line is JSON.
``--smoke`` shrinks every budget to a few steps (the local dress rehearsal on CPU).

The carried folder ``.dev/`` (git-ignored, ~42 MB) was built on the CPU machine like this:

- ``.dev/whl``: ``pip download --no-deps --only-binary=:all: --python-version 3.12 ...`` of the
  pinned flax, optax, chex, orbax-checkpoint, e3nn-jax, hydra-core, omegaconf and ase, plus
  ``pip wheel antlr4-python3-runtime==4.9.3`` (sdist only). The device's own jax 0.11.2 (CUDA) is
  used; the rest of the dependencies are in its image.
- ``.dev/data/qm9/qm9_edm_v1.npz``: the QM9 cache re-saved with ``np.savez_compressed`` and
  float32 positions (30 MB instead of 100 MB).
- ``.dev/data/botnet/dataset_acac`` and ``.dev/data/rmd17/rmd17_aspirin_*``: copies from
  ``../shared/data``.

On the device: ``pip install --no-index --no-deps --target /tmp/site .dev/whl/*.whl``, then
``PYTHONPATH=/tmp/site python3 scripts/gpu_session.py .dev/data $OUT``.
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train_cmd(overrides):
    code = "import sys; from equilab.cli import train; sys.argv = ['equilab-train'] + sys.argv[1:]; train()"
    return [sys.executable, "-c", code] + overrides


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--train-s", type=int, default=None, help="trainer.time_limit_s (default: what is left)")
    ap.add_argument("--total-s", type=int, default=570, help="everything, the archive included, ends by then")
    ap.add_argument("--throughput-s", type=int, default=100)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    out = Path(a.out_dir)
    runs = Path("/tmp/equilab_gpu_runs")
    runs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONUNBUFFERED="1")
    t0 = time.time()
    common = ["logger=none", "trainer.progress=false", f"paths.data_dir={a.data_dir}"]
    smoke = a.smoke
    jobs = {
        "qm9_flow_gpu": ["experiment=qm9_flow_cpu", "model.hidden=128", "model.n_layers=6", "data.batch_size=64",
                         "optim.lr=3e-4", "optim.schedule.name=constant", "optim.schedule.warmup_steps=500",
                         "optim.ema=0.999", "trainer.max_steps=" + ("4" if smoke else "200000"),
                         "trainer.eval_every=" + ("2" if smoke else "1000"), "trainer.log_every=" + ("2" if smoke else "500"),
                         "trainer.steps_per_call=" + ("1" if smoke else "10"), "data.eval_subset=" + ("16" if smoke else "1000")]
                        + (["data.train_subset=64", "model.hidden=16", "model.n_layers=1"] if smoke else []),
        "acac": ["experiment=acac_mace_cpu", "model.tp=gaunt_s2grid", "trainer.steps_per_call=" + ("1" if smoke else "10")]
                + (["trainer.max_steps=2", "trainer.eval_every=2", "+data.n_test=10", "model.num_channels=4"] if smoke else []),
        "aspirin": ["experiment=rmd17_mace_cpu", "data.molecule=aspirin", "model.tp=gaunt_s2grid",
                    "trainer.steps_per_call=" + ("1" if smoke else "10")]
                   + (["trainer.max_steps=2", "trainer.eval_every=2", "+data.n_test=10", "model.num_channels=4"] if smoke else []),
    }
    end = t0 + a.total_s - 15  # leave time to write the archive
    status = {}
    # 1. throughput first, alone on the GPU (needs no trained weights: the cost is the network's)
    tp_args = ["16", "1", "8"] if smoke else ["256", "9", "100", "full"]
    p = subprocess.Popen([sys.executable, "experiments/qm9_generation/throughput.py", a.data_dir] + tp_args,
                         cwd=REPO, env=dict(env, PYTHONPATH=env.get("PYTHONPATH", "") + ":" + str(REPO)),
                         stdout=open(out / "throughput.log", "w"), stderr=subprocess.STDOUT)
    try:
        status["throughput"] = p.wait(timeout=a.throughput_s)
    except subprocess.TimeoutExpired:
        p.kill()
        status["throughput"] = "killed at deadline"
    # 2. the three trainings at once; the time limit counts from the start of fit (after data and
    # init); leave ~100 s for those, the run to the next checkpoint and the final evaluation
    deadline = end - 60  # leaves the sampling its minute
    train_s = a.train_s if a.train_s is not None else int(deadline - time.time() - 100)
    common.append(f"trainer.time_limit_s={max(train_s, 0)}")
    status["time_limit_s"] = train_s
    procs = {}
    for name, ov in jobs.items():
        log = open(out / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(train_cmd(ov + common + [f"hydra.run.dir={runs / name}"]), cwd=REPO, env=env,
                                        stdout=log, stderr=subprocess.STDOUT), log)
    for name, (p, log) in procs.items():
        try:
            status[name] = p.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            p.kill()
            status[name] = "killed at deadline"
        log.close()
    t_train = time.time() - t0
    # sampling from the trained flow model (written as XYZ; scored on the CPU machine with RDKit)
    sample_code = (
        "import json, sys, types; sys.path.insert(0, '.');"
        "from equilab.generative.sample_cli import restore, sample_molecules;"
        "from equilab.train.factories import build_task; from equilab.metrics import molecules as M;"
        f"cfg, model, params, stats = restore('{runs / 'qm9_flow_gpu'}');"
        "task = build_task(cfg, types.SimpleNamespace(stats=stats));"
        f"mols, timing = sample_molecules(task, model, params, n={16 if smoke else 1000}, batch=100 if {not smoke} else 8,"
        " seed=0, opts={'steps': 50, 'solver': 'heun'});"
        f"M.write_xyz('{runs / 'qm9_flow_gpu' / 'samples_n1000_heun50.xyz'}', mols);"
        "print(json.dumps(dict(timing, checkpoint_step=stats.get('checkpoint_step'), n=len(mols))))")
    post = {
        "sample": subprocess.Popen([sys.executable, "-c", sample_code], cwd=REPO, env=env,
                                   stdout=open(out / "sample.log", "w"), stderr=subprocess.STDOUT),
    }
    for name, p in post.items():
        try:
            status[name] = p.wait(timeout=max(end - time.time(), 1))
        except subprocess.TimeoutExpired:
            p.kill()
            status[name] = "killed at deadline"
    for skip in ("/checkpoints/latest", "/checkpoints"):  # files over 16 MiB do not come back
        with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
            tar.add(runs, arcname="runs", filter=lambda ti: None if skip in ti.name else ti)
        if (out / "runs.tar.gz").stat().st_size < 15e6:
            break
    print(json.dumps({"status": status, "train_wall_s": round(t_train, 1), "total_wall_s": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
