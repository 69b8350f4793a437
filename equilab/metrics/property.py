"""Property-conditioning scores of the EDM protocol (Hoogeboom et al. 2022, Table 3), as pure
NumPy functions of predictions and targets.

- generator MAE: |evaluator(generated molecule) − requested property|, averaged;
- lower bound ("QM9" row): the evaluator's MAE on the molecules of the generator's training set;
- Naive: the evaluator's MAE on those molecules against their properties shuffled;
- #Atoms: the MAE of predicting the property from the atom count alone (the mean property of the
  molecules with that many atoms).
"""
from __future__ import annotations

import numpy as np


def mae(pred, target) -> float:
    """Mean absolute error.

    Examples:
        >>> mae([1.0, 2.0], [0.0, 4.0])
        1.5
    """
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.size == 0:
        raise ValueError(f"mae needs two non-empty arrays of one shape, got {pred.shape} and {target.shape}")
    return float(np.mean(np.abs(pred - target)))


def naive_mae(pred, target, rng: np.random.Generator) -> float:
    """The evaluator's predictions against a random permutation of the targets (EDM "Naive")."""
    target = np.asarray(target)
    return mae(pred, target[rng.permutation(len(target))])


def per_count_statistic(n_atoms, values, statistic: str = "mean") -> dict[int, float]:
    """{atom count: mean (or median) property of the molecules with that count}.

    Examples:
        >>> per_count_statistic([3, 3, 5], [1.0, 2.0, 7.0])
        {3: 1.5, 5: 7.0}
    """
    fn = {"mean": np.mean, "median": np.median}[statistic]
    n_atoms, values = np.asarray(n_atoms), np.asarray(values, np.float64)
    return {int(n): float(fn(values[n_atoms == n])) for n in np.unique(n_atoms)}


def n_atoms_baseline_mae(n_fit, y_fit, n_eval, y_eval, statistic: str = "mean") -> float:
    """MAE of predicting y from the atom count alone: the per-count statistic of (n_fit, y_fit)
    applied to n_eval (an unseen count falls back to the overall statistic of y_fit)."""
    table = per_count_statistic(n_fit, y_fit, statistic)
    overall = float({"mean": np.mean, "median": np.median}[statistic](np.asarray(y_fit, np.float64)))
    pred = np.array([table.get(int(n), overall) for n in np.asarray(n_eval)])
    return mae(pred, y_eval)
