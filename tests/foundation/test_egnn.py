import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilab.data.nbody import NBodyData
from equilab.models.egnn import EGNNVel
from equilab.testing import assert_point_cloud_equivariant


def _batch(tiny_nbody_dir, layout, dtype):
    d = NBodyData(tiny_nbody_dir, batch_size=4, max_train=60, max_valid=20, max_test=20, layout=layout)
    b = d.example_batch()
    return {k: (v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v) for k, v in b.items()}


@pytest.mark.parametrize("precision,atol", [("float32", 2e-5), ("float64", 1e-11)])
def test_egnn_e3_and_permutation_equivariant(tiny_nbody_dir, precision, atol, request):
    if precision == "float64":
        request.getfixturevalue("x64")
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    b = _batch(tiny_nbody_dir, "dense", np.float64 if precision == "float64" else np.float32)
    model = EGNNVel(hidden=16, layers=3)
    params = jax.tree_util.tree_map(lambda x: x.astype(dtype), model.init(jax.random.PRNGKey(0), b))
    # make the coordinate head non-negligible so the test has teeth
    params = jax.tree_util.tree_map(lambda x: x * 1.0, params)

    def fn(pos, vel):  # one system (5, 3); batch axis added
        out = model.apply(params, dict(b, positions=pos[None], velocities=vel[None],
                                       charges=b["charges"][:1], node_mask=b["node_mask"][:1]))
        return (out["positions"][0],)

    x0, v0 = jnp.asarray(b["positions"][0]), jnp.asarray(b["velocities"][0])
    err = assert_point_cloud_equivariant(
        lambda x, v: fn(x, v) if True else None, jax.random.PRNGKey(1), x0, vector_inputs=(v0,),
        position_outputs=(0,), reflections=True, translations=True, atol=atol)
    assert err < atol
    # permutation: charges must be permuted along with the particles
    perm = np.array([3, 0, 4, 1, 2])
    out = model.apply(params, dict(b, positions=b["positions"][:, perm], velocities=b["velocities"][:, perm],
                                   charges=b["charges"][:, perm]))["positions"]
    ref = model.apply(params, b)["positions"][:, perm]
    np.testing.assert_allclose(out, ref, atol=atol * 10, rtol=0)


def test_egnn_is_not_trivially_equivariant(tiny_nbody_dir):
    """Guard: the equivariance check must fail for a non-equivariant map."""
    b = _batch(tiny_nbody_dir, "dense", np.float32)
    with pytest.raises(AssertionError):
        assert_point_cloud_equivariant(lambda x, v: (x + jnp.array([[1.0, 0.0, 0.0]]) * x[:, :1] ** 2,),
                                       jax.random.PRNGKey(0), jnp.asarray(b["positions"][0]),
                                       vector_inputs=(jnp.asarray(b["velocities"][0]),), position_outputs=(0,))


def test_dense_and_graph_models_agree(tiny_nbody_dir):
    bd = _batch(tiny_nbody_dir, "dense", np.float32)
    bg = _batch(tiny_nbody_dir, "graph", np.float32)
    model = EGNNVel(hidden=16, layers=2)
    params = model.init(jax.random.PRNGKey(0), bd)
    od = model.apply(params, bd)["positions"].reshape(-1, 3)
    og = model.apply(params, bg)["positions"][: od.shape[0]]
    np.testing.assert_allclose(od, og, atol=1e-5)
