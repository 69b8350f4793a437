"""Shared pieces: zero-centre-of-mass noise, atom counts from the training histogram, decoding."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from equilab.models.egnn_dynamics import FEATURE_SCALES, remove_mean

ATOMIC_NUMBERS = (1, 6, 7, 8, 9)


def zero_com_normal(key, node_mask: jnp.ndarray, dtype=jnp.float32) -> jnp.ndarray:
    """Standard normal on the (n−1)·3-dim zero-CoM subspace of each molecule: (B, N, 3)."""
    b, n = node_mask.shape
    return remove_mean(jax.random.normal(key, (b, n, 3), dtype), node_mask)


def masked_normal(key, node_mask: jnp.ndarray, width: int, dtype=jnp.float32) -> jnp.ndarray:
    b, n = node_mask.shape
    return jax.random.normal(key, (b, n, width), dtype) * node_mask[..., None].astype(dtype)


def rotate_onto(x: jnp.ndarray, ref: jnp.ndarray, node_mask: jnp.ndarray) -> jnp.ndarray:
    """Kabsch: the proper rotation R (det +1) per molecule minimising Σ_i |x_i R − ref_i|² over
    the real atoms, applied to ``x``.  Both (B, N, 3) and zero-CoM; padding stays 0."""
    m = node_mask[..., None].astype(x.dtype)
    cov = jnp.einsum("bni,bnj->bij", x * m, ref * m)  # Σ_i x_iᵀ ref_i, (B, 3, 3)
    u, _, vt = jnp.linalg.svd(cov)
    d = jnp.where(jnp.linalg.det(u @ vt) < 0, -1.0, 1.0).astype(x.dtype)
    u = u.at[..., :, 2].multiply(d[:, None])  # flip the least significant axis: no reflection
    return jnp.einsum("bni,bij->bnj", x, u @ vt) * m


def _assignments(cost: np.ndarray, node_mask: np.ndarray) -> np.ndarray:
    """Host side: per molecule, the prior node assigned to each real atom (Hungarian algorithm on
    ``cost[b, a, j]`` = cost of giving atom a prior node j); identity on padding."""
    from scipy.optimize import linear_sum_assignment

    cost, node_mask = np.asarray(cost, np.float64), np.asarray(node_mask, bool)
    perm = np.tile(np.arange(cost.shape[1], dtype=np.int32), (cost.shape[0], 1))
    for b in range(cost.shape[0]):
        idx = np.flatnonzero(node_mask[b])
        if idx.size > 1:
            rows, cols = linear_sum_assignment(cost[b][np.ix_(idx, idx)])
            perm[b, idx[rows]] = idx[cols]
    return perm


def permute_onto(x0: jnp.ndarray, x: jnp.ndarray, node_mask: jnp.ndarray) -> jnp.ndarray:
    """The permutation π of each molecule's real prior nodes minimising Σ_a |x0_π(a) − x_a|²
    (exact, Hungarian algorithm on the host): (B, N) int32 with x0[b, π[b, a]] the prior node that
    goes to atom a; padding maps to itself.  Under jit it runs through ``jax.pure_callback``;
    called eagerly it runs on the host directly: there, a callback waiting for its (asynchronously
    dispatched) arguments deadlocked in a process with one CPU (``taskset -c 0``)."""
    x0, x = jax.lax.stop_gradient(x0), jax.lax.stop_gradient(x)
    cost = ((x[:, :, None, :] - x0[:, None, :, :]) ** 2).sum(-1)  # (B, N_atoms, N_prior)
    if not any(isinstance(a, jax.core.Tracer) for a in (cost, node_mask)):
        return jnp.asarray(_assignments(np.asarray(cost), np.asarray(node_mask)))
    out = jax.ShapeDtypeStruct(node_mask.shape, jnp.int32)
    return jax.pure_callback(_assignments, out, cost, node_mask, vmap_method="sequential")


def gather_nodes(a: jnp.ndarray, perm: jnp.ndarray) -> jnp.ndarray:
    """a (B, N, F) with its nodes reordered by perm (B, N): out[b, i] = a[b, perm[b, i]]."""
    return jnp.take_along_axis(a, perm[..., None], axis=1)


def sample_node_mask(key, n_nodes_hist: Sequence[int], batch: int, max_atoms: int) -> jnp.ndarray:
    """Atom counts drawn from the training histogram -> node mask (B, max_atoms) bool."""
    p = np.asarray(n_nodes_hist, np.float64)[: max_atoms + 1]
    counts = jax.random.choice(key, len(p), (batch,), p=jnp.asarray(p / p.sum()))
    return jnp.arange(max_atoms)[None, :] < counts[:, None]


def decode(x, h, node_mask, scales: Sequence[float] = FEATURE_SCALES):
    """Scaled features -> atom type index (argmax of the one-hot block), charges = round(h_c/s₂).

    Returns positions (B, N, 3) Å, type index (B, N) int32 (−1 on padding).
    """
    types = jnp.argmax(h[..., : len(ATOMIC_NUMBERS)], -1).astype(jnp.int32)
    return x / scales[0], jnp.where(node_mask, types, -1)


def to_molecules(x, types, node_mask) -> list[tuple[np.ndarray, np.ndarray]]:
    """Host side: (positions (n, 3), atomic numbers (n,)) per molecule, padding removed."""
    x, types, node_mask = (np.asarray(a) for a in (x, types, node_mask))
    z = np.asarray(ATOMIC_NUMBERS)
    return [(x[i][node_mask[i]].astype(np.float64), z[types[i][node_mask[i]]]) for i in range(len(x))]
