"""Readers and data modules of AcAc, 3BPA and rMD17 on the shared offline copy (read-only)."""

import numpy as np
import pytest

from equilab.data import atoms as A
from equilab.errors import ConfigError, DataError
from equilab.registry import DATASETS


def test_extxyz_reader_acac(shared_data):
    fr = A.read_extxyz(str(shared_data / "botnet/dataset_acac/train_300K.xyz"))
    assert len(fr) == 500
    f = fr[0]
    assert f.Z.tolist()[:3] == [6, 6, 6] and len(f.Z) == 15
    # values of the first frame, from the file's text
    assert f.energy == pytest.approx(-9391.45554428476, abs=1e-9)
    np.testing.assert_allclose(f.positions[0], [0.07874433, 1.40230941, 0.08237721])
    np.testing.assert_allclose(f.forces[0], [1.47339228, 1.13796366, 0.06391102])


def test_isolated_atoms(shared_data):
    e0 = A.read_isolated_atoms(str(shared_data / "botnet/dataset_acac/isolated_atoms.xyz"))
    assert e0 == pytest.approx({1: -13.568422178253735, 6: -1026.8538996116154, 8: -2037.796869412825})
    e0 = A.read_isolated_atoms(str(shared_data / "botnet/dataset_3BPA/iso_atoms.xyz"))
    assert sorted(e0) == [1, 6, 7, 8]


def test_rmd17_units(shared_data):
    path = shared_data / "rmd17/rmd17_ethanol_train_01.npz"
    fr = A.read_rmd17(str(path))
    raw = np.load(path)
    assert len(fr) == len(raw["energies"]) == 1000
    from ase import units

    kcal = units.kcal / units.mol  # the conversion MACE's tools use (ASE's CODATA 2014)
    assert fr[3].energy == pytest.approx(raw["energies"][3] * kcal, rel=1e-9)
    np.testing.assert_allclose(fr[3].forces, raw["forces"][3] * kcal, rtol=1e-9)
    assert fr[0].Z.tolist() == raw["nuclear_charges"].tolist()


def test_neighbour_list_within_cutoff():
    pos = np.array([[0.0, 0, 0], [1.0, 0, 0], [3.5, 0, 0]])
    s, r = A.neighbour_list(pos, 2.6)
    assert sorted(zip(s.tolist(), r.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1)]


def test_acac_module_batches(shared_data):
    dm = DATASETS.get("acac")({"batch_size": 4, "eval_batch_size": 7, "n_test": 20}, str(shared_data))
    assert dm.eval_splits == ["valid", "test_MD_300K", "test_MD_600K"]
    assert dm.stats["n_frames"] == {"train": 450, "valid": 50, "test_MD_300K": 20, "test_MD_600K": 20}
    assert dm.stats["atomic_numbers"] == [1, 6, 8] and dm.steps_per_epoch == 113
    b1 = list(dm.train_batches(epoch=3, seed=1))
    b2 = list(dm.train_batches(epoch=3, seed=1))
    b3 = list(dm.train_batches(epoch=4, seed=1))
    assert len(b1) == 113 and all(np.array_equal(x["positions"], y["positions"]) for x, y in zip(b1, b2))
    assert not np.array_equal(b1[0]["positions"], b3[0]["positions"])
    shapes = {tuple((k, v.shape) for k, v in sorted(b.items())) for b in b1}
    assert len(shapes) == 1  # one static shape, including the partial last batch
    last = b1[-1]
    assert last["graph_mask"].sum() == 450 - 112 * 4
    b = b1[0]
    N, E = len(b["node_mask"]), len(b["edge_mask"])
    assert not b["graph_mask"][-1] and b["node_graph"][-1] == len(b["graph_mask"]) - 1
    assert np.all(b["senders"][~b["edge_mask"]] == N - 1) and np.all(b["receivers"][~b["edge_mask"]] == N - 1)
    d = np.linalg.norm(b["positions"][b["senders"]] - b["positions"][b["receivers"]], axis=-1)
    assert np.all(d[b["edge_mask"]] < 5.0) and np.all(d[b["edge_mask"]] > 0)
    # energy_residual = E - sum(E0) - shift * n, formed in float64
    e0 = np.asarray(dm.stats["e0"])
    g0 = b["node_graph"] == 0
    ref = e0[b["species"][g0]].sum() + dm.stats["shift"] * g0.sum()
    assert b["energy_residual"][0] == pytest.approx(b["energy"][0] - ref, abs=1e-9)
    ev = list(dm.eval_batches("test_MD_600K"))
    assert len(ev) == 3 and sum(x["graph_mask"].sum() for x in ev) == 20


def test_energy_only_test_sets(shared_data):
    dm = DATASETS.get("acac")({"test_sets": ["test_H_transfer"], "n_test": 5}, str(shared_data))
    b = next(dm.eval_batches("test_H_transfer"))
    assert b["graph_mask"].sum() == 5 and not b["forces_mask"].any()


def test_rmd17_module(shared_data):
    dm = DATASETS.get("rmd17")({"molecule": "aspirin", "n_test": 10}, str(shared_data))
    assert dm.stats["n_frames"] == {"train": 950, "valid": 50, "test": 10}
    assert dm.eval_splits == ["valid", "test"]
    with pytest.raises(ConfigError, match="data.molecule must be one of"):
        DATASETS.get("rmd17")({"molecule": "water"}, str(shared_data))


def test_bpa3_missing_test_sets_name_the_url(shared_data):
    with pytest.raises(DataError, match=r"test_300K.*not present.*https://github.com/davkovacs/BOTNet-datasets.*test_300K.xyz"):
        DATASETS.get("bpa3")({}, str(shared_data))
    dm = DATASETS.get("bpa3")({"on_missing_test": "skip"}, str(shared_data))
    assert dm.eval_splits == ["valid"] and dm.stats["atomic_numbers"] == [1, 6, 7, 8]
    with pytest.raises(ConfigError, match="unknown test sets"):
        DATASETS.get("bpa3")({"test_sets": ["test_900K"]}, str(shared_data))


def test_truncated_and_malformed_files_name_file_and_frame(shared_data, tmp_path):
    src = shared_data / "botnet/dataset_acac/train_300K.xyz"
    lines = src.read_text().splitlines(keepends=True)
    per = 17  # 15 atoms + 2 header lines
    trunc = tmp_path / "trunc.xyz"
    trunc.write_text("".join(lines[: 3 * per + 9]))  # frame 3 cut after 7 of its 15 atoms
    with pytest.raises(DataError, match=r"trunc.xyz: frame 3 \(0-based\)"):
        A.read_extxyz(str(trunc))
    bad = tmp_path / "bad.xyz"
    broken = list(lines[: 2 * per])
    broken[per + 5] = "C  0.1  zero  0.3  1 2 3\n"  # a non-number in frame 1
    bad.write_text("".join(broken))
    with pytest.raises(DataError, match=r"bad.xyz: frame 1 \(0-based\)"):
        A.read_extxyz(str(bad))
    nolabel = tmp_path / "nolabel.xyz"
    nolabel.write_text("".join(lines[:per]).replace("energy=", "en="))
    with pytest.raises(DataError, match=r"nolabel.xyz: frame 0 \(0-based\) has no `energy`"):
        A.read_extxyz(str(nolabel))
    npz = tmp_path / "rmd17_ethanol_train_01.npz"
    raw = (shared_data / "rmd17/rmd17_ethanol_train_01.npz").read_bytes()
    npz.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"rmd17_ethanol_train_01.npz: unreadable or truncated npz"):
        A.read_rmd17(str(npz))
    with pytest.raises(DataError, match="file not found"):
        A.read_extxyz(str(tmp_path / "missing.xyz"))
