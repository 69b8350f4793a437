"""Print the README's result summary from results.json (+ results_L10.json if present).

    python experiments/tp_benchmark/summarize.py
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def med(rows, m, L, p="fwd"):
    for r in rows:
        if (r["method"], r["L"], r["batch"], r["channels"], r["pass_"]) == (m, L, 10000, 1, p):
            return r["median_ms"], r["capped"]
    return None, None


def main():
    main_ = json.loads((HERE / "results.json").read_text())
    rows = main_["rows"]
    sup = HERE / "results_L10.json"
    rows10 = json.loads(sup.read_text())["rows"] if sup.exists() else []
    out = ["| target (batch 10,000, one channel, median forward) | measured | target | met |", "|---|---|---|---|"]

    def line(name, a, b, target, higher=True, src=""):
        if a is None or b is None:
            out.append(f"| {name} | not measured{src} | {target} | — |")
            return
        r = b / a
        ok = r >= target if higher else r <= target
        out.append(f"| {name} | {r:.2f}× ({a:.1f} ms vs {b:.1f} ms){src} | {'≥' if higher else '≤'} {target}× | {'yes' if ok else 'no'} |")

    g10, _ = med(rows10, "gaunt_s2grid", 10)
    d10, _ = med(rows10, "e3nn_dense", 10)
    line("gaunt_s2grid vs e3nn dense CG, L = 10", g10, d10, 20, src=" (L10 supplement)")
    g8, _ = med(rows, "gaunt_s2grid", 8)
    e8, _ = med(rows, "e3nn_grid", 8)
    line("gaunt_s2grid vs e3nn grid composition, L = 8", g8, e8, 3)
    for L in (6, 8, 10):
        f, _ = med(rows, "gaunt_fourier", L)
        g, _ = med(rows, "gaunt_s2grid", L)
        if f is not None and g is not None:
            out.append(f"| gaunt_fourier / gaunt_s2grid, L = {L} | {f / g:.2f} ({f:.1f} vs {g:.1f} ms) | ≤ 2 | {'yes' if f / g <= 2 else 'no'} |")
    for L in sorted({r["L"] for r in rows}):
        c, _ = med(rows, "cg", L)
        d, cap = med(rows, "e3nn_dense", L)
        if c is not None and d is not None:
            out.append(f"| cg vs e3nn dense CG, L = {L} | {d / c:.2f}× ({c:.1f} vs {d:.1f} ms{', e3nn single call' if cap else ''}) | ≥ 1× | {'yes' if d >= c else 'no'} |")
    c10, _ = med(rows10, "cg", 10)
    if c10 is not None and d10 is not None:
        out.append(f"| cg vs e3nn dense CG, L = 10 (supplement) | {d10 / c10:.2f}× ({c10:.1f} vs {d10:.1f} ms) | ≥ 1× | {'yes' if d10 >= c10 else 'no'} |")
    print("\n".join(out))
    print("\nScaling exponents k (time ∝ L^k over the measured L in 5…10):\n")
    for m, v in main_["scaling_exponent"].items():
        print(f"- {m}: {'—' if v['exponent'] is None else '%.2f' % v['exponent']} (L = {v['Ls']})")
    if "escn" in main_:
        e = main_["escn"]
        print(f"\neSCN vs CG + SH (x ⊗ Y(r̂), {e['edges']} edges, median forward ms):\n")
        print("| C | L | cg | escn |\n|---|---|---|---|")
        by = {}
        for r in e["rows"]:
            by.setdefault((r["channels"], r["L"]), {})[r["method"]] = r["median_ms"]
        for (C, L), d in sorted(by.items()):
            print(f"| {C} | {L} | {d.get('cg', float('nan')):.2f} | {d.get('escn', float('nan')):.2f} |")
        print("\nCrossover L (first L where escn is faster):", e["crossover_L"])
    ex = main_.get("expressivity") or (json.loads(sup.read_text()).get("expressivity") if sup.exists() else None)
    if ex:
        main_["expressivity"] = ex
        print("\n| method | X | Y | Z | dim | paths reached |\n|---|---|---|---|---|---|")
        for r in main_["expressivity"]:
            print(f"| {r['method']} | {r['irreps1']} | {r['irreps2']} | {r['irreps_out']} | {r['dim']} | {len(r['paths'])} |")


if __name__ == "__main__":
    main()
