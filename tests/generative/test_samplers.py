"""Schedules, losses and samplers of EDM diffusion and flow matching (tiny model, short chains)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilab.generative import schedules
from equilab.models.egnn_dynamics import EGNNDynamics
from equilab.registry import MODELS, TASKS
import equilab.tasks.generative  # noqa: F401  (registers edm, flow_matching)
import equilab.models.egnn_dynamics  # noqa: F401


def test_polynomial_2_schedule():
    g = schedules.gamma_table("polynomial_2", 1000, 1e-5)
    assert g.shape == (1001,) and np.all(np.diff(g) > 0)
    s = 1e-5
    np.testing.assert_allclose(g[0], -np.log((1 - s) / s), rtol=1e-12)  # α²(0) = 1 − s exactly
    a2 = schedules.polynomial_alphas2(1000, 2.0, s)
    np.testing.assert_allclose(a2[500], (1 - 2 * s) * (1 - 0.5**2) ** 2 + s, rtol=1e-12)
    with pytest.raises(ValueError, match="polynomial"):
        schedules.gamma_table("cosine", 10)


class _Data:
    stats = {"n_nodes_hist": [0] * 5 + [1, 2, 3] + [0] * 22, "atom_types": ["H", "C", "N", "O", "F"],
             "property_mean": [0.0] * 6, "property_mad": [1.0] * 6}


def _batch(b=3, n=29, key=0):
    rng = np.random.default_rng(key)
    counts = np.array([5, 7, 6])[:b]
    mask = np.arange(n)[None] < counts[:, None]
    x = rng.normal(size=(b, n, 3)) * mask[..., None]
    types = rng.integers(0, 5, size=(b, n))
    oh = np.eye(5)[types] * mask[..., None]
    z = np.array([1, 6, 7, 8, 9])[types] * mask
    return {"positions": x.astype(np.float32), "node_mask": mask, "one_hot": oh.astype(np.float32),
            "charges": z.astype(np.float32), "n_atoms": counts.astype(np.int32),
            "properties": rng.normal(size=(b, 6)).astype(np.float32), "graph_mask": np.array([True] * (b - 1) + [False])}


def test_eval_sums_count_real_molecules():
    data = _Data()
    task = TASKS.get("flow_matching")({}, data)
    model = MODELS.get("egnn_dynamics")({"hidden": 8, "n_layers": 1}, data)
    batch = _batch()
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
    sums = jax.jit(lambda p, b: task.eval_sums(model, p, b))(params, batch)
    assert float(sums["loss"][1]) == 2.0 and np.isfinite(float(sums["loss"][0]))
    assert task.finalize({"loss": (3.0, 2.0)}) == {"loss": 1.5}


@pytest.mark.parametrize("task_cfg", [
    ("edm", {"timesteps": 20}),
    ("flow_matching", {"steps": 4, "solver": "rk4"}),
    ("flow_matching", {"steps": 3, "solver": "euler", "condition_on": "alpha"}),
    ("flow_matching", {"steps": 3, "solver": "midpoint", "param": "endpoint", "align": "rotation"}),
])
def test_loss_and_centred_samples(task_cfg):
    name, cfg = task_cfg
    data = _Data()
    task = TASKS.get(name)(dict(cfg), data)
    ctx = 1 if cfg.get("condition_on") else 0
    model = MODELS.get("egnn_dynamics")({"hidden": 16, "n_layers": 1, "context_dim": ctx}, data)
    batch = _batch()
    init_in = dict(batch, context=np.zeros((3, 1), np.float32)) if ctx else batch
    params = jax.jit(model.init)(jax.random.PRNGKey(0), init_in)
    # One compiled function serves all loss checks (compile time dominates on CPU).
    vg = jax.jit(jax.value_and_grad(lambda p, b: task.loss(model, p, b, jax.random.PRNGKey(1))[0]))
    loss, grads = vg(params, batch)
    assert np.isfinite(loss) and loss > 0
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    # A padding molecule (graph_mask False) must not enter the loss.
    b2 = dict(batch, positions=batch["positions"].copy())
    b2["positions"][2] += 50.0
    assert float(vg(params, b2)[0]) == pytest.approx(float(loss), rel=1e-6)

    nm = task.sample_node_mask(jax.random.PRNGKey(2), 4)
    assert set(np.asarray(nm).sum(1).tolist()) <= {5, 6, 7}
    context = jnp.ones((4, 1)) if ctx else None
    x, types = jax.jit(lambda p, k, m: task.sample(model, p, k, m, context=context))(params, jax.random.PRNGKey(3), nm)
    x, types, nm = np.asarray(x), np.asarray(types), np.asarray(nm)
    assert x.shape == (4, 29, 3) and np.all(np.isfinite(x))
    scale = np.abs(x).max()
    np.testing.assert_allclose(x.sum(1) / scale, 0.0, atol=1e-5)  # centred in float32
    assert np.all(x[~nm] == 0) and np.all(types[~nm] == -1) and np.all((types[nm] >= 0) & (types[nm] < 5))


def test_sample_cli_pieces(tmp_path):
    """Batched sampling to exactly n molecules, files written, throughput reported."""
    from equilab.generative.sample_cli import draw_grid, sample_molecules
    from equilab.metrics import molecules as M

    data = _Data()
    task = TASKS.get("flow_matching")({"steps": 2, "solver": "euler"}, data)
    model = MODELS.get("egnn_dynamics")({"hidden": 16, "n_layers": 1}, data)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), _batch())
    mols, timing = sample_molecules(task, model, params, n=5, batch=3, seed=0, opts={})
    assert len(mols) == 5 and all(len(z) in (5, 6, 7) and x.shape == (len(z), 3) for x, z in mols)
    assert timing["molecules_per_s"] > 0 and timing["sampling_s"] > 0 and timing["compile_s"] > 0
    M.write_xyz(str(tmp_path / "m.xyz"), mols)
    assert len(M.read_molecules(str(tmp_path / "m.xyz"))) == 5
    n_drawn = draw_grid([(np.zeros((1, 3)), np.array([6]))] + mols, str(tmp_path / "grid.png"))
    assert n_drawn >= 1 and (tmp_path / "grid.png").stat().st_size > 0  # a lone C is valid (CH4)


def test_rotate_onto_recovers_rotations_but_not_reflections():
    from scipy.spatial.transform import Rotation

    from equilab.generative.common import rotate_onto, zero_com_normal

    mask = jnp.arange(29)[None] < jnp.array([[12], [29], [4]])
    ref = zero_com_normal(jax.random.PRNGKey(0), mask)
    rot = jnp.asarray(Rotation.random(3, random_state=1).as_matrix(), jnp.float32)
    x = jnp.einsum("bni,bij->bnj", ref, rot)
    np.testing.assert_allclose(rotate_onto(x, ref, mask), ref, atol=1e-5)
    mirror = x * jnp.array([1.0, 1.0, -1.0])
    y = rotate_onto(mirror, ref, mask)
    assert float(jnp.abs(y - ref).max()) > 0.5  # a mirror image is not a rotation: not undone
    np.testing.assert_allclose(jnp.linalg.norm(y, axis=-1), jnp.linalg.norm(mirror, axis=-1), atol=1e-5)
    gram = lambda a: jnp.einsum("bni,bmi->bnm", a, a)  # noqa: E731
    np.testing.assert_allclose(gram(y), gram(mirror), atol=1e-4)  # rigid: all distances kept
    assert float(jnp.abs(y[~mask]).max()) == 0.0


def _losses_per_coupling(model, params, data, batch, transformed, aligns):
    """Per-molecule flow-matching loss (one fixed key) of a batch and of a transformed copy of it,
    for each ``task.align``: {align: (loss(batch), loss(transformed))}."""
    key = jax.random.PRNGKey(5)
    losses = {}
    for align in aligns:
        task = TASKS.get("flow_matching")({"align": align}, data)
        f = jax.jit(lambda p, b: task._loss_per_molecule(model, p, b, key))
        losses[align] = (np.asarray(f(params, batch)), np.asarray(f(params, transformed)))
    return losses


def test_rotation_aligned_flow_loss_ignores_the_data_orientation():
    """With task.align=rotation the data are rotated onto the prior draw before the path is
    built, so the loss (same key) is the same for any rotation of the data; without it, not."""
    from scipy.spatial.transform import Rotation

    from equilab.errors import ConfigError

    data = _Data()
    model = MODELS.get("egnn_dynamics")({"hidden": 16, "n_layers": 2}, data)
    batch = _batch()
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
    rot = Rotation.random(random_state=3).as_matrix().astype(np.float32)
    turned = dict(batch, positions=batch["positions"] @ rot)
    losses = _losses_per_coupling(model, params, data, batch, turned, ("rotation", "none"))
    np.testing.assert_allclose(*losses["rotation"], rtol=2e-4)
    assert np.abs(losses["none"][0] - losses["none"][1]).max() > 1e-2 * np.abs(losses["none"][0]).max()
    with pytest.raises(ConfigError, match="task.align"):
        TASKS.get("flow_matching")({"align": "permutation"}, data)


def test_ot_alignment_matches_atoms_and_ignores_the_atom_order():
    """task.align=ot: the prior nodes are reassigned to the atoms (Hungarian) and the data rotated
    onto them.  (1) The assignment is the exact optimum on small cases (brute force); (2) the loss
    for a given key is the same whatever order the data list their atoms in, where the rotation-only
    coupling depends on it; (3) the coupled pairs are much closer than with rotation alone."""
    import itertools

    from equilab.generative import flow
    from equilab.generative.common import gather_nodes, permute_onto, rotate_onto, zero_com_normal

    # (1) brute force over all permutations of 5 real atoms (padding must stay in place)
    mask = jnp.arange(8)[None] < jnp.array([[5], [8]])
    x0 = zero_com_normal(jax.random.PRNGKey(0), mask)
    x1 = zero_com_normal(jax.random.PRNGKey(1), mask)
    perm = np.asarray(jax.jit(permute_onto)(x0, x1, mask))
    assert sorted(perm[0, :5]) == list(range(5)) and perm[0, 5:].tolist() == [5, 6, 7]
    assert sorted(perm[1]) == list(range(8))
    best = min(sum(float(((x0[0, p[a]] - x1[0, a]) ** 2).sum()) for a in range(5))
               for p in itertools.permutations(range(5)))
    got = float(((gather_nodes(x0, jnp.asarray(perm)) - x1)[0] ** 2).sum())
    assert got == pytest.approx(best, rel=1e-5)

    # (2) invariance to the data's atom order (positions, types and charges permuted together)
    data = _Data()
    model = MODELS.get("egnn_dynamics")({"hidden": 16, "n_layers": 2}, data)
    batch = _batch()
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
    order = np.arange(29)
    order[:5] = [3, 0, 4, 1, 2]  # molecule sizes are 5, 7, 6: shuffle the first 5 atoms of each
    shuffled = {k: (v[:, order] if k in ("positions", "one_hot", "charges") else v) for k, v in batch.items()}
    losses = _losses_per_coupling(model, params, data, batch, shuffled, ("ot", "rotation"))
    np.testing.assert_allclose(*losses["ot"], rtol=2e-4)
    assert np.abs(losses["rotation"][0] - losses["rotation"][1]).max() > 1e-2 * np.abs(losses["rotation"][0]).max()

    # (3) transport cost: OT pairs vs rotation-only pairs, 64 random 'molecules' of 9..29 atoms
    mask = jnp.arange(29)[None] < jnp.asarray(np.random.default_rng(0).integers(9, 30, 64))[:, None]
    x0 = zero_com_normal(jax.random.PRNGKey(2), mask)
    x1 = zero_com_normal(jax.random.PRNGKey(3), mask)
    rot_cost = float(((rotate_onto(x1, x0, mask) - x0) ** 2).sum())
    y0, y1 = x0, x1
    for _ in range(flow.OT_ROUNDS):
        y0 = gather_nodes(y0, permute_onto(y0, y1, mask))
        y1 = rotate_onto(y1, y0, mask)
    assert float(((y1 - y0) ** 2).sum()) < 0.6 * rot_cost


@pytest.mark.parametrize("param,solver", [("endpoint", "euler"), ("endpoint", "midpoint"), ("velocity", "euler"),
                                          ("endpoint_x", "midpoint"), ("velocity", "sde"), ("endpoint", "sde")])
def test_flow_parameterisations_are_exact_for_a_point_mass(param, solver):
    """Data = one molecule (x₁, h₁).  Its exact field is v = (x₁ − x_t)/(1 − t), i.e. the
    endpoint x̂₁ = x₁: an oracle network giving that has zero loss in either parameterisation,
    and the sampler lands on x₁ from any prior draw."""
    from equilab.generative import flow
    from equilab.models.egnn_dynamics import remove_mean

    mask = jnp.arange(9)[None] < jnp.array([[7], [5]])
    m = mask[..., None].astype(jnp.float32)
    x1 = remove_mean(jax.random.normal(jax.random.PRNGKey(0), (2, 9, 3)), mask)
    h1 = jax.nn.one_hot(jnp.array([[0, 1, 2, 3, 4, 0, 1, 0, 0]] * 2), 6) * 0.25 * m

    def oracle(xt, ht, t):
        tt = t[:, None, None]
        vh = h1 if param == "endpoint" else (h1 - ht) / (1 - tt) * m
        if param == "velocity":
            return (x1 - xt) / (1 - tt) * m, vh
        return (x1 - xt) * m, vh

    loss = flow.loss_per_molecule(oracle, x1, h1, mask, jax.random.PRNGKey(1), t_eps=1e-3, param=param)
    np.testing.assert_allclose(loss, 0.0, atol=1e-9)
    x, h = flow.sample(oracle, jax.random.PRNGKey(2), mask, 6, steps=4, solver=solver, param=param)
    np.testing.assert_allclose(x, x1, atol=1e-5)
    np.testing.assert_allclose(h, h1, atol=1e-5)
    # Off the point mass the oracle is wrong, and the loss says so.
    assert float(flow.loss_per_molecule(oracle, x1 + 0.3 * m, h1, mask, jax.random.PRNGKey(1),
                                        param=param).min()) > 1e-3


def test_endpoint_parameterisation_refuses_solvers_that_evaluate_t_1():
    from equilab.errors import ConfigError
    from equilab.generative import flow

    data = _Data()
    with pytest.raises(ConfigError, match="task.solver"):
        TASKS.get("flow_matching")({"param": "endpoint", "solver": "heun"}, data)
    with pytest.raises(ConfigError, match="task.param"):
        TASKS.get("flow_matching")({"param": "x0"}, data)
    mask = jnp.ones((1, 3), bool)
    with pytest.raises(ValueError, match="singular"):
        flow.sample(lambda x, h, t: (x, h), jax.random.PRNGKey(0), mask, 6, solver="rk4", param="endpoint")


def test_training_time_distributions():
    """Uniform and Beta(a, b) training times: range, mean, and that the loss actually sees them."""
    from equilab.errors import ConfigError
    from equilab.generative import flow

    key = jax.random.PRNGKey(0)
    tu = flow.sample_t(key, 20000, jnp.float32, 0.01)
    assert 0.01 - 1e-7 <= float(tu.min()) and float(tu.max()) <= 0.99 + 1e-7
    np.testing.assert_allclose(float(tu.mean()), 0.5, atol=0.01)
    tb = flow.sample_t(key, 20000, jnp.float32, 1e-3, "beta", (2.0, 1.0))
    np.testing.assert_allclose(float(tb.mean()), 2 / 3, atol=0.01)  # Beta(2, 1): density 2t
    np.testing.assert_allclose(float((tb < 0.5).mean()), 0.25, atol=0.01)
    assert 1e-3 - 1e-7 <= float(tb.min()) and float(tb.max()) <= 1 - 1e-3 + 1e-7  # float32 ends

    seen = []
    mask = jnp.ones((64, 4), bool)
    x = jnp.zeros((64, 4, 3))
    h = jnp.zeros((64, 4, 6))

    def probe(xt, ht, t):
        seen.append(t)
        return jnp.zeros_like(xt), jnp.zeros_like(ht)

    flow.loss_per_molecule(probe, x, h, mask, key, t_dist="beta", t_beta=(5.0, 1.0))
    assert float(seen[0].mean()) > 0.75  # Beta(5, 1) mean 5/6; uniform would give ~0.5
    with pytest.raises(ValueError, match="time distribution"):
        flow.sample_t(key, 4, jnp.float32, t_dist="logit")

    data = _Data()
    with pytest.raises(ConfigError, match="task.t_dist"):
        TASKS.get("flow_matching")({"t_dist": "normal"}, data)
    with pytest.raises(ConfigError, match="task.t_beta"):
        TASKS.get("flow_matching")({"t_dist": "beta", "t_beta": [2.0, -1.0]}, data)
    with pytest.raises(ConfigError, match="task.t_beta"):
        TASKS.get("flow_matching")({"t_dist": "beta", "t_beta": "2"}, data)


@pytest.mark.parametrize("name", ["flow_matching", "edm"])
def test_feature_scales_name_the_field(name):
    from equilab.errors import ConfigError

    data = _Data()
    for bad in ([1.0, 0.25], [1.0, 0.0, 0.1], "0.25", [1.0, "a", 0.1]):
        with pytest.raises(ConfigError, match="task.feature_scales"):
            TASKS.get(name)({"feature_scales": bad}, data)
    assert TASKS.get(name)({"feature_scales": [1.0, 1.0, 0.1]}, data).scales == (1.0, 1.0, 0.1)


def test_bond_term_is_the_bond_length_error_near_the_data(x64):
    """The bond term: e_ij equals d(d̂_ij)/ds for x̂₁ = x₁ + s·δv (the first-order bond-length error of the
    predicted endpoint), it counts only pairs inside the cutoff and real atoms, it is invariant under
    rotations and translations of the data, the exact field still has zero loss, and the config
    names the field at fault."""
    from equilab.errors import ConfigError
    from equilab.generative import flow

    rng = np.random.default_rng(0)
    mask = jnp.arange(6)[None] < jnp.array([[6], [4]])
    m = mask[..., None].astype(jnp.float64)
    x1 = jnp.asarray(rng.normal(size=(2, 6, 3)) * 1.2) * m
    dv = jnp.asarray(rng.normal(size=(2, 6, 3))) * m
    cutoff = 2.0
    got = flow.bond_error(dv, x1, mask, cutoff)
    # reference: finite difference of the bond lengths along δv, by explicit loops
    s = 1e-6
    for b in range(2):
        ref = 0.0
        for i in range(int(mask[b].sum())):
            for j in range(i + 1, int(mask[b].sum())):
                d = float(jnp.linalg.norm(x1[b, i] - x1[b, j]))
                if d < cutoff:
                    dp = float(jnp.linalg.norm(x1[b, i] - x1[b, j] + s * (dv[b, i] - dv[b, j])))
                    ref += ((dp - d) / s) ** 2
        np.testing.assert_allclose(float(got[b]), ref, rtol=1e-4)
    assert float(got[0]) > 0
    # padded atoms do not count, however far off their error is
    dv_pad = dv + 100.0 * (1 - m)
    np.testing.assert_allclose(flow.bond_error(dv_pad * m, x1, mask, cutoff), got, rtol=1e-12)
    # invariant under a rotation of data and error together, and under translating the data
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.linalg.det(q))
    np.testing.assert_allclose(flow.bond_error(dv @ q, (x1 + 3.0) @ q, mask, cutoff), got, rtol=1e-9)
    # the exact field of a point mass still has zero loss with the term on
    x1c = x1 - (x1 * m).sum(1, keepdims=True) / m.sum(1, keepdims=True) * m
    h1 = jnp.zeros((2, 6, 6))

    def oracle(xt, ht, t):
        return (x1c - xt) / (1 - t[:, None, None]) * m, (h1 - ht) / (1 - t[:, None, None]) * m

    loss = flow.loss_per_molecule(oracle, x1c, h1, mask, jax.random.PRNGKey(1), t_eps=1e-3, bond_weight=5.0)
    np.testing.assert_allclose(loss, 0.0, atol=1e-9)
    wrong = lambda xt, ht, t: (jnp.zeros_like(xt), jnp.zeros_like(ht))  # noqa: E731
    l0 = flow.loss_per_molecule(wrong, x1c, h1, mask, jax.random.PRNGKey(1))
    l1 = flow.loss_per_molecule(wrong, x1c, h1, mask, jax.random.PRNGKey(1), bond_weight=5.0)
    assert float((l1 - l0).min()) > 0

    data = _Data()
    for cfg in ({"bond_weight": -1.0}, {"bond_weight": 1.0, "bond_cutoff": 0.0}, {"bond_weight": "x"},
                {"bond_weight": 1.0, "param": "endpoint", "solver": "euler"}):
        with pytest.raises(ConfigError, match="task.bond_weight"):
            TASKS.get("flow_matching")(cfg, data)
    task = TASKS.get("flow_matching")({"bond_weight": 2.0, "bond_cutoff": 1.5, "feature_scales": [2.0, 0.25, 0.1]}, data)
    assert (task.bond_weight, task.bond_cutoff, task.bond_power) == (2.0, 3.0, 2.0)
    with pytest.raises(ConfigError, match="task.bond_power"):
        TASKS.get("flow_matching")({"bond_weight": 1.0, "bond_power": -1}, data)
    # the ramp: a higher power weights the term less at t < 1
    l2 = flow.loss_per_molecule(wrong, x1c, h1, mask, jax.random.PRNGKey(1), bond_weight=5.0, bond_power=2.0)
    l10 = flow.loss_per_molecule(wrong, x1c, h1, mask, jax.random.PRNGKey(1), bond_weight=5.0, bond_power=10.0)
    assert float((l2 - l10).min()) > 0 and float((l10 - l0).min()) > 0


def test_sde_sampler_keeps_the_marginals_of_a_gaussian_data_set(x64):
    """Data: a fixed molecule m plus zero-CoM Gaussian noise of scale s (features: a + s_h·ε).
    Its exact velocity field is known in closed form, v = m + c(t)(x − t·m) with
    c = (t·s² − (1 − t))/((1 − t)² + t²s²), so the samplers can be checked against the data
    distribution itself: the SDE sampler (η = 1 and 3) must end with the data's mean and spread,
    and with η = 0 it must be the Euler sampler exactly. A sign error in the score term (−η·x̂₀)
    or a wrong noise scale changes the spread."""
    from equilab.generative import flow
    from equilab.generative.common import zero_com_normal

    b, n, f = 6000, 4, 2
    mask = jnp.ones((b, n), bool)
    m = zero_com_normal(jax.random.PRNGKey(0), mask[:1])[0]
    a = jnp.array([0.5, -1.0])
    s, s_h = 0.3, 0.2

    def exact(mean, scale):
        def v(y, t):
            var = (1 - t) ** 2 + t ** 2 * scale ** 2
            c = (t * scale ** 2 - (1 - t)) / var
            return mean + c[:, None, None] * (y - t[:, None, None] * mean)
        return v

    vx, vh = exact(m, s), exact(a, s_h)
    dyn = lambda x, h, t: (vx(x, t), vh(h, t))  # noqa: E731
    key = jax.random.PRNGKey(1)
    spread_x = s * np.sqrt(1 - 1 / n)  # per coordinate, in the zero-CoM subspace
    for eta in (1.0, 3.0):
        x, h = flow.sample(dyn, key, mask, f, steps=400, solver="sde", noise=eta, dtype=jnp.float64)
        np.testing.assert_allclose(np.asarray(x).mean(0), m, atol=0.02)
        np.testing.assert_allclose(np.asarray(h).mean(0).mean(0), a, atol=0.02)
        np.testing.assert_allclose(np.asarray(x - m).std(0), np.full((n, 3), spread_x), rtol=0.08)
        np.testing.assert_allclose(np.asarray(h).std(0), np.full((n, f), s_h), rtol=0.08)
        np.testing.assert_allclose(np.asarray(x).sum(1), 0.0, atol=1e-10)  # centred
    xe, he = flow.sample(dyn, key, mask[:50], f, steps=30, solver="euler", dtype=jnp.float64)
    x0, h0 = flow.sample(dyn, key, mask[:50], f, steps=30, solver="sde", noise=0.0, dtype=jnp.float64)
    np.testing.assert_allclose(x0, xe, atol=1e-12)
    np.testing.assert_allclose(h0, he, atol=1e-12)


def test_sde_noise_errors_name_the_field():
    from equilab.errors import ConfigError
    from equilab.generative import flow

    with pytest.raises(ConfigError, match="task.sde_noise"):
        TASKS.get("flow_matching")({"solver": "sde", "sde_noise": -1}, _Data())
    with pytest.raises(ValueError, match="noise"):
        flow.sample(lambda x, h, t: (x, h), jax.random.PRNGKey(0), jnp.ones((1, 3), bool), 6, solver="sde",
                    noise="lots")


@pytest.mark.parametrize("solver", ["euler", "heun", "sde"])
def test_samplers_draw_the_prior_from_the_first_half_of_the_key(solver):
    """A seed gives the same prior draw in every solver and in every version: with a zero field
    the ODE samplers return the prior draw from ``split(key)`` (so sample sets of earlier sessions
    stay reproducible), and the SDE's noise comes from a key of its own."""
    from equilab.generative import flow
    from equilab.generative.common import masked_normal, zero_com_normal

    mask = jnp.arange(6)[None] < jnp.array([[6], [4]])
    key = jax.random.PRNGKey(7)
    kx, kh = jax.random.split(key)
    zero = lambda x, h, t: (jnp.zeros_like(x), jnp.zeros_like(h))  # noqa: E731
    x, h = flow.sample(zero, key, mask, 3, steps=5, solver=solver, noise=0.0)
    np.testing.assert_allclose(x, zero_com_normal(kx, mask), atol=1e-6)  # re-centred at the end
    np.testing.assert_array_equal(h, masked_normal(kh, mask, 3))


def test_time_grid_spends_the_steps_near_the_data_and_keeps_the_marginals(x64):
    """``time_power`` p: the grid t_i = 1 − (1 − i/N)^p covers [0, 1] in N increasing steps, p = 1 is
    exactly the uniform grid (so earlier sample sets stay reproducible), p = 2 makes the last
    step 1/N² long; on the Gaussian data set of the SDE test, Heun and the SDE still end on the
    data's mean and spread on the warped grid, and a grid whose step sizes did not match its
    times (uniform Δt with warped t) would not."""
    from equilab.errors import ConfigError
    from equilab.generative import flow
    from equilab.generative.common import zero_com_normal

    t1, d1 = flow.time_grid(8, 1.0, jnp.float64)
    np.testing.assert_array_equal(t1, jnp.arange(8, dtype=jnp.float64) * (1.0 / 8))
    np.testing.assert_array_equal(d1, jnp.full((8,), 1.0 / 8))
    t2, d2 = flow.time_grid(10, 2.0, jnp.float64)
    assert float(t2[0]) == 0.0 and np.all(np.asarray(d2) > 0)
    np.testing.assert_allclose(float(t2[-1] + d2[-1]), 1.0, atol=1e-15)
    np.testing.assert_allclose(np.asarray(t2[1:]), np.asarray(t2[:-1] + d2[:-1]), atol=1e-15)
    np.testing.assert_allclose(float(d2[-1]), 1 / 100, rtol=1e-12)
    assert float(d2[0]) > float(d1[0])  # coarser at the prior end, finer at the data end

    b, n, f = 6000, 4, 2
    mask = jnp.ones((b, n), bool)
    m = zero_com_normal(jax.random.PRNGKey(0), mask[:1])[0]
    s = 0.3

    def v(y, t):
        var = (1 - t) ** 2 + t ** 2 * s ** 2
        c = (t * s ** 2 - (1 - t)) / var
        return m + c[:, None, None] * (y - t[:, None, None] * m)

    dyn = lambda x, h, t: (v(x, t), jnp.zeros_like(h))  # noqa: E731
    key = jax.random.PRNGKey(1)
    spread = s * np.sqrt(1 - 1 / n)
    for solver, steps in (("heun", 20), ("sde", 300)):
        x, _ = flow.sample(dyn, key, mask, f, steps=steps, solver=solver, noise=2.0, time_power=2.0, dtype=jnp.float64)
        np.testing.assert_allclose(np.asarray(x).mean(0), m, atol=0.02)
        np.testing.assert_allclose(np.asarray(x - m).std(0), np.full((n, 3), spread), rtol=0.08)
    # the warped grid changes the trajectory (it is not a no-op)...
    xu, _ = flow.sample(dyn, key, mask[:20], f, steps=6, solver="euler", dtype=jnp.float64)
    xw, _ = flow.sample(dyn, key, mask[:20], f, steps=6, solver="euler", time_power=2.0, dtype=jnp.float64)
    assert float(jnp.abs(xu - xw).max()) > 1e-3
    # ...and it matters that Δt follows the warped times: Euler with warped t and uniform Δt is off
    tw, _ = flow.time_grid(6, 2.0, jnp.float64)
    y = zero_com_normal(jax.random.split(key)[0], mask[:2000], jnp.float64)
    for t in np.asarray(tw):
        y = y + v(y, jnp.full((2000,), t)) / 6
    assert abs(float(np.asarray(y - m).std()) / spread - 1) > 0.2

    with pytest.raises(ConfigError, match="task.time_power"):
        TASKS.get("flow_matching")({"time_power": 0}, _Data())
    with pytest.raises(ValueError, match="time_power"):
        flow.time_grid(5, "steep")
    assert TASKS.get("flow_matching")({"time_power": 1.5}, _Data()).time_power == 1.5
