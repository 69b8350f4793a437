"""Public test helpers: equivariance checks under random rotations, reflections, translations
and permutations (in the spirit of e3nn-jax ``utils/test.py``).

All checks compare ``fn(g·x)`` with ``g·fn(x)`` and return the maximal absolute error relative
to the output scale, so tolerances can be tight and stated per precision.
"""
from __future__ import annotations

from typing import Callable, Sequence

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np


def random_orthogonal(key, *, reflection: bool, dtype=None) -> jnp.ndarray:
    """A random 3x3 rotation (reflection=False) or rotation times inversion (reflection=True)."""
    R = np.asarray(e3nn.rand_matrix(key, ()), dtype=np.float64)
    # Re-orthonormalise in float64: a float32 draw is orthogonal only to ~1e-7, which would
    # swamp float64 equivariance checks at 1e-10.
    u, _, vt = np.linalg.svd(R)
    R = u @ vt
    if np.linalg.det(R) < 0:
        R = -R
    R = jnp.asarray(R, dtype=dtype or jnp.float32)
    return -R if reflection else R


def transform_irreps(x: e3nn.IrrepsArray, R: jnp.ndarray) -> e3nn.IrrepsArray:
    """Apply the O(3) matrix R (det ±1) to an IrrepsArray."""
    return x.transform_by_matrix(R)


def relative_error(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(np.max(np.abs(b)), 1e-30)
    return float(np.max(np.abs(a - b)) / scale) if a.size else 0.0


def assert_equivariant(
    fn: Callable[..., e3nn.IrrepsArray],
    key: jax.Array,
    args: Sequence[e3nn.IrrepsArray],
    *,
    reflections: bool = True,
    n_trials: int = 2,
    atol: float = 1e-5,
) -> float:
    """Check ``fn(*[R x for x in args]) == R fn(*args)`` for random R in SO(3) (and O(3)).

    Args:
        fn: maps IrrepsArrays to an IrrepsArray (or a tuple of them).
        key: PRNG key for the random group elements.
        args: example inputs.
        reflections: also test improper rotations (R -> -R, inversion composed).
        atol: tolerance on the error relative to the output's max magnitude.

    Returns:
        The largest relative error seen.
    """
    out = fn(*args)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    worst = 0.0
    for t in range(n_trials):
        for refl in ([False, True] if reflections else [False]):
            R = random_orthogonal(jax.random.fold_in(key, t), reflection=refl, dtype=args[0].dtype)
            rot_out = fn(*[transform_irreps(a, R) for a in args])
            rot_outs = rot_out if isinstance(rot_out, (tuple, list)) else (rot_out,)
            for o, ro in zip(outs, rot_outs):
                err = relative_error(ro.array, transform_irreps(o, R).array)
                worst = max(worst, err)
                if err > atol:
                    raise AssertionError(
                        f"not equivariant ({'O(3) with reflection' if refl else 'SO(3)'}): "
                        f"relative error {err:.3e} > {atol:.1e}"
                    )
    return worst


def assert_point_cloud_equivariant(
    fn: Callable,
    key: jax.Array,
    positions: jnp.ndarray,
    *,
    vector_inputs: Sequence[jnp.ndarray] = (),
    invariant_outputs: Sequence[int] = (),
    vector_outputs: Sequence[int] = (),
    position_outputs: Sequence[int] = (),
    reflections: bool = True,
    translations: bool = True,
    permutation_axis_size: int | None = None,
    atol: float = 1e-5,
) -> float:
    """E(3) and permutation checks for models on point clouds.

    ``fn(positions, *vector_inputs)`` returns a tuple of outputs; indices in
    ``invariant_outputs`` must be unchanged, ``vector_outputs`` rotate (no translation),
    ``position_outputs`` rotate and translate. Arrays have the point index on axis 0 (after any
    leading shape removed by the caller). If ``permutation_axis_size`` is given, a random
    permutation of axis 0 of all inputs must permute the per-point outputs accordingly (scalar
    graph-level invariants are compared unpermuted when their leading size differs).
    """
    base = fn(positions, *vector_inputs)
    worst = 0.0

    def check(a, b, what):
        nonlocal worst
        err = relative_error(a, b)
        worst = max(worst, err)
        if err > atol:
            raise AssertionError(f"{what}: relative error {err:.3e} > {atol:.1e}")

    k1, k2, k3 = jax.random.split(key, 3)
    for refl in ([False, True] if reflections else [False]):
        R = random_orthogonal(k1, reflection=refl, dtype=positions.dtype)
        t = jax.random.normal(k2, (3,), positions.dtype) if translations else jnp.zeros(3, positions.dtype)
        out = fn(positions @ R.T + t, *[v @ R.T for v in vector_inputs])
        name = "O(3)" if refl else "SO(3)"
        for i in invariant_outputs:
            check(out[i], base[i], f"{name} invariance of output {i}")
        for i in vector_outputs:
            check(out[i], base[i] @ R.T, f"{name} equivariance of vector output {i}")
        for i in position_outputs:
            check(out[i], base[i] @ R.T + t, f"{name}+translation equivariance of output {i}")
    if permutation_axis_size:
        perm = jax.random.permutation(k3, permutation_axis_size)
        out = fn(positions[perm], *[v[perm] for v in vector_inputs])
        for i in list(vector_outputs) + list(position_outputs):
            check(out[i], base[i][perm], f"permutation equivariance of output {i}")
        for i in invariant_outputs:
            if np.shape(base[i])[:1] == (permutation_axis_size,):
                check(out[i], base[i][perm], f"permutation equivariance of output {i}")
            else:
                check(out[i], base[i], f"permutation invariance of output {i}")
    return worst
