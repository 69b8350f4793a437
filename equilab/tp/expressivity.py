"""Expressivity of a tensor-product method (Price of Freedom): which equivariant bilinear maps
``X × Y → Z`` are reachable as ``Lin_Z ∘ T ∘ (Lin_X, Lin_Y)``.

Computed numerically: draw random equivariant linear maps (one weight per pair of equal
input/output irreps copies), build the full bilinear tensor ``M[i, j, k]`` of each composition on the
basis vectors, and take the rank of the stack of samples (the dimension of their span). A CG
path ``(ir1 copy, ir2 copy, ir3 copy)`` is reached when its block of M is nonzero in some sample.
"""
from __future__ import annotations

import functools
from typing import List, Tuple

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np


def _linear(irreps_in: e3nn.Irreps, irreps_out: e3nn.Irreps, key):
    """A random equivariant linear map (one weight per (input copy, output copy) of equal irreps)."""
    irreps_in, irreps_out = e3nn.Irreps(irreps_in), e3nn.Irreps(irreps_out)

    def apply(x: e3nn.IrrepsArray) -> e3nn.IrrepsArray:
        chunks = []
        for i, (mul_o, ir) in enumerate(irreps_out):
            ins = [c for (mul, ir_in), c in zip(x.irreps, x.chunks) if ir_in == ir and c is not None]
            if not ins:
                chunks.append(None)
                continue
            u = jnp.concatenate(ins, axis=-2)  # [..., M, d]
            W = jax.random.normal(jax.random.fold_in(key, i), (u.shape[-2], mul_o), u.dtype)
            chunks.append(jnp.einsum("...md,mo->...od", u, W))
        return e3nn.from_chunks(irreps_out, chunks, x.shape[:-1], x.dtype)

    return apply


def expressivity(method: str, irreps1, irreps2, irreps_out, *, samples: int | None = None, seed: int = 0) -> Tuple[int, List[Tuple[e3nn.Irrep, e3nn.Irrep, e3nn.Irrep]]]:
    """Dimension of the span of ``Lin_Z ∘ T_method ∘ (Lin_X, Lin_Y)`` and the paths it reaches.

    Args:
        method: a ``TP_METHODS`` name (``cg``, ``gaunt_s2grid``, ``gaunt_fourier``).
        irreps1, irreps2: X and Y; irreps_out: Z.
        samples: random draws (default: twice the number of CG paths X × Y → Z, plus 2).

    Returns:
        (dimension, sorted distinct (ir1, ir2, ir3) of the paths reached). The dimension of all
        equivariant bilinear maps X × Y → Z is the number of CG paths counted with multiplicity;
        ``cg`` reaches all of them, the Gaunt methods only those with l1 + l2 + l3 even.

    Examples:
        >>> expressivity("cg", "1o", "1o", "1e")[0], expressivity("gaunt_s2grid", "1o", "1o", "1e")[0]
        (1, 0)
    """
    from equilab.tp import tensor_product

    X, Y, Z = e3nn.Irreps(irreps1), e3nn.Irreps(irreps2), e3nn.Irreps(irreps_out)
    # all CG paths (copy-resolved) of X × Y -> Z: the full space of equivariant bilinear maps
    slX, slY, slZ = X.slices(), Y.slices(), Z.slices()
    paths = []
    for a, (m1, ir1) in enumerate(X):
        for b, (m2, ir2) in enumerate(Y):
            for c, (m3, ir3) in enumerate(Z):
                if ir3 in ir1 * ir2:
                    paths.append((a, b, c))
    n_full = sum(X[a].mul * Y[b].mul * Z[c].mul for a, b, c in paths)
    samples = samples or 2 * n_full + 2

    T_out = {ir for _, ir in Z}

    @jax.jit
    def bilinear(kx, ky, kz):
        ex = e3nn.IrrepsArray(X, jnp.eye(X.dim)[:, None, :])  # [i, 1, X]
        ey = e3nn.IrrepsArray(Y, jnp.eye(Y.dim)[None, :, :])  # [1, j, Y]
        x = _linear(X, X, kx)(ex)
        y = _linear(Y, Y, ky)(ey)
        x = e3nn.IrrepsArray(x.irreps, jnp.broadcast_to(x.array, (X.dim, Y.dim, X.dim)))
        y = e3nn.IrrepsArray(y.irreps, jnp.broadcast_to(y.array, (X.dim, Y.dim, Y.dim)))
        t = tensor_product(x, y, method=method, irreps_out=e3nn.Irreps([(1, ir) for ir in sorted(T_out)]))
        if t.irreps.dim == 0:
            return jnp.zeros((X.dim, Y.dim, Z.dim))
        return _linear(t.irreps, Z, kz)(t).array  # [i, j, k]

    key = jax.random.PRNGKey(seed)
    Ms = []
    for s in range(samples):
        k = jax.random.split(jax.random.fold_in(key, s), 3)
        Ms.append(np.asarray(bilinear(*k), np.float64))
    Ms = np.stack(Ms)  # [s, i, j, k]
    scale = max(np.abs(Ms).max(), 1e-30)
    sv = np.linalg.svd(Ms.reshape(samples, -1), compute_uv=False)
    dim = int((sv > 1e-6 * max(sv[0], 1e-30)).sum()) if np.abs(Ms).max() > 0 else 0

    reached = set()
    for a, b, c in paths:
        blk = Ms[:, slX[a], slY[b], slZ[c]]
        if np.abs(blk).max() > 1e-6 * scale:
            reached.add((X[a].ir, Y[b].ir, Z[c].ir))
    return dim, sorted(reached)
