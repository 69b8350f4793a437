"""Dataset preparation behind ``equilab-data <name>``: a registry of preparers."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

from equilab.errors import ConfigError

PREPARERS: Dict[str, Callable[[Path, dict], dict]] = {}


def preparer(name):
    def deco(fn):
        PREPARERS[name] = fn
        return fn

    return deco


@preparer("nbody")
def _nbody(data_dir: Path, opts: dict) -> dict:
    from equilab.data import nbody

    counts = {s: int(opts.pop(f"n_{s}", n)) for s, n in nbody.SPLIT_SIZES.items()}
    if opts:
        raise ConfigError(f"equilab-data nbody: unknown option(s) {sorted(opts)}; known: n_train, n_valid, n_test")
    paths = nbody.generate(data_dir / "nbody", counts=counts)
    return {"dataset": "nbody", **{s: str(p) for s, p in paths.items()}}


@preparer("qm9")
def _qm9(data_dir: Path, opts: dict) -> dict:
    from equilab.data import qm9

    if opts:
        raise ConfigError(f"equilab-data qm9: unknown option(s) {sorted(opts)}")
    return {"dataset": "qm9", "cache": str(qm9.prepare(data_dir))}


def prepare(name: str, data_dir: Path, opts: dict) -> dict:
    if name not in PREPARERS:
        raise ConfigError(f"unknown dataset {name!r} for equilab-data; choose one of: {', '.join(sorted(PREPARERS))}")
    return PREPARERS[name](data_dir, dict(opts))
