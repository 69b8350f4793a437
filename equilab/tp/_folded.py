"""Symmetry-folded spherical-grid transforms shared by the Gaunt methods (CPU-efficient path).

A product grid ``{α_a} × {β_b}`` with uniform α (n_α points) is invariant under
``σ1: α → −α`` and, for even n_α, ``σ2: α → α + π``; a Gauss–Legendre β grid also under the
equatorial reflection ``τ: β → π − β``. Every real azimuthal basis function and every Legendre
function is even or odd under these maps:

* ``A_m(−α) = ±A_m(α)`` (cos: m ≥ 0 even, sin: m < 0 odd) — component bit ``t``;
* ``A_m(α + π) = (−1)^m A_m(α)`` — bit ``q = |m| mod 2``;
* ``P_l^m(−z) = (−1)^{l+m} P_l^m(z)`` — bit ``r = (l − |m|) mod 2``.

So a spherical function splits into up to 8 components ``Z_c`` with characters ``χ_c``, each
needed only on a fundamental domain (α ∈ [0, n_α/4], β in one hemisphere): its value at the image
``s·p`` of a fundamental point p is ``Σ_c χ_c(s) Z_c(p)`` (a Walsh–Hadamard transform over the
component bits). The synthesis matrices act per component (the α DFT per (t, q) group on a
quarter of the points and a quarter of the modes, the Legendre step per hemisphere and l-parity),
so the multiply-adds of the transforms drop ~4× for α and ~2× for β (the β fold is optional:
on CPU its larger Hadamard step costs more than it saves). Analysis is the adjoint:
Hadamard-fold the grid values onto the fundamental domain (points fixed by a symmetry are
weighted by 1/|stabilizer|), then the per-component DFT and Legendre matrices.

The batch axis is last and processed in chunks with ``lax.map``, so every intermediate of a
chunk stays in cache (the transforms are memory-bound at full batch: each stage has a
contraction length of only ~L/2).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, List, NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np


class Folded(NamedTuple):
    """NumPy constants of one folded transform pair of degree L (float64 unless integer).

    Axes: t (cos/sin), q (|m| parity, size 1 for odd n_α), r (l − |m| parity, size 1 when the
    β grid has no equatorial symmetry), j (|m| = q + (Q)·j), k (l within the component),
    a (fundamental α points), b (fundamental β nodes).
    """

    idx: np.ndarray  # [t,q,r,j,k] flat (l, m) index, (L+1)² for padding
    syn_beta: np.ndarray  # [t,q,r,j,b,k] Legendre synthesis
    syn_alpha: np.ndarray  # [t,q,r,a,j] DFT synthesis (repeated over r: a plain batched matmul)
    ana_alpha: np.ndarray  # [t,q,r,j,a] DFT analysis incl. 1/n_α and 1/|stabilizer|
    ana_beta: np.ndarray  # [t,q,r,j,k,b] Legendre analysis incl. quadrature weights
    inv: np.ndarray  # [(L+1)²] position of flat (l, m) in the flattened [t,q,r,j,k] layout


@functools.cache
def alpha_domain(n_alpha: int) -> Tuple[np.ndarray, np.ndarray]:
    """Fundamental α indices under σ1 (and σ2 for even n_α) and their stabilizer sizes."""
    gens = [lambda a: (-a) % n_alpha]
    if n_alpha % 2 == 0:
        gens.append(lambda a: (a + n_alpha // 2) % n_alpha)

    def orbit(a):
        pts = {a}
        for _ in range(2):
            pts |= {g(p) for g in gens for p in pts}
        return pts

    reps = sorted({min(orbit(a)) for a in range(n_alpha)})
    group = 2 ** len(gens)
    stab = np.array([group // len(orbit(a)) for a in reps], np.float64)
    return np.array(reps), stab


def build(
    L: int,
    n_alpha: int,
    n_b: int,
    fold_beta: bool,
    beta_syn: Callable[[int, int], np.ndarray],
    beta_ana: Callable[[int, int], np.ndarray],
) -> Folded:
    """Assemble the folded constants.

    Args:
        L: degree; n_alpha: uniform α points; n_b: fundamental β nodes.
        fold_beta: the β grid is symmetric under τ (then components split by l − |m| parity).
        beta_syn(l, m): [n_b] values of the β factor of Y_lm at the fundamental nodes.
        beta_ana(l, m): [n_b] analysis row: out_lm = Σ_b beta_ana(l, m)[b] · H_m(b), where
            H_m(b) is the α-analysed grid function folded onto the fundamental nodes (so the row
            includes the quadrature weight and 1/|β-stabilizer|).
    """
    reps, stab = alpha_domain(n_alpha)
    alpha = 2 * np.pi * reps / n_alpha
    Q = 2 if n_alpha % 2 == 0 else 1
    R = 2 if fold_beta else 1
    J = L // Q + 1
    K = L // R + 1
    T, A = 2, len(reps)
    size = (L + 1) ** 2
    idx = np.full((T, Q, R, J, K), size, np.int32)
    syn_beta = np.zeros((T, Q, R, J, n_b, K))
    syn_alpha = np.zeros((T, Q, R, A, J))
    ana_alpha = np.zeros((T, Q, R, J, A))
    ana_beta = np.zeros((T, Q, R, J, K, n_b))
    for t in range(T):
        for q in range(Q):
            for j in range(J):
                am = q + Q * j
                if am > L or (t == 1 and am == 0):
                    continue  # padding slot
                m = am if t == 0 else -am
                if am == 0:
                    Am = np.ones_like(alpha)
                else:
                    Am = math.sqrt(2) * (np.cos(am * alpha) if t == 0 else np.sin(am * alpha))
                syn_alpha[t, q, :, :, j] = Am
                ana_alpha[t, q, :, j, :] = Am / n_alpha / stab
                for r in range(R):
                    for k in range(K):
                        l = am + r + R * k
                        if l > L:
                            continue
                        idx[t, q, r, j, k] = l * l + l + m
                        syn_beta[t, q, r, j, :, k] = beta_syn(l, m)
                        ana_beta[t, q, r, j, k, :] = beta_ana(l, m)
    inv = np.zeros(size, np.int32)
    for pos, f in enumerate(idx.reshape(-1)):
        if f < size:
            inv[f] = pos
    return Folded(idx, syn_beta, syn_alpha, ana_alpha, ana_beta, inv)


# ----------------------------------------------------------------------------------------------
# traced pieces (batch last: [..., N])
# ----------------------------------------------------------------------------------------------


def synthesize(c: Folded, aT: jnp.ndarray) -> jnp.ndarray:
    """Components on the fundamental domain: [(L+1)², N] -> [t,q,r,a,b,N]."""
    dt = aT.dtype
    aT = jnp.concatenate([aT, jnp.zeros((1,) + aT.shape[1:], dt)], axis=0)
    X = aT[c.idx]  # [t,q,r,j,k,N]
    Y = jnp.einsum("tqrjbk,tqrjkn->tqrjbn", jnp.asarray(c.syn_beta, dt), X)
    return jnp.einsum("tqraj,tqrjbn->tqrabn", jnp.asarray(c.syn_alpha, dt), Y)


def analyse(c: Folded, H: jnp.ndarray) -> jnp.ndarray:
    """Coefficients from folded components: [t,q,r,a,b,N] -> [(L+1)², N]."""
    dt = H.dtype
    W = jnp.einsum("tqrja,tqrabn->tqrjbn", jnp.asarray(c.ana_alpha, dt), H)
    O = jnp.einsum("tqrjkb,tqrjbn->tqrjkn", jnp.asarray(c.ana_beta, dt), W)
    return O.reshape((-1,) + O.shape[-1:])[c.inv]


def _hadamard(xs: List[jnp.ndarray]) -> List[jnp.ndarray]:
    """Walsh–Hadamard transform of a list of 2^k arrays (component index bits -> orbit images).

    Separate arrays, not a stacked axis: XLA then fuses each butterfly level into plain
    elementwise loops (a concatenate-based butterfly compiles to per-element selects, ~4× slower
    here)."""
    n = len(xs)
    bit = 1
    while bit < n:
        ys = list(xs)
        for i in range(n):
            if not i & bit:
                ys[i], ys[i | bit] = xs[i] + xs[i | bit], xs[i] - xs[i | bit]
        xs = ys
        bit *= 2
    return xs


def product(Z1: jnp.ndarray, Z2: jnp.ndarray) -> jnp.ndarray:
    """Folded components of f1·f2 from those of f1 and f2 (all [t,q,r,a,b,N]).

    Orbit values ``g_s = Σ_c χ_c(s) Z_c``, pointwise product, and the adjoint fold
    ``H_c = Σ_s χ_c(s) h_s`` (the 1/|stabilizer| factors live in the analysis matrices)."""
    shape = Z1.shape
    n = shape[0] * shape[1] * shape[2]
    split = lambda Z: [Z.reshape((n,) + shape[3:])[i] for i in range(n)]
    h = [u * v for u, v in zip(_hadamard(split(Z1)), _hadamard(split(Z2)))]
    return jnp.stack(_hadamard(h)).reshape(shape)


def gaunt_folded(c1: Folded, c2: Folded, co: Folded, a1T: jnp.ndarray, a2T: jnp.ndarray) -> jnp.ndarray:
    """Folded Gaunt core for one chunk: [(L1+1)², N], [(L2+1)², N] -> [(Lout+1)², N]."""
    return analyse(co, product(synthesize(c1, a1T), synthesize(c2, a2T)))


def chunk_size(grid_values: int, target: int = 131072) -> int:
    """Batch columns per chunk so that one folded grid array holds about ``target`` values
    (512 KiB in float32, about the L2 of current CPUs; 64 columns at L = 8…10)."""
    c = max(8, target // max(grid_values, 1))
    return 1 << (c.bit_length() - 1)


def map_batch(fn: Callable, a1: jnp.ndarray, a2: jnp.ndarray, chunk: int) -> jnp.ndarray:
    """``fn(a1T, a2T) -> yT`` (batch last) applied to [N, K1], [N, K2] in chunks of ``chunk``
    rows (:func:`map_columns`), differentiated by plain autodiff; returns [N, Kout]. The
    library uses :func:`gaunt_map` (custom VJP); this is the autodiff reference."""
    return map_columns(lambda x, y: (fn(x, y),), [a1, a2], chunk)[0]


# ----------------------------------------------------------------------------------------------
# adjoints and the custom VJP of the whole (chunked) product
# ----------------------------------------------------------------------------------------------


def synthesize_T(c: Folded, G: jnp.ndarray) -> jnp.ndarray:
    """Adjoint of :func:`synthesize`: [t,q,r,a,b,N] -> [(L+1)², N].

    The gather ``aT[idx]`` is injective on the non-padding slots, so its adjoint is the gather
    with ``inv`` (no scatter-add)."""
    dt = G.dtype
    Y = jnp.einsum("tqraj,tqrabn->tqrjbn", jnp.asarray(c.syn_alpha, dt), G)
    X = jnp.einsum("tqrjbk,tqrjbn->tqrjkn", jnp.asarray(c.syn_beta, dt), Y)
    return X.reshape((-1,) + X.shape[-1:])[c.inv]


def analyse_T(c: Folded, g: jnp.ndarray) -> jnp.ndarray:
    """Adjoint of :func:`analyse`: [(L+1)², N] -> [t,q,r,a,b,N]."""
    dt = g.dtype
    O = jnp.concatenate([g, jnp.zeros((1,) + g.shape[1:], dt)], axis=0)[c.idx]  # [t,q,r,j,k,N]
    W = jnp.einsum("tqrjkb,tqrjkn->tqrjbn", jnp.asarray(c.ana_beta, dt), O)
    return jnp.einsum("tqrja,tqrjbn->tqrabn", jnp.asarray(c.ana_alpha, dt), W)


def map_columns(fn: Callable, arrays: Sequence[jnp.ndarray], chunk: int) -> Tuple[jnp.ndarray, ...]:
    """``fn(*[K_i, c] batch-last arrays) -> tuple of [K_o, c]`` over [N, K_i] inputs in chunks
    of ``chunk`` rows (``lax.map``; the last chunk zero-padded); returns a tuple of [N, K_o]."""
    N = arrays[0].shape[0]
    if N <= chunk:
        return tuple(y.T for y in fn(*[a.T for a in arrays]))
    n = -(-N // chunk)
    pad = n * chunk - N

    def split(a):
        a = jnp.pad(a, ((0, pad), (0, 0))) if pad else a
        return a.reshape(n, chunk, a.shape[-1])

    ys = jax.lax.map(lambda xs: tuple(y.T for y in fn(*[x.T for x in xs])), tuple(split(a) for a in arrays))
    return tuple(y.reshape(n * chunk, y.shape[-1])[:N] for y in ys)


def gaunt_map(c1: Folded, c2: Folded, co: Folded, a1: jnp.ndarray, a2: jnp.ndarray, chunk: int) -> jnp.ndarray:
    """The folded Gaunt product of [N, (L1+1)²] and [N, (L2+1)²] -> [N, (Lout+1)²], chunked,
    with a custom VJP.

    The product is bilinear, ``y = A(S1 a1 ⊙ S2 a2)`` with the Hadamard folds symmetric, so for a
    cotangent g: ``∂a1 = S1ᵀ prod(Aᵀ g, S2 a2)`` and ``∂a2 = S2ᵀ prod(Aᵀ g, S1 a1)``. The
    backward pass recomputes the grid values chunk by chunk (only a1, a2 are kept), instead of
    autodiff's stacked per-chunk residuals and transposed scan. Reverse-over-reverse (forces in
    a loss) works; forward-mode (``jax.jvp``) does not, as for any ``jax.custom_vjp``.
    """

    @jax.custom_vjp
    def f(u, v):
        return map_columns(lambda x, y: (gaunt_folded(c1, c2, co, x, y),), [u, v], chunk)[0]

    def fwd(u, v):
        return f(u, v), (u, v)

    def bwd(res, g):
        u, v = res

        def core(x, y, gT):
            G = analyse_T(co, gT.astype(x.dtype))
            Z1, Z2 = synthesize(c1, x), synthesize(c2, y)
            return synthesize_T(c1, product(G, Z2)), synthesize_T(c2, product(G, Z1))

        return map_columns(core, [u, v, g], chunk)

    f.defvjp(fwd, bwd)
    return f(a1, a2)
