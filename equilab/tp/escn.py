"""Feature ⊗ edge-spherical-harmonics products: dense CG, and eSCN's SO(2) trick.

``x ⊗ Y(r̂)``: with Y(r̂) = e3nn's spherical harmonics (``component`` normalization, unit vector)
every CG path (l1, l2 → l3) is ``√(2l3+1) Σ x[m1] Y_l2[m2] C[m1, m2, m3]``.

eSCN (Passaro & Zitnick, 2023): rotate each edge onto the pole ŷ (e3nn's polar axis); there
``Y_l2(ŷ)`` is ``√(2l2+1)`` at m2 = 0 and zero elsewhere, and the real CG ``C[m1, 0, m3]`` vanishes
unless m3 = ±m1, so the product is block-diagonal in |m|: one small linear map per m mixing the
(l1, ±m) inputs into the (l3, ±m) outputs. Rotate the features by D(R⁻¹), apply the per-m maps,
rotate back by D(R): O(L³) per channel instead of O(L⁶).
"""
from __future__ import annotations

import functools
import math
from typing import Dict, List, Tuple

import e3nn_jax as e3nn
import jax.numpy as jnp
import numpy as np

from equilab.registry import SH_TP_METHODS
from equilab.tp._common import assemble, channels_of, real_cg, to_channels
from equilab.tp.cg import cg_tensor_product


def edge_sh(vectors: jnp.ndarray, lmax: int) -> e3nn.IrrepsArray:
    """Y(r̂) up to lmax, ``component`` normalization (the usual edge attributes)."""
    return e3nn.spherical_harmonics(e3nn.s2_irreps(lmax), vectors, normalize=True, normalization="component")


@SH_TP_METHODS.register("cg")
def cg_with_sh(x: e3nn.IrrepsArray, vectors: jnp.ndarray, *, lmax: int, irreps_out=None) -> e3nn.IrrepsArray:
    """``x ⊗ Y(r̂)`` by the dense CG product (every path), channel-wise over x's channels."""
    return cg_tensor_product(x, edge_sh(vectors, lmax), irreps_out=irreps_out)


def _paths(irs1, lmax: int, keep):
    """CG paths of ``irs1 ⊗ s2_irreps(lmax)`` in e3nn.tensor_product's order (inputs sorted)."""
    sh = [e3nn.Irrep(l, (-1) ** l) for l in range(lmax + 1)]
    order = sorted(range(len(irs1)), key=lambda i: irs1[i])
    paths = []  # (i1, l2, ir3) in output order before regrouping
    for i in order:
        for ir2 in sh:
            for ir3 in irs1[i] * ir2:
                if keep is None or ir3 in keep:
                    paths.append((i, ir2.l, ir3))
    return paths


@functools.cache
def so2_blocks(l1: int, l3s: Tuple[Tuple[int, ...], ...]):
    """Per-m maps of one input degree l1 at the pole.

    For every output path group ``l3s[k] = (l2, l3)`` the map ``x[m1] -> out[m3]`` is
    ``√(2l3+1) √(2l2+1) C^{l1 l2 l3}[m1, 0, m3]``; returned stacked as a dense
    [2l1+1, Σ(2l3+1)] matrix (entries only at m3 = ±m1) — the caller applies it per m.
    """
    cols = []
    for l2, l3 in l3s:
        C = real_cg(l1, l2, l3)[:, l2, :]  # m2 = 0
        cols.append(C * math.sqrt(2 * l3 + 1) * math.sqrt(2 * l2 + 1))
    return np.concatenate(cols, axis=-1)


@functools.cache
def so2_structure(l1: int, l3s: Tuple[Tuple[int, ...], ...]):
    """Sparse (m1, output-index, coefficient) lists of :func:`so2_blocks`, grouped by |m|:
    the map couples only m3 = ±m1, so per |m| it is a (≤2 inputs) × (≤2·#paths outputs) block."""
    W = so2_blocks(l1, l3s)
    rows, cols = np.nonzero(np.abs(W) > 0)
    return rows.astype(np.int32), cols.astype(np.int32), W[rows, cols]


@SH_TP_METHODS.register("escn")
def escn_with_sh(x: e3nn.IrrepsArray, vectors: jnp.ndarray, *, lmax: int, irreps_out=None) -> e3nn.IrrepsArray:
    """``x ⊗ Y(r̂)`` by the eSCN SO(2) trick; same output (irreps, order, values) as ``cg``.

    Args:
        x: [..., irreps], C channels (every irrep with multiplicity C).
        vectors: [..., 3] edge vectors (need not be normalized; must be nonzero).
        lmax: degree of the edge spherical harmonics.
        irreps_out: output filter (multiplicities ignored).
    """
    C = channels_of(x, "x")
    irs1, a1 = to_channels(x, C)
    keep = None if irreps_out is None else {ir for mul, ir in e3nn.Irreps(irreps_out) if mul > 0}
    paths = _paths(irs1, lmax, keep)
    lead = jnp.broadcast_shapes(x.shape[:-1], vectors.shape[:-1])
    dtype = a1.dtype
    if not paths:
        return e3nn.IrrepsArray(e3nn.Irreps(""), jnp.zeros(lead + (0,), dtype))

    # rotation taking ŷ to r̂: r̂ = R(α, β, 0) ŷ
    alpha, beta = e3nn.xyz_to_angles(vectors.astype(dtype))
    off = np.cumsum([0] + [ir.dim for ir in irs1])

    # rotate every input irrep to the edge frame: x' = D(R)^T x  (D orthogonal)
    rotated: Dict[int, jnp.ndarray] = {}
    for i, ir in enumerate(irs1):
        if any(p[0] == i for p in paths):
            D = e3nn.Irrep(ir.l, 1).D_from_angles(alpha, beta, jnp.zeros_like(alpha))  # [..., d, d]
            rotated[i] = jnp.einsum("...ji,...cj->...ci", D, a1[..., off[i] : off[i + 1]])

    # per input irrep: all its paths at once, a sparse (±m)-coupling map
    out_by_path: Dict[int, jnp.ndarray] = {}
    for i in rotated:
        mine = [k for k, p in enumerate(paths) if p[0] == i]
        l3s = tuple((paths[k][1], paths[k][2].l) for k in mine)
        W = jnp.asarray(so2_blocks(irs1[i].l, l3s), dtype)
        # W has ≤ 2 nonzeros per output column (m3 = ±m1): gather the two inputs, not a matmul
        rows, cols, vals = so2_structure(irs1[i].l, l3s)
        n_out = W.shape[1]
        r2 = np.zeros((n_out, 2), np.int32)
        v2 = np.zeros((n_out, 2))
        cnt = np.zeros(n_out, np.int32)
        for r, c, v in zip(rows, cols, vals):
            r2[c, cnt[c]] = r
            v2[c, cnt[c]] = v
            cnt[c] += 1
        xr = rotated[i]
        y = xr[..., r2[:, 0]] * jnp.asarray(v2[:, 0], dtype) + xr[..., r2[:, 1]] * jnp.asarray(v2[:, 1], dtype)
        start = 0
        for k in mine:
            d = paths[k][2].dim
            out_by_path[k] = y[..., start : start + d]
            start += d

    # rotate back: out = D(R) out'
    chunks: List[jnp.ndarray] = []
    Dcache: Dict[int, jnp.ndarray] = {}
    for k, (_, _, ir3) in enumerate(paths):
        if ir3.l not in Dcache:
            Dcache[ir3.l] = e3nn.Irrep(ir3.l, 1).D_from_angles(alpha, beta, jnp.zeros_like(alpha))
        chunks.append(jnp.einsum("...ij,...cj->...ci", Dcache[ir3.l], out_by_path[k]))
    return assemble([p[2] for p in paths], chunks, C).regroup()
