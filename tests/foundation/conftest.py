import copy

import pytest

from equilab.data import nbody

TINY_COUNTS = {"train": 60, "valid": 20, "test": 20}


@pytest.fixture(scope="session")
def tiny_nbody_dir(tmp_path_factory):
    """A small N-body cache (the first 60/20/20 trajectories of the reference stream)."""
    d = tmp_path_factory.mktemp("nbody_data")
    nbody.generate(d / "nbody", counts=TINY_COUNTS, log=lambda *a: None)
    return d


BASE_CFG = {
    "seed": 0,
    "paths": {"data_dir": None},
    "model": {"name": "egnn", "hidden": 16, "layers": 2},
    "data": {"name": "nbody", "batch_size": 10, "max_train": 60, "max_valid": 20, "max_test": 20,
             "generate_if_missing": False, "layout": "dense"},
    "task": {"name": "position_regression"},
    "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 1e-12, "schedule": {"name": "constant"}, "ema": 0.9},
    "trainer": {"max_steps": 24, "eval_every": 6, "log_every": 3, "monitor": "valid/mse", "precision": "float32",
                "progress": False},
    "logger": {"name": "none", "mode": "disabled"},
}


@pytest.fixture
def tiny_cfg(tiny_nbody_dir):
    cfg = copy.deepcopy(BASE_CFG)
    cfg["paths"]["data_dir"] = str(tiny_nbody_dir)
    return cfg
