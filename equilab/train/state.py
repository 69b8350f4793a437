"""Train state and the pure, jitted train/eval steps."""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray  # int32 scalar: number of updates applied
    params: Any
    opt_state: Any
    ema_params: Any  # {} when EMA is off
    bad_step: jnp.ndarray  # int32 scalar: first step whose loss or gradient was non-finite, -1 if none


def create_state(params, tx: optax.GradientTransformation, ema: bool) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
        ema_params=jax.tree_util.tree_map(jnp.array, params) if ema else {},
        bad_step=jnp.full((), -1, jnp.int32),
    )


def _all_finite(tree) -> jnp.ndarray:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_step(model, task, tx: optax.GradientTransformation, ema_decay: float | None) -> Callable:
    """``train_step(state, batch, key) -> (state, metrics)``: one optimizer update.

    The key for this step is ``fold_in(key, state.step)``, so a resumed run draws the same
    randomness. A non-finite loss or gradient leaves the state unchanged and records the step
    in ``state.bad_step``; the host loop stops the run at its next sync point.
    """

    def loss_fn(params, batch, key):
        return task.loss(model, params, batch, key, train=True)

    def train_step(state: TrainState, batch, key):
        k = jax.random.fold_in(key, state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, k)
        ok = jnp.isfinite(loss) & _all_finite(grads) & (state.bad_step < 0)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
        params = keep(params, state.params)
        opt_state = keep(opt_state, state.opt_state)
        ema = state.ema_params
        if ema_decay is not None:
            ema = keep(optax.incremental_update(params, ema, 1.0 - ema_decay), ema)
        bad = jnp.where((state.bad_step < 0) & ~ok, state.step, state.bad_step)
        new = TrainState(step=state.step + ok.astype(jnp.int32), params=params, opt_state=opt_state,
                         ema_params=ema, bad_step=bad)
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
        return new, metrics

    return train_step


def make_eval_step(model, task) -> Callable:
    def eval_step(params, batch):
        return task.eval_sums(model, params, batch)

    return eval_step
