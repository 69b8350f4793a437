"""Every MACE experiment composes and builds its data module, model and task (no compile)."""
import pathlib

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import equilab.data.atoms  # noqa: F401  (register until equilab.catalog imports them)
import equilab.models.mace  # noqa: F401
import equilab.tasks.energy_forces  # noqa: F401
from equilab.errors import DataError
from equilab.train.factories import build_data, build_model, build_task

REPO = pathlib.Path(__file__).resolve().parents[2]

EXPERIMENTS = ["acac_mace", "acac_mace_cpu", "bpa3_mace", "bpa3_mace_cpu", "rmd17_mace", "rmd17_mace_cpu"]


def _cfg(exp, data_dir, *extra):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={exp}", f"paths.data_dir={data_dir}", *extra])
    d = OmegaConf.to_container(cfg, resolve=True)
    d.pop("hydra", None)
    return d


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_experiment_builds(exp, shared_data):
    extra = ["+data.n_test=5"] if not exp.startswith("bpa3") else []
    cfg = _cfg(exp, shared_data, *extra)
    assert cfg["optim"]["name"] == "amsgrad" and cfg["optim"]["ema"] == 0.99
    assert cfg["task"] == {"name": "energy_forces", "energy_weight": 1.0, "forces_weight": 1000.0}
    if exp == "bpa3_mace":  # paper protocol needs the downloaded test sets
        with pytest.raises(DataError, match="download it from https://"):
            build_data(cfg)
        return
    paper = not exp.endswith("_cpu")
    assert cfg["model"]["num_channels"] == (256 if paper else 32)
    assert cfg["trainer"]["precision"] == ("float64" if paper else "float32")
    data = build_data(cfg)
    model = build_model(cfg, data)
    build_task(cfg, data)
    assert model.tp == "cg" and model.correlation == 3 and model.cutoff == 5.0 and model.num_bessel == 8
    assert len(model.e0) == len(data.stats["atomic_numbers"])


def test_tp_override_and_bad_values(shared_data):
    from equilab.errors import ConfigError

    cfg = _cfg("acac_mace_cpu", shared_data, "model.tp=gaunt_fourier", "+data.n_test=5")
    data = build_data(cfg)
    assert build_model(cfg, data).tp == "gaunt_fourier"
    cfg["model"]["tp"] = "fft"
    with pytest.raises(ConfigError, match="model.tp must be one of"):
        build_model(cfg, data)
    cfg["model"]["tp"] = "gaunt_s2grid"
    cfg["model"]["gaunt_layout"] = "sparse"
    with pytest.raises(ConfigError, match="model.gaunt_layout must be one of"):
        build_model(cfg, data)
    cfg["model"]["gaunt_layout"] = "folded"
    assert build_model(cfg, data).gaunt_layout == "folded"
