"""Rebuild timings.csv / results.json / table.md / time_vs_L.png of run 1 from its console log.

Run 1 (`run1_console.log`) finished all timings and the eSCN comparison, then crashed in the
expressivity step (a bug since fixed) before writing its files. Every number here is parsed from
that log; the log prints median, min and max, so the quartiles are not available (NaN).

    python experiments/tp_benchmark/rebuild_from_log.py
"""
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from omegaconf import OmegaConf  # noqa: E402

from equilab.bench import exponents, targets, write_outputs  # noqa: E402

TP = re.compile(
    r"^(\S+)\s+L=\s*(\d+) B=\s*(\d+) C=\s*(\d+) (\S+)\s+median\s+([\d.]+) ms \[([\d.]+), ([\d.]+)\] compile\s+([\d.]+) s( \(single call\))?"
)
SH = re.compile(r"^with_sh (\S+)\s+L=\s*(\d+) C=\s*(\d+) E=(\d+) median\s+([\d.]+) ms compile\s+([\d.]+) s")


def main():
    cfg = OmegaConf.to_container(OmegaConf.load(HERE.parents[1] / "configs" / "bench" / "tp.yaml"))
    cfg.pop("hydra", None)
    cfg["Ls"] = [1, 2, 4, 6, 8, 10]
    cfg["escn"]["Ls"] = [1, 2, 4, 6]
    rows, sh = [], []
    nan = float("nan")
    for line in (HERE / "run1_console.log").read_text().splitlines():
        m = TP.match(line)
        if m:
            meth, L, B, C, p, med, lo, hi, comp, single = m.groups()
            rows.append(dict(method=meth, L=int(L), batch=int(B), channels=int(C), pass_=p, compile_s=float(comp),
                             capped=bool(single), median_ms=float(med), min_ms=float(lo), q25_ms=nan, q75_ms=nan,
                             max_ms=float(hi), n=1 if single else cfg["repeats"]))
        m = SH.match(line)
        if m:
            meth, L, C, E, med, comp = m.groups()
            sh.append(dict(method=meth, L=int(L), channels=int(C), edges=int(E), compile_s=float(comp), median_ms=float(med)))
    result = dict(config=cfg, device="cpu (2 shared cores)", backend="cpu", rows=rows, source="run1_console.log")
    result["scaling_exponent"] = exponents(rows, cfg)
    result["targets"] = targets(rows)
    cross = {}
    for C in cfg["escn"]["channels"]:
        cross[C] = None
        for L in cfg["escn"]["Ls"]:
            d = {r["method"]: r["median_ms"] for r in sh if r["L"] == L and r["channels"] == C}
            if len(d) == 2 and d["escn"] < d["cg"]:
                cross[C] = L
                break
    result["escn"] = dict(edges=cfg["escn"]["edges"], rows=sh, crossover_L=cross)
    write_outputs(result, HERE, "")


if __name__ == "__main__":
    main()
