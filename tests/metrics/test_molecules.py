"""The EDM molecule metrics on hand-made molecules, file round trips, and the Data row."""
import json

import numpy as np
import pytest

from equilab.errors import DataError
from equilab.metrics import molecules as M

# Methane: C at the origin, H on a tetrahedron at 1.09 Å.
_T = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
METHANE = (np.vstack([np.zeros(3), 1.09 * _T]), np.array([6, 1, 1, 1, 1]))
# Ethanol (QM9 gdb 14, B3LYP geometry rounded to 1e-4 Å): C C O H H H H H H.
ETHANOL = (
    np.array([
        [-0.0086, 1.5020, -0.0068], [0.0110, -0.0176, -0.0138], [0.6809, -0.4404, -1.1931],
        [1.0115, 1.8966, -0.0192], [-0.5316, 1.8808, -0.8897], [-0.5167, 1.8761, 0.8871],
        [0.5238, -0.3891, 0.8882], [-1.0203, -0.4051, 0.0169], [0.6953, -1.4018, -1.2015],
    ]),
    np.array([6, 6, 8, 1, 1, 1, 1, 1, 1]),
)


def _stretched_ethanol():
    """Ethanol with the C–O bond pulled to 1.70 Å (O and its H moved rigidly): no C–O bond."""
    x, z = ETHANOL[0].copy(), ETHANOL[1]
    u = (x[2] - x[1]) / np.linalg.norm(x[2] - x[1])
    shift = (1.70 - np.linalg.norm(x[2] - x[1])) * u
    x[[2, 8]] += shift
    return x, z


def _ch5():
    """Methane plus a fifth H 1.0 Å from C, opposite the first H: carbon gets 5 bonds."""
    x, z = METHANE
    return np.vstack([x, -1.0 * _T[0]]), np.append(z, 1)


def _rotate(mol, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return mol[0] @ q.T + 3.0, mol[1]


def test_bond_order_thresholds():
    def order(za, zb, d):
        return M.bond_orders(np.array([[0, 0, 0], [d, 0, 0]]), np.array([za, zb]))[0, 1]

    assert [order(6, 6, d) for d in (1.22, 1.30, 1.60, 1.65)] == [3, 2, 1, 0]  # < 123, < 139, < 164 pm
    assert [order(6, 6, d) for d in (1.2299, 1.2301, 1.3899, 1.3901)] == [3, 2, 2, 1]
    assert [order(1, 1, d) for d in (0.83, 0.85)] == [1, 0]  # H–H single only, < 84 pm
    assert order(6, 9, 1.0) == 1  # C–F has no double length: stops at 1
    assert order(7, 8, 1.20) == 2  # N–O has a double but no triple length
    assert order(6, 1, 1.18) == 1 and order(1, 6, 1.19) == 0  # symmetric, < 119 pm


def test_methane_and_ethanol_are_stable_and_valid():
    for mol, smiles in ((METHANE, "[H]C([H])([H])[H]"), (ETHANOL, "[H]OC([H])([H])C([H])([H])[H]")):
        n = len(mol[1])
        assert M.stability(*mol) == (True, n, n)
        assert M.stability(*_rotate(mol)) == (True, n, n)
        assert M.valid_smiles(*mol) == smiles


def test_distorted_molecules():
    x, z = _stretched_ethanol()
    assert M.stability(x, z) == (False, 7, 9)  # the C and the O lose their C–O bond
    # RDKit gives the 3-bonded carbon an implicit H (EDM's behaviour): valid, and the largest
    # fragment is ethane with one implicit H.
    assert M.valid_smiles(x, z) == "[H]C([H])C([H])([H])[H]"
    assert M.stability(*_ch5()) == (False, 5, 6)
    assert M.valid_smiles(*_ch5()) is None  # pentavalent carbon does not sanitize


def test_evaluate_fractions():
    mols = [METHANE, ETHANOL, _rotate(METHANE, 1), _ch5()]
    r = M.evaluate(mols, train_smiles=["[H]C([H])([H])[H]"])
    assert r["n"] == 4
    assert r["atom_stability"] == pytest.approx((5 + 9 + 5 + 5) / (5 + 9 + 5 + 6), abs=1e-15)
    assert r["mol_stability"] == 0.75
    assert r["validity"] == 0.75
    assert r["uniqueness"] == pytest.approx(2 / 3, abs=1e-15)
    assert r["valid_x_unique"] == pytest.approx(0.5, abs=1e-15)
    assert r["novelty"] == 0.5  # ethanol is new, methane is not
    assert M.evaluate(mols)["novelty"] is None


def test_breakdown_says_which_atoms_fail_and_how():
    r = M.breakdown([METHANE, ETHANOL, _stretched_ethanol(), _ch5()])
    el = r["elements"]
    # atoms: C 1+2+2+1 = 6, H 4+6+6+5 = 21, O 2; stretched ethanol: one C and the O are short of a
    # bond; CH5: the C is over, and the fifth H (1.0 Å from C) is stable
    assert el["C"]["fraction"] == pytest.approx(6 / 29) and el["O"]["fraction"] == pytest.approx(2 / 29)
    assert (el["C"]["stable"], el["C"]["under"], el["C"]["over"]) == pytest.approx((4 / 6, 1 / 6, 1 / 6))
    assert (el["O"]["stable"], el["O"]["under"], el["O"]["over"]) == pytest.approx((0.5, 0.5, 0.0))
    assert el["H"]["stable"] == 1.0 and el["N"] == {"fraction": 0.0}
    assert r["connected"] == 0.75  # the stretched ethanol falls apart into two pieces
    cc = r["bond_lengths_A"]["C-C"]
    assert cc["n"] == 2 and cc["p50"] == pytest.approx(np.linalg.norm(ETHANOL[0][0] - ETHANOL[0][1]), abs=1e-4)
    assert r["bond_lengths_A"]["C-O"]["n"] == 1  # only the unstretched ethanol's
    assert r["bond_lengths_A"]["H-N"] == {"n": 0}
    with pytest.raises(DataError, match="molecule 1"):
        M.breakdown([METHANE, (np.zeros((1, 3)), np.array([17]))])


def test_unknown_element_is_a_clear_error():
    with pytest.raises(DataError, match="molecule 1: .*17"):
        M.evaluate([METHANE, (np.zeros((1, 3)), np.array([17]))], validity=False)


def test_xyz_and_sdf_round_trip(tmp_path):
    mols = [METHANE, ETHANOL, _ch5()]
    M.write_xyz(tmp_path / "m.xyz", mols)
    M.write_sdf(str(tmp_path / "m.sdf"), mols)
    for path in ("m.xyz", "m.sdf"):
        back = M.read_molecules(str(tmp_path / path))
        assert len(back) == 3
        for (x, z), (x2, z2) in zip(mols, back):
            np.testing.assert_array_equal(z, z2)
            np.testing.assert_allclose(x, x2, atol=1e-4)
    assert M.evaluate(M.read_molecules(str(tmp_path / "m.sdf"))) == M.evaluate(mols)


@pytest.mark.parametrize(
    "text,match",
    [
        ("1\nok\nH 0 0 0\nx\nbad\nH 0 0 0\n", r"frame 1 \(line 4\): expected an atom count"),
        ("1\nok\nH 0 0 0\n2\nc\nC 0 0 0\nCl 1 0 0\n", r"frame 1 \(line 7\): expected 'H\|C\|N\|O\|F x y z'"),
        ("1\nok\nH 0 0 0\n1\nc\nC 0 zero 0\n", r"frame 1 \(line 6\): bad coordinates"),
        ("3\nc\nC 0 0 0\n", r"frame 0 \(line 1\): atom count 3 but only 1 lines follow"),
    ],
)
def test_xyz_errors_name_the_frame(tmp_path, text, match):
    p = tmp_path / "bad.xyz"
    p.write_text(text)
    with pytest.raises(DataError, match=match):
        M.read_xyz(str(p))


def test_cli_prints_json_last(tmp_path, capsys):
    M.write_xyz(tmp_path / "m.xyz", [METHANE, ETHANOL])
    assert M.main([str(tmp_path), "--no-novelty"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) == {"n", "atom_stability", "mol_stability", "validity", "uniqueness", "valid_x_unique", "novelty"}
    assert out["n"] == 2 and out["mol_stability"] == 1.0 and out["valid_x_unique"] == 1.0
    assert M.main([str(tmp_path), "--no-novelty", "--breakdown"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["breakdown"]["connected"] == 1.0 and out["breakdown"]["elements"]["C"]["stable"] == 1.0
    assert M.main([str(tmp_path / "missing.xyz"), "--no-novelty"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_data_rule_on_first_training_molecules(qm9_dir):
    """Regression on the first 2,000 EDM training molecules (values measured with this rule)."""
    from equilab.data import qm9

    r = M.evaluate(qm9.molecules(qm9_dir, "train")[:2000])
    assert (r["mol_stability"], r["validity"], r["uniqueness"]) == (0.9655, 0.972, 1.0)
    assert r["atom_stability"] == pytest.approx(0.9932198601596158, abs=1e-12)


@pytest.mark.slow
def test_data_row_reproduces_edm(qm9_dir):
    """EDM Table 1, Data row: mol. stability 95.2, valid 97.7, valid×unique 97.7 (±0.2 points).

    The exact rule gives atom stability 99.36 % here, not the published 99.0 (see
    experiments/qm9_generation/README.md); we pin our measured value instead of tuning.
    """
    from equilab.data import qm9

    r = M.evaluate(qm9.molecules(qm9_dir, "train"))
    assert r["n"] == 100_000
    assert abs(100 * r["mol_stability"] - 95.2) <= 0.2
    assert abs(100 * r["validity"] - 97.7) <= 0.2
    assert abs(100 * r["valid_x_unique"] - 97.7) <= 0.2
    assert r["atom_stability"] == pytest.approx(0.9936076650341052, abs=1e-12)
