"""The weighted Flax module and the expressivity count."""
import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilab.nn import TensorProduct
from equilab.testing import assert_equivariant
from equilab.tp import expressivity


def test_expressivity_cg_reaches_every_path_gaunt_misses_odd():
    d_cg, p_cg = expressivity("cg", "1o", "1o", "0e + 1e + 2e")
    d_g, p_g = expressivity("gaunt_s2grid", "1o", "1o", "0e + 1e + 2e")
    one = e3nn.Irrep("1o")
    assert d_cg == 3 and (one, one, e3nn.Irrep("1e")) in p_cg
    assert d_g == 2 and (one, one, e3nn.Irrep("1e")) not in p_g
    assert {p for p in p_cg if (p[0].l + p[1].l + p[2].l) % 2 == 0} == set(p_g)


def test_expressivity_counts_multiplicities():
    # X = 0e + 1o, Y = 1o, Z = 2x1o + 1e: paths 0e·1o->1o (x2 copies), 1o·1o->1e -> 3 for cg
    assert expressivity("cg", "0e + 1o", "1o", "2x1o + 1e")[0] == 3
    assert expressivity("gaunt_fourier", "0e + 1o", "1o", "2x1o + 1e")[0] == 2


@pytest.mark.parametrize("method", [pytest.param("cg", marks=pytest.mark.slow), "gaunt_s2grid"])
def test_module_equivariant(method):
    irr = e3nn.Irreps("4x0e + 4x1o + 4x2e")
    x1 = e3nn.normal(irr, jax.random.PRNGKey(0), (3,))
    x2 = e3nn.normal(irr, jax.random.PRNGKey(1), (3,))
    mod = TensorProduct("8x0e + 8x1o + 4x1e + 8x2e", method=method)
    params = mod.init(jax.random.PRNGKey(2), x1, x2)
    if method == "cg":
        assert "path_weights" in params["params"]
    f = jax.jit(lambda a, b: mod.apply(params, a, b))
    out = f(x1, x2)
    assert out.irreps == e3nn.Irreps("8x0e + 8x1o + 4x1e + 8x2e")
    assert_equivariant(f, jax.random.PRNGKey(3), (x1, x2), atol=1e-5)


def test_module_gaunt_grid_equals_fourier_same_parameters():
    irr = e3nn.Irreps("3x0e + 3x1o + 3x2e + 3x3o")
    x1 = e3nn.normal(irr, jax.random.PRNGKey(0), (4,))
    x2 = e3nn.normal(irr, jax.random.PRNGKey(1), (4,))
    grid = TensorProduct("5x0e + 5x1o + 5x2e", method="gaunt_s2grid")
    four = TensorProduct("5x0e + 5x1o + 5x2e", method="gaunt_fourier")
    params = grid.init(jax.random.PRNGKey(2), x1, x2)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(four.init(jax.random.PRNGKey(2), x1, x2))
    a = jax.jit(grid.apply)(params, x1, x2).array
    b = jax.jit(four.apply)(params, x1, x2).array
    np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.abs(a).max()), rtol=0)
