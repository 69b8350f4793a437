"""The exact NumPy constants behind the products match e3nn-jax's conventions."""
import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilab.tp._common import alpha_basis, legendre_table, real_cg


def test_legendre_table_matches_e3nn_spherical_harmonics(x64):
    L = 10
    v = np.array(jax.random.normal(jax.random.PRNGKey(0), (20, 3), jnp.float64))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ref = np.asarray(e3nn.spherical_harmonics(e3nn.s2_irreps(L), jnp.asarray(v), False, normalization="integral").array)
    ref = ref * np.sqrt(4 * np.pi)  # e3nn's `integral` sh are Y/√(4π); to_s2grid multiplies by √(4π)
    z = v[:, 1]
    B = legendre_table(L, z, np.sqrt(1 - z * z))
    A = alpha_basis(L, np.arctan2(v[:, 0], v[:, 2]))
    mine = np.stack([B[l, abs(m)] * A[L + m] for l in range(L + 1) for m in range(-l, l + 1)], -1)
    np.testing.assert_allclose(mine, ref, atol=1e-11, rtol=0)


@pytest.mark.parametrize("l1,l2,l3", [(1, 1, 2), (2, 3, 1), (4, 4, 4), (3, 4, 7), (0, 2, 2)])
def test_real_cg_equals_e3nn_where_e3nn_is_exact(l1, l2, l3):
    np.testing.assert_allclose(real_cg(l1, l2, l3), e3nn.clebsch_gordan(l1, l2, l3), atol=1e-13, rtol=0)


def test_real_cg_is_exactly_orthonormal_at_high_degree():
    # Σ_ij C[ij k] C[ij k'] = δ_kk' / (2l3+1): exact to rounding only with exact coefficients
    for l1, l2, l3 in [(10, 10, 10), (8, 9, 5), (10, 7, 17)]:
        C = real_cg(l1, l2, l3)
        G = np.einsum("ijk,ijn->kn", C, C) * (2 * l3 + 1)
        np.testing.assert_allclose(G, np.eye(2 * l3 + 1), atol=1e-13, rtol=0)
