"""Short GPU leases, prepared ahead: one plan per call, every stage capped by a deadline.

    python3 scripts/gpu_session.py PLAN DATA_DIR OUT_DIR [--total-s 520] [--train-s S] [--smoke]

Runs on the device machine (jax with CUDA, the pure-Python wheels of the pinned stack carried and
put first on PYTHONPATH). Each stage writes its log into OUT_DIR as it goes, so a call stopped at
its limit still returns what was done; at the end every run directory is archived as
``OUT_DIR/runs_<name>.tar.gz`` with its best checkpoint; the last line printed is JSON.

Plans:

- ``cond`` (issue 5, property-conditioned generation for alpha, EDM protocol): two trainings share
  the GPU, both ended by ``trainer.time_budget_s`` with the rate annealed over its last 30 %
  (``optim.schedule.anneal_by=time``):
  - ``evaluator_alpha``: ``experiment=qm9_prop_evaluator`` (EDM's EGNN 7 x 128, batch 96, first
    half), Adam 5e-4 with a plateau schedule (the planned 1000-epoch cosine cannot run in minutes);
  - ``cond_alpha``: ``experiment=qm9_flow_cond_cpu`` widened to the GPU flow model of the earlier
    lease (EGNN 6 x 128, batch 64, AdamW 3e-4 constant after 500 warm-up steps, EMA 0.999), second
    half, alpha as context; ``data.bucket_group`` = ``trainer.steps_per_call`` (without it, the
    session-11 lease spent this run compiling a program per run length of every size bucket).
  Then, on the device, ``equilab-eval-property`` (n = 1,000, then n = 10,000 as in EDM, 50 Heun
  steps) and 1,000 conditional samples written as XYZ for RDKit scoring on the CPU machine.
- ``bench``: ``equilab-bench tp`` on the GPU (forward and forward+backward timings of every product
  against the e3nn-jax baselines, plus eSCN), then ``scripts/bench_mace.py`` (each ``model.tp``
  side by side with mace-torch on the same GPU; needs the carried mace-torch wheels).
- ``flow_mace`` (the first lease's plan): sampling throughput of the paper-size network, then QM9
  flow matching (6 x 128) and two reduced MACE trainings sharing the GPU.

``--smoke`` shrinks every budget to a few steps (the dress rehearsal on the CPU machine).

The carried folder ``.dev/`` (git-ignored via ``.git/info/exclude``, ~45 MB) is built here:

- ``.dev/whl``: ``pip download --no-deps --only-binary=:all: --python-version 3.12 ...`` of the
  pinned flax, optax, chex, orbax-checkpoint, e3nn-jax, hydra-core, omegaconf and ase, plus
  ``pip wheel antlr4-python3-runtime==4.9.3`` (sdist only). The device's own jax (CUDA) is used;
  the rest of the dependencies are in its image.
- ``.dev/mace`` (plan ``bench`` only): mace-torch 0.3.16 and the requirements the device image
  lacks (e3nn 0.4.4, torch-ema, prettytable, wcwidth, matscipy, python-hostlist, configargparse,
  GitPython, gitdb, smmap, lmdb, orjson), cp312 wheels where compiled.
- ``.dev/data/qm9/qm9_edm_v1.npz``: the QM9 cache re-saved with ``np.savez_compressed`` and
  float32 positions (30 MB instead of 100 MB); ``.dev/data/botnet/dataset_acac`` (and, for
  ``flow_mace``, ``.dev/data/rmd17/rmd17_aspirin_*``): copies from ``../shared/data``.

On the device: ``pip install --no-index --no-deps --target /tmp/site .dev/whl/*.whl``, then
``PYTHONPATH=/tmp/site python3 scripts/gpu_session.py <plan> $PWD/.dev/data $OUT``.
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
RUNS = Path("/tmp/equilab_gpu_runs")


def train_cmd(overrides):
    code = "import sys; from equilab.cli import train; sys.argv = ['equilab-train'] + sys.argv[1:]; train()"
    return [sys.executable, "-c", code] + overrides


def py_cmd(code):
    return [sys.executable, "-c", code]


class Stages:
    """Subprocesses with deadlines; each one's output goes to OUT/<name>.log as it runs."""

    def __init__(self, out: Path, env: dict):
        self.out, self.env, self.status = out, env, {}

    def start(self, name, cmd):
        log = open(self.out / f"{name}.log", "w")
        return name, subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT), log

    def wait(self, handles, deadline):
        for name, p, log in handles:
            try:
                self.status[name] = p.wait(timeout=max(deadline - time.time(), 1))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.status[name] = "killed at deadline"
            log.close()

    def run(self, name, cmd, seconds):
        self.wait([self.start(name, cmd)], time.time() + seconds)


def archive(out: Path):
    """One ``runs_<name>.tar.gz`` per run directory (and other entry) under RUNS, each with the run's
    ``checkpoints/best`` (so that a GPU-trained model can be used on the CPU machine) but not
    ``checkpoints/latest``; where that would exceed what comes back (16 MiB a file), without
    checkpoints. At most 8 files come back in all: logs plus these archives."""
    if not RUNS.exists():
        return
    for entry in sorted(RUNS.iterdir()):
        path = out / f"runs_{entry.name}.tar.gz"
        for skip in ("/checkpoints/latest", "/checkpoints"):
            with tarfile.open(path, "w:gz") as tar:
                tar.add(entry, arcname=f"runs/{entry.name}", filter=lambda ti: None if skip in ti.name else ti)
            if path.stat().st_size < 15.5 * 2 ** 20:
                break


def sample_xyz_code(run, n, batch, path, opts="{'steps': 50, 'solver': 'heun'}"):
    return ("import json, sys, types; sys.path.insert(0, '.');"
            "from equilab.generative.sample_cli import restore, sample_molecules;"
            "from equilab.train.factories import build_task; from equilab.metrics import molecules as M;"
            f"cfg, model, params, stats = restore('{run}');"
            "task = build_task(cfg, types.SimpleNamespace(stats=stats));"
            f"mols, timing = sample_molecules(task, model, params, n={n}, batch={batch},"
            f" seed=0, opts={opts});"
            f"M.write_xyz('{path}', mols);"
            "timing.pop('targets', None);"
            "print(json.dumps(dict(timing, checkpoint_step=stats.get('checkpoint_step'), n=len(mols))))")


# the stochastic sampler (flow.py, solver=sde) at the same 100 network calls as 50 Heun steps, on
# the time grid t_i = 1 - (1 - i/N)^3; session 13 on the CPU, same model, 1,000 molecules: 81.8 % atom /
# 3.5 % molecule stability against Heun's 76.4 / 1.0 on the uniform grid; session 14, 1,000 molecules:
# 95.2 / 43.5 at eta 12 on the p = 3 grid against Heun's 83.2 / 6.3 (experiments/qm9_generation/README.md)
SDE_OPTS = "{'steps': 100, 'solver': 'sde', 'noise': 12.0, 'time_power': 3.0}"


def budget(smoke, max_steps="1000000"):
    """Step budget overrides of a time-limited GPU training (``--smoke``: a few steps)."""
    spc = "1" if smoke else "10"
    return ["trainer.max_steps=" + ("4" if smoke else max_steps), "trainer.eval_every=" + ("2" if smoke else "1000"),
            "trainer.log_every=" + ("2" if smoke else "500"), f"trainer.steps_per_call={spc}"]


def gpu_flow(smoke):
    """The GPU flow-matching model on top of a ``qm9_flow_cpu``-based preset: EGNN 6 x 128, batch 64,
    AdamW 3e-4 constant after 500 warm-up steps, EMA 0.999, size buckets kept whole per scanned
    chunk (``data.bucket_group`` = ``trainer.steps_per_call``), 1,000 validation molecules."""
    spc = "1" if smoke else "10"
    return (["model.hidden=128", "model.n_layers=6", "data.batch_size=64", "optim.lr=3e-4", "optim.schedule.name=constant",
             "optim.schedule.warmup_steps=500", "optim.ema=0.999", f"data.bucket_group={spc}",
             "data.eval_subset=" + ("16" if smoke else "1000")]
            + (["data.train_subset=1000", "model.hidden=16", "model.n_layers=1"] if smoke else []))


def budget_anneal(train_s):
    """End the training when the lease's seconds run out, with the learning rate annealed by a
    cosine over the last 30 % of them (``trainer.time_budget_s``, ``optim.schedule.anneal_by=time``).
    The session-11 lease stopped its runs by ``trainer.time_limit_s`` at a constant or plateau rate."""
    return [f"trainer.time_budget_s={max(train_s, 1)}", "optim.schedule.anneal_by=time",
            "optim.schedule.anneal_fraction=0.3", "optim.schedule.anneal_to=0.01"]


def plan_cond(a, st: Stages, common, end):
    smoke = a.smoke
    jobs = {
        "evaluator_alpha": ["experiment=qm9_prop_evaluator", "data.condition_on=alpha",
                            "optim.schedule.name=plateau", "+optim.schedule.patience=3", "+optim.schedule.factor=0.5",
                            "+optim.schedule.warmup_steps=300", "trainer.max_epochs=null"] + budget(smoke)
                           + (["data.train_subset=1000", "data.eval_subset=96", "model.hidden=16", "model.n_layers=1"]
                              if smoke else []),
        "cond_alpha": ["experiment=qm9_flow_cond_cpu", "data.condition_on=alpha"] + budget(smoke) + gpu_flow(smoke),
    }
    # evaluation after training: ~20 s of restore and compile, n=1000, n=10000, 1000 XYZ samples
    post_s = 40 if smoke else 110
    deadline = end - post_s
    # the time limit counts from the start of fit (after imports, data and compile, ~40 s), and the run
    # goes on to its next checkpoint and the test evaluation (~25 s)
    train_s = a.train_s if a.train_s is not None else int(deadline - time.time() - 65)
    st.status["time_budget_s"] = train_s
    common = common + budget_anneal(train_s)
    handles = [st.start(name, train_cmd(ov + common + [f"hydra.run.dir={RUNS / name}"])) for name, ov in jobs.items()]
    st.wait(handles, deadline)
    ev, gen = RUNS / "evaluator_alpha", RUNS / "cond_alpha"
    prop = "import sys; from equilab.generative.property_eval_cli import main; sys.exit(main(sys.argv[1:]))"
    base = [f"evaluator={ev}", f"generator={gen}", f"data_dir={a.data_dir}", "steps=50", "solver=heun"]
    n_small, n_big = ("8", "16") if smoke else ("1000", "10000")
    st.run("eval_n1000", py_cmd(prop) + base + [f"n={n_small}", "batch=" + ("8" if smoke else "100"),
                                                   f"out={RUNS}/property/alpha_n1000.json"], max(end - time.time() - 70, 5))
    st.run("eval_n10000", py_cmd(prop) + base + [f"n={n_big}", "batch=" + ("8" if smoke else "100"),
                                                    f"out={RUNS}/property/alpha_n10000.json"], max(end - time.time() - 25, 5))
    st.run("sample_xyz", py_cmd(sample_xyz_code(gen, 16 if smoke else 1000, 8 if smoke else 100,
                                                gen / "samples_n1000_heun50.xyz")), max(end - time.time() - 10, 5))
    st.run("sample_xyz_sde", py_cmd(sample_xyz_code(gen, 16 if smoke else 1000, 8 if smoke else 100,
                                                    gen / "samples_n1000_sde100_noise12_tp3.xyz", SDE_OPTS)),
           max(end - time.time() - 5, 5))


def plan_bench(a, st: Stages, common, end):
    smoke = a.smoke
    tp = ["-c", "import sys; from equilab.bench import main; sys.argv = ['equilab-bench'] + sys.argv[1:]; main()", "tp",
          f"out_dir={a.out_dir}/tp", "tag=gpu", "expressivity.enabled=false",
          "methods=[cg,gaunt_s2grid,gaunt_s2grid_dense,gaunt_s2grid_fft,gaunt_fourier,gaunt_fourier_dense,e3nn_dense,e3nn_grid]"]
    # session 11 reached only L = 6 in ~170 s (compiling dominates): fewer L, up to the anchors' L = 10
    tp += (["Ls=[1,2]", "escn.Ls=[1]", "repeats=2", "batches=[100]"] if smoke
           else ["Ls=[2,6,8,10]", "escn.Ls=[2,4,6]", "backward_max_L.e3nn_grid=10"])
    total = end - time.time()
    st.run("bench_tp", [sys.executable] + tp, 0.6 * total)
    mace = [sys.executable, "scripts/bench_mace.py", "--data-dir", a.data_dir, "--tp", "cg,gaunt_s2grid,gaunt_fourier",
            "--torch", "--torch-device", "cpu" if smoke else "cuda", "--threads", "8"]
    mace += (["--channels", "4", "--steps", "2", "--warmup", "1"] if smoke else ["--channels", "32", "--steps", "30", "--warmup", "5"])
    st.run("bench_mace", mace, end - time.time() - 5)


def plan_flow_mace(a, st: Stages, common, end):
    smoke = a.smoke
    spc = "1" if smoke else "10"
    jobs = {
        "qm9_flow_gpu": ["experiment=qm9_flow_cpu"] + budget(smoke, "200000") + gpu_flow(smoke),
        "acac": ["experiment=acac_mace_cpu", "model.tp=gaunt_s2grid", f"trainer.steps_per_call={spc}"]
                + (["trainer.max_steps=2", "trainer.eval_every=2", "+data.n_test=10", "model.num_channels=4"] if smoke else []),
        "aspirin": ["experiment=rmd17_mace_cpu", "data.molecule=aspirin", "model.tp=gaunt_s2grid", f"trainer.steps_per_call={spc}"]
                   + (["trainer.max_steps=2", "trainer.eval_every=2", "+data.n_test=10", "model.num_channels=4"] if smoke else []),
    }
    # throughput first, alone on the GPU (needs no trained weights: the cost is the network's)
    tp_args = ["16", "1", "8"] if smoke else ["256", "9", "100", "full"]
    st.run("throughput", [sys.executable, "experiments/qm9_generation/throughput.py", a.data_dir] + tp_args, a.throughput_s)
    deadline = end - 60  # leaves the sampling its minute
    train_s = a.train_s if a.train_s is not None else int(deadline - time.time() - 100)
    st.status["time_budget_s"] = train_s
    common = common + budget_anneal(train_s)
    st.wait([st.start(name, train_cmd(ov + common + [f"hydra.run.dir={RUNS / name}"])) for name, ov in jobs.items()], deadline)
    run = RUNS / "qm9_flow_gpu"
    st.run("sample", py_cmd(sample_xyz_code(run, 16 if smoke else 1000, 8 if smoke else 100, run / "samples_n1000_heun50.xyz")),
           end - time.time() - 20)
    st.run("sample_sde", py_cmd(sample_xyz_code(run, 16 if smoke else 1000, 8 if smoke else 100,
                                                run / "samples_n1000_sde100_noise12_tp3.xyz", SDE_OPTS)), end - time.time())


PLANS = {"cond": plan_cond, "bench": plan_bench, "flow_mace": plan_flow_mace}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("plan", choices=sorted(PLANS))
    ap.add_argument("data_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--train-s", type=int, default=None, help="trainer.time_budget_s (default: what is left)")
    ap.add_argument("--total-s", type=int, default=520, help="everything, the archive included, ends by then")
    ap.add_argument("--throughput-s", type=int, default=100)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    a.data_dir = str(Path(a.data_dir).resolve())
    out = Path(a.out_dir).resolve()
    a.out_dir = str(out)
    out.mkdir(parents=True, exist_ok=True)
    RUNS.mkdir(parents=True, exist_ok=True)
    pp = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONUNBUFFERED="1",
               PYTHONPATH=(pp + ":" if pp else "") + str(REPO))
    t0 = time.time()
    end = t0 + a.total_s - 15  # leave time to write the archive
    st = Stages(out, env)
    common = ["logger=none", "trainer.progress=false", f"paths.data_dir={a.data_dir}"]
    try:
        PLANS[a.plan](a, st, common, end)
    finally:
        archive(out)
        print(json.dumps({"plan": a.plan, "status": st.status, "total_wall_s": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
