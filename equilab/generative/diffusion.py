"""E(3) equivariant diffusion (EDM, Hoogeboom et al. 2022) with ε-prediction, as pure functions.

z_t = α_t·[x, h] + σ_t·ε with ε_x drawn in the zero-CoM subspace; the dynamics predict ε.
Training loss (EDM's "l2" objective): ‖ε − ε̂‖² averaged over the (3 + F)·n real coordinates of
a molecule, t uniform on {0, …, T}.  Sampling is ancestral, t = T … 1, then x, h from z_0.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from equilab.generative.common import masked_normal, zero_com_normal
from equilab.models.egnn_dynamics import remove_mean

Dynamics = Callable  # (x (B,N,3), h (B,N,F), t (B,)) -> (ε̂_x, ε̂_h)


def _alpha_sigma(gamma):
    return jnp.sqrt(jax.nn.sigmoid(-gamma)), jnp.sqrt(jax.nn.sigmoid(gamma))


def loss_per_molecule(dyn: Dynamics, gamma_table: jnp.ndarray, x, h, node_mask, key) -> jnp.ndarray:
    """Noise-prediction MSE per molecule (B,); x zero-CoM (B, N, 3), h scaled features (B, N, F)."""
    T = gamma_table.shape[0] - 1
    kt, kx, kh = jax.random.split(key, 3)
    b = x.shape[0]
    t_int = jax.random.randint(kt, (b,), 0, T + 1)
    gamma = gamma_table[t_int].astype(x.dtype)
    a, s = _alpha_sigma(gamma)
    ex = zero_com_normal(kx, node_mask, x.dtype)
    eh = masked_normal(kh, node_mask, h.shape[-1], x.dtype)
    zx = a[:, None, None] * x + s[:, None, None] * ex
    zh = a[:, None, None] * h + s[:, None, None] * eh
    px, ph = dyn(zx, zh, t_int.astype(x.dtype) / T)
    m = node_mask.astype(x.dtype)
    err = ((px - ex) ** 2).sum((1, 2)) + (((ph - eh) ** 2).sum(-1) * m).sum(1)
    return err / jnp.maximum((3 + h.shape[-1]) * m.sum(1), 1.0)


def sample(dyn: Dynamics, gamma_table: jnp.ndarray, key, node_mask, n_features: int, dtype=jnp.float32):
    """Ancestral sampling z_T -> z_0 -> (x, h) with ``lax.scan`` over the T steps.

    p(z_s | z_t) = N(μ, σ²): μ = z_t/α_{t|s} − σ²_{t|s}/(α_{t|s} σ_t)·ε̂,  σ = σ_{t|s} σ_s / σ_t,
    with σ²_{t|s} = −expm1(softplus(γ_s) − softplus(γ_t)), α²_{t|s} = α²_t/α²_s.
    """
    T = gamma_table.shape[0] - 1
    g = gamma_table.astype(dtype)
    b = node_mask.shape[0]
    k0, kh, kloop, kfin = jax.random.split(key, 4)
    zx = zero_com_normal(k0, node_mask, dtype)
    zh = masked_normal(kh, node_mask, n_features, dtype)

    def step(carry, s_int):
        zx, zh, k = carry
        k, kx, kh = jax.random.split(k, 3)
        t_int = s_int + 1
        gs, gt = g[s_int], g[t_int]
        sigma2_ts = -jnp.expm1(jax.nn.softplus(gs) - jax.nn.softplus(gt))
        alpha_ts = jnp.exp(0.5 * (jax.nn.log_sigmoid(-gt) - jax.nn.log_sigmoid(-gs)))
        sigma_s, sigma_t = jnp.sqrt(jax.nn.sigmoid(gs)), jnp.sqrt(jax.nn.sigmoid(gt))
        ex, eh = dyn(zx, zh, jnp.full((b,), t_int / T, dtype))
        c = sigma2_ts / alpha_ts / sigma_t
        sd = jnp.sqrt(sigma2_ts) * sigma_s / sigma_t
        # Re-projecting costs nothing and stops float32 round-off from drifting the CoM.
        zx = remove_mean(zx / alpha_ts - c * ex + sd * zero_com_normal(kx, node_mask, dtype), node_mask)
        zh = zh / alpha_ts - c * eh + sd * masked_normal(kh, node_mask, n_features, dtype)
        return (zx, zh, k), None

    (zx, zh, _), _ = jax.lax.scan(step, (zx, zh, kloop), jnp.arange(T - 1, -1, -1))
    # p(x, h | z_0): mean (z_0 − σ_0 ε̂)/α_0, plus noise of scale σ_0/α_0 on positions (EDM).
    a0, s0 = _alpha_sigma(g[0])
    ex, eh = dyn(zx, zh, jnp.zeros((b,), dtype))
    x = remove_mean((zx - s0 * ex) / a0 + (s0 / a0) * zero_com_normal(kfin, node_mask, dtype), node_mask)
    h = (zh - s0 * eh) / a0
    return x, h
