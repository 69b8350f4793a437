"""Charged-particle N-body data (EGNN benchmark, Satorras et al. 2021; anchors §2).

The simulator replays the reference generator's single legacy ``numpy.random.seed(43)``
stream, so the charges equal the public arrays bit for bit, and integrates all trajectories
of a split at once (vectorised over trajectories) with the reference arithmetic — squared
distances as ``|a|² + |b|² − 2 a·b``, forces clipped per component to ±100, one half-kick then
``x += dt·v; v += dt·F(x)`` — so positions match the public arrays to floating-point rounding.

Layout of the cached ``{train,valid,test}.npz`` (reference layout):
``loc`` (N, 49, 3, 5), ``vel`` (N, 49, 3, 5), ``edges`` (N, 5, 5), ``charges`` (N, 5, 1).
Saved frame k is the state after integration step 100·(k+1).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Dict, Iterator

import numpy as np

from equilab.data.graph import fully_connected_batch
from equilab.errors import DataError
from equilab.registry import DATASETS

N_BALLS = 5
BOX_SIZE = 5.0
LOC_STD = 1.0
VEL_NORM = 0.5
DT = 1e-3
MAX_F = 0.1 / DT
LENGTH = 5000
SAMPLE_FREQ = 100
N_SAVE = LENGTH // SAMPLE_FREQ - 1  # 49
CHARGE_TYPES = np.array([-1.0, 0.0, 1.0])
CHARGE_PROB = [0.5, 0.0, 0.5]
SPLIT_SIZES = {"train": 10_000, "valid": 2_000, "test": 2_000}
SEED = 43


@dataclasses.dataclass
class InitialConditions:
    charges: np.ndarray  # (N, 5, 1)
    loc: np.ndarray  # (N, 3, 5), after the reflection into the box
    vel: np.ndarray  # (N, 3, 5)


def _clamp(loc: np.ndarray, vel: np.ndarray):
    """Reference wall reflection, applied once at initialisation (in place, like the original)."""
    over = loc > BOX_SIZE
    loc[over] = 2 * BOX_SIZE - loc[over]
    vel[over] = -np.abs(vel[over])
    under = loc < -BOX_SIZE
    loc[under] = -2 * BOX_SIZE - loc[under]
    vel[under] = np.abs(vel[under])
    return loc, vel


def replay_stream(sizes=SPLIT_SIZES, seed: int = SEED) -> Dict[str, InitialConditions]:
    """Draw every split's initial conditions in the reference order from one legacy stream.

    Per trajectory: ``choice`` of 5 charges, ``randn(3,5)`` positions, ``randn(3,5)``
    velocities, then two ``randn(49,3,5)`` noise arrays (drawn although the noise is zero).
    Splits follow one another: train, valid, test.
    """
    rs = np.random.RandomState(seed)
    out = {}
    for split, n in sizes.items():
        charges = np.empty((n, N_BALLS, 1))
        loc = np.empty((n, 3, N_BALLS))
        vel = np.empty((n, 3, N_BALLS))
        for i in range(n):
            charges[i] = rs.choice(CHARGE_TYPES, size=(N_BALLS, 1), p=CHARGE_PROB)
            l0 = rs.randn(3, N_BALLS) * LOC_STD
            v0 = rs.randn(3, N_BALLS)
            v0 = v0 * VEL_NORM / np.sqrt((v0**2).sum(axis=0)).reshape(1, -1)
            loc[i], vel[i] = _clamp(l0, v0)
            rs.randn(N_SAVE, 3, N_BALLS)  # observation noise on loc (scaled by 0)
            rs.randn(N_SAVE, 3, N_BALLS)  # observation noise on vel (scaled by 0)
        out[split] = InitialConditions(charges, loc, vel)
    return out


def forces(loc: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Coulomb forces, reference arithmetic. loc (N, 3, n), edges = q qᵀ (N, n, n) -> (N, 3, n)."""
    A = np.swapaxes(loc, 1, 2)  # (N, n, 3)
    sq = (A**2).sum(axis=2)
    d2 = sq[:, :, None] + sq[:, None, :] - 2 * np.einsum("bid,bjd->bij", A, A)
    with np.errstate(divide="ignore", invalid="ignore"):
        size = edges / np.power(d2, 1.5)
    idx = np.arange(loc.shape[2])
    size[:, idx, idx] = 0.0
    diff = loc[:, :, :, None] - loc[:, :, None, :]  # (N, 3, n, n): x_i - x_j
    F = (size[:, None] * diff).sum(axis=-1)
    return np.clip(F, -MAX_F, MAX_F)


def simulate(ic: InitialConditions, length: int = LENGTH, sample_freq: int = SAMPLE_FREQ):
    """Leapfrog integration of all trajectories at once. Returns loc, vel (N, T_save, 3, n), edges."""
    charges = ic.charges
    edges = charges @ np.swapaxes(charges, 1, 2)
    loc_next = ic.loc.copy()
    vel_next = ic.vel.copy()
    n_save = length // sample_freq - 1
    N = loc_next.shape[0]
    loc = np.zeros((N, n_save, 3, N_BALLS))
    vel = np.zeros((N, n_save, 3, N_BALLS))
    vel_next += DT * forces(loc_next, edges)
    counter = 0
    for i in range(1, length):
        loc_next += DT * vel_next
        if i % sample_freq == 0:
            loc[:, counter], vel[:, counter] = loc_next, vel_next
            counter += 1
        vel_next += DT * forces(loc_next, edges)
    return loc, vel, edges


def energy(loc: np.ndarray, vel: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Total energy ½Σv² + ½Σ_{i≠j} q_i q_j / r_ij per trajectory. loc, vel (N, 3, n)."""
    K = 0.5 * (vel**2).sum(axis=(1, 2))
    diff = loc[:, :, :, None] - loc[:, :, None, :]
    r = np.sqrt((diff**2).sum(axis=1))
    n = loc.shape[2]
    off = ~np.eye(n, dtype=bool)
    U = 0.5 * (edges[:, off] / r[:, off]).sum(axis=1)
    return K + U


def generate(out_dir: str | os.PathLike, counts: Dict[str, int] | None = None, seed: int = SEED,
             log=print) -> Dict[str, Path]:
    """Simulate every split and write ``out_dir/{split}.npz`` in the reference layout.

    ``counts`` limits how many trajectories of each split are simulated (the first ones; the
    random stream is still replayed in full, so they are the same trajectories as in the
    complete data set).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ics = replay_stream(SPLIT_SIZES, seed)
    paths = {}
    for split, ic in ics.items():
        n = min((counts or SPLIT_SIZES)[split], SPLIT_SIZES[split])
        ic = InitialConditions(ic.charges[:n], ic.loc[:n], ic.vel[:n])
        log(f"simulating {n} {split} trajectories ({LENGTH} steps each) ...")
        loc, vel, edges = simulate(ic)
        path = out_dir / f"{split}.npz"
        tmp = out_dir / f".{split}.tmp.npz"
        np.savez(tmp, loc=loc, vel=vel, edges=edges, charges=ic.charges)
        os.replace(tmp, path)
        paths[split] = path
    return paths


def load_split(data_dir: str | os.PathLike, split: str) -> Dict[str, np.ndarray]:
    path = Path(data_dir) / "nbody" / f"{split}.npz"
    if not path.exists():
        raise DataError(
            f"N-body file {path} is missing: run `equilab-data nbody paths.data_dir={data_dir}` first "
            f"(or set data.generate_if_missing=true)"
        )
    try:
        with np.load(path) as f:
            d = {k: f[k] for k in ("loc", "vel", "charges")}
    except Exception as e:  # noqa: BLE001 — turn any reader failure into one line naming the file
        raise DataError(f"N-body file {path} is unreadable or truncated: {e}") from None
    if d["loc"].ndim != 4 or d["loc"].shape[1:] != (N_SAVE, 3, N_BALLS):
        raise DataError(f"N-body file {path}: field `loc` has shape {d['loc'].shape}, expected (N, {N_SAVE}, 3, {N_BALLS})")
    return d


def _have(data_dir: Path, counts: Dict[str, int]) -> bool:
    """Whether the cache holds at least ``counts`` trajectories of every split."""
    for split, n in counts.items():
        path = Path(data_dir) / "nbody" / f"{split}.npz"
        if not path.exists():
            return False
        try:
            with np.load(path) as f:
                if len(f["charges"]) < n:
                    return False
        except Exception:  # noqa: BLE001 — unreadable counts as missing; regenerated
            return False
    return True


class NBodyData:
    """DataModule for the EGNN N-body task: input frame 30 (positions, velocities, charges),
    target frame 40. Layout ``dense`` gives (B, 5, ...) arrays with a node mask (fully
    connected systems); ``graph`` gives padded edge-list graphs (equilab.data.graph). Both have
    static shapes, so a run compiles once."""

    def __init__(self, data_dir, *, batch_size=100, max_train=3000, max_valid=2000, max_test=2000,
                 frame_in=30, frame_out=40, generate_if_missing=False, eval_batch_size=None, pad_multiple=1,
                 layout="graph"):
        if layout not in ("dense", "graph"):
            raise DataError(f"data.layout={layout!r}; choose dense (fully connected, fast on CPU) or graph")
        self.layout = layout
        self.data_dir = Path(data_dir)
        limits = {"train": int(max_train), "valid": int(max_valid), "test": int(max_test)}
        if generate_if_missing and not _have(self.data_dir, limits):
            generate(self.data_dir / "nbody", counts=limits)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.pad_multiple = int(pad_multiple)
        self.arrays = {}
        for split, lim in limits.items():
            d = load_split(self.data_dir, split)
            n = min(int(lim), len(d["charges"]))
            loc = np.swapaxes(d["loc"][:n], 2, 3).astype(np.float32)  # (n, 49, 5, 3)
            vel = np.swapaxes(d["vel"][:n], 2, 3).astype(np.float32)
            self.arrays[split] = dict(
                positions=loc[:, frame_in], velocities=vel[:, frame_in],
                charges=d["charges"][:n].astype(np.float32), target=loc[:, frame_out],
            )
        n_train = len(self.arrays["train"]["charges"])
        if n_train < self.batch_size:
            raise DataError(f"data.batch_size={self.batch_size} exceeds the {n_train} training trajectories")
        self.steps_per_epoch = n_train // self.batch_size
        self.eval_splits = ["valid", "test"]
        self.stats = {"n_nodes": N_BALLS}

    def _batch(self, split: str, idx: np.ndarray, size: int):
        a = self.arrays[split]
        if self.layout == "dense":
            out = {}
            for k, v in a.items():
                buf = np.zeros((size,) + v.shape[1:], v.dtype)
                buf[: len(idx)] = v[idx]
                out[k] = buf
            out["node_mask"] = np.zeros((size, N_BALLS), bool)
            out["node_mask"][: len(idx)] = True
            return out
        return fully_connected_batch(
            {k: v[idx] for k, v in a.items()}, n_graphs=size, n_per_graph=N_BALLS, pad_multiple=self.pad_multiple
        )

    def train_batches(self, epoch: int, seed: int) -> Iterator[dict]:
        n = len(self.arrays["train"]["charges"])
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        for s in range(self.steps_per_epoch):
            yield self._batch("train", perm[s * self.batch_size:(s + 1) * self.batch_size], self.batch_size)

    def eval_batches(self, split: str) -> Iterator[dict]:
        n = len(self.arrays[split]["charges"])
        bs = self.eval_batch_size
        for s in range(0, n, bs):
            yield self._batch(split, np.arange(s, min(s + bs, n)), bs)

    def example_batch(self) -> dict:
        return self._batch("train", np.arange(self.batch_size), self.batch_size)


@DATASETS.register("nbody")
def build_nbody(cfg: dict, data_dir: str) -> NBodyData:
    return NBodyData(data_dir, **cfg)
