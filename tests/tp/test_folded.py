"""The symmetry-folded, batch-chunked Gaunt paths equal the unfolded ones (float64, 1e-13)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilab.testing import relative_error
from equilab.tp import gaunt_fourier as gf
from equilab.tp import gaunt_s2grid as gs
from equilab.tp._folded import alpha_domain


def _coeffs(L1, L2, lead, seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return (
        jax.random.normal(k1, lead + ((L1 + 1) ** 2,), jnp.float64),
        jax.random.normal(k2, lead + ((L2 + 1) ** 2,), jnp.float64),
    )


@pytest.mark.parametrize("n", range(3, 24))
def test_alpha_domain_covers_the_grid(n):
    reps, stab = alpha_domain(n)
    group = 4 if n % 2 == 0 else 2
    assert np.sum(group / stab) == n  # orbit sizes add up to every point exactly once


# (L1, L2, Lout, lead shape, chunk): unequal degrees, Lout below and at L1+L2, a padded last chunk
CASES = [(3, 2, 5, (7,), 4), (4, 4, 8, (3, 11), 8), (5, 3, 6, (5,), None), (2, 0, 2, (3,), 2), (1, 1, 1, (), None)]


@pytest.mark.parametrize("L1,L2,Lout,lead,chunk", CASES)
def test_folded_grid_equals_unfolded(x64, L1, L2, Lout, lead, chunk):
    a1, a2 = _coeffs(L1, L2, lead)
    ref = gs.gaunt_grid_core(a1, L1, a2, L2, Lout, fold=False)
    core = functools.partial(gs.gaunt_grid_core, L1=L1, L2=L2, Lout=Lout, chunk=chunk)
    out = jax.jit(lambda a, b: core(a, a2=b))(a1, a2)
    assert out.shape == ref.shape
    assert relative_error(out, ref) < 1e-13
    # the equatorial fold (8 components) and an odd α grid (no α → α + π symmetry)
    assert relative_error(core(a1, a2=a2, fold_beta=True), ref) < 1e-13
    nb, na = gs.grid_size(L1, L2, Lout)
    odd = na if na % 2 else na + 1
    assert relative_error(core(a1, a2=a2, n_alpha=odd), ref) < 1e-13
    assert relative_error(core(a1, a2=a2, fold_beta=True, n_alpha=odd, n_beta=nb + 1), ref) < 1e-13


@pytest.mark.parametrize("L1,L2,Lout,lead,chunk", CASES)
def test_folded_fourier_equals_fft(x64, L1, L2, Lout, lead, chunk):
    a1, a2 = _coeffs(L1, L2, lead, seed=1)
    ref = gf.gaunt_fourier_core(a1, L1, a2, L2, Lout, fft=True)
    out = jax.jit(lambda a, b: gf.gaunt_fourier_core(a, L1, b, L2, Lout, chunk=chunk))(a1, a2)
    assert relative_error(out, ref) < 1e-13


def test_half_torus_synthesis_is_the_fourier_series(x64):
    """The synthesis rows are the torus-extended Legendre factors, i.e. Σ_u Ŷ e^{iuθ} from the
    exact Fourier coefficients."""
    L, Lp, n_phi = 4, 7, 16
    c = gf.torus_constants(L, Lp, n_phi)
    theta = 2 * np.pi * np.arange(Lp + 1) / (2 * Lp + 1)
    Yh = gf.sh_fourier_coefficients(L)  # [(l,m), u, v]
    u = np.fft.fftfreq(2 * L + 1, 1.0 / (2 * L + 1))
    E = np.exp(1j * np.outer(theta, u))  # [i, u]
    for (t, q, r, j, k), f in np.ndenumerate(c.idx):
        if f >= (L + 1) ** 2:
            continue
        l = int(np.floor(np.sqrt(f)))
        m = f - l * l - l
        # Y_lm(θ, φ) = B(θ) A_m(φ): at φ = 0 (m ≥ 0) or φ = π/(2|m|) (m < 0), A_m = √2 or 1
        phi = 0.0 if m >= 0 else np.pi / (2 * abs(m))
        v = np.fft.fftfreq(2 * L + 1, 1.0 / (2 * L + 1))
        val = np.real(E @ Yh[f] @ np.exp(1j * v * phi))
        A = 1.0 if m == 0 else np.sqrt(2.0)
        np.testing.assert_allclose(c.syn_beta[t, q, r, j, :, k] * A, val, atol=1e-12)


@pytest.mark.parametrize("method_core", ["grid", "fourier"])
def test_gradient_through_chunks_equals_unfolded(x64, method_core):
    L1, L2, Lout = 3, 2, 4
    a1, a2 = _coeffs(L1, L2, (9,), seed=2)
    w = jax.random.normal(jax.random.PRNGKey(3), (9, (Lout + 1) ** 2), jnp.float64)
    if method_core == "grid":
        new = functools.partial(gs.gaunt_grid_core, chunk=4)
        old = functools.partial(gs.gaunt_grid_core, fold=False)
    else:
        new = functools.partial(gf.gaunt_fourier_core, chunk=4)
        old = functools.partial(gf.gaunt_fourier_core, fft=True)
    loss = lambda core: jax.grad(lambda u, v: jnp.sum(core(u, L1, v, L2, Lout) * w), argnums=(0, 1))
    g_new = jax.jit(loss(new))(a1, a2)
    g_old = loss(old)(a1, a2)
    for a, b in zip(g_new, g_old):
        assert relative_error(a, b) < 1e-12


@pytest.mark.parametrize("method_core", ["grid", "fourier"])
@pytest.mark.parametrize("chunk", [4, 64])  # chunked (lax.map, padded last chunk) and one chunk
def test_custom_vjp_second_order_equals_autodiff(x64, method_core, chunk):
    """The custom VJP's backward is itself differentiable (forces inside a loss): the gradient
    of a function of the input gradient equals the autodiff result of the unfolded path."""
    L1, L2, Lout = 2, 3, 3
    a1, a2 = _coeffs(L1, L2, (7,), seed=5)
    w = jax.random.normal(jax.random.PRNGKey(6), (7, (Lout + 1) ** 2), jnp.float64)
    if method_core == "grid":
        new = functools.partial(gs.gaunt_grid_core, chunk=chunk)
        old = functools.partial(gs.gaunt_grid_core, fold=False)
    else:
        new = functools.partial(gf.gaunt_fourier_core, chunk=chunk)
        old = functools.partial(gf.gaunt_fourier_core, fft=True)

    def outer(core):
        inner = jax.grad(lambda u, v: jnp.sum(core(u, L1, v, L2, Lout) * w), argnums=0)
        return jax.grad(lambda u, v: jnp.sum(jnp.sin(inner(u, v))), argnums=(0, 1))

    for a, b in zip(jax.jit(outer(new))(a1, a2), outer(old)(a1, a2)):
        assert relative_error(a, b) < 1e-11


@pytest.mark.parametrize("L1,L2,Lout,lead,chunk", CASES)
def test_dense_grid_layout_equals_unfolded(x64, L1, L2, Lout, lead, chunk):
    """``dense=True`` (whole-grid matrices, three matmuls) is the same exact product."""
    a1, a2 = _coeffs(L1, L2, lead, seed=2)
    ref = gs.gaunt_grid_core(a1, L1, a2, L2, Lout, fold=False)
    out = jax.jit(lambda a, b: gs.gaunt_grid_core(a, L1, b, L2, Lout, dense=True))(a1, a2)
    assert out.shape == ref.shape
    assert relative_error(out, ref) < 1e-13
    nb, na = gs.grid_size(L1, L2, Lout)
    assert relative_error(gs.gaunt_grid_core(a1, L1, a2, L2, Lout, dense=True, n_beta=nb + 1, n_alpha=na + 2), ref) < 1e-13


@pytest.mark.parametrize("L1,L2,Lout,lead,chunk", CASES)
def test_dense_torus_layout_equals_fft(x64, L1, L2, Lout, lead, chunk):
    """``gaunt_fourier`` with ``dense=True`` (half-torus matrices, three matmuls) is the same
    exact product as the complex 2D FFT convolution on the full torus."""
    a1, a2 = _coeffs(L1, L2, lead, seed=3)
    ref = gf.gaunt_fourier_core(a1, L1, a2, L2, Lout, fft=True)
    out = jax.jit(lambda a, b: gf.gaunt_fourier_core(a, L1, b, L2, Lout, dense=True))(a1, a2)
    assert out.shape == ref.shape
    assert relative_error(out, ref) < 1e-12
