"""Orbax checkpoints: train state + resolved config + package version + host-loop state.

``latest/`` keeps the last few steps for resumption (a corrupt newest step falls back to the one
before with a warning); ``best/`` keeps the best step by the monitored validation metric.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Optional, Tuple

import jax
import orbax.checkpoint as ocp

log = logging.getLogger("equilab")


class Checkpoints:
    def __init__(self, run_dir: str | Path, keep: int = 2):
        self.root = Path(run_dir).resolve() / "checkpoints"
        opts = lambda n: ocp.CheckpointManagerOptions(max_to_keep=n, create=True, enable_async_checkpointing=True)  # noqa: E731
        self.latest = ocp.CheckpointManager(self.root / "latest", options=opts(max(keep, 2)), item_names=("state", "meta"))
        self.best = ocp.CheckpointManager(self.root / "best", options=opts(1), item_names=("state", "meta"))

    def save(self, which: str, step: int, state, meta: dict):
        mngr = getattr(self, which)
        mngr.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

    def wait(self):
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def restore(self, which: str, abstract_state) -> Optional[Tuple[Any, dict, int]]:
        """Restore the newest readable step; a corrupt or partial step is skipped with a warning."""
        mngr = getattr(self, which)
        mngr.reload()
        for step in sorted(mngr.all_steps(), reverse=True):
            try:
                r = mngr.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
                return r.state, dict(r.meta), int(step)
            except Exception as e:  # noqa: BLE001 — any unreadable step is skipped, loudly
                log.warning("checkpoint %s/%d is unreadable (%s: %s); falling back to the previous one",
                            which, step, type(e).__name__, str(e).splitlines()[0][:200])
                bad = mngr.directory / str(step)
                quarantine = mngr.directory.parent / f"corrupt_{which}_{step}"
                shutil.rmtree(quarantine, ignore_errors=True)
                if bad.exists():
                    bad.rename(quarantine)
                mngr.reload()
        return None

    def close(self):
        self.wait()
        self.latest.close()
        self.best.close()


def saved_steps(run_dir: str | Path, which: str) -> Tuple[Path, list]:
    """``(directory, steps newest first)`` of a run's ``which`` checkpoints (none: empty list)."""
    d = Path(run_dir) / "checkpoints" / which
    return d, sorted((int(p.name) for p in d.iterdir() if p.name.isdigit()), reverse=True) if d.is_dir() else []


def restore_state_readonly(run_dir: str | Path, which: str, abstract_state) -> Tuple[Any, int]:
    """The train state of the newest ``which`` step of another run, opened read-only (nothing is
    created, quarantined or written there). Raises FileNotFoundError when there is none; orbax's
    own error when the saved tree does not fit ``abstract_state``."""
    d, steps = saved_steps(Path(run_dir).resolve(), which)
    if not steps:
        raise FileNotFoundError(f"no {which} checkpoint under {d}")
    mngr = ocp.CheckpointManager(d, options=ocp.CheckpointManagerOptions(create=False, read_only=True),
                                 item_names=("state", "meta"))
    try:
        r = mngr.restore(steps[0], args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                           meta=ocp.args.JsonRestore()))
    finally:
        mngr.close()
    return r.state, steps[0]


def read_meta(run_dir: str | Path, which: str = "best") -> Tuple[dict, int]:
    """The JSON metadata (config, version, loop state) of the newest step of ``which``."""
    d, steps = saved_steps(run_dir, which)
    for s in steps:
        f = d / str(s) / "meta" / "metadata"
        if f.exists():
            return json.loads(f.read_text()), s
    raise FileNotFoundError(f"no {which} checkpoint in {d}")


def restore_for_inference(run_dir: str | Path, overrides: Optional[dict] = None):
    """Load a trained run for inference: ``(cfg, model, params, data_stats)``.

    ``params`` are the evaluation parameters (the EMA when the run kept one) of the best
    checkpoint. ``overrides`` (e.g. ``{"paths": {"data_dir": ...}}``) are merged into the saved
    config — the data module is rebuilt, since models take statistics (E0s, scales) from it.
    """
    import jax

    from equilab.train.loop import Trainer

    meta, _ = read_meta(run_dir, "best")
    cfg = meta["config"]
    for group, vals in (overrides or {}).items():
        cfg[group] = {**cfg.get(group, {}), **vals} if isinstance(vals, dict) else vals
    if cfg["trainer"].get("precision") == "float64":
        jax.config.update("jax_enable_x64", True)
    trainer = Trainer(cfg, run_dir)
    state, _, _ = trainer.restore_best()
    return cfg, trainer.model, trainer.eval_params(state), trainer.data.stats
