"""Exactness of the tensor-product methods: agreement with e3nn-jax, equivariance, Gaunt = c·CG."""
import functools

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilab.errors import ConfigError
from equilab.testing import assert_equivariant, random_orthogonal, relative_error
from equilab.tp import tensor_product
from equilab.tp._common import gaunt_factor, rotate_irreps, wigner_D
from equilab.tp.gaunt_s2grid import grid_size

GAUNT = ["gaunt_s2grid", "gaunt_fourier"]
ALL = ["cg"] + GAUNT


def _inputs(irreps1, irreps2, lead=(3,), dtype=jnp.float64, seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return (
        e3nn.normal(irreps1, k1, lead, dtype=dtype),
        e3nn.normal(irreps2, k2, lead, dtype=dtype),
    )


@functools.cache
def _jitted(method, irreps_out):
    return jax.jit(functools.partial(tensor_product, method=method, irreps_out=irreps_out))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _e3nn_grid_product(x1, x2, irreps_out, L):
    """The published grid composition on a generous exact grid (float64 reference)."""
    nb, na = 2 * L + 4, 4 * L + 5
    s1 = e3nn.to_s2grid(x1, nb, na, quadrature="gausslegendre")
    s2 = e3nn.to_s2grid(x2, nb, na, quadrature="gausslegendre")
    return e3nn.from_s2grid(s1 * s2, irreps_out)


@pytest.mark.parametrize("L", [1, 3])
def test_cg_equals_e3nn_tensor_product(x64, L):
    x1, x2 = _inputs(e3nn.s2_irreps(L) + e3nn.Irreps("0o + 1e"), e3nn.s2_irreps(L, p_val=-1))
    for filt in [None, e3nn.s2_irreps(L) + e3nn.Irreps("1e")]:
        a = _jitted("cg", filt)(x1, x2)
        b = jax.jit(lambda u, v: e3nn.tensor_product(u, v, filter_ir_out=filt))(x1, x2)
        assert a.irreps == b.irreps
        np.testing.assert_allclose(a.array, b.array, atol=1e-12 * float(jnp.abs(b.array).max()), rtol=0)


@pytest.mark.parametrize("method", ALL)
def test_channel_wise_and_broadcast(x64, method):
    C, L = 4, 2
    irr = e3nn.s2_irreps(L)
    x1, x2 = _inputs(C * irr.regroup(), C * irr.regroup(), lead=(2,))
    x1 = e3nn.IrrepsArray(e3nn.Irreps([(C, ir) for _, ir in irr]), x1.array)
    x2 = e3nn.IrrepsArray(e3nn.Irreps([(C, ir) for _, ir in irr]), x2.array)
    f = _jitted(method, e3nn.s2_irreps(2 * L))
    out = f(x1, x2)
    for c in [0, 3]:
        one = lambda x: e3nn.IrrepsArray(irr, jnp.concatenate([ch[:, c] for ch in x.chunks], -1))
        ref = f(one(x1), one(x2))
        # merged irreps of n paths hold index path·C + c (single channel: index path)
        got = jnp.concatenate([ch[:, c::C].reshape(2, -1) for ch in out.chunks], -1)
        np.testing.assert_allclose(got, ref.array, atol=1e-13, rtol=0)
    # one channel against C channels broadcasts
    x2_one = e3nn.IrrepsArray(irr, jnp.concatenate([ch[:, 0] for ch in x2.chunks], -1))
    b = f(x1, x2_one)
    assert b.irreps == out.irreps
    assert b.shape == out.shape


@pytest.mark.parametrize("method", GAUNT)
@pytest.mark.parametrize("L", [3])
def test_gaunt_equals_e3nn_grid_composition(x64, method, L):
    x1, x2 = _inputs(e3nn.s2_irreps(L), e3nn.s2_irreps(L - 1, p_val=-1))
    irreps_out = e3nn.s2_irreps(2 * L - 1, p_val=-1)
    a = _jitted(method, irreps_out)(x1, x2)
    b = _e3nn_grid_product(x1, x2, irreps_out, L)
    assert a.irreps == b.irreps
    assert relative_error(a.array, b.array) < 1e-13


@pytest.mark.parametrize("method", GAUNT)
def test_gaunt_is_c_times_cg_on_even_paths(x64, method):
    L = 3
    x1, x2 = _inputs(e3nn.s2_irreps(L), e3nn.s2_irreps(L))
    out = _jitted(method, e3nn.s2_irreps(2 * L))(x1, x2)
    irr = lambda l: e3nn.Irrep(l, (-1) ** l)

    @jax.jit
    def reference(x1, x2):
        acc = {}
        for l1 in range(L + 1):
            for l2 in range(L + 1):
                for l3 in range(abs(l1 - l2), l1 + l2 + 1, 2):
                    y = tensor_product(
                        x1.filter(keep=[irr(l1)]), x2.filter(keep=[irr(l2)]), method="cg", irreps_out=[irr(l3)]
                    )
                    acc[l3] = acc.get(l3, 0) + gaunt_factor(l1, l2, l3) * y.array
        return jnp.concatenate([acc[l] for l in range(2 * L + 1)], -1)

    ref = reference(x1, x2)
    assert relative_error(out.array, ref) < 1e-13
    # the odd path 1o x 1o -> 1e is absent from Gaunt and present in CG
    v1, v2 = _inputs("1o", "1o")
    assert float(jnp.abs(tensor_product(v1, v2, method=method, irreps_out="1e").array).max()) == 0.0
    assert float(jnp.abs(tensor_product(v1, v2, method="cg", irreps_out="1e").array).max()) > 0.1


def _equivariance(method, L, dtype):
    """Compare f(R·x1, R·x2) with R·f(x1, x2), R applied with exact host-side Wigner matrices
    (e3nn-jax builds D for l ≥ 12 by a matrix exponential inside the graph: slow to compile)."""
    irreps_out = e3nn.s2_irreps(2 * L, p_val=-1)
    if method == "cg":  # all paths, odd ones included
        irreps_out = irreps_out + e3nn.s2_irreps(2 * L)
    f = _jitted(method, irreps_out)
    x1, x2 = _inputs(e3nn.s2_irreps(L), e3nn.s2_irreps(L, p_val=-1), lead=(2,), dtype=dtype)
    tol = 1e-10 if dtype == jnp.float64 else 1e-5
    out = f(x1, x2)
    for refl in (False, True):
        R = np.asarray(random_orthogonal(jax.random.PRNGKey(L), reflection=refl, dtype=jnp.float64))
        a = f(rotate_irreps(x1, R), rotate_irreps(x2, R))
        err = relative_error(a.array, rotate_irreps(out, R).array)
        assert err < tol, (method, L, refl, err)


@pytest.mark.parametrize("method,L", [("cg", 2), ("cg", 5), ("gaunt_s2grid", 2), ("gaunt_s2grid", 10), ("gaunt_fourier", 2), ("gaunt_fourier", 10)])
def test_equivariance_float64(x64, method, L):
    # cg at L = 10 (all paths, ~10^7 coefficients) takes minutes to compile: slow sweep only
    _equivariance(method, L, jnp.float64)


@pytest.mark.parametrize("method,L", [("cg", 3), ("gaunt_s2grid", 10), ("gaunt_fourier", 10)])
def test_equivariance_float32(method, L):
    _equivariance(method, L, jnp.float32)


@pytest.mark.slow
@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("L", list(range(1, 11)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_equivariance_all_degrees(x64, method, L, dtype):
    _equivariance(method, L, jnp.dtype(dtype))


def test_grid_exact_at_minimal_size_and_wrong_below(x64):
    L = 5
    x1, x2 = _inputs(e3nn.s2_irreps(L), e3nn.s2_irreps(L))
    irreps_out = e3nn.s2_irreps(2 * L)
    ref = _e3nn_grid_product(x1, x2, irreps_out, L)
    nb, na = grid_size(L, L, 2 * L)
    assert (nb, na) == (2 * L + 1, 4 * L + 1)
    f = jax.jit(functools.partial(tensor_product, method="gaunt_s2grid", irreps_out=irreps_out), static_argnames=("n_beta", "n_alpha", "fft"))
    exact = f(x1, x2, n_beta=nb, n_alpha=na)
    assert relative_error(exact.array, ref.array) < 1e-13
    fewer_beta = f(x1, x2, n_beta=nb - 1, n_alpha=na)
    assert relative_error(fewer_beta.array, ref.array) > 1e-3
    fewer_alpha = f(x1, x2, n_beta=nb, n_alpha=na - 1, fft=False)
    assert relative_error(fewer_alpha.array, ref.array) > 1e-3


@pytest.mark.parametrize("method", GAUNT)
def test_mixed_parity_classes_are_split(x64, method):
    # "0e + 1e": 0e has value parity +1, 1e value parity -1 -> two spherical functions
    x1, x2 = _inputs("0e + 1e + 2e", "0e + 1o")
    irreps_out = "0e + 1o + 1e + 2e + 2o + 3o"
    f = _jitted(method, irreps_out)
    out = f(x1, x2)
    ref = f(x1.filter(keep="0e + 2e"), x2).array + f(x1.filter(keep="1e"), x2).array
    assert out.irreps == e3nn.Irreps(irreps_out)
    np.testing.assert_allclose(out.array, ref, atol=1e-14, rtol=0)
    assert_equivariant(f, jax.random.PRNGKey(1), (x1, x2), atol=1e-12)


def test_clear_errors():
    x = e3nn.normal("1o + 1o", jax.random.PRNGKey(0), ())
    with pytest.raises(ConfigError, match="appears twice"):
        tensor_product(x, x, method="gaunt_s2grid")
    y = e3nn.normal("2x0e + 1x1o", jax.random.PRNGKey(0), ())
    with pytest.raises(ConfigError, match="multiplicities"):
        tensor_product(y, y, method="cg")
    with pytest.raises(ConfigError, match="unknown tensor-product method"):
        tensor_product(x, x, method="nope")


@pytest.mark.parametrize("L", [2, 7])
def test_fourier_equals_grid(x64, L):
    x1, x2 = _inputs(e3nn.s2_irreps(L), e3nn.s2_irreps(L - 1, p_val=-1), lead=(2,))
    irreps_out = e3nn.s2_irreps(2 * L - 1, p_val=-1)
    a = _jitted("gaunt_fourier", irreps_out)(x1, x2)
    b = _jitted("gaunt_s2grid", irreps_out)(x1, x2)
    assert relative_error(a.array, b.array) < 1e-13


def test_host_wigner_matches_e3nn(x64):
    R = np.asarray(random_orthogonal(jax.random.PRNGKey(0), reflection=False, dtype=jnp.float64))
    for l in (1, 5):
        np.testing.assert_allclose(wigner_D(l, R), np.asarray(e3nn.Irrep(l, 1).D_from_matrix(jnp.asarray(R))), atol=1e-11, rtol=0)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_cg_dense_equals_fused(x64, L):
    """The small-size dense contraction and the per-pair fused path give the same irreps, order
    and values (float64 rounding), with and without an output filter."""
    from equilab.tp.cg import cg_tensor_product

    x1, x2 = _inputs(e3nn.s2_irreps(L) + e3nn.Irreps("0o + 1e"), e3nn.s2_irreps(L, p_val=-1), lead=(3,))
    for filt in [None, e3nn.s2_irreps(L) + e3nn.Irreps("1e"), e3nn.Irreps("5e")]:
        a = cg_tensor_product(x1, x2, irreps_out=filt, dense=True)
        b = cg_tensor_product(x1, x2, irreps_out=filt, dense=False)
        assert a.irreps == b.irreps
        np.testing.assert_allclose(a.array, b.array, atol=1e-13 * max(1.0, float(jnp.abs(b.array).max(initial=0.0))), rtol=0)


def test_dense_grid_layout_through_the_public_api(x64):
    """``tensor_product(..., method="gaunt_s2grid", dense=True)`` equals the published grid
    composition, splits mixed parity classes, and is equivariant (rotations and reflections)."""
    L = 3
    x1, x2 = _inputs(e3nn.s2_irreps(L), e3nn.s2_irreps(L - 1, p_val=-1), lead=(2,))
    irreps_out = e3nn.s2_irreps(2 * L - 1, p_val=-1)
    f = jax.jit(functools.partial(tensor_product, method="gaunt_s2grid", irreps_out=irreps_out, dense=True))
    a, b = f(x1, x2), _e3nn_grid_product(x1, x2, irreps_out, L)
    assert a.irreps == b.irreps
    assert relative_error(a.array, b.array) < 1e-13
    y1, y2 = _inputs("0e + 1e + 2e", "0e + 1o", seed=3)
    out = "0e + 1o + 1e + 2e + 2o + 3o"
    g = jax.jit(functools.partial(tensor_product, method="gaunt_s2grid", irreps_out=out, dense=True))
    np.testing.assert_allclose(g(y1, y2).array, _jitted("gaunt_s2grid", out)(y1, y2).array, atol=1e-14, rtol=0)
    assert_equivariant(g, jax.random.PRNGKey(1), (y1, y2), atol=1e-12)
