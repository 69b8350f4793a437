"""Atomistic data sets for interatomic potentials: AcAc, 3BPA (BOTNet extended XYZ) and rMD17 (npz).

A frame is a molecule with atomic numbers ``Z`` (n,), positions (n,3) in Å, total energy in eV
and forces (n,3) in eV/Å. Batches follow the framework's padded-graph convention
(``equilab/data/graph.py``) plus the fields

- ``species`` (N,) int32: index of the element in ``stats["atomic_numbers"]``;
- ``energy`` (G,) float64: total energy (eV);
- ``energy_residual`` (G,) float64: ``E − Σ_i (E0[z_i] + shift)``, computed here in float64 so a
  float32 model never sees the large absolute energies (about −10⁴ eV) whose float32 rounding
  alone would be about 1 meV;
- ``forces`` (N,3): eV/Å; ``forces_mask`` (N,) bool: real atoms whose frame has forces;
  ``n_atoms`` (G,) float.

Edges are all ordered pairs i≠j with |x_i − x_j| < cutoff (molecules, no periodic images).
Budgets are fixed per data module: nodes ``B·max_atoms + 1``, edges ``B·max_edges + 1``, graphs
``B + 1`` where the maxima run over every frame the module loaded, so a run compiles once.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from equilab.errors import ConfigError, DataError
from equilab.registry import DATASETS

# 1 kcal/mol in eV (ase.units.kcal / ase.units.mol), used for the rMD17 npz files.
KCAL_PER_MOL_IN_EV = 0.04336410390059322

BOTNET_URL = "https://github.com/davkovacs/BOTNet-datasets/raw/main"
RMD17_URL = "https://github.com/andersx/rmd17-npz (figshare https://doi.org/10.6084/m9.figshare.12672038)"

ACAC_TESTS = ("test_MD_300K", "test_MD_600K", "test_H_transfer", "test_dihedral")
ACAC_PAPER_TESTS = ("test_MD_300K", "test_MD_600K")  # the MACE table; the other two are energy-only
BPA3_TESTS = ("test_300K", "test_600K", "test_1200K", "test_dih")
RMD17_MOLECULES = ("aspirin", "azobenzene", "benzene", "ethanol", "malonaldehyde", "naphthalene",
                   "paracetamol", "salicylic", "toluene", "uracil")


@dataclasses.dataclass
class Frame:
    Z: np.ndarray  # (n,) int atomic numbers
    positions: np.ndarray  # (n, 3) Å, float64
    energy: float  # eV
    forces: np.ndarray  # (n, 3) eV/Å, float64 (zeros when the file has none)
    has_forces: bool = True


# ----------------------------------------------------------------------------------- readers


def read_extxyz(path: str, *, energy_key: str = "energy", forces_key: str = "forces",
                require_labels: bool = True, require_forces: bool = True) -> List[Frame]:
    """Read every frame of an extended-XYZ file through ASE.

    The energy is taken from the info line (``energy=...``) and the forces from the per-atom
    ``forces`` columns; ASE may have moved either into a single-point calculator, which is
    read as well. Any parse failure or missing label raises ``DataError`` naming the file and
    the 0-based frame index. With ``require_forces=False`` a frame without forces (the AcAc
    H-transfer path and dihedral scan are energy-only) gets zero forces and ``has_forces=False``.
    """
    import ase.io

    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    frames: List[Frame] = []
    it = ase.io.iread(path, index=":", format="extxyz")
    k = 0
    while True:
        try:
            atoms = next(it)
        except StopIteration:
            break
        except Exception as e:  # ASE raises many kinds (ValueError, IndexError, XYZError ...)
            raise DataError(f"{path}: frame {k} (0-based) is malformed or truncated: "
                            f"{type(e).__name__}: {e}") from None
        Z = atoms.get_atomic_numbers().astype(np.int32)
        pos = np.asarray(atoms.get_positions(), np.float64)
        calc = getattr(atoms, "calc", None)
        results = getattr(calc, "results", {}) if calc is not None else {}
        energy = atoms.info.get(energy_key, results.get(energy_key))
        forces = atoms.arrays.get(forces_key, results.get(forces_key))
        if require_labels and energy is None:
            raise DataError(f"{path}: frame {k} (0-based) has no `{energy_key}` in its info line")
        if require_labels and require_forces and forces is None:
            raise DataError(f"{path}: frame {k} (0-based) has no per-atom `{forces_key}` columns")
        forces_arr = np.zeros_like(pos) if forces is None else np.asarray(forces, np.float64)
        if forces_arr.shape != pos.shape:
            raise DataError(f"{path}: frame {k} (0-based): forces shape {forces_arr.shape} != {pos.shape}")
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(forces_arr))
                and (energy is None or np.isfinite(float(energy)))):
            raise DataError(f"{path}: frame {k} (0-based) contains non-finite values")
        frames.append(Frame(Z, pos, float("nan") if energy is None else float(energy), forces_arr,
                            forces is not None))
        k += 1
    if not frames:
        raise DataError(f"{path}: no frames (empty file?)")
    return frames


def read_isolated_atoms(path: str, *, energy_key: str = "energy") -> Dict[int, float]:
    """E0s: {atomic number: energy (eV)} from a file of single-atom frames."""
    e0 = {}
    for k, f in enumerate(read_extxyz(path, energy_key=energy_key, require_labels=False)):
        if len(f.Z) != 1 or not np.isfinite(f.energy):
            raise DataError(f"{path}: frame {k} (0-based) is not a single atom with an energy")
        e0[int(f.Z[0])] = f.energy
    return e0


def read_rmd17(path: str) -> List[Frame]:
    """Read an rMD17 npz (``nuclear_charges``, ``coords`` Å, ``energies`` kcal/mol, ``forces``
    kcal/mol/Å) and convert to eV and eV/Å."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found; rMD17 is at {RMD17_URL}")
    try:
        with np.load(path) as d:
            missing = {"nuclear_charges", "coords", "energies", "forces"} - set(d.files)
            if missing:
                raise DataError(f"{path}: missing arrays {sorted(missing)}")
            Z = np.asarray(d["nuclear_charges"], np.int32)
            R = np.asarray(d["coords"], np.float64)
            E = np.asarray(d["energies"], np.float64) * KCAL_PER_MOL_IN_EV
            F = np.asarray(d["forces"], np.float64) * KCAL_PER_MOL_IN_EV
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError on truncated members
        raise DataError(f"{path}: unreadable or truncated npz: {type(e).__name__}: {e}") from None
    n = len(Z)
    if R.ndim != 3 or R.shape[1:] != (n, 3) or F.shape != R.shape or E.shape[:1] != R.shape[:1]:
        raise DataError(f"{path}: inconsistent shapes coords {R.shape}, forces {F.shape}, "
                        f"energies {E.shape}, nuclear_charges {Z.shape}")
    E = E.reshape(len(E))
    bad = np.nonzero(~(np.isfinite(E) & np.isfinite(R).all((1, 2)) & np.isfinite(F).all((1, 2))))[0]
    if len(bad):
        raise DataError(f"{path}: frame {int(bad[0])} (0-based) contains non-finite values")
    return [Frame(Z, R[i], float(E[i]), F[i]) for i in range(len(E))]


# ------------------------------------------------------------------------------ neighbours


def neighbour_list(positions: np.ndarray, cutoff: float):
    """Ordered pairs (senders j, receivers i), i≠j, with |x_i − x_j| < cutoff (no PBC).

    O(n²) in NumPy, fine for molecules of a few dozen atoms.
    """
    d = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    adj = d < cutoff
    np.fill_diagonal(adj, False)
    r, s = np.nonzero(adj)
    return s.astype(np.int32), r.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Budget:
    n_node: int
    n_edge: int
    n_graph: int


def pack_frames(frames: Sequence[Frame], graphs: Sequence[tuple], budget: Budget, species_index: np.ndarray,
                e0: np.ndarray, shift: float) -> Dict[str, np.ndarray]:
    """Pack frames (with their neighbour lists ``graphs``) into one padded batch.

    ``species_index[Z]`` maps atomic numbers to species indices; ``e0[species]`` the isolated-atom
    energies. Padding: nodes/edges after the real ones, all in graph G−1, edges (N−1 → N−1).
    """
    N, E, G = budget.n_node, budget.n_edge, budget.n_graph
    n_real = sum(len(f.Z) for f in frames)
    e_real = sum(len(g[0]) for g in graphs)
    if len(frames) > G - 1 or n_real > N - 1 or e_real > E:
        raise DataError(f"batch exceeds its budget: {len(frames)} graphs, {n_real} nodes, {e_real} edges "
                        f"for budget {budget}")
    pos = np.zeros((N, 3), np.float64)
    forces = np.zeros((N, 3), np.float64)
    forces_mask = np.zeros(N, bool)
    species = np.zeros(N, np.int32)
    node_graph = np.full(N, G - 1, np.int32)
    senders = np.full(E, N - 1, np.int32)
    receivers = np.full(E, N - 1, np.int32)
    energy = np.zeros(G, np.float64)
    resid = np.zeros(G, np.float64)
    n_atoms = np.zeros(G, np.float64)
    a = b = 0
    for g, (f, (s, r)) in enumerate(zip(frames, graphs)):
        n, m = len(f.Z), len(s)
        pos[a:a + n] = f.positions
        forces[a:a + n] = f.forces
        forces_mask[a:a + n] = f.has_forces
        sp = species_index[f.Z]
        species[a:a + n] = sp
        node_graph[a:a + n] = g
        senders[b:b + m] = s + a
        receivers[b:b + m] = r + a
        energy[g] = f.energy
        resid[g] = f.energy - (e0[sp].sum() + shift * n)
        n_atoms[g] = n
        a += n
        b += m
    return dict(
        positions=pos, forces=forces, species=species, node_graph=node_graph, senders=senders,
        receivers=receivers, node_mask=np.arange(N) < a, edge_mask=np.arange(E) < b,
        graph_mask=np.arange(G) < len(frames), forces_mask=forces_mask, energy=energy, energy_residual=resid, n_atoms=n_atoms,
    )


# ----------------------------------------------------------------------------- data module


class AtomsDataModule:
    """Train/valid/test frames of one molecule family with static-budget batching.

    ``stats``: ``atomic_numbers`` (sorted list), ``e0`` (list aligned with it, eV), ``shift``
    (mean per-atom energy after subtracting E0s, eV), ``scale`` (RMS of training force
    components, eV/Å), ``avg_num_neighbors``, ``cutoff``, ``budget`` (dict).
    """

    def __init__(self, splits: Dict[str, List[Frame]], e0: Dict[int, float], *, cutoff: float,
                 batch_size: int, eval_batch_size: Optional[int] = None, name: str = "atoms"):
        self.name = name
        self.cutoff = float(cutoff)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.splits = splits
        self.eval_splits = [k for k in splits if k != "train"]
        zs = sorted(set(int(z) for fr in splits.values() for f in fr for z in f.Z) | set(e0))
        self.species_index = np.full(max(zs) + 1, -1, np.int32)
        self.species_index[zs] = np.arange(len(zs), dtype=np.int32)
        self.e0 = np.array([e0.get(z, 0.0) for z in zs], np.float64)
        train = splits["train"]
        per_atom = [(f.energy - self.e0[self.species_index[f.Z]].sum()) / len(f.Z) for f in train]
        shift = float(np.mean(per_atom))
        scale = float(np.sqrt(np.mean(np.concatenate([f.forces.ravel() for f in train]) ** 2)))
        self.graphs = {k: [neighbour_list(f.positions, self.cutoff) for f in fr] for k, fr in splits.items()}
        max_n = max(len(f.Z) for fr in splits.values() for f in fr)
        max_e = max(len(g[0]) for gs in self.graphs.values() for g in gs)
        self.train_budget = Budget(self.batch_size * max_n + 1, self.batch_size * max_e + 1, self.batch_size + 1)
        self.eval_budget = Budget(self.eval_batch_size * max_n + 1, self.eval_batch_size * max_e + 1,
                                  self.eval_batch_size + 1)
        avg_nb = float(np.mean([len(g[0]) / len(f.Z) for f, g in zip(train, self.graphs["train"])]))
        hist = np.bincount([len(f.Z) for f in train]).tolist()
        self.stats = dict(
            atomic_numbers=zs, e0=self.e0.tolist(), shift=shift, scale=scale, avg_num_neighbors=avg_nb,
            cutoff=self.cutoff, atom_count_histogram=hist, n_frames={k: len(v) for k, v in splits.items()},
        )
        self.steps_per_epoch = -(-len(train) // self.batch_size)

    def _pack(self, split: str, idx, budget: Budget):
        fr, gr = self.splits[split], self.graphs[split]
        return pack_frames([fr[i] for i in idx], [gr[i] for i in idx], budget, self.species_index,
                           self.e0, self.stats["shift"])

    def train_batches(self, epoch: int, seed: int) -> Iterator[dict]:
        """Shuffled training batches, deterministic in (seed, epoch); the last one may be partial."""
        perm = np.random.default_rng([int(seed), int(epoch)]).permutation(len(self.splits["train"]))
        for i in range(0, len(perm), self.batch_size):
            yield self._pack("train", perm[i:i + self.batch_size], self.train_budget)

    def eval_batches(self, split: str) -> Iterator[dict]:
        if split not in self.splits:
            raise ConfigError(f"{self.name}: no split {split!r}; have {list(self.splits)}")
        n = len(self.splits[split])
        for i in range(0, n, self.eval_batch_size):
            yield self._pack(split, range(i, min(n, i + self.eval_batch_size)), self.eval_budget)

    def example_batch(self) -> dict:
        return self._pack("train", range(min(self.batch_size, len(self.splits["train"]))), self.train_budget)


def split_train_valid(frames: List[Frame], n_train: Optional[int], n_valid: int, seed: int):
    """Random train/valid split of a training file (paper: 450/50 for AcAc and 3BPA, 950/50 rMD17)."""
    if n_valid >= len(frames):
        raise ConfigError(f"n_valid={n_valid} but only {len(frames)} training frames")
    perm = np.random.default_rng(seed).permutation(len(frames))
    valid = [frames[i] for i in perm[:n_valid]]
    rest = perm[n_valid:]
    if n_train is not None:
        if n_train > len(rest):
            raise ConfigError(f"n_train={n_train} but only {len(rest)} frames left after validation")
        rest = rest[:n_train]
    return [frames[i] for i in rest], valid


def _missing(path: str, url: str, what: str) -> DataError:
    return DataError(f"{what} not present at {path}; download it from {url} into that folder")


def _botnet(cfg: dict, data_dir: str, *, folder: str, train_file: str, iso_file: str,
            known_tests: Sequence[str], name: str, default_tests: Optional[Sequence[str]] = None) -> AtomsDataModule:
    cfg = dict(cfg)
    root = os.path.join(data_dir, "botnet", folder)
    train_name = cfg.pop("train_file", train_file)
    tests = list(cfg.pop("test_sets", None) or (default_tests or known_tests))
    on_missing = cfg.pop("on_missing_test", "error")
    if on_missing not in ("error", "skip"):
        raise ConfigError(f"data.on_missing_test must be error|skip, got {on_missing!r}")
    unknown = [t for t in tests if t not in known_tests]
    if unknown:
        raise ConfigError(f"data={name}: unknown test sets {unknown}; known: {list(known_tests)}")
    # Check every file up front so a missing test set fails before training, not after it.
    paths = {t: os.path.join(root, t + ".xyz") for t in tests}
    present = {}
    for t, p in paths.items():
        if os.path.exists(p):
            present[t] = p
        elif on_missing == "error":
            raise _missing(p, f"{BOTNET_URL}/{folder}/{t}.xyz",
                           f"{name} test set '{t}'") from None
    tr_path = os.path.join(root, train_name + ".xyz")
    if not os.path.exists(tr_path):
        raise _missing(tr_path, f"{BOTNET_URL}/{folder}/{train_name}.xyz", f"{name} training set")
    iso = os.path.join(root, iso_file)
    if not os.path.exists(iso):
        raise _missing(iso, f"{BOTNET_URL}/{folder}/{iso_file}", f"{name} isolated-atom energies")
    train, valid = split_train_valid(read_extxyz(tr_path), cfg.pop("n_train", None), int(cfg.pop("n_valid", 50)),
                                     int(cfg.pop("split_seed", 0)))
    splits = {"train": train, "valid": valid}
    for t, p in present.items():
        fr = read_extxyz(p, require_forces=False)
        n_test = cfg.get("n_test")
        splits[t] = fr[: int(n_test)] if n_test else fr
    cfg.pop("n_test", None)
    return _module(cfg, splits, read_isolated_atoms(iso), name)


def _module(cfg: dict, splits, e0, name) -> AtomsDataModule:
    cfg = dict(cfg)
    dm = AtomsDataModule(splits, e0, cutoff=float(cfg.pop("cutoff", 5.0)), batch_size=int(cfg.pop("batch_size", 5)),
                         eval_batch_size=cfg.pop("eval_batch_size", None), name=name)
    cfg.pop("download_url", None)
    if cfg:
        raise ConfigError(f"data={name}: unknown keys {sorted(cfg)}")
    return dm


@DATASETS.register("acac")
def build_acac(cfg: dict, data_dir: str) -> AtomsDataModule:
    """Acetylacetone (BOTNet): train on ``train_300K`` (450/50), test ``test_MD_300K``, ``test_MD_600K``."""
    return _botnet(cfg, data_dir, folder="dataset_acac", train_file="train_300K", iso_file="isolated_atoms.xyz",
                   known_tests=ACAC_TESTS, default_tests=ACAC_PAPER_TESTS, name="acac")


@DATASETS.register("bpa3")
def build_bpa3(cfg: dict, data_dir: str) -> AtomsDataModule:
    """3BPA (BOTNet): train on ``train_300K`` or ``train_mixedT``; tests 300K/600K/1200K/dih (download)."""
    return _botnet(cfg, data_dir, folder="dataset_3BPA", train_file="train_300K", iso_file="iso_atoms.xyz",
                   known_tests=BPA3_TESTS, name="bpa3")


@DATASETS.register("rmd17")
def build_rmd17(cfg: dict, data_dir: str) -> AtomsDataModule:
    """rMD17 split 01: ``rmd17_<molecule>_{train,test}_01.npz``; 950/50 train/valid, 1000 test.

    rMD17 has no isolated-atom energies and every frame has the same composition, so E0s are
    not identifiable: they are zero and the per-atom shift carries the mean energy.
    """
    cfg = dict(cfg)
    mol = cfg.pop("molecule", None)
    if mol not in RMD17_MOLECULES:
        raise ConfigError(f"data.molecule must be one of {list(RMD17_MOLECULES)}, got {mol!r}")
    split = cfg.pop("split", "01")
    root = os.path.join(data_dir, "rmd17")
    tr = os.path.join(root, f"rmd17_{mol}_train_{split}.npz")
    te = os.path.join(root, f"rmd17_{mol}_test_{split}.npz")
    for p in (tr, te):
        if not os.path.exists(p):
            raise _missing(p, RMD17_URL, f"rMD17 {mol}")
    train, valid = split_train_valid(read_rmd17(tr), cfg.pop("n_train", None), int(cfg.pop("n_valid", 50)),
                                     int(cfg.pop("split_seed", 0)))
    test = read_rmd17(te)
    n_test = cfg.pop("n_test", None)
    return _module(cfg, {"train": train, "valid": valid, "test": test[: int(n_test)] if n_test else test}, {},
                   f"rmd17/{mol}")
