"""Property-conditioned generation (EDM protocol): the EDM halves, the context, the EGNN property
regressor's invariance, conditional dynamics with context, the (n_atoms, property) target
distribution, the baselines on hand-made numbers, and a tiny end-to-end evaluator + generator +
``equilab-eval-property`` run."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import equilab.catalog  # noqa: F401  (registers models, data, tasks)
from equilab.errors import ConfigError
from equilab.generative.conditioning import PropertyDistribution, node_mask_from_counts
from equilab.metrics import property as P
from equilab.models.egnn_property import EGNNProperty
from equilab.registry import MODELS, TASKS
from equilab.testing import assert_point_cloud_equivariant

N = 7


# ----------------------------------------------------------------------------- data


def test_halves_are_disjoint_and_cover_the_training_set(qm9_dir):
    from equilab.data import qm9

    d = qm9.load(qm9_dir)
    train = d["split_train"]
    a, b = qm9.edm_half(train, "first_half"), qm9.edm_half(train, "second_half")
    assert len(a) == len(b) == 50_000
    assert len(np.intersect1d(a, b)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([a, b])), np.sort(train))
    # EDM slices the seed-42 permutation: the second half starts at perm[50000].
    perm = np.random.RandomState(42).permutation(100_000)
    assert b[0] == train[perm[50_000]] and a[0] == train[perm[0]]
    dm = qm9.QM9DataModule(qm9_dir, batch_size=8, subset="second_half", condition_on="gap", eval_subset=8)
    np.testing.assert_array_equal(dm.subset_rows("second_half"), b)
    # Norms: EDM's compute_mean_mad for the halves uses the validation split.
    v = d["properties"][d["split_valid"], 1]
    assert dm.stats["property_norm_split"] == "valid"
    np.testing.assert_allclose(dm.stats["property_mean"][1], v.mean(), rtol=1e-12)
    np.testing.assert_allclose(dm.stats["property_mad"][1], np.abs(v - v.mean()).mean(), rtol=1e-12)
    batch = dm.example_batch()
    expect = (batch["properties"][:, 1].astype(np.float64) - v.mean()) / np.abs(v - v.mean()).mean()
    np.testing.assert_allclose(batch["context"][:, 0], expect, rtol=1e-5, atol=1e-5)
    # The conditioning distribution is the second half's (n_atoms, gap).
    np.testing.assert_array_equal(dm.stats["context_n_atoms"], d["n_atoms"][b])
    assert dm.stats["context_dim"] == 1 and qm9.QM9DataModule(qm9_dir, batch_size=8).stats["context_dim"] == 0
    # eval_pick=spread: evaluation molecules evenly spaced over the (GDB-ordered) split.
    spread = qm9.QM9DataModule(qm9_dir, batch_size=8, eval_subset=5, eval_pick="spread")
    v_rows = d["split_valid"]
    np.testing.assert_array_equal(spread._rows["valid"], v_rows[[0, 4437, 8874, 13310, 17747]])


# ----------------------------------------------------------------------------- models


def _molecule(key, n=N, types=5):
    k1, k2 = jax.random.split(key)
    x = jax.random.normal(k1, (n, 3), jnp.float64) * 1.5
    oh = jax.nn.one_hot(jax.random.randint(k2, (n,), 0, types), types, dtype=jnp.float64)
    return x, oh


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_regressor_is_e3_and_permutation_invariant(x64, pooling):
    model = EGNNProperty(hidden=16, n_layers=2, pooling=pooling)
    x, oh = _molecule(jax.random.PRNGKey(0))
    inp = {"positions": x[None], "one_hot": oh[None], "node_mask": jnp.ones((1, N), bool)}
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), jax.jit(model.init)(jax.random.PRNGKey(1), inp))
    apply = jax.jit(lambda x, oh: model.apply(params, {"positions": x[None], "one_hot": oh[None],
                                                       "node_mask": jnp.ones((1, N), bool)})["property"])
    y = apply(x, oh)
    assert y.shape == (1,) and abs(float(y[0])) > 1e-6
    # Rotations, reflections and translations (the helper's O(3) draws are float64-orthonormal).
    assert_point_cloud_equivariant(lambda pos: (apply(pos, oh),), jax.random.PRNGKey(2), x,
                                   invariant_outputs=[0], atol=1e-10)
    perm = np.asarray(jax.random.permutation(jax.random.PRNGKey(3), N))
    np.testing.assert_allclose(apply(x[perm], oh[perm]), y, rtol=1e-10)
    # Padding: two padded slots with garbage change nothing.
    pad = {"positions": jnp.concatenate([x, 1e3 * jnp.ones((2, 3))])[None],
           "one_hot": jnp.concatenate([oh, jnp.ones((2, 5))])[None],
           "node_mask": (jnp.arange(N + 2) < N)[None]}
    np.testing.assert_allclose(model.apply(params, pad)["property"], y, rtol=1e-10)


def test_conditional_dynamics_equivariant_with_context(x64):
    """The task's dynamics with a context: E(3)-equivariant velocity, invariant features,
    permutation equivariant, and the context actually changes the output."""
    data = type("D", (), {"stats": {"atom_types": ["H", "C", "N", "O", "F"], "condition_on": "alpha", "context_dim": 1,
                                    "property_mean": [70.0] + [0.0] * 5, "property_mad": [6.0] + [1.0] * 5,
                                    "properties": ["alpha", "gap", "homo", "lumo", "mu", "Cv"]}})()
    model = MODELS.get("egnn_dynamics")({"hidden": 16, "n_layers": 2, "context_dim": None}, data)
    task = TASKS.get("flow_matching")({"steps": 2}, data)
    assert model.context_dim == 1 and task.condition_on == "alpha"
    x, h = _molecule(jax.random.PRNGKey(4), types=6)
    mask = jnp.ones((1, N), bool)
    ctx = jnp.asarray(task.normalise(np.array([80.0])))[:, None]
    params = jax.jit(model.init)(jax.random.PRNGKey(5), {"positions": x[None], "features": h[None], "t": jnp.array([0.3]),
                                                         "node_mask": mask, "context": ctx})
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    params = jax.tree_util.tree_map_with_path(  # a non-negligible coordinate head
        lambda p, a: a * 1e3 if "coord_" in jax.tree_util.keystr(p) and p[-2].key.endswith("_1") else a, params)

    def run(pos, feats, c):
        dyn = task._dyn(model, params, mask, c)
        v, ho = dyn(pos[None], feats[None], jnp.array([0.3]))
        return v[0], ho[0]

    fn = jax.jit(lambda pos: run(pos, h, ctx))
    assert_point_cloud_equivariant(fn, jax.random.PRNGKey(6), x, vector_outputs=[0], invariant_outputs=[1], atol=1e-9)
    v, ho = fn(x)
    perm = np.asarray(jax.random.permutation(jax.random.PRNGKey(7), N))
    vp, hop = run(x[perm], h[perm], ctx)
    np.testing.assert_allclose(vp, v[perm], atol=1e-10 * float(jnp.abs(v).max()))
    np.testing.assert_allclose(hop, ho[perm], atol=1e-10 * float(jnp.abs(ho).max()))
    v2, ho2 = run(x, h, ctx + 1.0)
    assert float(jnp.abs(ho2 - ho).max()) > 1e-6  # conditioning is not ignored


def test_context_width_must_match_the_data():
    data = type("D", (), {"stats": {"condition_on": "mu", "context_dim": 1}})()
    with pytest.raises(ConfigError, match="model.context_dim"):
        MODELS.get("egnn_dynamics")({"hidden": 8, "n_layers": 1, "context_dim": 0}, data)
    with pytest.raises(ConfigError, match="task.condition_on"):
        TASKS.get("edm")({"condition_on": "alpha", "timesteps": 4}, data)
    with pytest.raises(ConfigError, match="task.property"):
        TASKS.get("property_regression")({"property": "U0"}, type("D", (), {"stats": {"properties": ["mu"]}})())


# ----------------------------------------------------------------------------- targets and baselines


def test_property_distribution_is_binned_by_atom_count():
    rng = np.random.default_rng(0)
    n = np.array([5] * 300 + [9] * 100)
    v = np.concatenate([rng.uniform(0, 1, 300), rng.uniform(10, 20, 100)])
    d = PropertyDistribution(n, v, num_bins=10)
    counts, vals = d.sample(np.random.default_rng(1), 4000)
    assert set(counts.tolist()) == {5, 9}
    assert abs((counts == 5).mean() - 0.75) < 0.03  # atom counts follow the data's histogram
    assert vals[counts == 5].min() >= v[:300].min() and vals[counts == 5].max() <= v[:300].max()
    assert vals[counts == 9].min() >= v[300:].min() and vals[counts == 9].max() <= v[300:].max()
    # A bin holding no molecule is never drawn (EDM: categorical over the histogram).
    d2 = PropertyDistribution(np.array([4, 4, 4]), np.array([0.0, 0.05, 1.0]), num_bins=10)
    s = d2.sample_values(np.random.default_rng(2), np.full(500, 4))
    assert np.all((s < 0.1) | (s >= 0.9)) and (s >= 0.9).mean() == pytest.approx(1 / 3, abs=0.06)
    np.testing.assert_array_equal(node_mask_from_counts([2, 0], 4), [[1, 1, 0, 0], [0, 0, 0, 0]])


def test_baselines_on_a_hand_made_case():
    # Four molecules: two with 3 atoms (p = 1, 3), two with 5 atoms (p = 10, 14).
    n = np.array([3, 3, 5, 5])
    y = np.array([1.0, 3.0, 10.0, 14.0])
    # #Atoms: predict 2 for n = 3 and 12 for n = 5 -> errors 1, 1, 2, 2.
    assert P.n_atoms_baseline_mae(n, y, n, y) == pytest.approx(1.5)
    assert P.per_count_statistic(n, y) == {3: 2.0, 5: 12.0}
    # An unseen count falls back to the overall mean (7).
    assert P.n_atoms_baseline_mae(n, y, np.array([4]), np.array([8.0])) == pytest.approx(1.0)
    # Lower bound: a perfect evaluator scores 0; Naive with that evaluator is the mean |y − y[perm]|.
    assert P.mae(y, y) == 0.0
    perm = np.random.default_rng(0).permutation(4)
    assert P.naive_mae(y, y, np.random.default_rng(0)) == pytest.approx(np.abs(y - y[perm]).mean())
    # Pairing every molecule with its partner's value: |1−3|, |3−1|, |10−14|, |14−10| -> 3.
    assert P.mae(y, y[[1, 0, 3, 2]]) == pytest.approx(3.0)


# ----------------------------------------------------------------------------- end to end


def _cfg(experiment, data_dir, *extra):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from equilab.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", f"paths.data_dir={data_dir}", *extra])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("experiment", ["qm9_prop_evaluator", "qm9_prop_evaluator_cpu", "qm9_edm_cond",
                                        "qm9_flow_cond", "qm9_flow_cond_cpu"])
def test_experiments_follow_the_protocol(experiment):
    d = _cfg(experiment, "/nonexistent", "data.condition_on=mu")
    if experiment.startswith("qm9_prop"):
        assert d["data"]["subset"] == "first_half" and d["task"] == {"name": "property_regression", "property": "mu"}
        assert d["trainer"]["monitor"] == "valid/mae"
        if experiment == "qm9_prop_evaluator":  # EDM's evaluator (anchors §4, EDM README)
            assert (d["model"]["n_layers"], d["model"]["hidden"], d["data"]["batch_size"]) == (7, 128, 96)
    else:
        assert d["data"]["subset"] == "second_half" and d["task"]["condition_on"] == "mu"
        assert d["model"]["context_dim"] is None


_TINY = ("logger=none", "data.batch_size=8", "data.train_subset=32", "data.eval_subset=8", "trainer.max_steps=2",
         "trainer.eval_every=2", "trainer.progress=false", "optim.schedule.warmup_steps=0")


@pytest.fixture(scope="module")
def evaluator_run(qm9_dir, tmp_path_factory):
    """A property evaluator trained for two steps on 32 first-half molecules (tiny EGNN)."""
    from equilab.cli import setup_jax
    from equilab.train.loop import Trainer

    setup_jax()
    ev = _cfg("qm9_prop_evaluator_cpu", qm9_dir, *_TINY, "data.condition_on=homo", "model.hidden=8", "model.n_layers=1")
    run = tmp_path_factory.mktemp("prop") / "ev"
    res = Trainer(ev, run).fit(progress=False)
    assert np.isfinite(res["valid/mae"]) and res["valid/mae"] > 0
    return run


def test_evaluator_training_and_data_baselines(evaluator_run, capsys):
    """Evaluator training (2 steps) + ``equilab-eval-property`` without a generator: the three
    baselines on 40 second-half molecules, JSON on the last line and in the run directory."""
    from equilab.generative.property_eval_cli import main

    assert main([f"evaluator={evaluator_run}", "max_data=40", "eval_batch=16", "params=raw"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((evaluator_run / "property_eval" / "data_seed0.json").read_text())
    assert last["mae_lower_bound"] == saved["mae_lower_bound"]
    assert saved["property"] == "homo" and saved["unit"] == "meV" and saved["n_data"] == 40 and saved["warnings"] == []
    for k in ("mae_naive", "mae_n_atoms", "mae_n_atoms_median", "mae_lower_bound"):
        assert np.isfinite(saved[k]) and saved[k] > 0, k
    assert "mae_generator" not in saved
    # Bad input: one line naming the argument.
    assert main([f"evaluator={evaluator_run.parent / 'missing'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: evaluator=") and "missing" in err[0]
    assert main([f"evaluator={evaluator_run}", "nn=3"]) == 2
    assert "unknown argument(s) ['nn']" in capsys.readouterr().err
    assert main([f"evaluator={evaluator_run}", "generator=" + str(evaluator_run), "max_data=8", "eval_batch=8",
                 "params=raw"]) == 2
    assert "not a conditional run" in capsys.readouterr().err


@pytest.mark.slow
def test_generator_end_to_end(qm9_dir, evaluator_run, tmp_path, capsys):
    """A conditional flow-matching generator (2 steps, second half) scored by the evaluator."""
    from equilab.generative.property_eval_cli import main
    from equilab.generative.sample_cli import main as sample_main
    from equilab.train.loop import Trainer

    gen = _cfg("qm9_flow_cond_cpu", qm9_dir, *_TINY, "data.condition_on=homo", "model.hidden=8", "model.n_layers=1")
    gen_run = tmp_path / "gen"
    Trainer(gen, gen_run).fit(progress=False)
    out = tmp_path / "eval.json"
    args = [f"evaluator={evaluator_run}", f"generator={gen_run}", "n=6", "batch=4", "steps=2", "solver=euler",
            "max_data=40", "eval_batch=16", "params=raw", f"out={out}"]
    assert main(args) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads(out.read_text())
    assert last["mae_generator"] == saved["mae_generator"]
    assert saved["n_generated"] == 6 and saved["sampling_steps"] == 2 and saved["warnings"] == []
    for k in ("mae_generator", "mae_naive", "mae_n_atoms", "mae_lower_bound", "mae_n_atoms_paired"):
        assert np.isfinite(saved[k]) and saved[k] > 0, k
    assert "residual_corr" in saved and "residual_slope" in saved
    assert 0 <= saved["mol_stability"] <= saved["atom_stability"] <= 1
    npz = np.load(out.with_suffix(".npz"))
    assert npz["target"].shape == (6,) and set(npz["n_atoms"].tolist()) <= set(range(3, 30))
    assert P.mae(npz["prediction"], npz["target"]) == pytest.approx(saved["mae_generator"])
    # equilab-sample on a conditional run writes the targets beside the molecules.
    assert sample_main([f"run={gen_run}", "n=3", "batch=3", "steps=2", "solver=euler", f"out={tmp_path / 's'}",
                        "novelty=false", "params=raw"]) == 0
    t = json.loads((tmp_path / "s" / "targets.json").read_text())
    assert t["property"] == "homo" and len(t["targets"]) == 3


def test_context_use_separates_following_from_ignoring_the_context():
    """A generator that delivers its targets scores residual correlation and slope 1; one that
    delivers the per-count mean plus noise scores about 0; #Atoms is paired on the same targets."""
    rng = np.random.default_rng(0)
    n_fit = rng.integers(5, 10, 4000)
    y_fit = 3.0 * n_fit + rng.normal(0, 2.0, n_fit.shape)
    n_gen = rng.integers(5, 10, 2000)
    target = 3.0 * n_gen + rng.normal(0, 2.0, n_gen.shape)
    m = np.array([P.per_count_statistic(n_fit, y_fit)[int(k)] for k in n_gen])
    exact = P.context_use(n_fit, y_fit, n_gen, target, target)
    assert exact["residual_corr"] == pytest.approx(1.0) and exact["residual_slope"] == pytest.approx(1.0)
    assert exact["mae_n_atoms_paired"] == pytest.approx(P.mae(m, target))
    blind = P.context_use(n_fit, y_fit, n_gen, target, m + rng.normal(0, 2.0, n_gen.shape))
    assert abs(blind["residual_corr"]) < 0.1 and abs(blind["residual_slope"]) < 0.1
    half = P.context_use(n_fit, y_fit, n_gen, target, m + 0.5 * (target - m))
    assert half["residual_slope"] == pytest.approx(0.5) and half["residual_corr"] == pytest.approx(1.0)
    assert np.isnan(P.context_use(n_fit, y_fit, n_gen, target, m)["residual_corr"])  # no spread in the predictions
    with pytest.raises(ValueError, match="equal lengths"):
        P.context_use(n_fit, y_fit, n_gen[:3], target, target)
