"""Property-conditioning scores of the EDM protocol (Hoogeboom et al. 2022, Table 3), as pure
NumPy functions of predictions and targets.

- generator MAE: |evaluator(generated molecule) − requested property|, averaged;
- lower bound ("QM9" row): the evaluator's MAE on the molecules of the generator's training set;
- Naive: the evaluator's MAE on those molecules against their properties shuffled;
- #Atoms: the MAE of predicting the property from the atom count alone (the mean property of the
  molecules with that many atoms).

Two diagnostics of a generator beyond EDM's table (:func:`context_use`): #Atoms on the generator's
own targets and atom counts (the paired baseline), and the correlation of the evaluator's
predictions with the targets once the per-count means are removed (does the generator follow the
property beyond what its atom count gives?).
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


def context_use(n_fit, y_fit, n_gen, target, pred) -> dict:
    """How much of the requested property a conditional generator delivers beyond its atom count.

    Args:
        n_fit, y_fit: atom counts and properties the per-count means come from (the second half).
        n_gen, target, pred: the generated molecules' atom counts, requested values and the
            evaluator's predictions for them.

    Returns:
        ``mae_n_atoms_paired``: #Atoms (per-count mean of ``y_fit``) on these very targets and
        counts, to compare with the generator's MAE on the same molecules;
        ``residual_corr``: Pearson correlation of ``target − m(n)`` and ``pred − m(n)``, where
        m(n) is that per-count mean (0 when the generator ignores the context beyond n, 1 when it
        tracks it exactly; nan with fewer than 3 molecules or no spread);
        ``residual_slope``: least-squares slope of ``pred − m(n)`` on ``target − m(n)`` (1: the
        requested deviation from the count's mean is delivered in full).

    Examples:
        >>> r = context_use([3, 3, 5, 5], [1.0, 3.0, 10.0, 14.0], [3, 3, 5], [1.0, 3.0, 14.0], [1.5, 2.5, 13.0])
        >>> r["mae_n_atoms_paired"], round(r["residual_corr"], 6), round(r["residual_slope"], 6)
        (1.3333333333333333, 1.0, 0.5)
    """
    table = per_count_statistic(n_fit, y_fit, "mean")
    overall = float(np.mean(np.asarray(y_fit, np.float64)))
    m = np.array([table.get(int(k), overall) for k in np.asarray(n_gen)])
    target, pred = np.asarray(target, np.float64), np.asarray(pred, np.float64)
    if not (len(m) == len(target) == len(pred)):
        raise ValueError(f"context_use needs equal lengths, got {len(m)}, {len(target)}, {len(pred)}")
    dt, dp = target - m, pred - m
    c = np.cov(dt, dp) if len(dt) >= 3 else np.zeros((2, 2))
    ok = c[0, 0] > 0 and c[1, 1] > 0
    return {
        "mae_n_atoms_paired": mae(m, target),
        "residual_corr": float(c[0, 1] / np.sqrt(c[0, 0] * c[1, 1])) if ok else float("nan"),
        "residual_slope": float(c[0, 1] / c[0, 0]) if ok else float("nan"),
    }
