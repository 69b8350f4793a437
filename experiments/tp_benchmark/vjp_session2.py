"""Side-by-side: forward+backward of the folded Gaunt products with the custom VJP
(``_folded.gaunt_map``, the default) against JAX autodiff through the same forward
(``_folded.map_batch``). Batch 10,000, one channel, float32, s2_irreps(L) ⊗ s2_irreps(L) →
s2_irreps(2L); the variants alternate round by round so they see the same machine load.

    python experiments/tp_benchmark/vjp_session2.py --Ls 4,6,8,10 --repeats 7 [--out vjp_session2.json]
"""
import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from equilab.cli import setup_jax


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--Ls", default="4,6,8,10")
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    setup_jax()
    from equilab.tp import _folded
    from equilab.tp import gaunt_fourier as gf
    from equilab.tp import gaunt_s2grid as gs

    orig = _folded.gaunt_map

    def autodiff_map(c1, c2, co, a1, a2, chunk):
        return _folded.map_batch(functools.partial(_folded.gaunt_folded, c1, c2, co), a1, a2, chunk)

    rows = []
    for L in [int(x) for x in a.Ls.split(",")]:
        k1 = jax.random.PRNGKey(L)
        x1 = jax.random.normal(k1, (a.batch, (L + 1) ** 2), jnp.float32)
        x2 = jax.random.normal(jax.random.fold_in(k1, 1), (a.batch, (L + 1) ** 2), jnp.float32)
        w = jax.random.normal(jax.random.fold_in(k1, 2), (a.batch, (2 * L + 1) ** 2), jnp.float32)
        fns = {}
        for method, core in (("gaunt_s2grid", gs.gaunt_grid_core), ("gaunt_fourier", gf.gaunt_fourier_core)):
            for variant, impl in (("custom_vjp", orig), ("autodiff", autodiff_map)):
                _folded.gaunt_map = impl  # read at trace time
                f = jax.jit(jax.grad(lambda u, v, core=core: jnp.sum(core(u, L, v, L, 2 * L) * w), argnums=(0, 1)))
                jax.block_until_ready(f(x1, x2))
                jax.block_until_ready(f(x1, x2))
                fns[(method, variant)] = f
        _folded.gaunt_map = orig
        times = {k: [] for k in fns}
        for _ in range(a.repeats):
            for k, f in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(x1, x2))
                times[k].append((time.perf_counter() - t0) * 1e3)
        for (method, variant), ts in times.items():
            ts = np.array(ts)
            rows.append({"L": L, "method": method, "variant": variant, "median_ms": float(np.median(ts)),
                         "min_ms": float(ts.min()), "max_ms": float(ts.max())})
        for method in ("gaunt_s2grid", "gaunt_fourier"):
            c = np.median(times[(method, "custom_vjp")])
            d = np.median(times[(method, "autodiff")])
            print(f"L={L:2d} {method:14s} fwd+bwd custom VJP {c:9.2f} ms  autodiff {d:9.2f} ms  speed-up {d / c:5.2f}x", flush=True)
    out = {"batch": a.batch, "repeats": a.repeats, "device": str(jax.devices()[0]), "rows": rows}
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1)
    print(json.dumps({"speedups": {f"{m}_L{L}": round(
        next(r["median_ms"] for r in rows if r["L"] == L and r["method"] == m and r["variant"] == "autodiff")
        / next(r["median_ms"] for r in rows if r["L"] == L and r["method"] == m and r["variant"] == "custom_vjp"), 2)
        for L in sorted({r["L"] for r in rows}) for m in ("gaunt_s2grid", "gaunt_fourier")}}))


if __name__ == "__main__":
    main()
