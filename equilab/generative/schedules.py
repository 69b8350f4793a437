"""Noise schedules of EDM (``equivariant_diffusion/en_diffusion.py``), built once in NumPy.

The schedule is given as γ(t) = −log(α_t² / σ_t²) on the grid t = k/T, k = 0..T, with
α_t² = sigmoid(−γ), σ_t² = sigmoid(γ) (variance preserving).
"""
from __future__ import annotations

import functools

import numpy as np


def _clip_noise_schedule(alphas2: np.ndarray, clip_value: float = 0.001) -> np.ndarray:
    """Clip the per-step ratios α²_t/α²_{t−1} from below, for stability near t = T (as EDM)."""
    alphas2 = np.concatenate([np.ones(1), alphas2])
    step = np.clip(alphas2[1:] / alphas2[:-1], clip_value, 1.0)
    return np.cumprod(step)


def polynomial_alphas2(timesteps: int, power: float = 2.0, s: float = 1e-5) -> np.ndarray:
    """α²(k/T), k = 0..T: (1 − (k/T)^power)², step-clipped, then squeezed into [s, 1 − s].

    Examples:
        >>> a2 = polynomial_alphas2(1000)
        >>> a2.shape, bool(a2[0] > 0.9999), bool(a2[-1] < 1e-4)
        ((1001,), True, True)
    """
    steps = timesteps + 1
    x = np.linspace(0, steps, steps)  # so x/steps = k/T (EDM's grid)
    alphas2 = (1 - np.power(x / steps, power)) ** 2
    alphas2 = _clip_noise_schedule(alphas2, clip_value=0.001)
    precision = 1 - 2 * s
    return precision * alphas2 + s


@functools.cache
def gamma_table(name: str = "polynomial_2", timesteps: int = 1000, s: float = 1e-5) -> np.ndarray:
    """γ on the grid k/T, k = 0..T, float64 (T+1,).  ``name``: ``polynomial_<power>``."""
    if not name.startswith("polynomial_"):
        raise ValueError(f"unknown noise schedule {name!r}; use polynomial_<power>, e.g. polynomial_2")
    a2 = polynomial_alphas2(timesteps, float(name.split("_", 1)[1]), s)
    sigmas2 = 1 - a2
    gamma = -(np.log(a2) - np.log(sigmas2))
    gamma.setflags(write=False)
    return gamma
