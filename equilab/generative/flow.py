"""Equivariant flow matching on molecules (EquiFM-style conditional paths, Song et al. 2023).

Prior: x₀ zero-CoM Gaussian, h₀ Gaussian.  Path x_t = (1 − t)x₀ + t·x₁ (same for h), target
velocity u = x₁ − x₀, loss ‖v̂(x_t, h_t, t) − u‖² averaged over the (3 + F)·n real coordinates.
With ``align="rotation"`` each data molecule is first rotated onto its prior draw (Kabsch, proper
rotations; the rotational part of equivariant OT, Klein et al. 2023): shorter, straighter
conditional paths.  The network is E(3)-equivariant, so this only changes the coupling, not what
the model can represent, and the prior stays exactly the zero-CoM Gaussian.
With ``align="ot"`` the permutation is matched too (equivariant OT, Klein et al. 2023; EquiFM):
the prior nodes are reassigned to the atoms by the Hungarian algorithm on |x0_j − x1_a|², then
the data are rotated onto them (Kabsch), and the pair of steps is repeated.  Starting with the
permutation makes the coupling independent of the order in which the data list their atoms.  The
prior nodes are i.i.d., so a permutation of them (x0 and h0 together) is still a prior draw.
Sampling integrates dx/dt = v̂ from t = 0 to 1 with a fixed-step solver under ``lax.scan``; v̂ is
zero-CoM, so samples stay centred.

``solver="sde"`` integrates instead the stochastic equation with the same marginals p_t,
dx = [v̂ + ½g²∇log p_t] dt + g dW, by Euler–Maruyama. For the linear Gaussian path the score is
−x̂₀/(1 − t) with x̂₀ = x_t − t·v̂ (the implied prior draw), and with g(t)² = 2η(1 − t) the step is
x ← x + (v̂ − η·x̂₀)·dt + √(2η(1 − t)dt)·ε (ε zero-CoM for the positions); η = ``noise``, and η = 0 is
Euler. The noise and the pull of −η·x̂₀ re-draw part of the prior component at every step, which
(as in the ancestral sampler of a diffusion model) lets the network correct where the trajectory
has left the training paths, instead of carrying the error to t = 1. The last step is a plain
Euler step, which lands on the predicted endpoint x̂₁ = x + (1 − t)·v̂ without fresh noise. The
identity for the score holds for independent couplings; with ``align`` the coupling is not
independent and it is an approximation.

Every solver steps on the grid of ``time_grid``: uniform by default, or with ``time_power`` p > 1
t_i = 1 − (1 − i/N)^p, which spends more of the same N network calls near the data end, where the
atoms settle into bonds (p = 2 makes the last step 1/N² long instead of 1/N).

Three parameterisations of the network output (``param``):
- ``velocity``: the network's (Δx, h_out) is v̂ itself; loss ‖v̂ − (x₁ − x₀)‖².
- ``endpoint``: the network predicts the clean sample, x̂₁ = x_t + Δx (zero-CoM, equivariant) and
  ĥ₁ = h_out; loss ‖x̂₁ − x₁‖² + ‖ĥ₁ − h₁‖² (uniform in t, where the velocity loss weights
  t → 1 by 1/(1 − t)²), and v̂ = (x̂₁ − x_t)/(1 − t) for sampling (FlowMol's endpoint
  parameterisation, Dunn & Koes 2024).  v̂ is singular at t = 1, so only solvers that never
  evaluate there are allowed (euler, midpoint); Euler's last step lands exactly on x̂₁.
- ``endpoint_x``: endpoint for the positions, velocity for the features (loss
  ‖x̂₁ − x₁‖² + ‖v̂_h − (h₁ − h₀)‖²).  The uniform-in-t endpoint loss on the scaled one-hot
  types underweights late t, where the types are decided, and at 3,000 steps collapsed them
  towards C/H; the velocity loss keeps its 1/(1 − t)² weight for them.

Optional bond term (``bond_weight`` λ > 0, ``velocity`` only): for every pair of atoms closer
than ``bond_cutoff`` Å in the data molecule (the covalent bonds of QM9 at the default 2.0 Å), the
velocity error of the pair projected on its bond direction, e_ij = (δv_i − δv_j)·(x₁ᵢ − x₁ⱼ)/d_ij
with δv = v̂ − (x₁ − x₀), is added as λ·t^k·Σ_{i<j} e_ij² (k = ``bond_power``, default 2) to the
molecule's summed error.  Near the data, e_ij = d(d̂_ij − d_ij)/d(1 − t) to first order, where x̂₁ = x_t + (1 − t)v̂: the term is the
error of the predicted bond lengths in velocity units, the quantity the stability rule is most
sensitive to (QM9 bond orders differ by a few hundredths of an Å).  It is invariant and leaves the
minimiser at t → 1 unchanged; at small t, where x₁ is not yet determined by x_t, it would bias
the field, hence the t^k ramp (session 10 measured that bias with k = 2: predicted endpoints
0.04 Å too long at t = 0.8 on validation paths).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from equilab.generative.common import gather_nodes, masked_normal, permute_onto, rotate_onto, zero_com_normal
from equilab.models.egnn_dynamics import remove_mean

SOLVERS = ("euler", "midpoint", "heun", "rk4", "sde")
ALIGNS = ("none", "rotation", "ot")
OT_ROUNDS = 2  # permutation + rotation rounds for align="ot"
T_DISTS = ("uniform", "beta")
PARAMS = ("velocity", "endpoint", "endpoint_x")
ENDPOINT_SOLVERS = ("euler", "midpoint", "sde")  # never evaluate v̂ at t = 1


def check_param(param: str, solver: str | None = None) -> None:
    if param not in PARAMS:
        raise ValueError(f"unknown flow parameterisation {param!r}; choose one of {PARAMS}")
    if solver is not None and param != "velocity" and solver not in ENDPOINT_SOLVERS:
        raise ValueError(f"solver {solver!r} evaluates the velocity at t = 1, where the endpoint "
                         f"parameterisation is singular; choose one of {ENDPOINT_SOLVERS}")


def check_t_dist(t_dist: str, t_beta=(2.0, 1.0)) -> tuple[float, float]:
    """Validate a training-time distribution; returns the Beta parameters as two floats."""
    if t_dist not in T_DISTS:
        raise ValueError(f"unknown time distribution {t_dist!r}; choose one of {T_DISTS}")
    try:
        ab = tuple(float(v) for v in t_beta)
    except (TypeError, ValueError):
        ab = ()
    if len(ab) != 2 or min(ab) <= 0:
        raise ValueError(f"Beta parameters must be two positive numbers [a, b], got {t_beta!r}")
    return ab


def sample_t(key, b: int, dtype, t_eps: float = 0.0, t_dist: str = "uniform", t_beta=(2.0, 1.0)) -> jnp.ndarray:
    """Training times in [t_eps, 1 − t_eps]: uniform, or Beta(a, b) (a > b puts more weight near the data
    at t = 1, as SemlaFlow's Beta(2, 1))."""
    a, bb = check_t_dist(t_dist, t_beta)
    if t_dist == "uniform":
        return jax.random.uniform(key, (b,), dtype, t_eps, 1.0 - t_eps)
    return jnp.clip(jax.random.beta(key, a, bb, (b,), dtype), t_eps, 1.0 - t_eps)


def check_bond(bond_weight: float, bond_cutoff: float, param: str, bond_power: float = 2.0) -> tuple[float, float, float]:
    """Validate the bond term's settings; returns (weight, cutoff, power) as floats."""
    try:
        w, c, k = float(bond_weight), float(bond_cutoff), float(bond_power)
    except (TypeError, ValueError):
        raise ValueError(f"bond weight, cutoff and power must be numbers, got {bond_weight!r}, {bond_cutoff!r}, "
                         f"{bond_power!r}") from None
    if not (w >= 0 and c > 0 and k >= 0):
        raise ValueError(f"bond weight must be >= 0, cutoff > 0 and power >= 0, got {w}, {c}, {k}")
    if w > 0 and param != "velocity":
        raise ValueError(f"the bond term is defined for the velocity parameterisation only, not {param!r}")
    return w, c, k


def bond_error(err_v, x1, node_mask, cutoff: float) -> jnp.ndarray:
    """Σ_{i<j, d_ij < cutoff} ((δv_i − δv_j)·(x1_i − x1_j)/d_ij)² per molecule; err_v = δv (B, N, 3)."""
    r = x1[:, :, None, :] - x1[:, None, :, :]
    d2 = (r ** 2).sum(-1)
    n = x1.shape[1]
    pair = node_mask[:, :, None] & node_mask[:, None, :] & ~jnp.eye(n, dtype=bool)[None] & (d2 < cutoff ** 2)
    d = jnp.sqrt(jnp.where(pair, d2, 1.0))
    e = ((err_v[:, :, None, :] - err_v[:, None, :, :]) * r).sum(-1) / d
    return 0.5 * jnp.where(pair, e ** 2, 0.0).sum((1, 2))


def loss_per_molecule(dyn: Callable, x, h, node_mask, key, t_eps: float = 0.0, align: str = "none",
                      param: str = "velocity", t_dist: str = "uniform", t_beta=(2.0, 1.0),
                      bond_weight: float = 0.0, bond_cutoff: float = 2.0, bond_power: float = 2.0) -> jnp.ndarray:
    if align not in ALIGNS:
        raise ValueError(f"unknown alignment {align!r}; choose one of {ALIGNS}")
    check_param(param)
    bond_weight, bond_cutoff, bond_power = check_bond(bond_weight, bond_cutoff, param, bond_power)
    kt, kx, kh = jax.random.split(key, 3)
    b = x.shape[0]
    t = sample_t(kt, b, x.dtype, t_eps, t_dist, t_beta)
    x0 = zero_com_normal(kx, node_mask, x.dtype)
    h0 = masked_normal(kh, node_mask, h.shape[-1], x.dtype)
    if align == "rotation":
        x = rotate_onto(x, x0, node_mask)
    elif align == "ot":
        for _ in range(OT_ROUNDS):
            perm = permute_onto(x0, x, node_mask)
            x0, h0 = gather_nodes(x0, perm), gather_nodes(h0, perm)
            x = rotate_onto(x, x0, node_mask)
    tt = t[:, None, None]
    xt = (1 - tt) * x0 + tt * x
    vx, vh = dyn(xt, (1 - tt) * h0 + tt * h, t)
    m = node_mask.astype(x.dtype)
    if param == "velocity":
        dv = vx - (x - x0)
        err_x = (dv ** 2).sum((1, 2))
        if bond_weight > 0:
            err_x = err_x + bond_weight * t ** bond_power * bond_error(dv * m[..., None], x, node_mask, bond_cutoff)
    else:  # x̂₁ = x_t + Δx
        err_x = ((xt + vx - x) ** 2 * m[..., None]).sum((1, 2))
    h_target = h if param == "endpoint" else h - h0  # ĥ₁ = h_out, or the feature velocity
    err = err_x + (((vh - h_target) ** 2).sum(-1) * m).sum(1)
    return err / jnp.maximum((3 + h.shape[-1]) * m.sum(1), 1.0)


def _check_number(value, what: str, rule: str, ok: Callable[[float], bool]) -> float:
    """``float(value)`` if ``ok`` holds for it, else a ValueError naming ``what`` and ``rule``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number {rule}, got {value!r}") from None
    if not ok(x):
        raise ValueError(f"{what} must be {rule}, got {x}")
    return x


def check_noise(noise) -> float:
    return _check_number(noise, "the SDE sampler's noise", ">= 0", lambda x: x >= 0)


def check_time_power(power) -> float:
    return _check_number(power, "the sampler's time_power", "> 0 (and finite)", lambda x: x > 0 and np.isfinite(x))


def time_grid(steps: int, power: float = 1.0, dtype=jnp.float32):
    """``(t_i, Δt_i)`` for ``i < steps``: the sampler's step starts and sizes on [0, 1].

    ``power`` p = 1 is the uniform grid (t_i = i/N, Δt = 1/N exactly); p > 1 puts the steps closer
    together near the data end t = 1 (t_i = 1 − (1 − i/N)^p), p < 1 near the prior end."""
    p = check_time_power(power)
    dt = 1.0 / steps
    if p == 1.0:
        return jnp.arange(steps, dtype=dtype) * dt, jnp.full((steps,), dt, dtype)
    u = np.arange(steps + 1, dtype=np.float64) / steps
    t = 1.0 - (1.0 - u) ** p
    t[-1] = 1.0
    return jnp.asarray(t[:-1], dtype), jnp.asarray(np.diff(t), dtype)


def sample(dyn: Callable, key, node_mask, n_features: int, *, steps: int = 50, solver: str = "heun",
           dtype=jnp.float32, param: str = "velocity", noise: float = 1.0, time_power: float = 1.0):
    """Integrate from the prior at t = 0 to data at t = 1 in ``steps`` steps.

    ``solver``: euler (1 evaluation per step), midpoint / heun (2), rk4 (4), sde (1: Euler–Maruyama
    with noise level ``noise`` = η, see the module docstring). ``time_power``: the step grid
    (``time_grid``; 1 = uniform).
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown ODE solver {solver!r}; choose one of {SOLVERS}")
    check_param(param, solver)
    eta = check_noise(noise)
    ts, dts = time_grid(steps, time_power, dtype)
    b = node_mask.shape[0]
    kx, kh = jax.random.split(key)  # the prior draw, as before the SDE sampler existed
    kn = jax.random.fold_in(key, 1)  # the SDE's noise (the ODE solvers never use it)
    y = (zero_com_normal(kx, node_mask, dtype), masked_normal(kh, node_mask, n_features, dtype))

    def f(y, t):
        vx, vh = dyn(y[0], y[1], jnp.full((b,), t, dtype))
        if param == "velocity":
            return vx, vh
        # (x̂₁ − x_t)/(1 − t); t < 1 for euler and midpoint
        return vx / (1 - t), (vh - y[1]) / (1 - t) if param == "endpoint" else vh

    def axpy(y, k, a):
        return (y[0] + a * k[0], y[1] + a * k[1])

    def step(y, xs):
        i, t, dt = xs
        k1 = f(y, t)
        if solver == "euler":
            return axpy(y, k1, dt), None
        if solver == "midpoint":
            return axpy(y, f(axpy(y, k1, dt / 2), t + dt / 2), dt), None
        if solver == "heun":
            k2 = f(axpy(y, k1, dt), t + dt)
            return axpy(y, (k1[0] + k2[0], k1[1] + k2[1]), dt / 2), None
        k2 = f(axpy(y, k1, dt / 2), t + dt / 2)
        k3 = f(axpy(y, k2, dt / 2), t + dt / 2)
        k4 = f(axpy(y, k3, dt), t + dt)
        k = tuple(a + 2 * b_ + 2 * c + d for a, b_, c, d in zip(k1, k2, k3, k4))
        return axpy(y, k, dt / 6), None

    def step_sde(y, xs):
        i, t, dt = xs
        v = f(y, t)
        kx, kh = jax.random.split(jax.random.fold_in(kn, i.astype(jnp.int32)))
        last = i == steps - 1  # the final step: plain Euler onto the predicted endpoint
        c = jnp.where(last, 0.0, eta).astype(dtype)
        s = jnp.sqrt(2 * c * (1 - t) * dt)
        eps = (zero_com_normal(kx, node_mask, dtype), masked_normal(kh, node_mask, n_features, dtype))
        return tuple(yc + (vc - c * (yc - t * vc)) * dt + s * ec for yc, vc, ec in zip(y, v, eps)), None

    xs = (jnp.arange(steps, dtype=dtype), ts, dts)
    y, _ = jax.lax.scan(step_sde if solver == "sde" else step, y, xs)
    return remove_mean(y[0], node_mask), y[1]
