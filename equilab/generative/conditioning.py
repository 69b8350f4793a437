"""Targets for property-conditioned sampling: atom counts and property values drawn jointly.

EDM's ``DistributionProperty`` (``qm9/models.py``): for every atom count n of the training set,
a histogram of the property over ``num_bins`` equal-width bins spanning [min_n, max_n] of the
molecules with n atoms.  A target is drawn as n from the atom-count histogram, then a bin from
the histogram of n, then a value uniformly inside that bin.  Host-side NumPy, seeded.
"""
from __future__ import annotations

import numpy as np


class PropertyDistribution:
    """Joint (atom count, property) distribution of a set of molecules, as EDM samples it.

    Args:
        n_atoms: (M,) atom counts of the molecules.
        values: (M,) property values (any unit; samples come back in the same unit).
        num_bins: bins per atom count (EDM: 1000).

    Examples:
        >>> d = PropertyDistribution(np.array([3, 3, 5]), np.array([1.0, 2.0, 10.0]), num_bins=4)
        >>> n, v = d.sample(np.random.default_rng(0), 6)
        >>> bool(np.all(np.where(n == 3, (v >= 1) & (v <= 2), v == 10)))
        True
    """

    def __init__(self, n_atoms, values, num_bins: int = 1000):
        n_atoms = np.asarray(n_atoms, np.int64)
        values = np.asarray(values, np.float64)
        if n_atoms.shape != values.shape or n_atoms.ndim != 1 or len(n_atoms) == 0:
            raise ValueError("n_atoms and values must be non-empty (M,) arrays of the same length")
        self.num_bins = int(num_bins)
        self.counts_n = np.bincount(n_atoms)
        self.per_n = {}
        for n in np.flatnonzero(self.counts_n):
            v = values[n_atoms == n]
            lo, hi = float(v.min()), float(v.max())
            if hi > lo:
                # EDM: bin index int((v − lo)/(hi − lo)·bins), the maximum moved into the last bin.
                idx = np.minimum(((v - lo) / (hi - lo) * self.num_bins).astype(np.int64), self.num_bins - 1)
                hist = np.bincount(idx, minlength=self.num_bins).astype(np.float64)
            else:
                hist = np.ones(1)
            self.per_n[int(n)] = (lo, hi, hist / hist.sum())

    def sample_n_atoms(self, rng: np.random.Generator, size: int) -> np.ndarray:
        p = self.counts_n / self.counts_n.sum()
        return rng.choice(len(p), size=size, p=p)

    def sample_values(self, rng: np.random.Generator, n_atoms) -> np.ndarray:
        """One property value per requested atom count (each count must occur in the data)."""
        out = np.empty(len(n_atoms))
        for k, n in enumerate(np.asarray(n_atoms)):
            if int(n) not in self.per_n:
                raise ValueError(f"no molecule with {int(n)} atoms in the conditioning distribution")
            lo, hi, p = self.per_n[int(n)]
            b = rng.choice(len(p), p=p)
            width = (hi - lo) / len(p)
            out[k] = lo + (b + rng.uniform()) * width
        return out

    def sample(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(n_atoms (size,) int, values (size,) float) drawn jointly."""
        n = self.sample_n_atoms(rng, size)
        return n, self.sample_values(rng, n)


def node_mask_from_counts(n_atoms, max_atoms: int = 29) -> np.ndarray:
    """(B,) atom counts -> (B, max_atoms) bool mask of the first n slots."""
    n_atoms = np.asarray(n_atoms)
    return np.arange(max_atoms)[None, :] < n_atoms[:, None]


def from_stats(stats: dict, num_bins: int = 1000) -> PropertyDistribution:
    """The distribution of a conditioned QM9 data module (``stats`` with ``context_n_atoms`` and
    ``context_values``, present when ``data.condition_on`` is set)."""
    from equilab.errors import ConfigError

    if "context_n_atoms" not in stats:
        raise ConfigError("the run's data has no conditioning property (data.condition_on is null)")
    return PropertyDistribution(stats["context_n_atoms"], stats["context_values"], num_bins)
