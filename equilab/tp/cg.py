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


@TP_METHODS.register("cg")
def cg_tensor_product(
    x1: e3nn.IrrepsArray, x2: e3nn.IrrepsArray, *, irreps_out=None
) -> e3nn.IrrepsArray:
    """All CG paths ``x1 ⊗ x2 → irreps_out``, channel-wise.

    ``out[c, k] = √(2l3+1) Σ_ij x1[c, i] x2[c, j] C[i, j, k]`` for every path (l1, l2, l3) allowed
    by parity and selection rules and present in ``irreps_out`` (None: all paths).

    Args:
        x1: [..., irreps1], every irrep with multiplicity C1.
        x2: [..., irreps2], every irrep with multiplicity C2 (C2 = C1, or one of them 1).
        irreps_out: filter on the output irreps (multiplicities ignored), as e3nn's
            ``filter_ir_out``.

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

    def groups(irs, arr):
        # e3nn.tensor_product regroups its inputs: sort stably, equal irreps side by side
        off = np.cumsum([0] + [ir.dim for ir in irs])
        order = sorted(range(len(irs)), key=lambda i: irs[i])
        out = []
        for i in order:
            piece = arr[..., off[i] : off[i + 1]]
            if out and out[-1][0] == irs[i]:
                out[-1][1].append(piece)
            else:
                out.append((irs[i], [piece]))
        return out

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
