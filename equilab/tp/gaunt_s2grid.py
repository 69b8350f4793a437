"""Gaunt tensor product on a Gauss–Legendre × uniform spherical grid ("Price of Freedom").

Synthesize both functions on the grid, multiply pointwise, analyse back onto Y_l3m3:
``out_l3m3 = (1/4π) ∫ f1 f2 Y_l3m3 dΩ = Σ_b (w_b/2) (1/n_α) Σ_a f1 f2 (β_b, α_a) Y_l3m3``.
The rule is exact because the integrand has degree L1+L2+Lout: Gauss–Legendre with
``n_β = ⌊(L1+L2+Lout)/2⌋ + 1`` nodes integrates polynomials of degree 2n_β − 1 ≥ L1+L2+Lout in
cos β, and ``n_α ≥ L1+L2+Lout+1`` uniform points (odd, for the real FFT) integrate the
trigonometric part.

Cost per channel O(L³): the Legendre step is block-diagonal in m. The default path
(:mod:`equilab.tp._folded`) also uses the α grid's symmetries α → −α and α → α + π (even n_α)
to split each function into 4 parity components computed on a quarter of the α points (about 4×
fewer multiply-adds in the α DFTs, which dominate), and processes the batch in cache-sized
chunks. (The equatorial symmetry of the Gauss–Legendre nodes can be folded too,
``fold_beta=True`` in :func:`folded_constants`; measured slower on CPU, so off.)
``fold=False`` keeps the unfolded transforms (dense DFT matmul, or a real FFT with ``fft=True``).
"""
from __future__ import annotations

import functools
import math
from typing import Tuple

import e3nn_jax as e3nn
import jax.numpy as jnp
import numpy as np

from equilab.registry import TP_METHODS
from equilab.tp import _folded
from equilab.tp._common import (alpha_basis, gauss_legendre, legendre_table, odd_at_least, whole_grid_matrices,
                                whole_grid_product)
from equilab.tp._gaunt import gaunt_apply


def grid_size(L1: int, L2: int, Lout: int) -> Tuple[int, int]:
    """Minimal exact (n_β, n_α) for the product of degrees L1, L2 projected up to Lout."""
    Ls = L1 + L2 + Lout
    return Ls // 2 + 1, odd_at_least(Ls + 1)


@functools.cache
def m_blocks(L: int) -> np.ndarray:
    """Gather indices [2L+1, L+1]: flat (l, m) index of (l, m) at [m+L, l], or (L+1)² (a zero)."""
    idx = np.full((2 * L + 1, L + 1), (L + 1) ** 2, np.int32)
    for m in range(-L, L + 1):
        for l in range(abs(m), L + 1):
            idx[m + L, l] = l * l + l + m
    return idx


@functools.cache
def m_blocks_inverse(L: int) -> np.ndarray:
    """Flat (l, m) -> position in the [2L+1, L+1] block layout (flattened)."""
    return np.array([(m + L) * (L + 1) + l for l in range(L + 1) for m in range(-l, l + 1)], np.int32)


@functools.cache
def grid_constants(L: int, n_beta: int, n_alpha: int):
    """Legendre blocks and α bases for degree L on an (n_β, n_α) grid.

    Returns:
        P: [2L+1, L+1, n_β], ``P[m+L, l, b] = B_l^|m|(z_b)`` (0 where l < |m|), for synthesis;
        Q: [2L+1, L+1, n_β], ``P · w_b/2`` for analysis;
        A: [2L+1, n_α], ``A_m(α_a)`` (dense synthesis along α);
        Ai: [n_α, 2L+1], ``A_m(α_a)/n_α`` (dense analysis along α).
    """
    z, w = gauss_legendre(n_beta)
    B = legendre_table(L, z, np.sqrt(1.0 - z * z))  # [l, m, b]
    P = np.zeros((2 * L + 1, L + 1, n_beta))
    for m in range(-L, L + 1):
        P[m + L, abs(m):] = B[abs(m):, abs(m)]
    Q = P * (w / 2.0)
    alpha = 2 * np.pi * np.arange(n_alpha) / n_alpha
    A = alpha_basis(L, alpha)
    return P, Q, A, A.T / n_alpha


def irfft_alpha(F: jnp.ndarray, L: int, n_alpha: int) -> jnp.ndarray:
    """``g(α_a) = Σ_m F_m A_m(α_a)`` via a real inverse FFT; F [..., 2L+1] -> [..., n_α]."""
    s = n_alpha / math.sqrt(2.0)
    c = jnp.concatenate(
        [F[..., L : L + 1] * n_alpha, (F[..., L + 1 :] - 1j * F[..., :L][..., ::-1]) * s], axis=-1
    )
    return jnp.fft.irfft(c, n=n_alpha, axis=-1).astype(F.dtype)


def rfft_alpha(g: jnp.ndarray, L: int, n_alpha: int) -> jnp.ndarray:
    """``H_m = (1/n_α) Σ_a g(α_a) A_m(α_a)`` for |m| ≤ L via a real FFT; [..., n_α] -> [..., 2L+1]."""
    r = jnp.fft.rfft(g, axis=-1)[..., : L + 1]
    s = math.sqrt(2.0) / n_alpha
    return jnp.concatenate(
        [-r[..., 1:].imag[..., ::-1] * s, r[..., :1].real / n_alpha, r[..., 1:].real * s], axis=-1
    ).astype(g.dtype)


# Layout: the batch (all leading axes flattened, N) is the LAST axis throughout, so that every
# step is one large matmul with N columns (per-m Legendre blocks as one batched matmul with m
# leading, the α step as a single matmul over m) and only two transposes are paid in total.


def _rows(aT: jnp.ndarray, L: int) -> jnp.ndarray:
    """[(L+1)², N] -> [2L+1 (m), L+1 (l), N], zero where l < |m|."""
    aT = jnp.concatenate([aT, jnp.zeros((1,) + aT.shape[1:], aT.dtype)], axis=0)
    return aT[m_blocks(L)]


def synthesize(aT: jnp.ndarray, L: int, n_beta: int, n_alpha: int, fft: bool) -> jnp.ndarray:
    """f on the grid: [(L+1)², N] -> [n_α, n_β, N]."""
    P, _, A, _ = grid_constants(L, n_beta, n_alpha)
    F = jnp.einsum("mlb,mln->mbn", jnp.asarray(P, aT.dtype), _rows(aT, L))  # per-m Legendre blocks
    if fft:
        return jnp.moveaxis(irfft_alpha(jnp.moveaxis(F, 0, -1), L, n_alpha), -1, 0)
    return jnp.einsum("ma,mbn->abn", jnp.asarray(A, aT.dtype), F)


def analyse(g: jnp.ndarray, L: int, n_beta: int, n_alpha: int, fft: bool) -> jnp.ndarray:
    """(1/4π)∫ g Y_lm dΩ for l ≤ L: [n_α, n_β, N] -> [(L+1)², N]."""
    _, Q, _, Ai = grid_constants(L, n_beta, n_alpha)
    if fft:
        H = jnp.moveaxis(rfft_alpha(jnp.moveaxis(g, 0, -1), L, n_alpha), -1, 0)
    else:
        H = jnp.einsum("am,abn->mbn", jnp.asarray(Ai, g.dtype), g)
    y = jnp.einsum("mlb,mbn->mln", jnp.asarray(Q, g.dtype), H)
    return y.reshape((-1,) + y.shape[2:])[m_blocks_inverse(L)]


@functools.cache
def dense_constants(L: int, n_beta: int, n_alpha: int) -> Tuple[np.ndarray, np.ndarray]:
    """Whole-grid synthesis and analysis matrices of degree L (the ``dense=True`` layout).

    Returns:
        Y: [(L+1)², n_β·n_α], ``Y[lm, (b, a)] = B_l^|m|(z_b) A_m(α_a)``: f on the grid is ``a @ Y``;
        Yi: [n_β·n_α, (L+1)²], the quadrature-weighted transpose: ``(1/4π)∫ g Y_lm dΩ = g @ Yi``.
    """
    P, Q, _, _ = grid_constants(L, n_beta, n_alpha)
    return whole_grid_matrices(L, n_alpha, lambda l, m: P[m + L, l], lambda l, m: Q[m + L, l])


@functools.cache
def folded_constants(L: int, n_beta: int, n_alpha: int, fold_beta: bool = False) -> _folded.Folded:
    """Folded transforms of degree L on the Gauss–Legendre (n_β) × uniform (n_α) grid.

    ``fold_beta``: also fold the equatorial reflection (fundamental nodes z ≥ 0; the equator, a
    fixed point when n_β is odd, weighted 1/2 in the analysis). It halves the Legendre
    multiply-adds but doubles the components of the Hadamard step; measured ~1.3× slower on
    CPU at L = 8, 10 (experiments/tp_benchmark/README.md), so off by default."""
    z, w = gauss_legendre(n_beta)
    stab = np.ones(n_beta)
    if fold_beta:
        nh = (n_beta + 1) // 2
        z, w, stab = z[n_beta - nh :], w[n_beta - nh :], stab[:nh]
        if n_beta % 2 == 1:
            stab[0] = 2.0  # z = 0
    B = legendre_table(L, z, np.sqrt(1.0 - z * z))  # [l, m, b]
    return _folded.build(
        L, n_alpha, len(z), fold_beta,
        beta_syn=lambda l, m: B[l, abs(m)],
        beta_ana=lambda l, m: B[l, abs(m)] * w / 2.0 / stab,
    )


def gaunt_grid_core(a1, L1, a2, L2, Lout, *, n_beta=None, n_alpha=None, fft=False, fold=True, chunk=None, fold_beta=False,
                    dense=False):
    nb, na = grid_size(L1, L2, Lout)
    nb = n_beta or nb
    if dense:  # three GEMMs over the whole batch: O(L⁴) per product, no per-m blocks, no loop
        na = n_alpha or na
        return whole_grid_product(a1, a2, dense_constants(L1, nb, na)[0], dense_constants(L2, nb, na)[0],
                                  dense_constants(Lout, nb, na)[1])
    if n_alpha:
        na = n_alpha
    elif fold and not fft:
        na += na % 2  # even: the α → α + π symmetry halves the DFTs again
    if fft and na % 2 == 0:
        na += 1
    lead = jnp.broadcast_shapes(a1.shape[:-1], a2.shape[:-1])
    flat = lambda a: jnp.broadcast_to(a, lead + a.shape[-1:]).reshape(-1, a.shape[-1])
    if fold and not fft:
        c1, c2, co = (folded_constants(L, nb, na, fold_beta) for L in (L1, L2, Lout))
        values = int(np.prod(c1.syn_alpha.shape[:4])) * c1.syn_beta.shape[4]  # one grid array per column
        y = _folded.gaunt_map(c1, c2, co, flat(a1), flat(a2), chunk or _folded.chunk_size(values))
        return y.reshape(lead + (-1,))
    g = synthesize(flat(a1).T, L1, nb, na, fft) * synthesize(flat(a2).T, L2, nb, na, fft)
    return analyse(g, Lout, nb, na, fft).T.reshape(lead + (-1,))


@TP_METHODS.register("gaunt_s2grid")
def gaunt_s2grid_tensor_product(
    x1: e3nn.IrrepsArray,
    x2: e3nn.IrrepsArray,
    *,
    irreps_out=None,
    fft: bool = False,
    fold: bool = True,
    chunk: int | None = None,
    n_beta: int | None = None,
    n_alpha: int | None = None,
    dense: bool = False,
) -> e3nn.IrrepsArray:
    """Gaunt product on the sphere: projection of ``f1·f2`` onto ``Y_l3m3`` for l3 in ``irreps_out``.

    Equal to ``e3nn.from_s2grid(e3nn.to_s2grid(x1)·e3nn.to_s2grid(x2), irreps_out)`` on an exact
    grid, with f = Σ x_lm Y_lm in e3nn-jax's ``integral`` normalization.

    Args:
        x1, x2: [..., irreps] spherical-function coefficients, C channels each (or one of them
            1); mixed parity classes are split and summed.
        irreps_out: output irreps (multiplicities ignored); default all of degree ≤ L1+L2.
        fold: symmetry-folded, batch-chunked transforms (default; see the module docstring).
        fft: unfolded transforms with a real FFT along α (slower on CPU at these sizes,
            measured in experiments/tp_benchmark); ``fold=False, fft=False``: unfolded dense
            DFT matmul (the previous default).
        chunk: batch columns per chunk of the folded path (default: sized for the L2 cache).
        dense: whole-grid synthesis and analysis matrices, three matmuls over the batch (O(L⁴)
            per product instead of O(L³), but no per-m blocks and no chunk loop): the layout of
            e3nn-jax's ``to_s2grid``/``from_s2grid`` with ``fft=False``, which was the fastest Gaunt
            product on an H200 (experiments/tp_benchmark, "GPU"), on the minimal exact grid.
        n_beta, n_alpha: override the grid (for tests; the default is the minimal exact one).

    Returns:
        [..., C x irreps_out] (sorted).

    Examples:
        >>> import e3nn_jax as e3nn, jax.numpy as jnp
        >>> x = e3nn.IrrepsArray("0e + 1o", jnp.array([1.0, 0.0, 0.0, 0.0]))
        >>> gaunt_s2grid_tensor_product(x, x, irreps_out="0e").array
        Array([1.], dtype=float32)
    """
    core = functools.partial(gaunt_grid_core, n_beta=n_beta, n_alpha=n_alpha, fft=fft, fold=fold, chunk=chunk,
                             dense=dense)
    return gaunt_apply(core, x1, x2, irreps_out)
