"""Rows of an ``equilab-bench tp`` log (its per-case lines), for a run stopped before it wrote its
files: a CSV with the columns of ``timings.csv`` (quartiles unknown: nan) and a markdown table of
the medians, printed.

    python scripts/tp_log_table.py experiments/tp_benchmark/bench_tp_h200.log experiments/tp_benchmark/timings_h200.csv
"""
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from equilab.bench import write_csv  # noqa: E402

LINE = re.compile(r"^(?P<method>\S+)\s+L=\s*(?P<L>\d+) B=\s*(?P<batch>\d+) C=\s*(?P<channels>\d+) (?P<pass_>fwd_bwd|fwd)\s+"
                  r"median\s+(?P<median>[\d.]+) ms \[(?P<min>[\d.]+), (?P<max>[\d.]+)\] compile\s+(?P<compile>[\d.]+) s"
                  r"(?P<single> \(single call\))?")


def parse(text, repeats=7):
    """Rows of the log's per-case lines; ``repeats``: the run's ``repeats`` (timed calls of a case)."""
    rows = []
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            rows.append(dict(method=m["method"], L=int(m["L"]), batch=int(m["batch"]), channels=int(m["channels"]),
                             pass_=m["pass_"], median_ms=float(m["median"]), min_ms=float(m["min"]), q25_ms=math.nan,
                             q75_ms=math.nan, max_ms=float(m["max"]), n=1 if m["single"] else repeats,
                             compile_s=float(m["compile"]), capped=bool(m["single"])))
    return rows


def table(rows):
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out = []
    for p in ("fwd", "fwd_bwd"):
        Ls = sorted({r["L"] for r in rows if r["pass_"] == p})
        out += [f"\n{p}: median ms [min, max]\n", "| L | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for L in Ls:
            cells = []
            for mth in methods:
                r = [x for x in rows if x["pass_"] == p and x["L"] == L and x["method"] == mth]
                cells.append(f"{r[0]['median_ms']:.3f} [{r[0]['min_ms']:.3f}, {r[0]['max_ms']:.3f}]" if r else "—")
            out.append(f"| {L} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    rows = parse(Path(sys.argv[1]).read_text())
    if len(sys.argv) > 2:
        write_csv(rows, Path(sys.argv[2]))
    print(table(rows))
