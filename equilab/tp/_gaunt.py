"""Front end shared by the Gaunt methods: channels and parity classes around a dense core.

A core is ``core(a1, L1, a2, L2, Lout) -> [..., (Lout+1)²]`` acting on full coefficient vectors
of two spherical functions (flat (l, m) layout, any broadcastable leading shape) and returning
the coefficients of the projection of their pointwise product.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import e3nn_jax as e3nn
import jax.numpy as jnp

from equilab.tp._common import (
    assemble,
    broadcast_channels,
    channels_of,
    output_irreps,
    parity_class,
    split_classes,
    to_channels,
)


def gaunt_apply(core: Callable, x1: e3nn.IrrepsArray, x2: e3nn.IrrepsArray, irreps_out) -> e3nn.IrrepsArray:
    """Gaunt product ``x1 · x2 → irreps_out`` through ``core``, channel-wise.

    Inputs whose irreps mix both parity classes (value parity p in ``ir.p = p·(−1)^l``) are split
    into spherical functions of one class each; the product of classes p1, p2 has class p1·p2,
    so each output irrep sums the class pairs that produce it.
    """
    C1, C2 = channels_of(x1, "x1"), channels_of(x2, "x2")
    C = broadcast_channels(C1, C2)
    irs1, a1 = to_channels(x1, C1)
    irs2, a2 = to_channels(x2, C2)
    f1 = split_classes(irs1, a1, "x1")
    f2 = split_classes(irs2, a2, "x2")

    default = e3nn.Irreps(
        "+".join(str(e3nn.s2_irreps(L1 + L2, p_val=p1 * p2)) for p1, (L1, _) in f1.items() for p2, (L2, _) in f2.items())
        or "0e"
    )
    irs_out = output_irreps(irreps_out, default)
    lead = jnp.broadcast_shapes(a1.shape[:-1], a2.shape[:-1])
    dtype = jnp.result_type(a1.dtype, a2.dtype)

    results: Dict[Tuple[int, int], Tuple[int, jnp.ndarray]] = {}
    for p1, (L1, b1) in f1.items():
        for p2, (L2, b2) in f2.items():
            wanted = [ir.l for ir in irs_out if parity_class(ir) == p1 * p2 and ir.l <= L1 + L2]
            if wanted:
                Lout = max(wanted)
                results[(p1, p2)] = (Lout, core(b1, L1, b2, L2, Lout))

    chunks: List[jnp.ndarray] = []
    for ir in irs_out:
        acc = None
        for (p1, p2), (Lout, y) in results.items():
            if p1 * p2 == parity_class(ir) and ir.l <= Lout:
                part = y[..., ir.l**2 : (ir.l + 1) ** 2]
                acc = part if acc is None else acc + part
        chunks.append(acc if acc is not None else jnp.zeros(lead + (ir.dim,), dtype))
    return assemble(irs_out, chunks, C)
