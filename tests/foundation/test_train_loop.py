import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from equilab.errors import ConfigError
from equilab.train.checkpoint import Checkpoints
from equilab.train.logging import TIMING_KEYS, read_metrics
from equilab.train.loop import Trainer, TrainingDiverged

REPO = Path(__file__).resolve().parents[2]


def _params(run_dir, cfg):
    tr = Trainer(cfg, run_dir)
    ck = Checkpoints(run_dir)
    try:
        state, meta, step = ck.restore("latest", tr.abstract_state())
    finally:
        ck.close()
    return state, step


def _metrics(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_metrics(Path(run_dir) / "metrics.jsonl")]


def test_fit_compiles_once_and_evaluates(tiny_cfg, tmp_path):
    tr = Trainer(tiny_cfg, tmp_path / "run")
    result = tr.fit(progress=False)
    assert tr.train_step._cache_size() == 1  # one shape bucket -> one compile
    assert tr.eval_step._cache_size() == 1  # valid and test share the bucket
    assert result["best_step"] in (6, 12, 18, 24)
    assert set(result) >= {"valid/mse", "test/mse"}
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all("step" in r for r in recs)
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 1000
    # training reduced the training loss
    losses = [r["train/loss"] for r in recs if "train/loss" in r]
    assert losses[-1] < losses[0]


def test_resume_equals_uninterrupted(tiny_cfg, tmp_path):
    full = Trainer(tiny_cfg, tmp_path / "full")
    full.fit(progress=False)
    # stopped at step 12 (a checkpoint), then re-run with the full budget in the same dir
    cfg_k = json.loads(json.dumps(tiny_cfg))
    cfg_k["trainer"]["max_steps"] = 12
    Trainer(cfg_k, tmp_path / "part").fit(progress=False)
    Trainer(tiny_cfg, tmp_path / "part").fit(progress=False)
    a, sa = _params(tmp_path / "full", tiny_cfg)
    b, sb = _params(tmp_path / "part", tiny_cfg)
    assert sa == sb == 24
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # the eval at step 12 of the stopped run is re-done identically; metrics agree line by line
    ma = _metrics(tmp_path / "full")
    mb = [r for r in _metrics(tmp_path / "part")]
    assert ma == mb


def test_sigkill_during_training_resumes_exactly(tiny_cfg, tmp_path):
    cfg = json.loads(json.dumps(tiny_cfg))
    cfg["trainer"].update(max_steps=200, eval_every=20, log_every=10)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg))
    script = (
        "import json,sys; from equilab.cli import setup_jax; setup_jax();"
        "from equilab.train.loop import Trainer;"
        "cfg=json.load(open(sys.argv[1])); Trainer(cfg, sys.argv[2]).fit(progress=False)"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-c", script, str(cfg_file), str(run)], env=env)
    latest = run / "checkpoints" / "latest"
    t0 = time.time()
    while time.time() - t0 < 240:
        steps = [int(d.name) for d in latest.glob("*") if d.name.isdigit()] if latest.exists() else []
        if steps and max(steps) >= 40:
            break
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "run finished before it could be killed"
    killed_at = max(int(d.name) for d in latest.glob("*") if d.name.isdigit())
    assert killed_at < 200
    subprocess.run([sys.executable, "-c", script, str(cfg_file), str(run)], env=env, check=True)
    Trainer(cfg, tmp_path / "clean").fit(progress=False)
    a, sa = _params(run, cfg)
    b, sb = _params(tmp_path / "clean", cfg)
    assert sa == sb == 200
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert _metrics(run) == _metrics(tmp_path / "clean")


def test_corrupt_latest_checkpoint_falls_back(tiny_cfg, tmp_path, caplog):
    run = tmp_path / "run"
    Trainer(tiny_cfg, run).fit(progress=False)
    newest = run / "checkpoints" / "latest" / "24"
    files = [f for f in (newest / "state").rglob("*") if f.is_file() and f.stat().st_size > 0]
    for f in files:
        f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 3)])
    tr = Trainer(tiny_cfg, run)
    ck = Checkpoints(run)
    try:
        with caplog.at_level("WARNING", logger="equilab"):
            state, meta, step = ck.restore("latest", tr.abstract_state())
    finally:
        ck.close()
    assert step == 18
    assert "unreadable" in caplog.text and "falling back" in caplog.text


def test_nonfinite_loss_stops_with_step_and_keeps_checkpoint(tiny_cfg, tmp_path):
    cfg = json.loads(json.dumps(tiny_cfg))
    cfg["optim"] = {"name": "sgd", "lr": 1e25, "schedule": {"name": "constant"}, "ema": None}
    with pytest.raises(TrainingDiverged, match=r"non-finite loss or gradient at step \d+"):
        Trainer(cfg, tmp_path / "run").fit(progress=False)
    ck = tmp_path / "run" / "checkpoints" / "latest"
    for d in ck.glob("*"):
        if d.name.isdigit():
            tr = Trainer(cfg, tmp_path / "run")
            c = Checkpoints(tmp_path / "run")
            try:
                state, _, _ = c.restore("latest", tr.abstract_state())
            finally:
                c.close()
            assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state.params))


def test_two_devices_equal_one(tiny_cfg, tmp_path):
    """One training step sharded over 2 (forced host) devices equals the 1-device step."""
    (tmp_path / "cfg.json").write_text(json.dumps(tiny_cfg))
    script = f"""
import json, numpy as np, jax
from equilab.train.loop import Trainer
cfg = json.load(open({str(tmp_path / "cfg.json")!r}))
cfg['data']['pad_multiple'] = 2
out = []
for n in (1, 2):
    cfg['trainer']['devices'] = n
    tr = Trainer(cfg, {str(tmp_path)!r} + f'/r{{n}}')
    state = tr.sharder.replicate(tr.init_state())
    batch = tr.sharder.batch(next(tr.data.train_batches(0, 0)), tr.dtype)
    if n == 2:
        assert len(batch['positions'].sharding.device_set) == 2
    state, m = tr.train_step(state, batch, tr.key)
    out.append([np.asarray(x) for x in jax.tree_util.tree_leaves(state.params)])
assert len(jax.devices()) == 2
err = max(float(np.max(np.abs(a - b))) for a, b in zip(*out))
print(err)
assert err < 1e-6, err
"""
    env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS="--xla_force_host_platform_device_count=2")
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]


def test_steps_per_call_scan_matches_single_steps_and_resumes_exactly(tiny_cfg, tmp_path):
    """k steps per jitted call (lax.scan) give the same training as one step per call, and a
    run stopped at a checkpoint and resumed equals the uninterrupted k-step run bit for bit."""
    base = json.loads(json.dumps(tiny_cfg))
    base["trainer"].update(log_every=6)
    one = Trainer(base, tmp_path / "one")
    one.fit(progress=False)
    cfg = json.loads(json.dumps(base))
    cfg["trainer"]["steps_per_call"] = 4  # chunks of 4 then 2 up to each boundary (every 6 steps)
    k = Trainer(cfg, tmp_path / "k")
    k.fit(progress=False)
    assert k.train_steps._cache_size() == 2 and k.train_step._cache_size() == 0
    a, _ = _params(tmp_path / "one", base)
    b, _ = _params(tmp_path / "k", cfg)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    part = json.loads(json.dumps(cfg))
    part["trainer"]["max_steps"] = 12
    Trainer(part, tmp_path / "part").fit(progress=False)
    Trainer(cfg, tmp_path / "part").fit(progress=False)
    c, sc = _params(tmp_path / "part", cfg)
    assert sc == 24
    for x, y in zip(jax.tree_util.tree_leaves(b), jax.tree_util.tree_leaves(c)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert _metrics(tmp_path / "k") == _metrics(tmp_path / "part")
    train = [r["train/loss"] for r in _metrics(tmp_path / "k") if "train/loss" in r]
    ref = [r["train/loss"] for r in _metrics(tmp_path / "one") if "train/loss" in r]
    np.testing.assert_allclose(train, ref, rtol=1e-4)


def test_steps_per_call_must_be_positive(tiny_cfg, tmp_path):
    cfg = json.loads(json.dumps(tiny_cfg))
    cfg["trainer"]["steps_per_call"] = 0
    with pytest.raises(Exception, match="steps_per_call"):
        Trainer(cfg, tmp_path / "run")


def test_time_limit_stops_at_a_checkpoint_and_resumes_exactly(tiny_cfg, tmp_path):
    """trainer.time_limit_s: the run stops at the first checkpoint after the budget, tests its
    best checkpoint, and the same command without the limit continues it to the uninterrupted
    result."""
    cfg = json.loads(json.dumps(tiny_cfg))
    cfg["trainer"]["time_limit_s"] = 0
    result = Trainer(cfg, tmp_path / "part").fit(progress=False)
    _, step = _params(tmp_path / "part", tiny_cfg)
    assert step < tiny_cfg["trainer"]["max_steps"] and result["best_step"] == step
    assert json.loads((tmp_path / "part" / "eval.json").read_text())["best_step"] == step
    Trainer(tiny_cfg, tmp_path / "part").fit(progress=False)
    Trainer(tiny_cfg, tmp_path / "full").fit(progress=False)
    a, sa = _params(tmp_path / "full", tiny_cfg)
    b, sb = _params(tmp_path / "part", tiny_cfg)
    assert sa == sb == tiny_cfg["trainer"]["max_steps"]
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_init_from_starts_a_new_run_from_another_runs_parameters(tiny_cfg, tmp_path):
    cfg_a = json.loads(json.dumps(tiny_cfg))
    cfg_a["trainer"]["max_steps"] = 12
    Trainer(cfg_a, tmp_path / "a").fit(progress=False)
    src, step_a = _params(tmp_path / "a", cfg_a)
    assert step_a == 12
    cfg_b = json.loads(json.dumps(tiny_cfg))
    cfg_b["trainer"]["init_from"] = str(tmp_path / "a")
    cfg_b["optim"]["lr"] = 3e-4
    tr = Trainer(cfg_b, tmp_path / "b")
    st = tr._init_from(tr.init_state())
    assert int(st.step) == 0
    for x, y in zip(jax.tree_util.tree_leaves((src.params, src.ema_params)),
                    jax.tree_util.tree_leaves((st.params, st.ema_params))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # the optimizer starts fresh (Adam's moments are zero), unlike the source's
    fresh_mu = [np.abs(np.asarray(m)).max() for m in jax.tree_util.tree_leaves(st.opt_state)
                if np.ndim(m) > 0]
    assert max(fresh_mu) == 0.0
    # a full fit from there starts at the source's loss level, not at a fresh init's
    tr.fit(progress=False)
    b, step_b = _params(tmp_path / "b", cfg_b)
    assert step_b == 24
    first = [r for r in read_metrics(tmp_path / "b" / "metrics.jsonl") if "train/loss" in r][0]
    first_a = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if "train/loss" in r]
    assert first["train/loss"] < first_a[0]["train/loss"]
    # the source run is untouched
    again, _ = _params(tmp_path / "a", cfg_a)
    for x, y in zip(jax.tree_util.tree_leaves(src), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_init_from_errors_name_the_override(tiny_cfg, tmp_path):
    Trainer(tiny_cfg | {"trainer": {**tiny_cfg["trainer"], "max_steps": 6}}, tmp_path / "a").fit(progress=False)
    missing = json.loads(json.dumps(tiny_cfg))
    missing["trainer"]["init_from"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="trainer.init_from=.*nowhere.*no latest checkpoint"):
        Trainer(missing, tmp_path / "b").fit(progress=False)
    other = json.loads(json.dumps(tiny_cfg))
    other["trainer"]["init_from"] = str(tmp_path / "a")
    other["model"]["hidden"] = 8  # a different model: the checkpoint does not fit
    with pytest.raises(ConfigError, match="trainer.init_from=.*does not fit this run's model"):
        Trainer(other, tmp_path / "c").fit(progress=False)
    bad = json.loads(json.dumps(tiny_cfg))
    bad["trainer"]["init_from_checkpoint"] = "first"
    with pytest.raises(ConfigError, match="trainer.init_from_checkpoint='first'"):
        Trainer(bad, tmp_path / "d")


class _FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _budget_trainer(cfg, run_dir, seconds_per_step=1.0):
    """A Trainer whose wall clock is fake and advances ``seconds_per_step`` per trained step."""
    tr = Trainer(cfg, run_dir)
    tr.clock = clock = _FakeClock()
    inner = tr.run_chunk

    def run_chunk(state, chunk):
        out = inner(state, chunk)
        clock.t += seconds_per_step * len(chunk)
        return out

    tr.run_chunk = run_chunk
    return tr


def _budget_cfg(tiny_cfg, **trainer):
    cfg = json.loads(json.dumps(tiny_cfg))
    cfg["trainer"].update(time_budget_s=10, **trainer)
    cfg["optim"]["schedule"] = {"name": "constant", "anneal_fraction": 0.5, "anneal_to": 0.1, "anneal_by": "time"}
    return cfg


def test_time_budget_ends_the_run_with_the_rate_annealed_by_the_clock(tiny_cfg, tmp_path):
    """trainer.time_budget_s with optim.schedule.anneal_by=time: one step = one fake second, a
    10 s budget of a 24-step run. Training ends after step 10, which is validated and
    checkpointed; the learning-rate scale follows the cosine over the last half of the budget."""
    from equilab.train.optim import time_anneal_factor

    cfg = _budget_cfg(tiny_cfg)
    tr = _budget_trainer(cfg, tmp_path / "run")
    result = tr.fit(progress=False)
    state, step = _params(tmp_path / "run", cfg)
    assert step == 10 and result["best_step"] in (6, 10)
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert any(r["step"] == 10 and "valid/mse" in r for r in recs)
    assert any(r["step"] == 10 and r.get("stopped_by_time_budget") == 1.0 for r in recs)
    # the scale of the last chunk before each log: chunk k starts at k fake seconds
    logged = {r["step"]: r["lr_scale"] for r in recs if "lr_scale" in r}
    assert sorted(logged) == [3, 6, 9, 10]
    expect = {s: time_anneal_factor((s - 1) / 10, 0.5, 0.1) for s in logged}
    assert logged == pytest.approx(expect, rel=1e-6)
    assert logged[3] == logged[6] == 1.0 and logged[10] < logged[9] < 0.5
    assert float(state.opt_state.hyperparams["lr_scale"]) == pytest.approx(expect[10], rel=1e-6)


def test_time_budget_is_summed_over_resumed_legs(tiny_cfg, tmp_path):
    """A leg stopped by trainer.time_limit_s keeps its spent seconds in the checkpoint: the resumed
    leg ends where the uninterrupted run ends, with the same weights; a third invocation finds the
    budget spent and trains nothing."""
    _budget_trainer(_budget_cfg(tiny_cfg), tmp_path / "full").fit(progress=False)
    _budget_trainer(_budget_cfg(tiny_cfg, time_limit_s=4), tmp_path / "legs").fit(progress=False)
    _, first = _params(tmp_path / "legs", tiny_cfg)
    assert first == 6  # the first checkpoint after 4 fake seconds
    _budget_trainer(_budget_cfg(tiny_cfg), tmp_path / "legs").fit(progress=False)
    a, sa = _params(tmp_path / "full", tiny_cfg)
    b, sb = _params(tmp_path / "legs", tiny_cfg)
    assert sa == sb == 10
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    n_before = len(read_metrics(tmp_path / "legs" / "metrics.jsonl"))
    result = _budget_trainer(_budget_cfg(tiny_cfg), tmp_path / "legs").fit(progress=False)
    _, sc = _params(tmp_path / "legs", tiny_cfg)
    assert sc == 10 and "test/mse" in result
    assert not [r for r in read_metrics(tmp_path / "legs" / "metrics.jsonl")[n_before:] if "train/loss" in r]


@pytest.mark.parametrize("trainer, sched, field", [
    ({}, {"anneal_fraction": 0.3, "anneal_by": "time"}, "trainer.time_budget_s"),
    ({"time_budget_s": 100}, {"anneal_fraction": 0.3, "anneal_by": "clock"}, "optim.schedule.anneal_by"),
    ({"time_budget_s": 100}, {"anneal_by": "time"}, "optim.schedule.anneal_fraction"),
    ({"time_budget_s": 0}, {}, "trainer.time_budget_s"),
])
def test_time_budget_config_errors_name_the_field(tiny_cfg, tmp_path, trainer, sched, field):
    cfg = json.loads(json.dumps(tiny_cfg))
    cfg["trainer"].update(trainer)
    cfg["optim"]["schedule"] = {"name": "constant", **sched}
    with pytest.raises(ConfigError, match=field):
        Trainer(cfg, tmp_path / "run")
