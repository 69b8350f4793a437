"""Clebsch–Gordan tensor product, fused per input pair (l1, l2).

For every pair of input irreps all output degrees l3 are produced by one contraction with the
stacked coefficients ``W[i, j, k] = √(2l3+1) C^{l1 l2 l3}[i, j, k]`` (e3nn-jax's ``component``
normalization), instead of one einsum per path: the outer product ``x1 ⊗ x2`` is formed once per
pair and multiplied by one matrix. Coefficients come from exact rational arithmetic
(:func:`equilab.tp._common.real_cg`), so the product is equivariant to float64 rounding at any
degree.
"""
from __future__ import annotations

import functools
import math
from typing import Tuple

import e3nn_jax as e3nn
import jax.numpy as jnp
import numpy as np

from equilab.registry import TP_METHODS
from equilab.tp._common import assemble, broadcast_channels, channels_of, real_cg, to_channels


@functools.cache
def stacked_cg(l1: int, l2: int, l3s: Tuple[int, ...]) -> np.ndarray:
    """[(2l1+1)(2l2+1), Σ(2l3+1)] path matrices √(2l3+1)·C side by side (float64)."""
    W = np.concatenate([real_cg(l1, l2, l3) * math.sqrt(2 * l3 + 1) for l3 in l3s], axis=-1)
    return W.reshape((2 * l1 + 1) * (2 * l2 + 1), -1)


DENSE_MAX = 8192


def _key(keep):
    return None if keep is None else tuple(sorted(keep))


def _pair_groups(irs):
    """e3nn.tensor_product's regrouping of the inputs: stable sort, equal irreps side by side;
    [(irrep, [column offsets of its pieces])]."""
    off = np.cumsum([0] + [ir.dim for ir in irs])
    out = []
    for i in sorted(range(len(irs)), key=lambda i: irs[i]):
        if out and out[-1][0] == irs[i]:
            out[-1][1].append(int(off[i]))
        else:
            out.append((irs[i], [int(off[i])]))
    return out


@functools.cache
def dense_cg(irs1: tuple, irs2: tuple, keep) -> Tuple[e3nn.Irreps, np.ndarray]:
    """The whole single-channel product as one [d1, d2, d_out] tensor (float64), with output
    irreps and order identical to the fused path (and so to ``e3nn.tensor_product``)."""
    keep = None if keep is None else set(keep)
    d1, d2 = sum(ir.dim for ir in irs1), sum(ir.dim for ir in irs2)
    blocks = []  # (ir3, u offset, v offset, [dim1, dim2, dim3] coefficients), in fused-path order
    for ir1, us in _pair_groups(list(irs1)):
        for ir2, vs in _pair_groups(list(irs2)):
            irs3 = [ir for ir in ir1 * ir2 if keep is None or ir in keep]
            if not irs3:
                continue
            Wst = stacked_cg(ir1.l, ir2.l, tuple(ir.l for ir in irs3)).reshape(ir1.dim, ir2.dim, -1)
            start = 0
            for ir3 in irs3:
                for u in us:
                    for v in vs:
                        blocks.append((ir3, u, v, Wst[:, :, start:start + ir3.dim]))
                start += ir3.dim
    order = sorted(range(len(blocks)), key=lambda i: blocks[i][0])  # regroup(): stable sort by irrep
    W = np.zeros((d1, d2, sum(b[0].dim for b in blocks)))
    col = 0
    for i in order:
        ir3, u, v, w = blocks[i]
        W[u:u + w.shape[0], v:v + w.shape[1], col:col + ir3.dim] = w
        col += ir3.dim
    irreps = e3nn.Irreps([(1, blocks[i][0]) for i in order]).simplify() if blocks else e3nn.Irreps("")
    return irreps, W


@functools.cache
def _dense_size(irs1: tuple, irs2: tuple, keep) -> int:
    keep_s = None if keep is None else set(keep)
    d1, d2 = sum(ir.dim for ir in irs1), sum(ir.dim for ir in irs2)
    dout = sum(ir3.dim for ir1 in irs1 for ir2 in irs2 for ir3 in ir1 * ir2 if keep_s is None or ir3 in keep_s)
    return d1 * d2 * dout


@TP_METHODS.register("cg")
def cg_tensor_product(
    x1: e3nn.IrrepsArray, x2: e3nn.IrrepsArray, *, irreps_out=None, dense: bool | None = None
) -> e3nn.IrrepsArray:
    """All CG paths ``x1 ⊗ x2 → irreps_out``, channel-wise.

    ``out[c, k] = √(2l3+1) Σ_ij x1[c, i] x2[c, j] C[i, j, k]`` for every path (l1, l2, l3) allowed
    by parity and selection rules and present in ``irreps_out`` (None: all paths).

    Args:
        x1: [..., irreps1], every irrep with multiplicity C1.
        x2: [..., irreps2], every irrep with multiplicity C2 (C2 = C1, or one of them 1).
        irreps_out: filter on the output irreps (multiplicities ignored), as e3nn's
            ``filter_ir_out``.
        dense: contract with one dense [d1, d2, d_out] coefficient tensor instead of per-pair
            fused matmuls. None (default): dense for single-channel inputs with
            d1·d2·d_out ≤ 8192 (L ≤ 2 for s2 irreps), where a single contraction beats several
            small ones; fused otherwise.

    Returns:
        [..., irreps] regrouped (sorted, merged) like ``e3nn.tensor_product``; for single-channel
        inputs equal to ``e3nn.tensor_product(x1, x2, filter_ir_out=irreps_out)``.
    """
    C1, C2 = channels_of(x1, "x1"), channels_of(x2, "x2")
    C = broadcast_channels(C1, C2)
    irs1, a1 = to_channels(x1, C1)
    irs2, a2 = to_channels(x2, C2)
    keep = None if irreps_out is None else {ir for mul, ir in e3nn.Irreps(irreps_out) if mul > 0}
    dtype = jnp.result_type(a1.dtype, a2.dtype)
    if dense is None:
        dense = C == 1 and _dense_size(tuple(irs1), tuple(irs2), _key(keep)) <= DENSE_MAX
    if dense:
        if C != 1:
            raise ValueError("cg dense=True needs single-channel inputs")
        out_irreps, W = dense_cg(tuple(irs1), tuple(irs2), _key(keep))
        lead = jnp.broadcast_shapes(a1.shape[:-2], a2.shape[:-2])
        if W.shape[-1] == 0:
            return e3nn.IrrepsArray(e3nn.Irreps(""), jnp.zeros(lead + (0,), dtype))
        y = jnp.einsum("...i,...j,ijk->...k", a1[..., 0, :], a2[..., 0, :], jnp.asarray(W, dtype))
        return e3nn.IrrepsArray(out_irreps, y)

    def groups(irs, arr):
        return [(ir, [arr[..., o:o + ir.dim] for o in offs]) for ir, offs in _pair_groups(list(irs))]

    out_irs, out_chunks = [], []
    for ir1, us in groups(irs1, a1):
        for ir2, vs in groups(irs2, a2):
            irs3 = [ir for ir in ir1 * ir2 if keep is None or ir in keep]
            if not irs3:
                continue
            W = jnp.asarray(stacked_cg(ir1.l, ir2.l, tuple(ir.l for ir in irs3)), dtype)
            ys = []
            for u in us:
                for v in vs:
                    # one outer product and one matmul per (l1, l2): fewer, larger ops than per path
                    uv = (u[..., :, None] * v[..., None, :]).reshape(
                        jnp.broadcast_shapes(u.shape[:-1], v.shape[:-1]) + (ir1.dim * ir2.dim,)
                    )
                    ys.append(uv @ W)
            start = 0
            for ir3 in irs3:
                for y in ys:
                    out_irs.append(ir3)
                    out_chunks.append(y[..., start : start + ir3.dim])
                start += ir3.dim
    if not out_irs:
        lead = jnp.broadcast_shapes(x1.shape[:-1], x2.shape[:-1])
        return e3nn.IrrepsArray(e3nn.Irreps(""), jnp.zeros(lead + (0,), dtype))
    return assemble(out_irs, out_chunks, C).regroup()
