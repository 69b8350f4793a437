"""``equilab-bench <name> [overrides]``: benchmarks as Hydra apps (config ``configs/bench/<name>.yaml``).

``equilab-bench tp`` times every tensor-product method against e3nn-jax baselines and writes
CSV, PNG, markdown and ``results.json`` into ``experiments/tp_benchmark/``.

Timing protocol: jit, compile (timed separately via ``lower().compile()``), ``warmup`` calls, then
``repeats`` calls each followed by ``block_until_ready``; median and spread (min, quartiles, max).
"""
from __future__ import annotations

import functools
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"


# ----------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------


def time_fn(fn, args, *, warmup: int, repeats: int, max_call_s: float):
    """Compile time and per-call wall times (ms) of a jittable ``fn(*args)``."""
    import jax
    import numpy as np

    jf = jax.jit(fn)
    t0 = time.perf_counter()
    compiled = jf.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    times = []
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    first = time.perf_counter() - t0
    if first > max_call_s:  # too slow to repeat: one (post-compile) call is the measurement
        times = [first * 1e3]
        return compile_s, times, True
    for _ in range(max(warmup - 1, 0)):
        jax.block_until_ready(compiled(*args))
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append((time.perf_counter() - t0) * 1e3)
    return compile_s, times, False


def stats(times):
    import numpy as np

    t = np.asarray(times)
    return dict(
        median_ms=float(np.median(t)),
        min_ms=float(t.min()),
        q25_ms=float(np.percentile(t, 25)),
        q75_ms=float(np.percentile(t, 75)),
        max_ms=float(t.max()),
        n=int(t.size),
    )


# ----------------------------------------------------------------------------------------------
# the tp benchmark
# ----------------------------------------------------------------------------------------------


def product_fn(method: str, L: int):
    """``f(a1, a2) -> array`` for s2_irreps(L) ⊗ s2_irreps(L) -> s2_irreps(2L) (raw arrays in/out)."""
    import e3nn_jax as e3nn

    from equilab.tp import tensor_product

    irr = e3nn.s2_irreps(L)
    out = e3nn.s2_irreps(2 * L)
    wrap = lambda a: e3nn.IrrepsArray(irr, a)
    if method == "e3nn_dense":
        return lambda a1, a2: e3nn.tensor_product(wrap(a1), wrap(a2), filter_ir_out=out).array
    if method == "e3nn_grid":
        # the published grid composition (Price of Freedom): e3nn-jax transforms, fft=False
        nb, na = 2 * L + 1, 4 * L + 2

        def f(a1, a2):
            s1 = e3nn.to_s2grid(wrap(a1), nb, na, quadrature="gausslegendre", fft=False)
            s2 = e3nn.to_s2grid(wrap(a2), nb, na, quadrature="gausslegendre", fft=False)
            return e3nn.from_s2grid(s1 * s2, out, fft=False).array

        return f
    kw = {}
    if method == "gaunt_s2grid_fft":  # unfolded transforms, real FFT along α
        method, kw = "gaunt_s2grid", {"fft": True}
    elif method == "gaunt_s2grid_dense":  # whole-grid matrices, three matmuls (the GPU candidate)
        method, kw = "gaunt_s2grid", {"dense": True}
    elif method == "gaunt_s2grid_unfolded":  # unfolded transforms, dense DFT (the session-1 default)
        method, kw = "gaunt_s2grid", {"fold": False}
    elif method == "gaunt_fourier_dense":  # whole half-torus matrices, three matmuls
        method, kw = "gaunt_fourier", {"dense": True}
    elif method == "gaunt_fourier_fft":  # complex 2D FFTs on the full torus (the session-1 default)
        method, kw = "gaunt_fourier", {"fft": True}
    return lambda a1, a2: tensor_product(wrap(a1), wrap(a2), method=method, irreps_out=out, **kw).array


def fwd_bwd(f):
    """Forward + backward: gradient of ⟨f(a1, a2), w⟩ w.r.t. both inputs, w fixed."""
    import jax
    import jax.numpy as jnp

    def g(a1, a2, w):
        return jax.grad(lambda u, v: jnp.sum(f(u, v) * w), argnums=(0, 1))(a1, a2)

    return g


def fit_exponent(Ls, ts):
    import numpy as np

    if len(Ls) < 2:
        return None
    k, _ = np.polyfit(np.log(Ls), np.log(ts), 1)
    return float(k)


def run_tp(cfg: dict) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from equilab.cli import setup_jax

    setup_jax(cfg.get("dtype", "float32"))
    dtype = jnp.dtype(cfg.get("dtype", "float32"))
    out_dir = Path(cfg["out_dir"])
    if not out_dir.is_absolute():
        out_dir = REPO / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"_{cfg['tag']}" if cfg.get("tag") else ""

    rows = []
    key = jax.random.PRNGKey(0)
    for B in cfg["batches"]:
        for C in cfg["channels"]:
            skip = set()  # methods too slow at a smaller L for this (B, C)
            for L in cfg["Ls"]:
                d_in, d_out = (L + 1) ** 2, (2 * L + 1) ** 2
                lead = (B, C) if C > 1 else (B,)
                k1, k2, k3 = jax.random.split(jax.random.fold_in(key, 1000 * L + C), 3)
                a1 = jax.random.normal(k1, lead + (d_in,), dtype)
                a2 = jax.random.normal(k2, lead + (d_in,), dtype)
                for method in cfg["methods"]:
                    if method in skip:
                        continue
                    f = product_fn(method, L)
                    shp = jax.eval_shape(f, a1, a2)  # cg outputs every path: more than (2L+1)² columns
                    w = jax.random.normal(k3, shp.shape, dtype)
                    passes = [("fwd", f, (a1, a2))]
                    if cfg.get("backward", True) and L <= cfg.get("backward_max_L", {}).get(method, 99):
                        passes.append(("fwd_bwd", fwd_bwd(f), (a1, a2, w)))
                    for name, fn, args in passes:
                        comp, times, capped = time_fn(
                            fn, args, warmup=cfg["warmup"], repeats=cfg["repeats"], max_call_s=cfg["max_call_s"]
                        )
                        row = dict(method=method, L=L, batch=B, channels=C, pass_=name, compile_s=comp, capped=capped, **stats(times))
                        rows.append(row)
                        write_csv(rows, out_dir / f"timings{tag}.csv")  # kept if the run is stopped
                        print(
                            f"{method:14s} L={L:2d} B={B:6d} C={C:4d} {name:8s} median {row['median_ms']:10.3f} ms "
                            f"[{row['min_ms']:.3f}, {row['max_ms']:.3f}] compile {comp:6.2f} s{' (single call)' if capped else ''}",
                            flush=True,
                        )
                        if capped and name == "fwd":
                            skip.add(method)
                            break

    result = dict(config=cfg, device=str(jax.devices()[0]), backend=jax.default_backend(), rows=rows)
    result["scaling_exponent"] = exponents(rows, cfg)
    result["targets"] = targets(rows)
    write_outputs(result, out_dir, tag)  # the timings are safe on disk before the extras run
    if cfg.get("escn", {}).get("enabled"):
        result["escn"] = run_escn(cfg, dtype)
        write_outputs(result, out_dir, tag)
    if cfg.get("expressivity", {}).get("enabled"):
        result["expressivity"] = run_expressivity(cfg)
        write_outputs(result, out_dir, tag)
    return result


def _median(rows, method, L, B=10000, C=1, p="fwd"):
    for r in rows:
        if (r["method"], r["L"], r["batch"], r["channels"], r["pass_"]) == (method, L, B, C, p):
            return r["median_ms"]
    return None


def exponents(rows, cfg):
    lo, hi = cfg.get("fit_Ls", [5, 10])
    out = {}
    for method in cfg["methods"]:
        Ls, ts = [], []
        for L in range(lo, hi + 1):
            t = _median(rows, method, L)
            if t is not None:
                Ls.append(L)
                ts.append(t)
        out[method] = dict(exponent=fit_exponent(Ls, ts), Ls=Ls)
    return out


def targets(rows):
    """The issue's speed targets (CPU, batch 10,000, one channel, median forward time)."""
    t = lambda m, L: _median(rows, m, L)
    res = {}

    def ratio(a, b):
        return None if a is None or b is None else b / a

    r = ratio(t("gaunt_s2grid", 10), t("e3nn_dense", 10))
    res["gaunt_s2grid_vs_e3nn_dense_L10"] = dict(speedup=r, target=20.0, met=None if r is None else r >= 20.0)
    r = ratio(t("gaunt_s2grid", 8), t("e3nn_grid", 8))
    res["gaunt_s2grid_vs_e3nn_grid_L8"] = dict(speedup=r, target=3.0, met=None if r is None else r >= 3.0)
    fr = {}
    for L in range(6, 11):
        a, b = t("gaunt_fourier", L), t("gaunt_s2grid", L)
        if a is not None and b is not None:
            fr[L] = a / b
    res["gaunt_fourier_over_gaunt_s2grid_L6plus"] = dict(ratios=fr, target_max=2.0, met=(all(v <= 2.0 for v in fr.values()) if fr else None))
    cr = {}
    for L in range(1, 11):
        a, b = t("cg", L), t("e3nn_dense", L)
        if a is not None and b is not None:
            cr[L] = b / a
    res["cg_vs_e3nn_dense"] = dict(speedups=cr, target_min=1.0, met=(all(v >= 1.0 for v in cr.values()) if cr else None))
    return res


def run_escn(cfg, dtype):
    """eSCN vs CG+SH for feature ⊗ edge-SH, C channels: forward medians and the crossover L."""
    import e3nn_jax as e3nn
    import jax

    from equilab.tp import tensor_product_with_sh

    e = cfg["escn"]
    E = e["edges"]
    out = {"edges": E, "rows": [], "crossover_L": {}}
    for C in e["channels"]:
        cross = None
        for L in e["Ls"]:
            irr = e3nn.Irreps([(C, (l, (-1) ** l)) for l in range(L + 1)])
            k1, k2 = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(1), 100 * L + C))
            x = jax.random.normal(k1, (E, irr.dim), dtype)
            v = jax.random.normal(k2, (E, 3), dtype)
            filt = e3nn.Irreps([(1, (l, p)) for l in range(L + 1) for p in (1, -1)])
            med = {}
            for method in ("cg", "escn"):
                f = lambda x, v, m=method: tensor_product_with_sh(e3nn.IrrepsArray(irr, x), v, lmax=L, method=m, irreps_out=filt).array
                comp, times, capped = time_fn(f, (x, v), warmup=cfg["warmup"], repeats=cfg["repeats"], max_call_s=cfg["max_call_s"])
                s = stats(times)
                med[method] = s["median_ms"]
                out["rows"].append(dict(method=method, L=L, channels=C, edges=E, compile_s=comp, **s))
                print(f"with_sh {method:5s} L={L:2d} C={C:4d} E={E} median {s['median_ms']:9.3f} ms compile {comp:5.2f} s", flush=True)
            if cross is None and med["escn"] < med["cg"]:
                cross = L
        out["crossover_L"][C] = cross
    return out


def run_expressivity(cfg):
    from equilab.tp import expressivity

    res = []
    for i1, i2, io in cfg["expressivity"]["cases"]:
        for method in ("cg", "gaunt_s2grid", "gaunt_fourier"):
            dim, paths = expressivity(method, i1, i2, io)
            res.append(dict(method=method, irreps1=i1, irreps2=i2, irreps_out=io, dim=dim, paths=[str(p) for p in paths]))
            print(f"expressivity {method:14s} {i1} x {i2} -> {io}: dim {dim}", flush=True)
    return res


CSV_KEYS = ["method", "L", "batch", "channels", "pass_", "median_ms", "min_ms", "q25_ms", "q75_ms", "max_ms", "n",
            "compile_s", "capped"]


def write_csv(rows, path: Path):
    import csv

    with open(path, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=CSV_KEYS)
        wr.writeheader()
        for r in rows:
            wr.writerow({k: r[k] for k in CSV_KEYS})


def write_outputs(result, out_dir: Path, tag: str):
    rows = result["rows"]
    write_csv(rows, out_dir / f"timings{tag}.csv")
    with open(out_dir / f"results{tag}.json", "w") as fh:
        json.dump(result, fh, indent=1, default=str)

    methods = result["config"]["methods"]
    lines = []
    for B in result["config"]["batches"]:
        for C in result["config"]["channels"]:
            for p in ("fwd", "fwd_bwd"):
                Ls = sorted({r["L"] for r in rows if r["batch"] == B and r["channels"] == C and r["pass_"] == p})
                if not Ls:
                    continue
                lines.append(f"\n### batch {B}, channels {C}, {p} — median ms (compile s)\n")
                lines.append("| L | " + " | ".join(methods) + " |")
                lines.append("|---|" + "---|" * len(methods))
                for L in Ls:
                    cells = []
                    for m in methods:
                        r = [x for x in rows if (x["method"], x["L"], x["batch"], x["channels"], x["pass_"]) == (m, L, B, C, p)]
                        cells.append(f"{r[0]['median_ms']:.3f} ({r[0]['compile_s']:.1f})" + ("*" if r[0]["capped"] else "") if r else "—")
                    lines.append(f"| {L} | " + " | ".join(cells) + " |")
    ex = result["scaling_exponent"]
    lines.append("\n### scaling exponent k (time ∝ L^k, fitted over L = 5…10, batch 10000, one channel, fwd)\n")
    lines.append("| method | k |\n|---|---|")
    for m, v in ex.items():
        k = "—" if v["exponent"] is None else "%.2f" % v["exponent"]
        lines.append(f"| {m} | {k} |")
    (out_dir / f"table{tag}.md").write_text("\n".join(lines) + "\n")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        B = max((r["batch"] for r in rows), default=10000)  # the largest batch, fewest channels of the run
        C = min((r["channels"] for r in rows if r["batch"] == B), default=1)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, p in zip(axes, ("fwd", "fwd_bwd")):
            for m in methods:
                pts = sorted((r["L"], r["median_ms"]) for r in rows if r["method"] == m and r["batch"] == B and r["channels"] == C and r["pass_"] == p)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=m)
            ax.set_yscale("log")
            ax.set_xlabel("L")
            ax.set_ylabel("median time (ms)")
            ax.set_title(f"{p}, batch {B}, {C} channel(s) ({result['backend']})")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(out_dir / f"time_vs_L{tag}.png", dpi=110)
    except Exception as err:  # noqa: BLE001 — the plot is optional; the CSV and JSON are the record
        print(f"plot skipped: {err}", file=sys.stderr)


BENCHES = {"tp": run_tp}


def main():
    """``equilab-bench <name> [hydra overrides]``."""
    if len(sys.argv) < 2 or sys.argv[1].startswith("-") or "=" in sys.argv[1]:
        print(f"usage: equilab-bench <{'|'.join(BENCHES)}> [overrides]", file=sys.stderr)
        sys.exit(2)
    name = sys.argv[1]
    if name not in BENCHES or not (CONFIG_DIR / "bench" / f"{name}.yaml").exists():
        print(f"error: unknown benchmark {name!r}; choose one of: {', '.join(BENCHES)}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0]] + sys.argv[2:]

    import hydra
    from omegaconf import OmegaConf

    @hydra.main(config_path=str(CONFIG_DIR / "bench"), config_name=name, version_base=None)
    def app(cfg):
        c = OmegaConf.to_container(cfg, resolve=True)
        result = BENCHES[name](c)
        print(json.dumps({"bench": name, "targets": result.get("targets"), "scaling_exponent": result.get("scaling_exponent")}, default=str))

    app()


if __name__ == "__main__":
    main()
