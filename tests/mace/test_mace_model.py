"""MACE: E(3) invariance of the energy, equivariance of the forces, permutations, padding, and
forces = −∂E/∂x, for every ``model.tp`` (float64, tolerances ~1e-10)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilab.data.atoms import Budget, Frame, neighbour_list, pack_frames
from equilab.models.mace import TP_CHOICES, MACE

N_ATOMS = 6
CUTOFF = 3.0


# Compiling the model with its force gradient costs about a minute of CPU per product, so only
# ``cg`` runs in the fast suite; the Gaunt products run with ``-m slow``.
TPS = [pytest.param(tp, marks=[] if tp == "cg" else [pytest.mark.slow]) for tp in TP_CHOICES]


def _orthogonal(key, reflection):
    """A random O(3) element orthonormalised in float64 (polar factor of e3nn's float32 matrix)."""
    u, _, vt = np.linalg.svd(np.asarray(jax.random.normal(key, (3, 3)), np.float64))
    R = u @ vt
    R = R * np.sign(np.linalg.det(R))  # proper rotation
    return -R if reflection else R


def _molecule(seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(N_ATOMS, 3)) * 0.9
    Z = np.array([1, 6, 8, 1, 6, 1], np.int32)
    return Frame(Z, pos, 0.0, np.zeros_like(pos))


SPECIES_INDEX = np.full(9, -1, np.int32)
SPECIES_INDEX[[1, 6, 8]] = [0, 1, 2]
E0 = np.array([-1.0, -2.0, -3.0])


def _batch(frame, budget=Budget(N_ATOMS + 1, N_ATOMS * (N_ATOMS - 1) + 3, 2)):
    return pack_frames([frame], [neighbour_list(frame.positions, CUTOFF)], budget, SPECIES_INDEX, E0, 0.5)


@functools.cache
def _model_and_fn(tp):
    # Tiny but complete: two layers, edge SH to l=2, hidden L=1, correlation 3.
    model = MACE(num_species=3, e0=tuple(E0), shift=0.5, scale=1.3, num_channels=3, max_ell=2, hidden_lmax=1,
                 num_interactions=2, correlation=3, num_bessel=4, cutoff=CUTOFF, radial_mlp=(8,), readout_mlp=4,
                 avg_num_neighbors=4.0, tp=tp)
    # Random values for every parameter (shapes from an abstract init: no init compile, and no
    # path is trivially zero as it can be at initialisation, e.g. the Gaunt weights v = 1).
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(1), _batch(_molecule()))
    leaves, tree = jax.tree.flatten(shapes)
    rng = np.random.default_rng(2)
    params = jax.tree.unflatten(tree, [jnp.asarray(0.7 * rng.normal(size=l.shape), l.dtype) for l in leaves])
    return model, params, jax.jit(model.apply)


@pytest.mark.parametrize("tp", TPS)
def test_energy_invariant_forces_equivariant(tp, x64):
    model, params, apply = _model_and_fn(tp)
    frame = _molecule()
    base = _batch(frame)

    def fn(pos):
        b = dict(base, positions=jnp.concatenate([pos, jnp.zeros((1, 3))]))
        out = apply(params, b)
        return out["energy"][:1], out["forces"][:N_ATOMS]

    pos = jnp.asarray(frame.positions)
    e, f = fn(pos)
    assert np.all(np.isfinite(np.asarray(f))) and np.abs(np.asarray(f)).max() > 1e-3  # non-trivial forces
    # Own float64 group elements: e3nn.rand_matrix is float32 (orthogonal only to ~1e-8), which
    # would cap what equilab.testing.assert_point_cloud_equivariant can check in float64.
    for trial, refl in [(0, False), (1, True)]:
        k1, k2 = jax.random.split(jax.random.PRNGKey(10 + trial))
        R = _orthogonal(k1, refl)
        shift = np.asarray(jax.random.normal(k2, (3,), jnp.float64))
        e_r, f_r = fn(pos @ R.T + shift)
        assert abs(float(e_r[0] - e[0])) <= 1e-10 * abs(float(e[0]))
        np.testing.assert_allclose(np.asarray(f_r), np.asarray(f) @ R.T, rtol=0, atol=1e-10 * float(jnp.abs(f).max()))

    # Permutation of the atoms (species, positions and the neighbour list follow).
    perm = np.random.default_rng(4).permutation(N_ATOMS)
    fp = Frame(frame.Z[perm], frame.positions[perm], 0.0, frame.forces[perm])
    out_p = apply(params, _batch(fp))
    out = apply(params, base)
    np.testing.assert_allclose(out_p["energy"][0], out["energy"][0], rtol=1e-12)
    np.testing.assert_allclose(out_p["forces"][:N_ATOMS], out["forces"][:N_ATOMS][perm], atol=1e-10)

    # Padding contributes exactly zero: moving the padding node changes nothing, its force is 0,
    # and the padded edges (there are some: not every pair is within the cutoff) are inert.
    assert (~base["edge_mask"]).sum() > 0
    moved = dict(base, positions=base["positions"].copy())
    moved["positions"][-1] = [0.3, -0.2, 0.1]
    out_m = apply(params, moved)
    np.testing.assert_allclose(out_m["energy"], out["energy"], rtol=1e-14)
    np.testing.assert_allclose(out_m["forces"][:N_ATOMS], out["forces"][:N_ATOMS], rtol=1e-14)
    assert float(jnp.abs(out_m["forces"][N_ATOMS:]).max()) == 0.0
    assert float(jnp.abs(out["energy"][1:]).max()) == 0.0


@pytest.mark.parametrize("tp", TPS)
def test_forces_are_minus_energy_gradient(tp, x64):
    """Central finite difference of E against F, away from the cutoff (edges unchanged)."""
    model, params, apply = _model_and_fn(tp)
    frame = _molecule()
    out = apply(params, _batch(frame))
    h = 1e-5
    for atom, xyz in [(0, 0), (3, 2)]:
        plus, minus = frame.positions.copy(), frame.positions.copy()
        plus[atom, xyz] += h
        minus[atom, xyz] -= h
        ep = apply(params, _batch(Frame(frame.Z, plus, 0.0, frame.forces)))["energy"][0]
        em = apply(params, _batch(Frame(frame.Z, minus, 0.0, frame.forces)))["energy"][0]
        fd = -(ep - em) / (2 * h)
        np.testing.assert_allclose(out["forces"][atom, xyz], fd, rtol=1e-6, atol=1e-8)


def test_energy_residual_and_offsets(x64):
    model, params, apply = _model_and_fn("cg")
    b = _batch(_molecule())
    out = apply(params, b)
    ref = (E0[SPECIES_INDEX[_molecule().Z]] + 0.5).sum()
    np.testing.assert_allclose(out["energy"][0] - out["energy_residual"][0], ref, rtol=1e-13)
    np.testing.assert_allclose(out["node_energy"][:N_ATOMS].sum(), out["energy"][0], rtol=1e-13)


def test_learned_species_shift_moves_energy_not_forces(x64):
    """model.learn_species_shift (the CPU presets): a per-species energy added after the force
    gradient; E moves by Σ_i b[z_i] exactly and the forces do not move at all."""
    frame = _molecule()
    batch = _batch(frame)
    model = MACE(num_species=3, e0=tuple(E0), shift=0.5, scale=1.3, num_channels=3, max_ell=2, hidden_lmax=1,
                 num_interactions=2, correlation=2, num_bessel=4, cutoff=CUTOFF, radial_mlp=(8,), readout_mlp=4,
                 avg_num_neighbors=4.0, tp="cg", learn_species_shift=True)
    params = model.init(jax.random.PRNGKey(0), batch, compute_forces=False)
    assert np.all(np.asarray(params["params"]["species_shift"]) == 0.0)
    apply = jax.jit(model.apply)
    out0 = apply(params, batch)
    b = jnp.asarray([0.3, -1.1, 2.5])
    moved = jax.tree_util.tree_map(lambda x: x, params)
    moved["params"]["species_shift"] = b
    out1 = apply(moved, batch)
    expected = float(np.sum(np.asarray(b)[SPECIES_INDEX[frame.Z]]))
    assert float(out1["energy"][0] - out0["energy"][0]) == pytest.approx(expected, abs=1e-10)
    np.testing.assert_array_equal(np.asarray(out1["forces"]), np.asarray(out0["forces"]))
    assert np.abs(np.asarray(out0["forces"][:N_ATOMS])).max() > 1e-6


def test_symmetric_contraction_matches_the_unfolded_cg_basis(x64):
    """``symmetric_contraction`` (monomials over sorted index tuples, picked by one-hot matmuls, and
    the folded basis) equals the plain d^ν contraction with e3nn's symmetric CG basis."""
    import e3nn_jax as e3nn

    from equilab.models.mace import _symmetric_basis, symmetric_contraction

    irreps_in, irreps_out, S, C, N = "0e+1o+2e", "0e+1o", 3, 2, 5
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(N, C, e3nn.Irreps(irreps_in).dim)))
    species = jnp.asarray([0, 2, 1, 2, 0])
    weights = {}
    for nu in (1, 2, 3):
        for ir, mul, _ in _symmetric_basis(irreps_in, nu, irreps_out)[1]:
            weights[f"w{nu}_{ir}"] = jnp.asarray(rng.normal(size=(S, mul, C)))
    got = symmetric_contraction(x, species, weights, irreps_in=irreps_in, irreps_out=irreps_out, correlation=3).array
    ref = np.zeros((N, C, e3nn.Irreps(irreps_out).dim))
    outs = e3nn.Irreps(irreps_out)
    for nu in (1, 2, 3):
        U = e3nn.reduced_symmetric_tensor_product_basis(e3nn.Irreps(irreps_in), nu, keep_ir=outs)
        for (mul, ir), u in zip(U.irreps, U.chunks):
            if u is None or mul == 0:
                continue
            t = np.einsum("ncd,d...->nc...", np.asarray(x), np.asarray(u))  # u: (d,)*ν + (K, 2l+1)
            for _ in range(nu - 1):  # contract the remaining input indices one at a time
                t = np.einsum("ncd,ncd...->nc...", np.asarray(x), t)
            y = np.einsum("nckm,nkc->ncm", t, np.asarray(weights[f"w{nu}_{ir}"])[np.asarray(species)])
            sl = outs.slices()[[r for _, r in outs].index(ir)]
            ref[:, :, sl] += y
    # the function returns e3nn's (N, C·irreps_out) layout: each irrep block as (C, 2l+1)
    want = e3nn.from_chunks(outs, [jnp.asarray(ref[:, :, sl])[:, :, None, :] for sl in outs.slices()], (N, C),
                            jnp.float64).axis_to_mul().array
    assert float(np.abs(want).max()) > 1.0
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("h_irreps", ["0e", "0e+1o+2e"])
def test_edge_messages_equal_the_e3nn_product_scatter(x64, h_irreps):
    """``edge_messages`` (channels-last per-edge matmuls) equals e3nn's CG tensor product
    h_j ⊗ Y_ij, times one radial weight per path and channel, summed on the receivers: the
    same irreps, layout and values (so the radial MLP and everything after it are unchanged)."""
    import e3nn_jax as e3nn

    from equilab.models.mace import _edge_plan, edge_messages

    C, N, E, lmax = 3, 5, 11, 3
    rng = np.random.default_rng(0)
    h = e3nn.IrrepsArray(C * e3nn.Irreps(h_irreps), jnp.asarray(rng.normal(size=(N, C * e3nn.Irreps(h_irreps).dim))))
    Y = e3nn.spherical_harmonics(list(range(lmax + 1)), e3nn.IrrepsArray("1o", jnp.asarray(rng.normal(size=(E, 3)))),
                                 normalize=True,
                                 normalization="component")
    senders, receivers = jnp.asarray(rng.integers(0, N, E)), jnp.asarray(rng.integers(0, N, E))
    filt = (C * Y.irreps).regroup()
    ref_msg = e3nn.tensor_product(h[senders], Y, filter_ir_out=filt)  # the model's former edge product
    mix = jnp.asarray(rng.normal(size=(E, ref_msg.irreps.num_irreps)))
    ref = e3nn.scatter_sum(ref_msg * mix, dst=receivers, output_size=N)
    plan = _edge_plan(str(h.mul_to_axis(C).irreps), str(Y.irreps), str(filt), C)
    got = jax.jit(lambda h, y, m: edge_messages(plan, h, y, m, senders, receivers, N))(h, Y.array, mix)
    assert got.irreps == ref.irreps
    assert float(jnp.abs(ref.array).max()) > 1.0
    np.testing.assert_allclose(np.asarray(got.array), np.asarray(ref.array), rtol=1e-12, atol=1e-12)


def test_species_linear_equals_e3nn_linear_with_weights(x64):
    """``SpeciesLinear`` has e3nn.flax.Linear's parameters (same tree and initial values) and
    computes the same map from (one-hot, x)."""
    import e3nn_jax as e3nn

    from equilab.models.mace import SpeciesLinear

    rng = np.random.default_rng(1)
    x = e3nn.IrrepsArray("4x0e+4x1o+4x2e", jnp.asarray(rng.normal(size=(7, 36))))
    onehot = jax.nn.one_hot(jnp.asarray([0, 2, 1, 1, 0, 2, 2]), 3, dtype=jnp.float64)
    out = "4x0e+4x1o+4x2e+4x3o"  # 3o has no input path: zeros, as with force_irreps_out
    ref_mod = e3nn.flax.Linear(out, force_irreps_out=True)
    new_mod = SpeciesLinear(out)
    p_ref = ref_mod.init(jax.random.PRNGKey(3), onehot, x)
    p_new = new_mod.init(jax.random.PRNGKey(3), onehot, x)
    assert jax.tree.structure(p_ref) == jax.tree.structure(p_new)
    for a, b in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_new)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    p = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), p_ref)
    want, got = ref_mod.apply(p, onehot, x), new_mod.apply(p, onehot, x)
    assert got.irreps == want.irreps
    np.testing.assert_allclose(np.asarray(got.array), np.asarray(want.array), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("tp", ["gaunt_s2grid", "gaunt_fourier"])
def test_gaunt_layouts_give_the_same_model(tp, x64):
    """``model.gaunt_layout=dense`` (MACE's default) and ``folded`` compute the same energies and
    forces with the same parameters."""
    model, params, fn = _model_and_fn(tp)
    folded = model.clone(gaunt_layout="folded")
    b = _batch(_molecule(3))
    a, f = fn(params, b), jax.jit(folded.apply)(params, b)
    np.testing.assert_allclose(np.asarray(a["energy"]), np.asarray(f["energy"]), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(a["forces"]), np.asarray(f["forces"]), rtol=1e-9, atol=1e-10)
