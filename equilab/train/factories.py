"""Config → objects. The only code besides cli.py that reads the (plain-dict) config."""
from __future__ import annotations

from typing import Any, Dict

from equilab.errors import ConfigError
from equilab.registry import DATASETS, MODELS, TASKS


def _split(cfg: dict, group: str):
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ConfigError(f"config group `{group}` needs a `name` field (got {cfg!r})")
    rest = {k: v for k, v in cfg.items() if k != "name"}
    return cfg["name"], rest


def _call(builder, group: str, name: str, *args):
    try:
        return builder(*args)
    except TypeError as e:
        if "unexpected keyword" in str(e) or "got an unexpected" in str(e) or "missing" in str(e):
            raise ConfigError(f"{group}={name}: {e}") from None
        raise


def build_data(cfg: Dict[str, Any]):
    import equilab.catalog  # noqa: F401  (registers everything)

    name, rest = _split(cfg["data"], "data")
    return _call(lambda c, d: DATASETS.get(name, field="data.name")(c, d), "data", name, rest, str(cfg["paths"]["data_dir"]))


def build_model(cfg: Dict[str, Any], data):
    import equilab.catalog  # noqa: F401

    name, rest = _split(cfg["model"], "model")
    return _call(lambda c, d: MODELS.get(name, field="model.name")(c, d), "model", name, rest, data)


def build_task(cfg: Dict[str, Any], data):
    import equilab.catalog  # noqa: F401

    name, rest = _split(cfg["task"], "task")
    return _call(lambda c, d: TASKS.get(name, field="task.name")(c, d), "task", name, rest, data)


def check_names(cfg: Dict[str, Any]) -> None:
    """Fail fast on an unknown registry name, before any data is loaded."""
    import equilab.catalog  # noqa: F401

    for group, reg in (("model", MODELS), ("data", DATASETS), ("task", TASKS)):
        name, _ = _split(cfg[group], group)
        reg.get(name, field=f"{group}.name")
