"""EGNN dynamics: E(3) equivariance (rotations, reflections, translations), permutation
equivariance, and exact masking of padded atoms (float64, tolerance 1e-10)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilab.models.egnn_dynamics import EGNNDynamics
from equilab.testing import assert_point_cloud_equivariant

N, F = 7, 6


@pytest.fixture
def setup(x64):
    model = EGNNDynamics(n_features=F, hidden=16, n_layers=2, context_dim=1)
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(k[0], (N, 3), jnp.float64) * 1.5
    h = jax.random.normal(k[1], (N, F), jnp.float64)
    inp = {"positions": x[None], "features": h[None], "t": jnp.array([0.3]), "node_mask": jnp.ones((1, N), bool),
           "context": jnp.array([[0.7]])}
    params = jax.jit(model.init)(k[2], inp)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    # Make the coordinate head non-negligible so the test sees its equivariance too.
    params = jax.tree_util.tree_map_with_path(
        lambda p, a: a * 1e3 if "coord_" in jax.tree_util.keystr(p) and p[-2].key.endswith("_1") else a, params)
    apply = jax.jit(lambda x, h: model.apply(params, dict(inp, positions=x[None], features=h[None])))
    return apply, x, h, k[3]


def _orthogonal(seed, reflection):
    # Built in float64 with NumPy: equilab.testing.random_orthogonal draws e3nn.rand_matrix in
    # float32 (|RRᵀ − I| ~ 6e-8), which would hide a float64 check at 1e-10.
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) < 0) != reflection:
        q[:, 0] *= -1
    return jnp.asarray(q)


def test_e3_equivariance(setup):
    apply, x, h, key = setup
    v, ho = apply(x, h)
    assert float(jnp.abs(v).max()) > 1e-3  # the check is not vacuous
    for seed, refl in ((0, False), (1, True), (2, True)):
        R = _orthogonal(seed, refl)
        shift = jnp.asarray(np.random.default_rng(seed + 10).normal(size=3))
        vr, hor = apply(x @ R.T + shift, h)
        np.testing.assert_allclose(vr[0], v[0] @ R.T, atol=1e-10 * float(jnp.abs(v).max()))
        np.testing.assert_allclose(hor, ho, atol=1e-10 * float(jnp.abs(ho).max()))


def test_e3_equivariance_float32_helper(setup):
    """The project-wide helper at float32-level tolerance (its rotations are float32-accurate)."""
    apply, x, h, key = setup

    def fn(pos):
        v, ho = apply(pos, h)
        return v[0], ho[0]

    assert_point_cloud_equivariant(fn, key, x, vector_outputs=[0], invariant_outputs=[1], atol=1e-6)


def test_permutation_equivariance(setup):
    apply, x, h, key = setup
    perm = np.asarray(jax.random.permutation(key, N))
    v, ho = apply(x, h)
    vp, hop = apply(x[perm], h[perm])
    np.testing.assert_allclose(vp[0], v[0][perm], atol=1e-10 * float(jnp.abs(v).max()))
    np.testing.assert_allclose(hop[0], ho[0][perm], atol=1e-10 * float(jnp.abs(ho).max()))


def test_padding_is_inert_and_velocity_centred(x64):
    model = EGNNDynamics(n_features=F, hidden=16, n_layers=2)
    k = jax.random.split(jax.random.PRNGKey(1), 4)
    n_pad = 4
    x = jax.random.normal(k[0], (2, N + n_pad, 3), jnp.float64)
    h = jax.random.normal(k[1], (2, N + n_pad, F), jnp.float64)
    mask = jnp.arange(N + n_pad)[None] < jnp.array([[N], [N - 2]])
    inp = {"positions": x, "features": h, "t": jnp.array([0.1, 0.9]), "node_mask": mask}
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), jax.jit(model.init)(k[2], inp))
    apply = jax.jit(model.apply)
    v, ho = apply(params, inp)
    # Garbage in the padded slots must change nothing.
    garbage = jnp.where(mask[..., None], 0.0, 1e3)
    v2, ho2 = apply(params, dict(inp, positions=x + garbage, features=h - garbage[..., :1]))
    np.testing.assert_allclose(v2, v, atol=1e-12)
    np.testing.assert_allclose(ho2, ho, atol=1e-12)
    assert np.all(np.asarray(v)[~np.asarray(mask)] == 0) and np.all(np.asarray(ho)[~np.asarray(mask)] == 0)
    np.testing.assert_allclose(v.sum(1), 0.0, atol=1e-12)
    # Molecules in a batch do not see each other.
    v1, _ = apply(params, {k_: a[:1] for k_, a in inp.items()})
    np.testing.assert_allclose(v1[0], v[0], atol=1e-12)
