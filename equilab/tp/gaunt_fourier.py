"""Gaunt tensor product through 2D Fourier coefficients and FFT convolution (Luo et al., 2024).

Extend each spherical function to the torus (θ, φ) ∈ [0, 2π)²: ``B_l^|m|(cos θ)`` with the
signed ``sin θ`` is a trigonometric polynomial of degree l in θ, so
``f = Σ_{u,v} F[u, v] e^{i(uθ + vφ)}`` with |u|, |v| ≤ L, and only v = ±m occurs — the change of
basis SH → Fourier is block-sparse (one (2L+1) × (L+1) block per m). The product f1·f2 is the 2D
convolution F1 * F2, done by FFT (inverse real 2D FFT of both, pointwise product, real 2D FFT;
(2(L1+L2)+1) × (L1+L2+Lout+1) points make it alias-free). Back on the sphere,
``out_l3m3 = (1/4π) ∫_0^{2π}∫_0^π f Y_l3m3 sin θ dθ dφ = Σ_u G[u, ±m3] W[u, l3, m3]`` with
``W = ½ Σ_u' Ŷ_l3m3[u', ∓m3] J(u + u')`` and ``J(k) = ∫_0^π e^{ikθ} sin θ dθ`` in closed form.

All coefficients are exact: Ŷ from an FFT of 2L+1 samples per direction of a trigonometric
polynomial of degree L (no aliasing), J analytically — no numerical quadrature.

Default path (``fft=False``): the same convolution theorem, with the transforms done as small
dense DFTs instead of 2D FFTs (faster on CPU at L ≤ 10, where XLA's complex 2D FFTs on odd torus
sizes dominated). The torus function satisfies ``f(−θ, φ) = f(θ, φ + π)``, so its samples on the
(2Lp+1) × n_φ torus grid (n_φ even) are determined by the nodes θ_i = 2πi/(2Lp+1), i ≤ Lp —
a uniform-θ spherical grid. Synthesis evaluates the trigonometric polynomials there; analysis
is the exact torus projection ``½ Σ_{u,u'} c_u b_u' J(u+u')`` with c the θ-DFT of the product
(folded onto i ≤ Lp) and b the exact Fourier coefficients of the Legendre factor, precomputed per
(l, m, i). Both then run through the symmetry-folded, batch-chunked transforms of
:mod:`equilab.tp._folded` (α → −α, α → α + π; the uniform θ nodes have no equatorial symmetry).
"""
from __future__ import annotations

import functools
import math

import e3nn_jax as e3nn
import jax.numpy as jnp
import numpy as np

from equilab.registry import TP_METHODS
from equilab.tp import _folded
from equilab.tp._common import alpha_basis, legendre_table, whole_grid_matrices, whole_grid_product
from equilab.tp._gaunt import gaunt_apply


@functools.cache
def sh_fourier_coefficients(L: int) -> np.ndarray:
    """Exact 2D Fourier coefficients ``Ŷ[(l,m), u, v]`` of the torus extension of every Y_lm, l ≤ L.

    Shape [(L+1)², 2L+1, 2L+1], u and v in FFT order (index j ↔ frequency j or j − (2L+1)).
    """
    N = 2 * L + 1
    t = 2 * np.pi * np.arange(N) / N
    B = legendre_table(L, np.cos(t), np.sin(t))  # [l, m, θ]
    A = alpha_basis(L, t)  # [m + L, φ]
    Y = np.stack([np.outer(B[l, abs(m)], A[L + m]) for l in range(L + 1) for m in range(-l, l + 1)])
    return np.fft.fft2(Y) / (N * N)


def _J(k: np.ndarray) -> np.ndarray:
    """``∫_0^π e^{ikθ} sin θ dθ``: (1 + (−1)^k)/(1 − k²) for |k| ≠ 1, ±iπ/2 for k = ±1."""
    k = np.asarray(k)
    out = np.zeros(k.shape, np.complex128)
    even = k % 2 == 0
    out[even] = 2.0 / (1.0 - k[even].astype(np.float64) ** 2)
    out[k == 1] = 0.5j * np.pi
    out[k == -1] = -0.5j * np.pi
    return out


def _freq(N: int) -> np.ndarray:
    return np.fft.fftfreq(N, 1.0 / N).round().astype(int)


@functools.cache
def v_layout(L: int):
    """Gather indices [L+1, 2(L+1)] from the flat (l, m) layout (+ one zero slot at (L+1)²) into
    ``[v, (sign, l)]`` with ``m = ±v``, and the inverse map flat -> position."""
    idx = np.full((L + 1, 2 * (L + 1)), (L + 1) ** 2, np.int32)
    inv = []
    for v in range(L + 1):
        for l in range(v, L + 1):
            idx[v, l] = l * l + l + v
            if v > 0:
                idx[v, L + 1 + l] = l * l + l - v
    for l in range(L + 1):
        for m in range(-l, l + 1):
            inv.append(abs(m) * 2 * (L + 1) + (0 if m >= 0 else L + 1) + l)
    return idx, np.array(inv, np.int32)


@functools.cache
def forward_matrix(L: int) -> np.ndarray:
    """SH -> Fourier, real: ``[v, (sign, l), (re|im, u)]`` giving F[u, v] for v ≥ 0, |u| ≤ L."""
    Yh = sh_fourier_coefficients(L)
    N = 2 * L + 1
    M = np.zeros((L + 1, 2 * (L + 1), 2 * N))
    for v in range(L + 1):
        for s, sign in enumerate((1, -1)):
            if v == 0 and sign == -1:
                continue
            for l in range(v, L + 1):
                c = Yh[l * l + l + sign * v, :, v]  # [u]
                M[v, s * (L + 1) + l] = np.concatenate([c.real, c.imag])
    return M


@functools.cache
def backward_matrix(Lout: int, Lp: int) -> np.ndarray:
    """Fourier -> SH, real: ``[v, (re|im, u), (sign, l3)]`` with u over the FFT grid of size
    2Lp+1 (|u| ≤ Lp), v = |m3| ≤ Lout; ``out = Re Σ_u G[u, v] W[u, l3, ±v]`` (×2 for v > 0, the
    conjugate half of the spectrum)."""
    Yh = sh_fourier_coefficients(Lout)
    Nu = 2 * Lp + 1
    u = _freq(Nu)
    up = _freq(2 * Lout + 1)
    Jm = _J(u[:, None] + up[None, :])  # [u, u']
    M = np.zeros((Lout + 1, 2 * Nu, 2 * (Lout + 1)))
    for v in range(Lout + 1):
        for s, sign in enumerate((1, -1)):
            if v == 0 and sign == -1:
                continue
            for l in range(v, Lout + 1):
                Yc = Yh[l * l + l + sign * v, :, (-v) % (2 * Lout + 1)]  # Ŷ[u', −v]
                W = 0.5 * (Jm @ Yc) * (2.0 if v > 0 else 1.0)  # [u]
                M[v, :, s * (Lout + 1) + l] = np.concatenate([W.real, -W.imag])  # Re(G W)
    return M


def to_torus(a: jnp.ndarray, L: int, Lp: int, n_phi: int) -> jnp.ndarray:
    """Values of f on the (2Lp+1) × n_φ torus grid: [..., (L+1)²] -> [..., 2Lp+1, n_φ]."""
    idx, _ = v_layout(L)
    a = jnp.concatenate([a, jnp.zeros(a.shape[:-1] + (1,), a.dtype)], axis=-1)[..., idx]
    F = jnp.einsum("...vk,vkw->...wv", a, jnp.asarray(forward_matrix(L), a.dtype))  # [..., 2N, v]
    N = 2 * L + 1
    Nu = 2 * Lp + 1
    F = F[..., :N, :] + 1j * F[..., N:, :]  # [..., u (FFT order, |u| ≤ L), v]
    pad = jnp.zeros(F.shape[:-2] + (Nu - N, L + 1), F.dtype)
    F = jnp.concatenate([F[..., : L + 1, :], pad, F[..., L + 1 :, :]], axis=-2)
    return jnp.fft.irfft2(F * (Nu * n_phi), s=(Nu, n_phi)).astype(a.dtype)


def from_torus(g: jnp.ndarray, Lout: int, Lp: int, n_phi: int) -> jnp.ndarray:
    """(1/4π)∫_{S²} g Y_l3m3 for l3 ≤ Lout from torus values [..., 2Lp+1, n_φ] -> [..., (Lout+1)²]."""
    Nu = 2 * Lp + 1
    G = jnp.fft.rfft2(g)[..., : Lout + 1] / (Nu * n_phi)  # [..., u, v]
    G = jnp.concatenate([G.real, G.imag], axis=-2).astype(g.dtype)  # [..., 2Nu, v]
    y = jnp.einsum("...wv,vwk->...vk", G, jnp.asarray(backward_matrix(Lout, Lp), g.dtype))
    _, inv = v_layout(Lout)
    return y.reshape(y.shape[:-2] + (-1,))[..., inv]


def torus_rows(L: int, Lp: int, n_phi: int):
    """β factors of degree L on the half torus θ_i = 2πi/(2Lp+1), i = 0…Lp (n_φ even):
    ``(syn(l, m), ana(l, m))``, each [Lp+1].

    Synthesis: the torus extension of ``B_l^|m|`` (signed sin θ) at θ_i. Analysis row of (l, m):
    ``R_i = ½ Σ_{u,u'} b_u' J(u+u') (1/N_θ)[e^{−iuθ_i} + (−1)^m e^{iuθ_i} (i ≥ 1)]`` — the torus
    projection of the product's θ-DFT, whose samples at θ > π are those at 2π − θ with φ + π."""
    assert n_phi % 2 == 0, "the half-torus fold needs φ + π on the grid"
    Nt = 2 * Lp + 1
    theta = 2 * np.pi * np.arange(Lp + 1) / Nt
    B = legendre_table(L, np.cos(theta), np.sin(theta))  # [l, |m|, i]
    Nb = 2 * L + 1  # exact Fourier coefficients b_u' of B_l^|m|(θ), |u'| ≤ L
    t = 2 * np.pi * np.arange(Nb) / Nb
    b = np.fft.fft(legendre_table(L, np.cos(t), np.sin(t)), axis=-1) / Nb  # [l, |m|, u']
    u, up = _freq(Nt), _freq(Nb)
    Jm = _J(u[:, None] + up[None, :])  # [u, u']
    E = np.exp(-1j * np.outer(u, theta)) / Nt  # [u, i]
    mirror = np.where(np.arange(Lp + 1) >= 1, 1.0, 0.0)

    def ana(l, m):
        even = np.exp(1j * np.outer(u, theta)) / Nt * mirror  # [u, i]
        W = E + (-1) ** abs(m) * even
        R = 0.5 * np.einsum("p,up,ui->i", b[l, abs(m)], Jm, W)
        assert np.abs(R.imag).max() < 1e-12
        return R.real

    return lambda l, m: B[l, abs(m)], ana


@functools.cache
def torus_constants(L: int, Lp: int, n_phi: int) -> _folded.Folded:
    """Folded transforms of degree L on the half torus (:func:`torus_rows`) × n_φ (even)."""
    syn, ana = torus_rows(L, Lp, n_phi)
    return _folded.build(L, n_phi, Lp + 1, False, beta_syn=syn, beta_ana=ana)


@functools.cache
def torus_dense_constants(L: int, Lp: int, n_phi: int):
    """Whole-grid matrices of the half torus (the ``dense=True`` layout): synthesis
    ``Y[(l,m), (i,a)] = B_l^|m|(θ_i) A_m(φ_a)`` and analysis ``Yi[(i,a), (l,m)] = R_lm(i) A_m(φ_a)/n_φ``
    (the same exact torus projection, unfolded in φ)."""
    return whole_grid_matrices(L, n_phi, *torus_rows(L, Lp, n_phi))


def gaunt_fourier_core(a1, L1, a2, L2, Lout, *, fft=False, chunk=None, dense=False):
    Lp = L1 + L2
    n_phi = L1 + L2 + Lout + 1
    if fft:
        g = to_torus(a1, L1, Lp, n_phi) * to_torus(a2, L2, Lp, n_phi)
        return from_torus(g, Lout, Lp, n_phi)
    n_phi += n_phi % 2
    if dense:  # three GEMMs over the whole batch (no per-m blocks, no chunk loop)
        return whole_grid_product(a1, a2, torus_dense_constants(L1, Lp, n_phi)[0],
                                  torus_dense_constants(L2, Lp, n_phi)[0], torus_dense_constants(Lout, Lp, n_phi)[1])
    lead = jnp.broadcast_shapes(a1.shape[:-1], a2.shape[:-1])
    flat = lambda a: jnp.broadcast_to(a, lead + a.shape[-1:]).reshape(-1, a.shape[-1])
    c1, c2, co = (torus_constants(L, Lp, n_phi) for L in (L1, L2, Lout))
    values = int(np.prod(c1.syn_alpha.shape[:4])) * c1.syn_beta.shape[4]  # one grid array per column
    y = _folded.gaunt_map(c1, c2, co, flat(a1), flat(a2), chunk or _folded.chunk_size(values))
    return y.reshape(lead + (-1,))


@TP_METHODS.register("gaunt_fourier")
def gaunt_fourier_tensor_product(
    x1: e3nn.IrrepsArray, x2: e3nn.IrrepsArray, *, irreps_out=None, fft: bool = False, chunk: int | None = None,
    dense: bool = False,
) -> e3nn.IrrepsArray:
    """Gaunt product via 2D Fourier coefficients and FFT convolution.

    Same contract and output as ``gaunt_s2grid`` (the projection of f1·f2 onto Y_l3m3 in
    e3nn-jax's ``integral`` normalization), computed by a different exact algorithm.

    Args:
        x1, x2: [..., irreps] spherical-function coefficients, C channels (or one of them 1).
        irreps_out: output irreps (multiplicities ignored); default all of degree ≤ L1+L2.
        fft: the convolution by complex 2D FFTs on the full torus (True), or by folded dense
            DFTs on the half torus (False, the default: faster on CPU at L ≤ 10).
        chunk: batch columns per chunk of the default path (default: sized for the L2 cache).
        dense: whole half-torus synthesis and analysis matrices, three matmuls over the batch
            (O(L⁴) per product, no per-m blocks and no chunk loop): faster for the small degrees
            of MACE's many-body product (L ≤ 4 on a grid of a few dozen points), where the
            folded path's chunk loop costs more than it saves.

    Returns:
        [..., C x irreps_out] (sorted).
    """
    return gaunt_apply(functools.partial(gaunt_fourier_core, fft=fft, chunk=chunk, dense=dense), x1, x2, irreps_out)
