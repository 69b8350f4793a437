"""Molecular property regression (EDM's property evaluator, ``main_qm9_prop.py``).

The model predicts the normalised property ŷ ≈ (p − mean)/MAD (the data module's norms, EDM's
``compute_mean_mad``); training loss is the L1 error on that scale, and the metric is the mean
absolute error in the property's own units, |MAD·ŷ + mean − p| (``mae``).
"""
from __future__ import annotations

from typing import Optional

import jax.numpy as jnp

from equilab.errors import ConfigError
from equilab.registry import TASKS


class PropertyRegression:
    """L1 regression of one column of ``batch["properties"]``.

    Args:
        stats: the data module's statistics (``properties``, ``property_mean``, ``property_mad``,
            optionally ``property_units``).
        property: the column's name (QM9: alpha, gap, homo, lumo, mu, Cv).
    """

    def __init__(self, stats: dict, property: Optional[str]):
        names = list(stats.get("properties", ()))
        if property is None:
            raise ConfigError(f"task.property is not set (it follows data.condition_on); choose one of {', '.join(names)}")
        if property not in names:
            raise ConfigError(f"task.property must be one of {', '.join(names)}; got {property!r}")
        self.property = property
        self.index = names.index(property)
        self.mean = float(stats["property_mean"][self.index])
        self.mad = float(stats["property_mad"][self.index])
        units = stats.get("property_units")
        self.unit = units[self.index] if units else None

    def predict(self, model, params, batch) -> jnp.ndarray:
        """Predictions in the property's units, (B,)."""
        return model.apply(params, batch)["property"] * self.mad + self.mean

    def _errors(self, model, params, batch):
        pred = model.apply(params, batch)["property"]
        y = jnp.asarray(batch["properties"])[:, self.index].astype(pred.dtype)
        gm = jnp.asarray(batch["graph_mask"]).astype(pred.dtype)
        err = jnp.abs(pred - (y - self.mean) / self.mad) * gm  # normalised scale
        return err, gm

    def loss(self, model, params, batch, key=None, train: bool = True):
        err, gm = self._errors(model, params, batch)
        loss = err.sum() / jnp.maximum(gm.sum(), 1.0)
        return loss, {"mae": loss * self.mad}

    def eval_sums(self, model, params, batch):
        err, gm = self._errors(model, params, batch)
        return {"loss": (err.sum(), gm.sum()), "mae": (err.sum() * self.mad, gm.sum())}

    def finalize(self, totals):
        return {k: float(s) / max(float(c), 1.0) for k, (s, c) in totals.items()}


@TASKS.register("property_regression")
def build(cfg: dict, data) -> PropertyRegression:
    """``task=property_regression``: ``property`` (defaults to ``data.condition_on`` in the config)."""
    cfg = dict(cfg)
    prop = cfg.pop("property", None)
    if cfg:
        raise ConfigError(f"task=property_regression: unknown keys {sorted(cfg)}")
    return PropertyRegression(getattr(data, "stats", {}) or {}, prop)
