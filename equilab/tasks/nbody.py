"""Position-regression task of the N-body benchmark: MSE over particles and coordinates."""
from __future__ import annotations

import jax.numpy as jnp

from equilab.registry import TASKS


class PositionRegression:
    """Loss: mean over real particles and the 3 coordinates of (x̂ − x_target)²."""

    def _sq_err(self, model, params, batch):
        pred = model.apply(params, batch)["positions"]
        m = batch["node_mask"].astype(pred.dtype)[..., None]  # graph (N,1) or dense (B,n,1) layout
        return jnp.sum(m * (pred - batch["target"]) ** 2), 3.0 * jnp.sum(m)

    def loss(self, model, params, batch, key, train: bool = True):
        se, n = self._sq_err(model, params, batch)
        mse = se / n
        return mse, {"mse": mse}

    def eval_sums(self, model, params, batch):
        se, n = self._sq_err(model, params, batch)
        return {"mse": (se, n), "loss": (se, n)}

    def finalize(self, totals):
        return {k: float(s / c) for k, (s, c) in totals.items()}


@TASKS.register("position_regression")
def build_position_regression(cfg: dict, data) -> PositionRegression:
    return PositionRegression()
