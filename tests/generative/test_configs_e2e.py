"""QM9 generation configs build through the factories; a slow end-to-end run trains two steps,
samples with ``equilab-sample`` and scores the files."""
import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import equilab.data.qm9  # noqa: F401  (registration, until equilab.catalog imports these)
import equilab.models.egnn_dynamics  # noqa: F401
import equilab.tasks.generative  # noqa: F401
from equilab.cli import CONFIG_DIR


def _cfg(experiment, data_dir, *extra):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", f"paths.data_dir={data_dir}", *extra])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("experiment", ["qm9_edm", "qm9_flow", "qm9_flow_cpu"])
def test_experiments_build(experiment, qm9_dir):
    from equilab.train.factories import build_data, build_model, build_task

    d = _cfg(experiment, qm9_dir)
    data = build_data(d)
    model, task = build_model(d, data), build_task(d, data)
    full = 100_000 // d["data"]["batch_size"]
    buckets = d["data"]["size_buckets"]
    if buckets is None:
        assert data.steps_per_epoch == full
    else:  # each bucket drops its ragged tail
        assert experiment == "qm9_flow_cpu" and full - len(buckets) < data.steps_per_epoch <= full
    assert model.n_features == 6 and task.n_features == 6
    if experiment == "qm9_edm":  # the paper protocol (anchors §4)
        assert (model.n_layers, model.hidden, task.timesteps) == (9, 256, 1000)
        assert d["optim"]["lr"] == 1e-4 and d["optim"]["ema"] == 0.9999 and d["data"]["batch_size"] == 64
        assert d["task"]["noise_schedule"] == "polynomial_2" and d["task"]["noise_precision"] == 1e-5


@pytest.mark.slow
def test_train_sample_evaluate(qm9_dir, tmp_path):
    from equilab.cli import setup_jax
    from equilab.generative.sample_cli import main as sample_main
    from equilab.metrics.molecules import main as eval_main
    from equilab.train.loop import Trainer

    setup_jax()
    d = _cfg("qm9_flow_cpu", qm9_dir, "logger=none", "model.hidden=16", "model.n_layers=1", "data.batch_size=8",
             "data.train_subset=64", "data.eval_subset=16", "trainer.max_steps=2", "trainer.eval_every=2",
             "trainer.progress=false", "optim.schedule.warmup_steps=0")
    run = tmp_path / "run"
    Trainer(d, run).fit(progress=False)
    out = tmp_path / "samples"
    assert sample_main([f"run={run}", "n=5", "batch=4", "steps=2", "solver=euler", f"out={out}", "novelty=false"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 5 and m["steps"] == 2 and m["molecules_per_s"] > 0
    assert set(m["breakdown"]) == {"elements", "bond_lengths_A", "connected"}
    assert (out / "molecules.xyz").exists() and (out / "molecules.sdf").exists()
    assert eval_main([str(out), "--no-novelty"]) == 0


@pytest.mark.parametrize("arg,msg", [("n=ten", "n='ten' is not an integer"), ("steps=0", "steps=0 must be at least 1"),
                                     ("batch=-1", "batch=-1 must be at least 1")])
def test_sample_bad_numbers_are_one_line_errors(arg, msg, capsys):
    """A malformed number is named before any checkpoint is touched (no ValueError trace)."""
    from equilab.generative.sample_cli import main as sample_main

    assert sample_main(["run=/nonexistent/run", arg]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {msg}"


def test_size_bucketed_training_with_steps_per_call(qm9_dir, tmp_path):
    """Size-bucketed batches have several shapes: a k-step chunk is split into runs of one shape,
    and training equals one step per call."""
    import jax
    import numpy as np

    from equilab.train.checkpoint import Checkpoints
    from equilab.train.loop import Trainer

    d = _cfg("qm9_flow_cpu", qm9_dir, "logger=none", "model.hidden=8", "model.n_layers=1", "data.batch_size=4",
             "data.train_subset=48", "data.eval_subset=8", "trainer.max_steps=6", "trainer.eval_every=6",
             "trainer.log_every=6", "optim.schedule.warmup_steps=0", "data.size_buckets=[9,29]", "task.align=rotation")
    runs = {}
    for k in (1, 3):
        cfg = json.loads(json.dumps(d))
        cfg["trainer"]["steps_per_call"] = k
        tr = Trainer(cfg, tmp_path / f"k{k}")
        tr.fit(progress=False)
        shapes = [b["positions"].shape[1] for b in tr.data.train_batches(0, cfg["seed"])][:6]
        ck = Checkpoints(tmp_path / f"k{k}")
        try:
            runs[k] = ck.restore("latest", tr.abstract_state())[0]
        finally:
            ck.close()
    assert len(set(shapes)) == 2  # the first six batches mix both buckets
    for x, y in zip(jax.tree_util.tree_leaves(runs[1]), jax.tree_util.tree_leaves(runs[3])):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("group", [1, 3])
def test_bucketed_chunks_compile_one_program_per_bucket(qm9_dir, tmp_path, group):
    """With size buckets and steps_per_call = k, the compiled programs stay bounded: a chunk that
    mixes buckets runs one single-step call per batch (at most one program per bucket), and with
    data.bucket_group = k every chunk has one shape (one k-step scan per bucket, no single steps)."""
    import json as _json

    import numpy as np

    from equilab.train.loop import Trainer

    d = _cfg("qm9_flow_cpu", qm9_dir, "logger=none", "model.hidden=8", "model.n_layers=1", "data.batch_size=4",
             "data.train_subset=96", "data.eval_subset=8", "trainer.max_steps=30", "trainer.eval_every=15",
             "trainer.log_every=15", "optim.schedule.warmup_steps=0", "data.size_buckets=[9,29]",
             f"data.bucket_group={group}", "trainer.steps_per_call=3")
    tr = Trainer(_json.loads(_json.dumps(d)), tmp_path / "run")
    tr.fit(progress=False)
    epoch = list(tr.data.train_batches(0, d["seed"]))
    assert len(epoch) == tr.data.steps_per_epoch
    sizes = [b["positions"].shape[1] for b in epoch]
    assert set(sizes) == {9, 29}
    rows = np.concatenate([b["n_atoms"] for b in epoch])
    assert len(rows) == 4 * len(epoch)
    assert tr.train_steps._cache_size() <= 2 and tr.train_step._cache_size() <= 2
    if group == 3:
        assert len(epoch) % 3 == 0
        assert all(len(set(sizes[i:i + 3])) == 1 for i in range(0, len(sizes), 3))
        assert tr.train_step._cache_size() == 0
    else:  # the plain bucketed order mixes the buckets inside the 3-step chunks
        assert any(len(set(sizes[i:i + 3])) == 2 for i in range(0, len(sizes), 3))


def test_bucket_group_must_be_a_positive_integer(qm9_dir):
    from equilab.errors import ConfigError
    from equilab.train.factories import build_data

    for bad, msg in (("0", "bucket_group=0 must be >= 1"), ("two", "bucket_group='two' is not an integer")):
        d = _cfg("qm9_flow_cpu", qm9_dir, f"data.bucket_group={bad}", "data.train_subset=96")
        with pytest.raises(ConfigError, match=msg):
            build_data(d)
