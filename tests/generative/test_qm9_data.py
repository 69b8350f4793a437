"""QM9 loader: counts, the EDM split, and EDM's published training statistics."""
import numpy as np
import pytest

from equilab.data import qm9

# EDM configs/datasets_config.py: atom-count histograms of its training set and second half.
EDM_N_NODES = {22: 3393, 17: 13025, 23: 4848, 21: 9970, 19: 13832, 20: 9482, 16: 10644, 13: 3060,
               15: 7796, 25: 1506, 18: 13364, 12: 1689, 11: 807, 24: 539, 14: 5136, 26: 48, 7: 16,
               10: 362, 8: 49, 9: 124, 27: 266, 4: 4, 29: 25, 6: 9, 5: 5, 3: 1}
EDM_SECOND_HALF = {19: 6944, 12: 845, 20: 4794, 21: 4962, 27: 132, 25: 754, 18: 6695, 14: 2587,
                   15: 3865, 22: 1701, 17: 6461, 16: 5344, 23: 2380, 13: 1541, 24: 267, 10: 178, 7: 7,
                   11: 412, 8: 25, 9: 62, 29: 15, 26: 17, 4: 3, 3: 1, 6: 5, 5: 3}
EDM_ATOM_TYPES = {1: 923537, 6: 635559, 7: 101476, 8: 140202, 9: 2323}  # H C N O F in training


def _hist(d):
    h = np.zeros(30, int)
    for k, v in d.items():
        h[k] = v
    return h.tolist()


def test_counts_split_and_edm_statistics(qm9_dir):
    d = qm9.load(qm9_dir)
    assert len(d["gdb_index"]) == 130_831 and d["n_atoms"].max() == 29
    sizes = {s: len(d[f"split_{s}"]) for s in ("train", "valid", "test")}
    assert sizes == {"train": 100_000, "valid": 17_748, "test": 13_083}
    allrows = np.concatenate([d[f"split_{s}"] for s in sizes])
    assert len(np.unique(allrows)) == 130_831
    tr = d["split_train"]
    assert np.all(np.diff(tr) > 0)  # EDM reads each split in archive (GDB index) order
    c = d["charges"][tr]
    assert {z: int((c == z).sum()) for z in (1, 6, 7, 8, 9)} == EDM_ATOM_TYPES
    assert qm9.QM9DataModule(qm9_dir, batch_size=64).stats["n_nodes_hist"] == _hist(EDM_N_NODES)
    assert qm9.QM9DataModule(qm9_dir, batch_size=64, subset="second_half").stats["n_nodes_hist"] == _hist(EDM_SECOND_HALF)
    # Units: methane (gdb 1) alpha 13.21 bohr^3, gap 0.5048 Ha in meV, mu 0 D, Cv 6.469.
    np.testing.assert_allclose(d["properties"][0], [13.21, 0.5048 * 27211.386245988, -0.3877 * 27211.386245988,
                                                    0.1171 * 27211.386245988, 0.0, 6.469], rtol=1e-12)


def test_batches_static_centred_and_deterministic(qm9_dir):
    dm = qm9.QM9DataModule(qm9_dir, batch_size=16, train_subset=40, eval_subset=20)
    assert dm.steps_per_epoch == 2
    a = list(dm.train_batches(epoch=3, seed=7))
    b = list(dm.train_batches(epoch=3, seed=7))
    c = list(dm.train_batches(epoch=4, seed=7))
    assert len(a) == 2 and all(np.array_equal(x["positions"], y["positions"]) for x, y in zip(a, b))
    assert not np.array_equal(a[0]["n_atoms"], c[0]["n_atoms"]) or not np.array_equal(a[0]["positions"], c[0]["positions"])
    for batch in a + list(dm.eval_batches("valid")):
        assert batch["positions"].shape == (16, 29, 3) and batch["one_hot"].shape == (16, 29, 5)
        m = batch["node_mask"]
        np.testing.assert_allclose((batch["positions"] * m[..., None]).sum(1), 0.0, atol=1e-5)
        assert np.all(batch["positions"][~m] == 0) and np.all(batch["one_hot"][~m] == 0)
        np.testing.assert_array_equal(batch["one_hot"].sum(-1), m)
    ev = list(dm.eval_batches("valid"))
    assert [int(e["graph_mask"].sum()) for e in ev] == [16, 4]
    assert not ev[1]["node_mask"][4:].any()


def test_bad_options_are_clear(qm9_dir):
    from equilab.errors import DataError

    from equilab.errors import ConfigError

    with pytest.raises(DataError, match="half"):
        qm9.QM9DataModule(qm9_dir, half="third")
    with pytest.raises(ConfigError, match="data.subset"):
        qm9.QM9DataModule(qm9_dir, subset="third_half")
    with pytest.raises(ConfigError, match="data.condition_on"):
        qm9.QM9DataModule(qm9_dir, condition_on="U0")
    with pytest.raises(DataError, match="no split"):
        next(qm9.QM9DataModule(qm9_dir, batch_size=8).eval_batches("train2"))


def test_size_buckets_cover_each_molecule_once_at_its_pad_size(qm9_dir):
    d = qm9.load(qm9_dir)
    buckets = [14, 17, 19, 21, 23, 29]
    dm = qm9.QM9DataModule(qm9_dir, batch_size=16, train_subset=600, size_buckets=buckets)
    n_train = d["n_atoms"][d["split_train"][:600]]
    lo = [0] + buckets[:-1]
    assert dm.steps_per_epoch == sum(int(((n_train > a) & (n_train <= b)).sum()) // 16 for a, b in zip(lo, buckets))
    a = list(dm.train_batches(epoch=2, seed=3))
    assert len(a) == dm.steps_per_epoch
    seen = []
    for batch in a:
        pad = batch["positions"].shape[1]
        assert pad in buckets and batch["positions"].shape == (16, pad, 3) and batch["one_hot"].shape == (16, pad, 5)
        n = batch["n_atoms"]
        k = buckets.index(pad)
        assert np.all(n <= pad) and np.all(n > lo[k])
        np.testing.assert_array_equal(batch["node_mask"].sum(1), n)
        np.testing.assert_allclose((batch["positions"] * batch["node_mask"][..., None]).sum(1), 0.0, atol=1e-5)
        # the same molecule as the 29-atom batch of the same rows, truncated padding only
        seen += [tuple(np.round(p[:m].ravel(), 4)) for p, m in zip(batch["positions"], n)]
    assert len(set(seen)) == len(seen)  # no molecule twice in an epoch
    assert len({b["positions"].shape[1] for b in a}) > 1  # the buckets are interleaved
    b = list(dm.train_batches(epoch=2, seed=3))
    assert all(np.array_equal(x["positions"], y["positions"]) for x, y in zip(a, b))
    assert next(dm.eval_batches("valid"))["positions"].shape[1] == 29  # evaluation stays at 29


def test_size_buckets_bad_values_name_the_field(qm9_dir):
    from equilab.errors import ConfigError

    for bad, msg in [([14, 12, 29], "ascending"), ([14, 20], "last bucket must be 29"), ("x", "list of atom counts")]:
        with pytest.raises(ConfigError, match=msg) as e:
            qm9.QM9DataModule(qm9_dir, batch_size=8, train_subset=100, size_buckets=bad)
        assert "data.size_buckets" in str(e.value)
