"""EGNN dynamics: E(3) equivariance (rotations, reflections, translations), permutation
equivariance, and exact masking of padded atoms (float64, tolerance 1e-10)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilab.models.egnn_dynamics import EGNNDynamics
from equilab.testing import assert_point_cloud_equivariant

N, F = 7, 6


@pytest.fixture(params=[(0, "lecun"), (8, "torch")], ids=["edm_edges_flax_init", "rbf_edges_torch_init"])
def setup(x64, request):
    rbf, init = request.param
    model = EGNNDynamics(n_features=F, hidden=16, n_layers=2, context_dim=1, distance_rbf=rbf, weight_init=init)
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


def test_distance_rbf_is_used_and_validated():
    from equilab.errors import ConfigError
    from equilab.models.egnn_dynamics import build

    class _D:
        stats = {}

    model = build({"hidden": 8, "n_layers": 1, "distance_rbf": 4, "rbf_max": 3.0}, _D())
    assert (model.distance_rbf, model.rbf_max) == (4, 3.0)
    inp = {"positions": jnp.ones((1, 3, 3)) * jnp.arange(3.0)[None, :, None], "features": jnp.ones((1, 3, F)),
           "t": jnp.array([0.5]), "node_mask": jnp.ones((1, 3), bool)}
    params = model.init(jax.random.PRNGKey(0), inp)
    assert params["params"]["edge_0_rbf"]["kernel"].shape == (4, 8)
    rbf = model._rbf(jnp.array([[0.0], [1.0], [9.0]]))
    np.testing.assert_allclose(rbf[:, 0], np.exp(-np.array([0.0, 1.0, 3.0]) ** 2), rtol=1e-5)  # centre 0, width 1
    for bad in ({"distance_rbf": 1}, {"distance_rbf": -2}, {"distance_rbf": 8, "rbf_max": 0.0}, {"distance_rbf": "x"}):
        with pytest.raises(ConfigError, match="model.distance_rbf"):
            build({"hidden": 8, "n_layers": 1, **bad}, _D())


def test_torch_weight_init_follows_pytorch_linear():
    """weight_init=torch: every kernel and bias uniform in ±1/√fan_in (PyTorch's nn.Linear, as EDM
    trains), with the full fan-in 2H+2 for the split first edge layer; the coordinate head's last
    layer keeps its tiny init.  Flax's default init gives far larger outputs on the same input."""
    from equilab.errors import ConfigError
    from equilab.models.egnn_dynamics import build

    H = 32
    inp = {"positions": jax.random.normal(jax.random.PRNGKey(3), (2, 20, 3)) * 3.0,
           "features": jax.random.normal(jax.random.PRNGKey(4), (2, 20, F)), "t": jnp.array([0.2, 0.9]),
           "node_mask": jnp.ones((2, 20), bool)}
    out = {}
    for init in ("lecun", "torch"):
        model = EGNNDynamics(n_features=F, hidden=H, n_layers=4, weight_init=init)
        params = model.init(jax.random.PRNGKey(0), inp)["params"]
        if init == "torch":
            fans = {"embed": F + 1, "edge_0_i": 2 * H + 2, "edge_0_j": 2 * H + 2, "edge_0_d": 2 * H + 2,
                    "edge_0_1": H, "att_0": H, "node_0_0": 2 * H, "node_0_1": H, "coord_0_0": H, "out": H}
            for name, fan in fans.items():
                for leaf in params[name].values():
                    a = np.abs(np.asarray(leaf))
                    assert a.max() <= fan ** -0.5 + 1e-7 and a.max() > 0.5 * fan ** -0.5, name
            assert np.abs(np.asarray(params["coord_0_1"]["kernel"])).max() < 1e-3
        v, ho = model.apply({"params": params}, inp)
        out[init] = float(jnp.abs(ho).max())
    # 20 atoms, 4 layers: the sums over neighbours compound through Flax's larger init (~1e3 here)
    assert out["torch"] < 20.0 and out["lecun"] > 100.0, out
    with pytest.raises(ConfigError, match="model.weight_init"):
        build({"hidden": 8, "n_layers": 1, "weight_init": "xavier"}, type("D", (), {"stats": {}})())
