import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from equilab.cli import CONFIG_DIR

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", "paths.data_dir=/nonexistent"])
    d = OmegaConf.to_container(cfg, resolve=True)
    for group in ("model", "data", "task", "optim", "trainer", "logger"):
        assert "name" in d[group] or group == "trainer", (experiment, group)


def test_nbody_protocol_values():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=nbody_egnn"])
    assert cfg.model.hidden == 64 and cfg.model.layers == 4
    assert cfg.optim.lr == 5e-4 and cfg.optim.weight_decay == 1e-12
    assert cfg.data.batch_size == 100 and cfg.data.max_train == 3000
    assert cfg.trainer.max_epochs == 10000 and cfg.trainer.eval_every_epochs == 5


def test_sweep_and_launcher_configs_compose():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=nbody_egnn", "hparams_search=nbody_optuna",
                                                      "hydra/launcher=slurm"], return_hydra_config=True)
    assert "optim.lr" in cfg.hydra.sweeper.params
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")


def _cli(args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))
    return subprocess.run([sys.executable, "-c", "import sys; from equilab import cli; " + args[0]] + args[1:],
                          env=env, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_cli_errors_are_one_clear_line(tmp_path):
    # unknown override
    r = _cli(["sys.argv[0]='equilab-train'; cli.train()", "trainer.no_such_key=3", f"hydra.run.dir={tmp_path}/a"])
    assert r.returncode != 0 and "no_such_key" in r.stderr and "Traceback" not in r.stderr
    # wrong type
    r = _cli(["sys.argv[0]='equilab-train'; cli.train()", "trainer.max_steps=abc", "logger=none",
              f"paths.data_dir={tmp_path}", "data.generate_if_missing=false", f"hydra.run.dir={tmp_path}/b"])
    assert r.returncode == 2 and "error: trainer.max_steps='abc' is not an integer" in r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr
    # missing data file
    r = _cli(["sys.argv[0]='equilab-train'; cli.train()", "logger=none", f"paths.data_dir={tmp_path}/nodata",
              "data.generate_if_missing=false", f"hydra.run.dir={tmp_path}/c"])
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "nbody/train.npz is missing" in last and "Traceback" not in r.stderr
    # unknown model name
    r = _cli(["sys.argv[0]='equilab-train'; cli.train()", "logger=none", "model.name=nope",
              f"paths.data_dir={tmp_path}", f"hydra.run.dir={tmp_path}/d"])  # fails before data are simulated
    assert r.returncode == 2 and "unknown model 'nope'" in r.stderr


def test_train_then_evaluate_cli(tiny_nbody_dir, tmp_path):
    run = tmp_path / "run"
    r = _cli(["sys.argv[0]='equilab-train'; cli.train()", "experiment=demo", "logger=none",
              f"paths.data_dir={tiny_nbody_dir}", "data.max_train=60", "data.max_valid=20", "data.max_test=20",
              "data.batch_size=10", "model.hidden=16", "model.layers=2", "trainer.max_epochs=2",
              "trainer.eval_every_epochs=1", "trainer.log_every=2", "trainer.progress=false", f"hydra.run.dir={run}"])
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["run_dir"] == str(run) and "test/mse" in result
    assert (run / "config.json").exists() and (run / "metrics.jsonl").exists()
    r = _cli(["cli.evaluate()", f"run={run}", "split=test"])
    assert r.returncode == 0, r.stderr[-2000:]
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    assert ev["test/mse"] == pytest.approx(result["test/mse"], rel=1e-6)
    assert json.loads((run / "eval_test.json").read_text())["test/mse"] == ev["test/mse"]
    r = _cli(["cli.evaluate()", f"run={run}", "split=nope"])
    assert r.returncode == 2 and "split='nope'" in r.stderr
