"""Hydra entry points: ``equilab-train``, ``equilab-evaluate``, ``equilab-data``.

The only module (with the factories) that sees configs. Every command prints its final result
as one JSON object on its last line; user errors print one line ``error: ...`` and exit 2.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
log = logging.getLogger("equilab")


def setup_jax(precision: str = "float32"):
    """Persistent compilation cache (compile time dominates small CPU runs) and precision."""
    import jax

    cache = os.environ.get("EQUILAB_JAX_CACHE", str(Path.home() / ".cache" / "equilab" / "jax_cache"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every save at INFO
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    if precision == "float64":
        jax.config.update("jax_enable_x64", True)


def _fail(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


def _run_guarded(fn):
    from equilab.errors import EquilabError

    try:
        return fn()
    except EquilabError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; re-run the same command (same hydra.run.dir) to resume from the last checkpoint", 130)


def _to_dict(cfg):
    from omegaconf import OmegaConf

    from equilab.errors import ConfigError

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as e:  # noqa: BLE001 — omegaconf errors name the key; keep one line
        raise ConfigError(str(e).splitlines()[0]) from None


def _train_main(cfg):
    from hydra.core.hydra_config import HydraConfig

    def go():
        d = _to_dict(cfg)
        d.pop("hydra", None)
        setup_jax(d["trainer"].get("precision", "float32"))
        from equilab.train.loop import Trainer

        run_dir = Path(HydraConfig.get().runtime.output_dir)
        (run_dir / "config.json").write_text(json.dumps(d, indent=2))
        trainer = Trainer(d, run_dir)
        result = trainer.fit(progress=bool(d["trainer"].get("progress", True)))
        print(json.dumps(result))
        monitor = d["trainer"].get("monitor", "valid/loss")
        return result.get(monitor)

    return _run_guarded(go)


def train():
    """``equilab-train [overrides]`` — Hydra app on ``configs/train.yaml``."""
    import hydra

    main = hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")(_train_main)
    main()


def _parse_kv(argv):
    out = {}
    for a in argv:
        if "=" not in a:
            _fail(f"argument {a!r} is not of the form key=value")
        k, v = a.split("=", 1)
        out[k] = v
    return out


def evaluate(argv=None) -> None:
    """``equilab-evaluate run=<run_dir> [split=test] [overrides]``: restore the best checkpoint,
    evaluate, write ``eval_<split>.json`` into the run directory, print the metrics as JSON."""
    argv = sys.argv[1:] if argv is None else argv

    def go():
        from omegaconf import OmegaConf

        from equilab.errors import ConfigError
        from equilab.train.checkpoint import read_meta

        kv = _parse_kv(argv)
        if "run" not in kv:
            raise ConfigError("missing run=<run_dir>")
        run_dir = Path(kv.pop("run"))
        split = kv.pop("split", None)
        if not (run_dir / "checkpoints").exists():
            raise ConfigError(f"run={run_dir}: no checkpoints/ folder there — is it a run directory?")
        meta, _ = read_meta(run_dir, "best")
        cfg = OmegaConf.create(meta["config"])
        OmegaConf.set_struct(cfg, True)
        for k, v in kv.items():
            try:
                OmegaConf.update(cfg, k, __import__("yaml").safe_load(v), merge=True)
            except Exception:  # noqa: BLE001
                raise ConfigError(f"override {k}={v}: no such key in the run's config") from None
        d = OmegaConf.to_container(cfg, resolve=True)
        setup_jax(d["trainer"].get("precision", "float32"))
        from equilab.train.loop import Trainer

        trainer = Trainer(d, run_dir)
        splits = [split] if split else None
        if split and split not in trainer.data.eval_splits:
            raise ConfigError(f"split={split!r}; this data set has {trainer.data.eval_splits}")
        result = trainer.finish(splits)
        print(json.dumps(result))

    _run_guarded(go)


def data(argv=None) -> None:
    """``equilab-data <dataset> [paths.data_dir=DIR] [key=value ...]``: prepare and cache a dataset."""
    argv = sys.argv[1:] if argv is None else argv

    def go():
        from equilab.errors import ConfigError

        if not argv or "=" in argv[0]:
            raise ConfigError("usage: equilab-data <dataset> [paths.data_dir=DIR]; datasets: nbody" + _extra_datasets())
        name, kv = argv[0], _parse_kv(argv[1:])
        data_dir = Path(kv.pop("paths.data_dir", default_data_dir())).expanduser()
        from equilab import datasets_cli

        result = datasets_cli.prepare(name, data_dir, kv)
        print(json.dumps(result))

    _run_guarded(go)


def _extra_datasets():
    from equilab import datasets_cli

    names = [n for n in datasets_cli.PREPARERS if n != "nbody"]
    return (", " + ", ".join(names)) if names else ""


def default_data_dir() -> str:
    return os.environ.get("EQUILAB_DATA_DIR", str(Path.home() / ".cache" / "equilab" / "data"))


if __name__ == "__main__":
    train()
