"""Shared pieces of the tensor-product backends: irreps bookkeeping and exact NumPy constants.

Conventions (those of e3nn-jax, checked in ``tests/tp/test_constants.py``):

* real spherical harmonics with e3nn-jax's ``integral`` normalization, y the polar axis:
  ``Y_lm(β, α) = B_l^|m|(cos β) · A_m(α)`` with ``A_m = √2 sin(|m|α)`` (m < 0), ``1`` (m = 0),
  ``√2 cos(mα)`` (m > 0) and ``B_l^m = √(4π) P̄_l^m`` (P̄ sphere-normalized, no Condon–Shortley
  phase), so that ``∫ Y_lm² dΩ = 4π``;
* flat index of (l, m) in a full expansion up to L: ``l² + l + m``;
* a spherical function ``f = Σ x_lm Y_lm`` with value parity ``p`` has irreps
  ``l`` with parity ``p·(−1)^l`` (``e3nn.s2_irreps(L, p_val=p)``).

All constants are float64 NumPy arrays built once (``functools.cache``) and cast to the input
dtype where they enter a traced computation.
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Dict, List, Optional, Sequence, Tuple

import e3nn_jax as e3nn
import jax.numpy as jnp
import numpy as np

from equilab.errors import ConfigError


# ----------------------------------------------------------------------------------------------
# Associated Legendre functions and grids
# ----------------------------------------------------------------------------------------------


def legendre_table(lmax: int, cos_b: np.ndarray, sin_b: np.ndarray) -> np.ndarray:
    """``B[l, m, k] = √(4π) P̄_l^m(cos β_k)`` for 0 ≤ m ≤ l ≤ lmax, float64, shape [l, m, n].

    Standard stable three-term recursion of the sphere-normalized functions (no Condon–Shortley
    phase, matching e3nn-jax). ``sin_b`` may be negative: then the result is the natural
    trigonometric-polynomial continuation ``sin^m β · poly(cos β)`` used by the Fourier method.
    """
    z = np.asarray(cos_b, np.float64)
    s = np.asarray(sin_b, np.float64)
    P = np.zeros((lmax + 1, lmax + 1) + z.shape, np.float64)
    P[0, 0] = 1.0  # √(4π) · 1/√(4π)
    for m in range(1, lmax + 1):
        P[m, m] = math.sqrt((2 * m + 1) / (2 * m)) * s * P[m - 1, m - 1]
    for m in range(0, lmax):
        P[m + 1, m] = math.sqrt(2 * m + 3) * z * P[m, m]
    for m in range(0, lmax + 1):
        for l in range(m + 2, lmax + 1):
            a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
            b = math.sqrt((4 * (l - 1) ** 2 - 1) / ((l - 1) ** 2 - m * m))
            P[l, m] = a * (z * P[l - 1, m] - P[l - 2, m] / b)
    return P


@functools.cache
def gauss_legendre(n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes z_k = cos β_k and weights on [−1, 1] (Σ w = 2), exact to degree 2n−1."""
    z, w = np.polynomial.legendre.leggauss(n)
    return z, w


def alpha_basis(lmax: int, alpha: np.ndarray) -> np.ndarray:
    """``A[m + lmax, k] = A_m(α_k)`` for −lmax ≤ m ≤ lmax (e3nn-jax's real azimuthal basis)."""
    out = np.zeros((2 * lmax + 1, len(alpha)))
    out[lmax] = 1.0
    for m in range(1, lmax + 1):
        out[lmax + m] = math.sqrt(2) * np.cos(m * alpha)
        out[lmax - m] = math.sqrt(2) * np.sin(m * alpha)
    return out


def whole_grid_matrices(L: int, n_alpha: int, beta_syn, beta_ana):
    """Synthesis and analysis matrices of degree L on a (β nodes) × (n_α uniform α) product grid,
    unfolded (the ``dense=True`` layout of the Gaunt methods).

    Args:
        beta_syn(l, m), beta_ana(l, m): [n_b] β factor of Y_lm at the nodes, and its analysis row
            (quadrature weights included), as for :func:`equilab.tp._folded.build`.
    Returns:
        Y: [(L+1)², n_b·n_α], ``Y[lm, (b, a)] = beta_syn(l, m)[b] A_m(α_a)``: f on the grid is ``a @ Y``;
        Yi: [n_b·n_α, (L+1)²], ``beta_ana(l, m)[b] A_m(α_a)/n_α``: the coefficients of g are ``g @ Yi``.
    """
    A = alpha_basis(L, 2 * np.pi * np.arange(n_alpha) / n_alpha)
    lm = [(l, m) for l in range(L + 1) for m in range(-l, l + 1)]
    Y = np.stack([np.outer(beta_syn(l, m), A[m + L]).reshape(-1) for l, m in lm])
    Yi = np.stack([np.outer(beta_ana(l, m), A[m + L] / n_alpha).reshape(-1) for l, m in lm], axis=1)
    return Y, Yi


def whole_grid_product(a1, a2, Y1: np.ndarray, Y2: np.ndarray, Yo: np.ndarray):
    """Gaunt product through whole-grid matrices: three matmuls over the batch,
    ``((a1 @ Y1) ⊙ (a2 @ Y2)) @ Yo`` (Y1, Y2 synthesis, Yo analysis; :func:`whole_grid_matrices`)."""
    import jax.numpy as jnp

    dt = jnp.result_type(a1, a2)
    return ((a1 @ jnp.asarray(Y1, dt)) * (a2 @ jnp.asarray(Y2, dt))) @ jnp.asarray(Yo, dt)


def odd_at_least(n: int) -> int:
    return n if n % 2 == 1 else n + 1


# ----------------------------------------------------------------------------------------------
# Exact real Clebsch–Gordan coefficients (e3nn-jax's basis and normalization)
# ----------------------------------------------------------------------------------------------


def _su2_cg_exact(j1: int, m1: int, j2: int, m2: int, j3: int, m3: int) -> float:
    """<j1 m1 j2 m2 | j3 m3> for integer spins, Racah's formula summed in exact rationals.

    e3nn-jax sums the alternating series in floating point, which cancels badly at high degree;
    here C² is an exact fraction and only the final square root is rounded.
    """
    if m3 != m1 + m2:
        return 0.0
    f = math.factorial
    pref = Fraction(
        (2 * j3 + 1) * f(j3 + j1 - j2) * f(j3 - j1 + j2) * f(j1 + j2 - j3) * f(j3 + m3) * f(j3 - m3),
        f(j1 + j2 + j3 + 1) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2),
    )
    vmin = max(-j1 + j2 + m3, -j1 + m1, 0)
    vmax = min(j2 + j3 + m1, j3 - j1 + j2, j3 + m3)
    S = Fraction(0)
    for v in range(vmin, vmax + 1):
        S += (-1) ** (v + j2 + m2) * Fraction(
            f(j2 + j3 + m1 - v) * f(j1 - m1 + v),
            f(v) * f(j3 - j1 + j2 - v) * f(j3 + m3 - v) * f(v + j1 - j2 - m3),
        )
    if S == 0:
        return 0.0
    return math.copysign(math.sqrt(pref * S * S), S)


@functools.cache
def real_cg(l1: int, l2: int, l3: int) -> np.ndarray:
    """Real-basis CG tensor [2l1+1, 2l2+1, 2l3+1], equal to ``e3nn.clebsch_gordan`` but exact.

    Same construction as e3nn-jax (complex CG / √(2l3+1), then the real↔complex change of basis),
    with the complex coefficients from exact rational arithmetic.
    """
    from equilab.tp._compat import change_basis_real_to_complex

    C = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    if abs(l1 - l2) <= l3 <= l1 + l2:
        for m1 in range(-l1, l1 + 1):
            for m2 in range(-l2, l2 + 1):
                if abs(m1 + m2) <= l3:
                    C[l1 + m1, l2 + m2, l3 + m1 + m2] = _su2_cg_exact(l1, m1, l2, m2, l3, m1 + m2)
    C /= math.sqrt(2 * l3 + 1)
    Q1, Q2, Q3 = (change_basis_real_to_complex(l) for l in (l1, l2, l3))
    R = np.einsum("ij,kl,mn,ikn->jlm", Q1, Q2, np.conj(Q3.T), C)
    assert np.abs(R.imag).max(initial=0.0) < 1e-12
    R = np.ascontiguousarray(R.real)
    R[np.abs(R) < 1e-15] = 0.0  # exact zeros keep the sparsity pattern exact
    return R


def gaunt_factor(l1: int, l2: int, l3: int) -> float:
    """c(l1,l2,l3) with ``Gaunt product = c · CG product`` (path of e3nn's ``component`` CG).

    In e3nn-jax's integral normalization, (1/4π)∫ Y_l1m1 Y_l2m2 Y_l3m3 dΩ equals
    ``C[m1,m2,m3] · √((2l1+1)(2l2+1)) · ⟨l1 0 l2 0 | l3 0⟩`` for even l1+l2+l3 (the classical
    Gaunt formula in the real basis); relative to e3nn's path ``√(2l3+1) C`` that is
    ``c = √((2l1+1)(2l2+1)/(2l3+1)) |⟨l1 0 l2 0 | l3 0⟩|``.
    """
    if (l1 + l2 + l3) % 2 or not abs(l1 - l2) <= l3 <= l1 + l2:
        return 0.0
    cg0 = _su2_cg_exact(l1, 0, l2, 0, l3, 0)
    # the sign (−1)^((l1+l2−l3)/2) of ⟨l1 0 l2 0|l3 0⟩ is cancelled by e3nn's (−i)^l basis phases
    return math.sqrt((2 * l1 + 1) * (2 * l2 + 1) / (2 * l3 + 1)) * abs(cg0)


# ----------------------------------------------------------------------------------------------
# Irreps bookkeeping: channels and parity classes
# ----------------------------------------------------------------------------------------------


def channels_of(x: e3nn.IrrepsArray, what: str) -> int:
    """The common multiplicity C of all irreps of x (channel-wise products need one)."""
    muls = {mul for mul, _ in x.irreps if mul > 0}
    if len(muls) > 1:
        raise ConfigError(
            f"{what} has irreps {x.irreps} with different multiplicities; the channel-wise product "
            "needs the same number of channels C on every irrep (mix channels with a Linear first)"
        )
    return muls.pop() if muls else 1


def to_channels(x: e3nn.IrrepsArray, C: int) -> Tuple[List[e3nn.Irrep], jnp.ndarray]:
    """Split x (every irrep with multiplicity C) into channel layout.

    Returns the list of irreps of one channel and the array [..., C, Σ(2l+1)].
    """
    irs, parts = [], []
    for (mul, ir), chunk in zip(x.irreps, x.chunks):
        if mul == 0:
            continue
        irs.append(ir)
        if chunk is None:
            chunk = jnp.zeros(x.shape[:-1] + (mul, ir.dim), x.dtype)
        parts.append(chunk)
    if not parts:
        return [], jnp.zeros(x.shape[:-1] + (C, 0), x.dtype)
    return irs, jnp.concatenate(parts, axis=-1)


def broadcast_channels(C1: int, C2: int) -> int:
    if C1 != C2 and 1 not in (C1, C2):
        raise ConfigError(
            f"channel-wise product needs the same number of channels on both inputs (or one with "
            f"a single channel to broadcast); got {C1} and {C2}"
        )
    return max(C1, C2)


def parity_class(ir: e3nn.Irrep) -> int:
    """Value parity p of a spherical function whose l-component has this irrep: p·(−1)^l = ir.p."""
    return ir.p * (-1) ** ir.l


def split_classes(irs: Sequence[e3nn.Irrep], arr: jnp.ndarray, what: str) -> Dict[int, Tuple[int, jnp.ndarray]]:
    """Dense spherical-function coefficients per parity class.

    Args:
        irs: irreps of one channel; arr: [..., Σ(2l+1)] in that order.

    Returns:
        {p: (L, a)} with a [..., (L+1)²] in the flat (l, m) layout, zeros for absent degrees.
    """
    offsets = np.cumsum([0] + [ir.dim for ir in irs])
    by_class: Dict[int, Dict[int, int]] = {}
    for i, ir in enumerate(irs):
        d = by_class.setdefault(parity_class(ir), {})
        if ir.l in d:
            raise ConfigError(
                f"{what}: irrep {ir} appears twice; a spherical function has one coefficient per "
                "(l, m), so the Gaunt methods cannot take repeated degrees of one parity class "
                "(mix them with a Linear first, or use method='cg')"
            )
        d[ir.l] = i
    out = {}
    lead = arr.shape[:-1]
    for p, d in by_class.items():
        L = max(d)
        pieces = []
        for l in range(L + 1):
            if l in d:
                i = d[l]
                pieces.append(arr[..., offsets[i] : offsets[i + 1]])
            else:
                pieces.append(jnp.zeros(lead + (2 * l + 1,), arr.dtype))
        out[p] = (L, jnp.concatenate(pieces, axis=-1))
    return out


def output_irreps(irreps_out, default: e3nn.Irreps) -> List[e3nn.Irrep]:
    """Sorted distinct irreps selected by ``irreps_out`` (multiplicities ignored, like e3nn's
    ``filter_ir_out``); ``default`` when None."""
    irreps = default if irreps_out is None else e3nn.Irreps(irreps_out)
    return sorted({ir for mul, ir in irreps if mul > 0})


def assemble(irs_out: Sequence[e3nn.Irrep], chunks: Sequence[jnp.ndarray], C: int) -> e3nn.IrrepsArray:
    """IrrepsArray from per-irrep chunks [..., C, 2l+1] (one per irrep in ``irs_out``)."""
    return e3nn.from_chunks([(C, ir) for ir in irs_out], list(chunks), chunks[0].shape[:-2], chunks[0].dtype)


def flat_index(l: int, m: int) -> int:
    return l * l + l + m


# ----------------------------------------------------------------------------------------------
# Exact Wigner D matrices on the host (for tests and checks at high degree)
# ----------------------------------------------------------------------------------------------


def sh_at(lmax: int, r: np.ndarray) -> np.ndarray:
    """Y_lm(r̂) (e3nn integral normalization, ∫Y² = 4π) for unit vectors r [n, 3] -> [n, (lmax+1)²]."""
    r = np.asarray(r, np.float64)
    z = r[:, 1]
    s = np.sqrt(r[:, 0] ** 2 + r[:, 2] ** 2)
    B = legendre_table(lmax, z, s)
    A = alpha_basis(lmax, np.arctan2(r[:, 0], r[:, 2]))
    return np.stack([B[l, abs(m)] * A[lmax + m] for l in range(lmax + 1) for m in range(-l, l + 1)], -1)


@functools.cache
def _sphere_rule(l: int):
    nb, na = l + 1, 2 * l + 1  # exact for the degree-2l integrand Y_l(R r) Y_l(r)
    z, w = gauss_legendre(nb)
    a = 2 * np.pi * np.arange(na) / na
    s = np.sqrt(1 - z * z)
    pts = np.stack([np.outer(s, np.sin(a)), np.outer(z, np.ones(na)), np.outer(s, np.cos(a))], -1).reshape(-1, 3)
    wts = np.outer(w / 2, np.ones(na) / na).reshape(-1)
    return pts, wts


def wigner_D(l: int, R: np.ndarray) -> np.ndarray:
    """D^l(R) with Y_l(R r) = D^l(R) Y_l(r) for a rotation R (det +1), exact to float64 rounding:
    ``D = (1/4π) ∫ Y_l(R r) Y_l(r)ᵀ dΩ`` by an exact Gauss–Legendre × uniform rule."""
    pts, wts = _sphere_rule(l)
    sl = slice(l * l, (l + 1) ** 2)
    Yr = sh_at(l, pts @ np.asarray(R, np.float64).T)[:, sl]
    Y = sh_at(l, pts)[:, sl]
    return np.einsum("k,ki,kj->ij", wts, Yr, Y)


def rotate_irreps(x: e3nn.IrrepsArray, R: np.ndarray) -> e3nn.IrrepsArray:
    """Apply the O(3) matrix R (det ±1) to x with host-computed exact Wigner matrices."""
    R = np.asarray(R, np.float64)
    det = np.linalg.det(R)
    R0 = R * np.sign(det)
    chunks = []
    for (mul, ir), ch in zip(x.irreps, x.chunks):
        if ch is None:
            chunks.append(None)
            continue
        D = wigner_D(ir.l, R0) * (ir.p if det < 0 else 1)
        chunks.append(jnp.einsum("ij,...uj->...ui", jnp.asarray(D, x.dtype), ch))
    return e3nn.from_chunks(x.irreps, chunks, x.shape[:-1], x.dtype)
