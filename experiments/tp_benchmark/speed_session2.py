"""Side-by-side micro-benchmark of the Gaunt products against the previous paths and e3nn-jax.

Batch 10,000, one channel, s2_irreps(L) ⊗ s2_irreps(L) -> s2_irreps(2L), float32. All methods are
timed in one process, interleaved (one call of each per round), after one warm-up call; prints
the median wall time, the minimum wall time and the median process CPU time per call (ms), and
ratios against the first method. On a shared machine the CPU time is the least noisy of the
three; on a quiet machine use ``equilab-bench tp`` instead.

    python experiments/tp_benchmark/speed_session2.py --L 8 --methods gaunt_s2grid,gaunt_s2grid_unfolded,e3nn_grid
    python experiments/tp_benchmark/speed_session2.py --L 8 --methods gaunt_s2grid,gaunt_s2grid_unfolded --backward
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--L", type=int, required=True)
    p.add_argument("--methods", required=True, help="comma-separated names accepted by equilab.bench.product_fn")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=10000)
    p.add_argument("--backward", action="store_true", help="time forward+backward (grad of <f, w>)")
    args = p.parse_args()

    import jax

    from equilab.bench import fwd_bwd, product_fn

    L, N = args.L, args.batch
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    a1 = jax.random.normal(k1, (N, (L + 1) ** 2))
    a2 = jax.random.normal(k2, (N, (L + 1) ** 2))
    methods = args.methods.split(",")
    fns, call_args = {}, (a1, a2)
    for m in methods:
        f = product_fn(m, L)
        fns[m] = jax.jit(fwd_bwd(f) if args.backward else f)
    if args.backward:
        w = jax.random.normal(k3, (N, (2 * L + 1) ** 2))
        call_args = (a1, a2, w)
    for f in fns.values():
        jax.block_until_ready(f(*call_args))
    wall = {m: [] for m in methods}
    cpu = {m: [] for m in methods}
    for _ in range(args.repeats):
        for m, f in fns.items():
            t, c = time.perf_counter(), time.process_time()
            jax.block_until_ready(f(*call_args))
            wall[m].append(time.perf_counter() - t)
            cpu[m].append(time.process_time() - c)
    base = methods[0]
    res = {}
    for m in methods:
        res[m] = dict(
            median_ms=1e3 * float(np.median(wall[m])),
            min_ms=1e3 * float(np.min(wall[m])),
            cpu_ms=1e3 * float(np.median(cpu[m])),
        )
    for m in methods:
        r = res[m]
        r["x_median"] = r["median_ms"] / res[base]["median_ms"]
        r["x_cpu"] = r["cpu_ms"] / res[base]["cpu_ms"]
    print(json.dumps(dict(L=L, batch=N, backward=args.backward, repeats=args.repeats, results=res), indent=1))


if __name__ == "__main__":
    main()
