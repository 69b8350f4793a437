"""Feature ⊗ edge-SH products: eSCN equals dense CG; both equivariant."""
import functools

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilab.testing import random_orthogonal, relative_error
from equilab.tp import tensor_product_with_sh


@functools.cache
def _fn(method, lmax, irreps_out=None):
    return jax.jit(functools.partial(tensor_product_with_sh, lmax=lmax, method=method, irreps_out=irreps_out))


@pytest.mark.parametrize("L,C", [(2, 3), pytest.param(6, 2, marks=pytest.mark.slow)])
def test_escn_equals_cg(x64, L, C):
    x = e3nn.normal(e3nn.Irreps([(C, (l, (-1) ** l)) for l in range(L + 1)] + [(C, "1e")]), jax.random.PRNGKey(0), (7,))
    v = jax.random.normal(jax.random.PRNGKey(1), (7, 3), jnp.float64)
    for io in [None, e3nn.s2_irreps(L)]:
        a = _fn("escn", L, io)(x, v)
        b = _fn("cg", L, io)(x, v)
        assert a.irreps == b.irreps
        assert relative_error(a.array, b.array) < 1e-12


@pytest.mark.parametrize("method", ["cg", "escn"])
def test_with_sh_equivariant(x64, method):
    L = 3
    x = e3nn.normal(2 * e3nn.s2_irreps(L).regroup(), jax.random.PRNGKey(0), (5,))
    x = e3nn.IrrepsArray(e3nn.Irreps([(2, ir) for _, ir in e3nn.s2_irreps(L)]), x.array)
    v = jax.random.normal(jax.random.PRNGKey(1), (5, 3), jnp.float64)
    f = _fn(method, L)
    for refl in (False, True):
        R = random_orthogonal(jax.random.PRNGKey(2), reflection=refl, dtype=jnp.float64)
        a = f(x.transform_by_matrix(R), v @ R.T)
        b = f(x, v).transform_by_matrix(R)
        assert relative_error(a.array, b.array) < 1e-10
