"""QM9 with hydrogens for generative modelling, in the EDM protocol (Hoogeboom et al. 2022).

Source: the PyPI wheel ``qm9pack`` (CSV files under ``qm9pack/data/``; public origin: the QM9
figshare record of Ramakrishnan et al. 2014, https://doi.org/10.6084/m9.figshare.c.978904),
130,831 molecules — the 133,885 GDB-9 molecules minus the 3,054 "uncharacterised" ones.

EDM split (``qm9/data/prepare/qm9.py`` of EDM/Cormorant): ``included`` = the GDB indices of the
130,831 kept molecules in ascending order; ``perm = np.random.seed(0); np.random.permutation(130831)``;
train / valid / test = ``included[perm[:100000]]``, ``[100000:117748]``, ``[117748:]``.  EDM then
reads each split's files in archive order, so inside a split molecules are in ascending GDB index
order; we keep that order (it matters only for "the first k molecules" of a split).

Molecules are padded to 29 atoms.  Batches are *dense* (B, 29, ...) with masks rather than flat
graphs: a molecule is fully connected, so the generative dynamics work on (B, 29, 29) pair arrays
(as EDM does), and every batch has the same static shape.

Properties (column order of ``PROPERTIES``), units as in the EDM conditioning tables:
    alpha [bohr^3], gap [meV], homo [meV], lumo [meV], mu [D], Cv [cal/(mol K)].
"""
from __future__ import annotations

import functools
import importlib.util
import os
from typing import Iterator

import numpy as np

from equilab.errors import ConfigError, DataError
from equilab.registry import DATASETS

ATOM_TYPES = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS = (1, 6, 7, 8, 9)
MAX_ATOMS = 29
N_MOLECULES = 130_831
N_GDB9 = 133_885
SPLIT_SIZES = {"train": 100_000, "valid": 17_748, "test": 13_083}
PROPERTIES = ("alpha", "gap", "homo", "lumo", "mu", "Cv")
PROPERTY_UNITS = {"alpha": "bohr^3", "gap": "meV", "homo": "meV", "lumo": "meV", "mu": "D", "Cv": "cal/mol/K"}
HARTREE_TO_MEV = 27_211.386245988  # CODATA 2018
CACHE_NAME = "qm9_edm_v1.npz"

_CSV_COLUMNS = [
    "Index", "N_atoms", "Elements", "XYZ_Ang", "Polarizability_bohr3", "HOMO_LUMO_gap_au",
    "HOMO_au", "LUMO_au", "Dipole_debye", "Heatcapacity_Cv_cal_mol_K",
]


def _parse_coordinates(text: str, n_atoms: int, index: int) -> np.ndarray:
    """Parse ``[[x,y,z],...]``; forms like ``0.`` are valid Python float literals (not JSON)."""
    try:
        flat = [float(v) for v in text.replace("[", " ").replace("]", " ").split(",") if v.strip()]
    except ValueError as e:
        raise DataError(f"qm9pack molecule {index}: unparsable coordinates ({e})") from None
    if len(flat) != 3 * n_atoms:
        raise DataError(f"qm9pack molecule {index}: {len(flat)} coordinates for {n_atoms} atoms")
    return np.asarray(flat, dtype=np.float64).reshape(n_atoms, 3)


def _parse_elements(text: str, n_atoms: int, index: int) -> np.ndarray:
    symbols = [s.strip().strip("'\"") for s in text.strip("[] ").split(",")]
    z = {s: n for s, n in zip(ATOM_TYPES, ATOMIC_NUMBERS)}
    if len(symbols) != n_atoms or any(s not in z for s in symbols):
        raise DataError(f"qm9pack molecule {index}: bad element list {text!r}")
    return np.asarray([z[s] for s in symbols], dtype=np.int8)


def edm_split(gdb_indices: np.ndarray) -> dict[str, np.ndarray]:
    """Row numbers of the EDM train/valid/test molecules, each sorted ascending (EDM's order).

    Args:
        gdb_indices: (130831,) 1-based GDB-9 indices of the kept molecules, ascending.
    """
    if len(gdb_indices) != N_MOLECULES or np.any(np.diff(gdb_indices) <= 0):
        raise DataError(f"QM9 must hold {N_MOLECULES} molecules in ascending GDB order")
    perm = np.random.RandomState(0).permutation(N_MOLECULES)  # same stream as np.random.seed(0)
    n_tr, n_va = SPLIT_SIZES["train"], SPLIT_SIZES["valid"]
    parts = {"train": perm[:n_tr], "valid": perm[n_tr:n_tr + n_va], "test": perm[n_tr + n_va:]}
    return {k: np.sort(v) for k, v in parts.items()}


def qm9pack_data_dir() -> str:
    """Folder of the qm9pack CSVs, found without importing the package: its ``__init__`` imports
    ``pkg_resources``, which newer setuptools no longer ships."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("QM9 needs the `qm9pack` package (pip install qm9pack); it ships the CSV files")
    root = os.path.join(list(spec.submodule_search_locations)[0], "data")
    if not os.path.exists(os.path.join(root, "qm9_part1.csv")):
        raise DataError(f"{root}: qm9pack data files missing (qm9_part1.csv)")
    return root


def build_cache(path: str) -> None:
    """Read the qm9pack CSVs and write the padded arrays and the EDM split to ``path`` (npz)."""
    import pandas as pd

    root = qm9pack_data_dir()
    frames = [pd.read_csv(os.path.join(root, part), usecols=_CSV_COLUMNS)
              for part in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")]
    df = pd.concat(frames, ignore_index=True).sort_values("Index", kind="stable")
    if len(df) != N_MOLECULES:
        raise DataError(f"qm9pack holds {len(df)} molecules, expected {N_MOLECULES}")
    m = len(df)
    n_atoms = df["N_atoms"].to_numpy(np.int64)
    index = df["Index"].to_numpy(np.int64)
    charges = np.zeros((m, MAX_ATOMS), np.int8)
    positions = np.zeros((m, MAX_ATOMS, 3), np.float64)
    for r, (idx, n, el, xyz) in enumerate(zip(index, n_atoms, df["Elements"], df["XYZ_Ang"])):
        charges[r, :n] = _parse_elements(el, n, idx)
        positions[r, :n] = _parse_coordinates(xyz, n, idx)
    props = np.stack(
        [
            df["Polarizability_bohr3"].to_numpy(np.float64),
            df["HOMO_LUMO_gap_au"].to_numpy(np.float64) * HARTREE_TO_MEV,
            df["HOMO_au"].to_numpy(np.float64) * HARTREE_TO_MEV,
            df["LUMO_au"].to_numpy(np.float64) * HARTREE_TO_MEV,
            df["Dipole_debye"].to_numpy(np.float64),
            df["Heatcapacity_Cv_cal_mol_K"].to_numpy(np.float64),
        ],
        axis=1,
    )
    split = edm_split(index)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(
        tmp, gdb_index=index, n_atoms=n_atoms.astype(np.int8), charges=charges,
        positions=positions, properties=props, **{f"split_{k}": v for k, v in split.items()},
    )
    os.replace(tmp, path)  # atomic: a crashed build never leaves a half-written cache


def cache_path(data_dir: str) -> str:
    """``data_dir/qm9/<cache>``; if that folder cannot be written (e.g. a read-only shared data
    root), ``$EQUILAB_CACHE/qm9`` (default ``~/.cache/equilab/qm9``) instead."""
    path = os.path.join(os.fspath(data_dir), "qm9", CACHE_NAME)
    if os.path.exists(path):
        return path
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False
    if writable:
        return path
    fallback = os.environ.get("EQUILAB_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "equilab"))
    return os.path.join(fallback, "qm9", CACHE_NAME)


def prepare(data_dir: str) -> str:
    """Build the cache under ``data_dir/qm9`` if missing (``equilab-data qm9``); returns its path."""
    path = cache_path(data_dir)
    if not os.path.exists(path):
        build_cache(path)
    return path


@functools.lru_cache(maxsize=2)
def load(data_dir: str) -> dict[str, np.ndarray]:
    """All 130,831 molecules as arrays (see ``build_cache``); builds the cache on first use.

    Returns a dict: gdb_index (M,), n_atoms (M,), charges (M, 29) atomic numbers (0 = padding),
    positions (M, 29, 3) Å, properties (M, 6) in ``PROPERTIES`` order, split_{train,valid,test}.
    """
    path = prepare(data_dir)
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:  # a truncated or foreign file: say which and how to fix it
        raise DataError(f"{path}: unreadable QM9 cache ({e}); delete it to rebuild") from None


def molecules(data_dir: str, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(positions (n, 3) Å, atomic numbers (n,)) per molecule of an EDM split, in EDM order."""
    d = load(data_dir)
    rows = d[f"split_{split}"]
    return [(d["positions"][r, : d["n_atoms"][r]], d["charges"][r, : d["n_atoms"][r]].astype(np.int64)) for r in rows]


def _one_hot(charges: np.ndarray) -> np.ndarray:
    lut = np.full(10, -1, np.int64)
    lut[list(ATOMIC_NUMBERS)] = np.arange(len(ATOMIC_NUMBERS))
    idx = lut[charges]
    return (idx[..., None] == np.arange(len(ATOMIC_NUMBERS))).astype(np.float32)


SUBSETS = ("all", "first_half", "second_half")


def edm_half(train_rows: np.ndarray, subset: str) -> np.ndarray:
    """EDM's halves of the training set (``qm9/data/utils.py``): ``np.random.seed(42)``, a
    permutation of the stored training molecules; ``first_half`` = its first 50,000 entries
    (property evaluator), ``second_half`` = the rest (conditional generator), both in
    permutation order as EDM slices them.  ``all`` returns ``train_rows`` unchanged.

    Examples:
        >>> rows = np.arange(10)
        >>> a, b = edm_half(rows, "first_half"), edm_half(rows, "second_half")
        >>> sorted(np.concatenate([a, b]).tolist()) == rows.tolist(), len(a), len(b)
        (True, 5, 5)
    """
    if subset not in SUBSETS:
        raise ConfigError(f"data.subset must be one of {SUBSETS}, got {subset!r}")
    if subset == "all":
        return train_rows
    perm = np.random.RandomState(42).permutation(len(train_rows))
    h = len(train_rows) // 2
    return train_rows[perm[:h]] if subset == "first_half" else train_rows[perm[h:]]


def check_property(name, field: str = "data.condition_on") -> int:
    """Column of a property name in ``PROPERTIES``; a clear ConfigError naming ``field`` otherwise."""
    if name not in PROPERTIES:
        raise ConfigError(f"{field} must be one of {', '.join(PROPERTIES)}; got {name!r}")
    return PROPERTIES.index(name)


class QM9DataModule:
    """Dense, padded QM9 batches for generative models (DataModule interface of equilab.train).

    Batch fields (B = batch_size, 29 atoms):
        positions (B, 29, 3) float32 Å, zero-centred over real atoms; node_mask (B, 29) bool;
        one_hot (B, 29, 5) float32 over H C N O F; charges (B, 29) float32 atomic numbers;
        n_atoms (B,) int32; properties (B, 6) float32; graph_mask (B,) bool (False = padding
        molecule, only in the last eval batch); with ``condition_on``, context (B, 1) float32,
        the normalised property (p − mean)/MAD.

    Property normalisation (``stats["property_mean"]``, ``["property_mad"]``, all six columns)
    follows EDM's ``compute_mean_mad``: mean and mean absolute deviation of the training set for
    ``subset=all``, of the *validation* split for the halves (EDM computes the norms of
    ``qm9_second_half`` and of its property evaluator on ``dataloaders['valid']``), so the
    generator and the evaluator of the conditioning protocol share one normalisation.

    Args:
        data_dir: data root (the cache lives in ``data_dir/qm9``).
        batch_size: molecules per batch.
        train_subset: use only the first k training molecules (CPU smoke runs).
        subset: ``all``, ``first_half`` or ``second_half`` of the EDM training set (see
            ``edm_half``): property evaluator on the first half, conditional generator on the
            second.
        condition_on: None or one of ``PROPERTIES``: adds ``context`` to every batch and the
            joint (atom count, property) sample of the training molecules to ``stats``
            (``context_n_atoms``, ``context_values``) for conditional sampling.
        eval_subset: cap on molecules per evaluation split (None = all).
        eval_pick: which ``eval_subset`` molecules: ``first`` (the first k in EDM's order, i.e.
            the lowest GDB indices — mostly the smallest molecules) or ``spread`` (k evenly spaced
            over the split, representative of all sizes; use it when a metric is compared).
        half: legacy spelling of ``subset`` (``first`` / ``second``), kept so that configs
            saved before ``subset`` existed still build.
        size_buckets: None (every training batch padded to 29 atoms) or ascending pad sizes, the
            last one 29, e.g. ``[14, 17, 19, 21, 23, 29]``: each training batch then holds
            molecules of one bucket (n ≤ its size, > the previous one) padded to that size.  The
            dense networks cost ∝ N², so this is ~2× less work per step on QM9 (mean 18 atoms);
            one compile per bucket.  Evaluation batches stay at 29.
        bucket_group: k ≥ 1 (bucketed batches only): the batches come in runs of k batches of
            one bucket, in random order of runs; each bucket's batches per epoch are cut to a
            multiple of k (the rest, reshuffled every epoch, wait for a later epoch).  Set it to
            ``trainer.steps_per_call`` so that every scanned k-step chunk has one shape (one
            compiled program per bucket); with k = 1 the order is the plain bucketed one.
    """

    def __init__(self, data_dir, batch_size=64, train_subset=None, subset="all", condition_on=None,
                 eval_subset=None, eval_pick="first", half=None, size_buckets=None, bucket_group=1):
        self.data_dir = os.fspath(data_dir)
        self.batch_size = int(batch_size)
        d = load(self.data_dir)
        if half is not None:
            if half not in ("first", "second"):
                raise DataError(f"data.half must be null, first or second, got {half!r} (prefer data.subset)")
            subset = f"{half}_half"
        self.subset = subset or "all"
        train = edm_half(d["split_train"], self.subset)
        self.condition_on = condition_on
        self._prop = None if condition_on is None else check_property(condition_on)
        if train_subset is not None:
            train = train[: int(train_subset)]
        self._rows = {"train": train, "valid": d["split_valid"], "test": d["split_test"]}
        if eval_pick not in ("first", "spread"):
            raise ConfigError(f"data.eval_pick must be first or spread, got {eval_pick!r}")
        if eval_subset is not None:
            for s in ("valid", "test"):
                r = self._rows[s]
                k = min(int(eval_subset), len(r))
                self._rows[s] = r[:k] if eval_pick == "first" else r[np.linspace(0, len(r) - 1, k).round().astype(np.int64)]
        if len(train) < self.batch_size:
            raise DataError(f"QM9 training set of {len(train)} molecules < batch_size {self.batch_size}")
        self.eval_splits = ["valid", "test"]
        self.size_buckets = self._check_buckets(size_buckets)
        try:
            self.bucket_group = int(bucket_group)
        except (TypeError, ValueError):
            raise ConfigError(f"data.bucket_group={bucket_group!r} is not an integer") from None
        if self.bucket_group < 1:
            raise ConfigError(f"data.bucket_group={self.bucket_group} must be >= 1")
        if self.size_buckets is None:
            self.steps_per_epoch = len(train) // self.batch_size
        else:
            counts = np.bincount(self._bucket_of(d["n_atoms"][train]), minlength=len(self.size_buckets))
            g = self.bucket_group
            self.steps_per_epoch = int((counts // self.batch_size // g * g).sum())
            if self.steps_per_epoch == 0:
                raise DataError(f"data.size_buckets={list(self.size_buckets)}: no bucket holds batch_size "
                                f"{self.batch_size} x data.bucket_group {g} of the {len(train)} training molecules")
        hist = np.bincount(d["n_atoms"][train].astype(np.int64), minlength=MAX_ATOMS + 1)
        norm_split = "train" if self.subset == "all" else "valid"
        props = d["properties"][train if norm_split == "train" else d["split_valid"]]
        mean = props.mean(0)
        self.stats = {
            "n_nodes_hist": hist.tolist(),
            "atom_types": list(ATOM_TYPES),
            "atomic_numbers": list(ATOMIC_NUMBERS),
            "max_atoms": MAX_ATOMS,
            "n_train": int(len(train)),
            "subset": self.subset,
            "properties": list(PROPERTIES),
            "property_units": [PROPERTY_UNITS[p] for p in PROPERTIES],
            "property_mean": mean.tolist(),
            "property_mad": np.abs(props - mean).mean(0).tolist(),
            "property_norm_split": norm_split,
            "condition_on": condition_on,
            "context_dim": 0 if condition_on is None else 1,
        }
        if condition_on is not None:
            self.stats["context_n_atoms"] = d["n_atoms"][train].astype(np.int64)
            self.stats["context_values"] = d["properties"][train, self._prop].astype(np.float64)

    @staticmethod
    def _check_buckets(buckets):
        if buckets is None:
            return None
        try:
            b = [int(v) for v in buckets]
        except (TypeError, ValueError):
            raise ConfigError(f"data.size_buckets must be a list of atom counts, got {buckets!r}") from None
        if not b or any(x <= 0 for x in b) or any(x >= y for x, y in zip(b, b[1:])):
            raise ConfigError(f"data.size_buckets={b} must be strictly ascending positive atom counts")
        if b[-1] != MAX_ATOMS:
            raise ConfigError(f"data.size_buckets={b}: the last bucket must be {MAX_ATOMS} (QM9's largest "
                              "molecule), so that every molecule has a bucket")
        return np.asarray(b, np.int64)

    def _bucket_of(self, n_atoms: np.ndarray) -> np.ndarray:
        """Index of the smallest bucket that holds each atom count."""
        return np.searchsorted(self.size_buckets, np.asarray(n_atoms, np.int64), side="left")

    def subset_rows(self, subset: str) -> np.ndarray:
        """Row numbers (into the cache arrays) of ``all`` / ``first_half`` / ``second_half`` of the
        EDM training set, or of the ``valid`` / ``test`` split (all of it)."""
        d = load(self.data_dir)
        if subset in ("valid", "test"):
            return d[f"split_{subset}"]
        return edm_half(d["split_train"], subset)

    def batches_for_rows(self, rows: np.ndarray, batch_size: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Padded batches (same fields as training batches) over the given rows, in order."""
        b = batch_size or self.batch_size
        for s in range(0, len(rows), b):
            yield self._batch(rows[s:s + b], b)

    def _batch(self, rows: np.ndarray, batch_size: int | None = None, n_pad: int = MAX_ATOMS) -> dict[str, np.ndarray]:
        """Rows -> one padded batch of ``batch_size`` molecules × ``n_pad`` atoms (real atoms come
        first in the cache, so a molecule of n ≤ n_pad atoms fits)."""
        d = load(self.data_dir)
        b = batch_size or self.batch_size
        valid = len(rows)
        rows = np.concatenate([rows, np.full(b - valid, rows[0], rows.dtype)]) if valid < b else rows
        graph_mask = np.arange(b) < valid
        charges = d["charges"][rows, :n_pad].astype(np.int64) * graph_mask[:, None]
        node_mask = charges > 0
        pos = d["positions"][rows, :n_pad]
        n = node_mask.sum(1)
        com = (pos * node_mask[..., None]).sum(1) / np.maximum(n, 1)[:, None]
        pos = (pos - com[:, None]) * node_mask[..., None]
        props = d["properties"][rows]
        batch = {
            "positions": pos.astype(np.float32),
            "node_mask": node_mask,
            "one_hot": _one_hot(charges) * node_mask[..., None],
            "charges": (charges * node_mask).astype(np.float32),
            "n_atoms": n.astype(np.int32),
            "properties": props.astype(np.float32),
            "graph_mask": graph_mask,
        }
        if self._prop is not None:
            i = self._prop
            ctx = (props[:, i] - self.stats["property_mean"][i]) / self.stats["property_mad"][i]
            batch["context"] = ctx[:, None].astype(np.float32)  # normalised in float64, then cast
        return batch

    def train_batches(self, epoch: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
        rows = self._rows["train"]
        rng = np.random.default_rng([int(seed), int(epoch)])
        perm = rng.permutation(len(rows))
        if self.size_buckets is None:
            for s in range(self.steps_per_epoch):  # drop the ragged tail: one static shape
                yield self._batch(rows[perm[s * self.batch_size:(s + 1) * self.batch_size]])
            return
        # bucketed: shuffled rows split by bucket, each bucket cut into runs of bucket_group full
        # batches (its ragged tail dropped: one shape per bucket), then the runs of all buckets in
        # random order
        shuffled = rows[perm]
        which = self._bucket_of(load(self.data_dir)["n_atoms"][shuffled])
        plan, g, bs = [], self.bucket_group, self.batch_size
        for k, size in enumerate(self.size_buckets):
            rk = shuffled[which == k]
            plan += [([rk[(r * g + j) * bs:(r * g + j + 1) * bs] for j in range(g)], int(size))
                     for r in range(len(rk) // bs // g)]
        for i in rng.permutation(len(plan)):
            for b in plan[i][0]:
                yield self._batch(b, n_pad=plan[i][1])

    def eval_batches(self, split: str) -> Iterator[dict[str, np.ndarray]]:
        if split not in self._rows:
            raise DataError(f"QM9 has no split {split!r}; choose one of {sorted(self._rows)}")
        rows = self._rows[split]
        for s in range(0, len(rows), self.batch_size):
            yield self._batch(rows[s:s + self.batch_size])

    def example_batch(self) -> dict[str, np.ndarray]:
        return self._batch(self._rows["train"][: self.batch_size])


@DATASETS.register("qm9")
def build(cfg: dict, data_dir: str) -> QM9DataModule:
    return QM9DataModule(data_dir, **cfg)
