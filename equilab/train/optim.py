"""Optimizers from the ``optim`` config group (optax).

The learning rate is an injected hyperparameter, so a host-side plateau schedule can scale it
between evaluations without recompiling, and the schedule state is part of the checkpoint.
"""
from __future__ import annotations

import math

import optax

from equilab.errors import ConfigError


def _num(cfg: dict, key: str, default=None, *, cast=float):
    v = cfg.get(key, default)
    if v is None:
        return None
    try:
        return cast(v)
    except (TypeError, ValueError):
        raise ConfigError(f"optim.{key}={v!r} is not a {cast.__name__}") from None


def learning_rate_schedule(cfg: dict, total_steps: int):
    lr = _num(cfg, "lr", 1e-3)
    sched = dict(cfg.get("schedule") or {"name": "constant"})
    name = sched.get("name", "constant")
    warmup = int(sched.get("warmup_steps", 0) or 0)
    if name in ("constant", "plateau"):
        base = optax.constant_schedule(lr)
    elif name == "cosine":
        base = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1), alpha=float(sched.get("alpha", 0.0)))
    else:
        raise ConfigError(f"optim.schedule.name={name!r} unknown; choose constant, cosine or plateau")
    if warmup:
        base = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), base], [warmup])
    return _with_final_anneal(base, sched, total_steps)


def anneal_settings(sched: dict):
    """``(f, to, by)`` of ``schedule.anneal_fraction`` / ``anneal_to`` / ``anneal_by``, checked;
    ``None`` when there is no final anneal."""
    f = sched.get("anneal_fraction")
    by = sched.get("anneal_by", "steps") or "steps"
    if by not in ("steps", "time"):
        raise ConfigError(f"optim.schedule.anneal_by={by!r}; choose steps (the last fraction of the planned steps) "
                          f"or time (the last fraction of trainer.time_budget_s)")
    if f in (None, 0, 0.0):
        if by == "time":
            raise ConfigError("optim.schedule.anneal_by=time needs optim.schedule.anneal_fraction (e.g. 0.3)")
        return None
    try:
        f, to = float(f), float(sched.get("anneal_to", 0.01))
    except (TypeError, ValueError):
        raise ConfigError(f"optim.schedule.anneal_fraction={sched.get('anneal_fraction')!r} and "
                          f"optim.schedule.anneal_to={sched.get('anneal_to')!r} must be numbers") from None
    if not 0.0 < f <= 1.0:
        raise ConfigError(f"optim.schedule.anneal_fraction={f} must be in (0, 1]")
    if not 0.0 <= to <= 1.0:
        raise ConfigError(f"optim.schedule.anneal_to={to} must be in [0, 1]")
    return f, to, by


def time_anneal_factor(frac: float, f: float, to: float) -> float:
    """The learning-rate multiplier of ``anneal_by=time`` after the fraction ``frac`` of the time
    budget: 1 until ``1 - f``, then a cosine from 1 down to ``to`` at ``frac = 1`` (held there
    after)."""
    start = 1.0 - f
    if frac <= start:
        return 1.0
    u = min((frac - start) / f, 1.0)
    return to + (1.0 - to) * 0.5 * (1.0 + math.cos(math.pi * u))


def _with_final_anneal(base, sched: dict, total_steps: int):
    """``schedule.anneal_fraction`` f (with ``anneal_to`` s, default 0.01): over the last f of the
    planned steps the learning rate is multiplied by a cosine going from 1 to s.  It is the
    budget-bound stand-in for the learning-rate decay a long plateau schedule reaches on its own
    (a time-limited CPU run at a constant rate never triggers it).  The anneal starts at step
    ``round((1 - f) * total_steps)``, so raising ``trainer.max_epochs`` on resume moves it.
    With ``anneal_by=time`` the anneal follows the wall clock instead (``time_anneal_factor``,
    applied by the trainer through ``lr_scale``), and the step schedule is left as it is."""
    settings = anneal_settings(sched)
    if settings is None or settings[2] == "time":
        return base
    f, to, _ = settings
    start = int(round((1.0 - f) * total_steps))
    length = max(total_steps - start, 1)
    factor = optax.join_schedules([optax.constant_schedule(1.0), optax.cosine_decay_schedule(1.0, length, alpha=to)],
                                  [start])
    return lambda step: base(step) * factor(step)


def build_optimizer(cfg: dict, total_steps: int) -> optax.GradientTransformation:
    """``optax`` chain: optional global-norm clipping, then adam / adamw / amsgrad / sgd with an
    injected ``lr_scale`` (host plateau schedule) multiplying the configured schedule."""
    name = cfg.get("name", "adam")
    wd = _num(cfg, "weight_decay", 0.0)
    schedule = learning_rate_schedule(cfg, total_steps)

    def make(lr_scale):
        lr = lambda step: schedule(step) * lr_scale  # noqa: E731
        if name == "adam":
            # torch.optim.Adam's weight_decay is L2 added to the gradient (EGNN protocol).
            core = optax.chain(optax.add_decayed_weights(wd) if wd else optax.identity(), optax.adam(lr))
        elif name == "adamw":
            core = optax.adamw(lr, weight_decay=wd)
        elif name == "amsgrad":
            core = optax.chain(optax.add_decayed_weights(wd) if wd else optax.identity(), optax.amsgrad(lr))
        elif name == "sgd":
            core = optax.sgd(lr, momentum=_num(cfg, "momentum", 0.0))
        else:
            raise ConfigError(f"optim.name={name!r} unknown; choose adam, adamw, amsgrad or sgd")
        clip = _num(cfg, "grad_clip", None)
        return optax.chain(optax.clip_by_global_norm(clip), core) if clip else core

    return optax.inject_hyperparams(make)(lr_scale=1.0)


class Plateau:
    """Host-side ReduceLROnPlateau on the monitored validation metric (lower is better)."""

    def __init__(self, patience: int = 10, factor: float = 0.5, min_scale: float = 0.0, threshold: float = 1e-4):
        self.patience, self.factor, self.min_scale, self.threshold = int(patience), float(factor), float(min_scale), float(threshold)
        self.best = float("inf")
        self.bad = 0
        self.scale = 1.0

    def update(self, value: float) -> float:
        if value < self.best * (1 - self.threshold):
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            if self.bad > self.patience:
                self.scale = max(self.scale * self.factor, self.min_scale)
                self.bad = 0
        return self.scale

    def state_dict(self):
        return {"best": self.best, "bad": self.bad, "scale": self.scale}

    def load_state_dict(self, d):
        self.best, self.bad, self.scale = float(d["best"]), int(d["bad"]), float(d["scale"])
