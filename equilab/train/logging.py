"""Metrics to ``metrics.jsonl`` (one JSON object a line, each with ``step``) and to wandb."""
from __future__ import annotations

import json
import logging
import math
import os
import uuid
from pathlib import Path
from typing import Dict, Optional

log = logging.getLogger("equilab")

# Keys that depend on wall-clock time, not on the computation (excluded when runs are compared).
TIMING_KEYS = ("steps_per_s", "time_s", "eval_time_s", "elapsed_s")


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class MetricsLogger:
    def __init__(self, run_dir: Path, logger_cfg: dict, config: dict, resume_step: int = 0):
        self.path = Path(run_dir) / "metrics.jsonl"
        self._truncate_after(resume_step)
        self.wandb = None
        mode = (logger_cfg or {}).get("mode", "disabled")
        if (logger_cfg or {}).get("name", "none") != "none" and mode != "disabled":
            self._init_wandb(Path(run_dir), logger_cfg, config, mode)

    def _truncate_after(self, step: int):
        """On resume, drop lines logged after the checkpoint the run restarts from."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                break  # a line cut by a kill: drop it and everything after
        self.path.write_text("".join(l + "\n" for l in keep))

    def _init_wandb(self, run_dir: Path, cfg: dict, config: dict, mode: str):
        try:
            import wandb
        except ImportError:  # pragma: no cover
            log.warning("wandb is not installed; logging to metrics.jsonl only")
            return
        id_file = run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        os.environ.setdefault("WANDB_SILENT", "true")
        self.wandb = wandb.init(project=cfg.get("project", "equilab"), entity=cfg.get("entity"), mode=mode,
                                dir=str(run_dir), id=run_id, resume="allow", config=config,
                                name=cfg.get("run_name"), tags=list(cfg.get("tags") or []))

    def log(self, step: int, metrics: Dict[str, float]):
        rec = {"step": int(step), **{k: _clean(float(v)) if isinstance(v, (int, float)) else v for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in rec.items() if k != "step"}, step=int(step))

    def close(self):
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def read_metrics(path: Path):
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


def wall_time_s(records) -> float:
    """Training + evaluation wall time of a run, summed from its metrics records: each logged
    window's steps over its ``steps_per_s``, plus every ``eval_time_s`` (compile excluded)."""
    wall, last = 0.0, 0
    for r in records:
        if r.get("steps_per_s", 0) > 0:
            wall += (r["step"] - last) / r["steps_per_s"]
            last = r["step"]
        wall += r.get("eval_time_s", 0.0)
    return wall


def plot_curves(run_dir: Path, monitor: Optional[str] = None) -> Optional[Path]:
    """Loss-curve PNG (train loss and validation metrics vs step, log scale)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = read_metrics(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    series = ["train/loss"] + sorted({k for r in recs for k in r if k.startswith("valid/")})
    for key in series:
        pts = [(r["step"], r[key]) for r in recs if isinstance(r.get(key), (int, float)) and r[key] > 0]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=key, lw=1.5 if key == monitor else 1.0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    out = Path(run_dir) / "loss_curve.png"
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
