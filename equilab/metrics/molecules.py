"""Molecule metrics of the EDM protocol (Hoogeboom et al. 2022): stability, validity, uniqueness,
novelty; readers and writers for multi-molecule XYZ and SDF files; the ``equilab-eval-molecules``
command.

Bonds come from distances alone (EDM ``qm9/bond_analyze.py``).  With d in pm and the tabulated
lengths below, a pair has order 1 if d < single + 10, order 2 if also d < double + 5, order 3 if
also d < triple + 3; a pair without a double (triple) length stops at order 1 (2).
An atom is stable iff the sum of its bond orders equals its valence (H 1, C 4, N 3, O 2, F 1); a
molecule is stable iff all its atoms are.  Validity (EDM ``qm9/rdkit_functions.py``): build the
RDKit molecule from those bonds, sanitize the whole molecule, and keep the canonical SMILES of its
largest fragment; uniqueness is over valid SMILES, novelty over unique ones against the training
set's SMILES (computed the same way, whole molecule, as EDM does).

A molecule here is a pair ``(positions (n, 3) in Å, atomic numbers (n,))``.

Examples:
    >>> import numpy as np
    >>> h2 = (np.array([[0.0, 0.0, 0.0], [0.74, 0.0, 0.0]]), np.array([1, 1]))
    >>> stability(*h2)
    (True, 2, 2)
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import Iterable, Sequence

import numpy as np

from equilab.errors import DataError, EquilabError

Molecule = tuple  # (positions (n, 3) Å, atomic numbers (n,) int)

SYMBOLS = ("H", "C", "N", "O", "F")
Z_OF = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
SYMBOL_OF = {z: s for s, z in Z_OF.items()}
VALENCE = {"H": 1, "C": 4, "N": 3, "O": 2, "F": 1}

# Bond lengths in pm (EDM bond_analyze.py, from wiredchemist / chemistry-reference tables).
BOND1 = {
    ("H", "H"): 74, ("C", "H"): 109, ("H", "N"): 101, ("H", "O"): 96, ("F", "H"): 92,
    ("C", "C"): 154, ("C", "N"): 147, ("C", "O"): 143, ("C", "F"): 135, ("N", "N"): 145,
    ("N", "O"): 140, ("F", "N"): 136, ("O", "O"): 148, ("F", "O"): 142, ("F", "F"): 142,
}
BOND2 = {("C", "C"): 134, ("C", "N"): 129, ("C", "O"): 120, ("N", "N"): 125, ("N", "O"): 121, ("O", "O"): 121}
BOND3 = {("C", "C"): 120, ("C", "N"): 116, ("C", "O"): 113, ("N", "N"): 110}
MARGINS = (10, 5, 3)  # pm, EDM's margin1..3 (tuned by EDM to the stability of QM9 itself)


@functools.cache
def _thresholds() -> np.ndarray:
    """(3, 10, 10) thresholds in pm indexed by atomic number; -inf where no such bond exists."""
    t = np.full((3, 10, 10), -np.inf)
    for k, table in enumerate((BOND1, BOND2, BOND3)):
        for (a, b), length in table.items():
            t[k, Z_OF[a], Z_OF[b]] = t[k, Z_OF[b], Z_OF[a]] = length + MARGINS[k]
    t.setflags(write=False)
    return t


@functools.cache
def _valences() -> np.ndarray:
    v = np.full(10, -1, np.int64)
    for s, val in VALENCE.items():
        v[Z_OF[s]] = val
    v.setflags(write=False)
    return v


def _check_types(z: np.ndarray, where: str = "molecule") -> np.ndarray:
    z = np.asarray(z, dtype=np.int64)
    bad = [int(a) for a in z if a not in SYMBOL_OF]
    if bad:
        raise DataError(f"{where}: atomic number(s) {sorted(set(bad))} outside H C N O F")
    return z


def bond_orders(positions: np.ndarray, atomic_numbers: np.ndarray) -> np.ndarray:
    """EDM bond orders from distances: (n, 3) Å, (n,) -> (n, n) int symmetric, zero diagonal.

    order = [d < t1] * (1 + [d < t2] * (1 + [d < t3])), d in pm, t_k = length_k + margin_k.
    """
    z = _check_types(atomic_numbers)
    x = np.asarray(positions, dtype=np.float64)
    d = 100.0 * np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    t = _thresholds()[:, z[:, None], z[None, :]]
    order = (d < t[0]) * (1 + (d < t[1]) * (1 + (d < t[2])))
    np.fill_diagonal(order, 0)
    return order.astype(np.int64)


def stability(positions: np.ndarray, atomic_numbers: np.ndarray) -> tuple[bool, int, int]:
    """(molecule stable, number of stable atoms, number of atoms) under the EDM rule."""
    z = _check_types(atomic_numbers)
    nb = bond_orders(positions, z).sum(1)
    stable = nb == _valences()[z]
    return bool(stable.all()), int(stable.sum()), len(z)


def _rdkit_molecule(positions, atomic_numbers, orders=None):
    from rdkit import Chem

    z = _check_types(atomic_numbers)
    if orders is None:
        orders = bond_orders(positions, z)
    kinds = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    mol = Chem.RWMol()
    for a in z:
        mol.AddAtom(Chem.Atom(int(a)))
    for i, j in zip(*np.nonzero(np.triu(orders))):
        mol.AddBond(int(i), int(j), kinds[int(orders[i, j])])
    return mol


def _quiet_rdkit():
    """Invalid molecules are expected here; RDKit would log one line per sanitize failure."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")


def _mol2smiles(mol):
    from rdkit import Chem

    try:
        Chem.SanitizeMol(mol)
    except Exception:  # RDKit's sanitize exceptions (valence, kekulization) mean "invalid"
        return None
    return Chem.MolToSmiles(mol)


def molecule_smiles(positions, atomic_numbers) -> str | None:
    """SMILES of the whole molecule with EDM bonds, or None if RDKit cannot sanitize it
    (EDM's ``mol2smiles(build_molecule(...))``, used for the training set in novelty)."""
    return _mol2smiles(_rdkit_molecule(positions, atomic_numbers))


def valid_smiles(positions, atomic_numbers) -> str | None:
    """Largest-fragment SMILES if the molecule sanitizes, else None (EDM ``compute_validity``)."""
    from rdkit import Chem

    mol = _rdkit_molecule(positions, atomic_numbers)
    if _mol2smiles(mol) is None:
        return None
    frags = Chem.rdmolops.GetMolFrags(mol, asMols=True)
    largest = max(frags, default=mol, key=lambda m: m.GetNumAtoms())
    return _mol2smiles(largest)


def evaluate(
    molecules: Sequence[Molecule], train_smiles: Iterable[str] | None = None, *, validity: bool = True
) -> dict:
    """EDM metrics of a set of molecules, as fractions.

    Returns ``n``, ``atom_stability`` (stable atoms / atoms), ``mol_stability``, ``validity``
    (valid / n), ``uniqueness`` (distinct valid SMILES / valid), ``valid_x_unique``
    (= validity × uniqueness), ``novelty`` (unique SMILES not in ``train_smiles`` / unique;
    None without a training set).  ``validity=False`` skips RDKit (those fields are None).
    """
    n = len(molecules)
    if n == 0:
        raise DataError("no molecules to evaluate")
    mol_ok = atoms_ok = atoms = 0
    for i, (x, z) in enumerate(molecules):
        try:
            ok, k, m = stability(x, z)
        except DataError as e:
            raise DataError(f"molecule {i}: {e}") from None
        mol_ok += ok
        atoms_ok += k
        atoms += m
    out = {
        "n": n,
        "atom_stability": atoms_ok / atoms,
        "mol_stability": mol_ok / n,
        "validity": None, "uniqueness": None, "valid_x_unique": None, "novelty": None,
    }
    if not validity:
        return out
    _quiet_rdkit()
    valid = [s for s in (valid_smiles(x, z) for x, z in molecules) if s is not None]
    out["validity"] = len(valid) / n
    unique = set(valid)
    out["uniqueness"] = len(unique) / len(valid) if valid else 0.0
    out["valid_x_unique"] = out["validity"] * out["uniqueness"]
    if train_smiles is not None and unique:
        ref = set(train_smiles)
        out["novelty"] = sum(s not in ref for s in unique) / len(unique)
    return out


BREAKDOWN_PAIRS = (("C", "C"), ("C", "H"), ("C", "N"), ("C", "O"), ("H", "N"), ("H", "O"))


def breakdown(molecules: Sequence[Molecule]) -> dict:
    """Where the EDM stability rule fails, for diagnosing a generator (no RDKit needed).

    ``elements``: for each element, its share of all atoms and the fractions of its atoms that are
    stable, short of their valence (``under``: a bond too few, or a bond order too low) or over
    it (``over``).  ``bond_lengths_A``: for common pairs, the 10th / 50th / 90th percentile of the
    lengths of the pairs the rule bonds (any order), in Å, and their count.  ``connected``: the
    fraction of molecules whose bond graph is one piece.
    """
    from scipy.sparse.csgraph import connected_components

    if len(molecules) == 0:
        raise DataError("no molecules to evaluate")
    counts = {s: np.zeros(4, np.int64) for s in SYMBOLS}  # atoms, stable, under, over
    lengths = {p: [] for p in BREAKDOWN_PAIRS}
    connected = 0
    for i, (x, z) in enumerate(molecules):
        z = _check_types(z, f"molecule {i}")
        x = np.asarray(x, np.float64)
        orders = bond_orders(x, z)
        diff = orders.sum(1) - _valences()[z]
        for a, dlt in zip(z, diff):
            c = counts[SYMBOL_OF[int(a)]]
            c += (1, dlt == 0, dlt < 0, dlt > 0)
        connected += connected_components(orders > 0, directed=False)[0] == 1
        ii, jj = np.nonzero(np.triu(orders))
        for a, b in zip(ii, jj):
            key = tuple(sorted((SYMBOL_OF[int(z[a])], SYMBOL_OF[int(z[b])])))
            if key in lengths:
                lengths[key].append(float(np.linalg.norm(x[a] - x[b])))
    total = sum(int(c[0]) for c in counts.values())
    elements = {s: {"fraction": int(c[0]) / total,
                    **({k: int(v) / int(c[0]) for k, v in zip(("stable", "under", "over"), c[1:])} if c[0] else {})}
                for s, c in counts.items()}
    bonds = {f"{a}-{b}": ({"n": len(v), **dict(zip(("p10", "p50", "p90"), np.percentile(v, [10, 50, 90]).round(4).tolist()))}
                          if v else {"n": 0})
             for (a, b), v in lengths.items()}
    return {"elements": elements, "bond_lengths_A": bonds, "connected": connected / len(molecules)}


# ----------------------------------------------------------------------------- file formats


def read_xyz(path: str) -> list[Molecule]:
    """Multi-molecule XYZ: per frame an atom count, a comment line, then ``symbol x y z`` (Å)."""
    with open(path) as f:
        lines = f.read().splitlines()
    mols, i, frame = [], 0, 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        where = f"{path}: frame {frame} (line {i + 1})"
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            raise DataError(f"{where}: expected an atom count, got {lines[i]!r}") from None
        if n <= 0 or i + 2 + n > len(lines):
            raise DataError(f"{where}: atom count {n} but only {max(len(lines) - i - 2, 0)} lines follow")
        z, x = [], []
        for k, line in enumerate(lines[i + 2:i + 2 + n]):
            parts = line.split()
            sym = parts[0].capitalize() if parts else ""
            if len(parts) < 4 or sym not in Z_OF:
                raise DataError(f"{path}: frame {frame} (line {i + 3 + k}): expected 'H|C|N|O|F x y z', got {line!r}")
            try:
                x.append([float(v.replace("*^", "e")) for v in parts[1:4]])
            except ValueError:
                raise DataError(f"{path}: frame {frame} (line {i + 3 + k}): bad coordinates in {line!r}") from None
            z.append(Z_OF[sym])
        mols.append((np.asarray(x, np.float64), np.asarray(z, np.int64)))
        i += 2 + n
        frame += 1
    if not mols:
        raise DataError(f"{path}: no molecules found")
    return mols


def read_sdf(path: str) -> list[Molecule]:
    """SDF via RDKit without sanitizing; bonds in the file are ignored (the EDM rule re-derives them)."""
    from rdkit import Chem

    supplier = Chem.SDMolSupplier(path, sanitize=False, removeHs=False)
    mols = []
    for frame, mol in enumerate(supplier):
        if mol is None or mol.GetNumConformers() == 0:
            raise DataError(f"{path}: frame {frame}: unparsable SDF record")
        z = np.asarray([a.GetAtomicNum() for a in mol.GetAtoms()], np.int64)
        bad = sorted({SYMBOL_OF.get(int(a), Chem.GetPeriodicTable().GetElementSymbol(int(a))) for a in z if a not in SYMBOL_OF})
        if bad:
            raise DataError(f"{path}: frame {frame}: element(s) {bad} outside H C N O F")
        mols.append((np.asarray(mol.GetConformer().GetPositions(), np.float64), z))
    if not mols:
        raise DataError(f"{path}: no molecules found")
    return mols


def read_molecules(path: str) -> list[Molecule]:
    """Molecules from an .xyz or .sdf file, or a sample directory (its molecules.xyz / .sdf)."""
    if os.path.isdir(path):
        for name in ("molecules.xyz", "molecules.sdf"):
            if os.path.exists(os.path.join(path, name)):
                return read_molecules(os.path.join(path, name))
        found = sorted(f for f in os.listdir(path) if f.endswith((".xyz", ".sdf")))
        if len(found) != 1:
            raise DataError(f"{path}: expected molecules.xyz, molecules.sdf or one .xyz/.sdf file, found {found}")
        return read_molecules(os.path.join(path, found[0]))
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if path.endswith(".sdf"):
        return read_sdf(path)
    return read_xyz(path)


def write_xyz(path: str, molecules: Sequence[Molecule]) -> None:
    with open(path, "w") as f:
        for i, (x, z) in enumerate(molecules):
            f.write(f"{len(z)}\nmolecule {i}\n")
            for a, p in zip(z, np.asarray(x)):
                f.write(f"{SYMBOL_OF[int(a)]} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}\n")


def write_sdf(path: str, molecules: Sequence[Molecule]) -> None:
    """SDF with EDM-rule bonds and 3-D coordinates (unsanitized, so invalid molecules are kept)."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    with Chem.SDWriter(path) as w:
        w.SetKekulize(False)
        for i, (x, z) in enumerate(molecules):
            mol = _rdkit_molecule(x, z)
            conf = Chem.Conformer(len(z))
            for k, p in enumerate(np.asarray(x, np.float64)):
                conf.SetAtomPosition(k, Point3D(*map(float, p)))
            mol.AddConformer(conf, assignId=True)
            m = mol.GetMol()
            m.UpdatePropertyCache(strict=False)
            m.SetProp("_Name", f"molecule {i}")
            w.write(m)


# ----------------------------------------------------------------------------- training SMILES


def train_smiles(data_dir: str) -> list[str]:
    """SMILES of the EDM training molecules (whole molecule, EDM bonds), cached under data_dir/qm9."""
    from equilab.data import qm9

    path = os.path.join(os.path.dirname(qm9.prepare(data_dir)), "train_smiles_edm_v1.txt")
    if os.path.exists(path):
        with open(path) as f:
            return f.read().split()
    _quiet_rdkit()
    out = [s for s in (molecule_smiles(x, z) for x, z in qm9.molecules(data_dir, "train")) if s is not None]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(path + ".tmp", path)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``equilab-eval-molecules <path>``: prints one JSON object with the metrics on its last line."""
    p = argparse.ArgumentParser(prog="equilab-eval-molecules", description=main.__doc__)
    p.add_argument("path", help="multi-molecule .xyz, .sdf, or a sample directory")
    p.add_argument("--data-dir", default=os.environ.get("EQUILAB_DATA_DIR", "data"),
                   help="data root holding (or receiving) the QM9 cache, for novelty")
    p.add_argument("--no-novelty", action="store_true", help="skip novelty (no QM9 training SMILES needed)")
    p.add_argument("--breakdown", action="store_true",
                   help="add 'breakdown': per-element stable / under / over-bonded fractions, bond-length "
                        "percentiles and the connected fraction")
    args = p.parse_args(argv)
    try:
        mols = read_molecules(args.path)
        ref = None if args.no_novelty else train_smiles(args.data_dir)
        result = evaluate(mols, ref)
        if args.breakdown:
            result["breakdown"] = breakdown(mols)
    except EquilabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
