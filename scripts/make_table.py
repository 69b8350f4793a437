"""Regenerate the results table of an experiment README from its results.json.

    python scripts/make_table.py experiments/nbody

results.json is a list of records with at least ``model``, ``metric``, ``value``; records with
``"source": "paper"`` are the published numbers, the others ours; our records with different
``key`` values (run configurations) get a row each. The table replaces the text
between ``<!-- table:start -->`` and ``<!-- table:end -->`` in the README.
"""
import json
import sys
from collections import OrderedDict
from pathlib import Path


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1 else f"{v:.3g}"
    return str(v)


def table(records):
    keys = OrderedDict()
    for r in records:
        k = (r["model"], r["metric"], r.get("test_set", ""))
        keys.setdefault(k, {"paper": None, "ours": []})
        if r.get("source") == "paper":
            keys[k]["paper"] = r["value"]
        else:
            keys[k]["ours"].append(r)
    has_set = any(k[2] for k in keys)
    head = "| model | metric |" + (" test set |" if has_set else "") + " paper | equilab | seeds | budget |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (model, metric, ts), v in keys.items():
        # one row per run configuration (``key``, e.g. MACE's tp/channels/schedule), the seeds of
        # one configuration on the same row
        groups = OrderedDict()
        for r in v["ours"]:
            groups.setdefault(r.get("key"), []).append(r)
        for ours in list(groups.values()) or [[]]:
            val = "; ".join(fmt(r["value"]) for r in ours) if ours else "not run"
            seeds = "; ".join(str(r.get("seeds", "")) for r in ours)
            budget = "; ".join(str(r.get("budget", "")) for r in ours)
            lines.append(f"| {model} | {metric} |" + (f" {ts} |" if has_set else "") +
                         f" {fmt(v['paper'])} | {val} | {seeds} | {budget} |")
    return "\n".join(lines)


def main(folder):
    folder = Path(folder)
    records = json.loads((folder / "results.json").read_text())
    readme = folder / "README.md"
    text = readme.read_text()
    a, b = "<!-- table:start -->", "<!-- table:end -->"
    if a not in text or b not in text:
        raise SystemExit(f"{readme}: markers {a} / {b} not found")
    pre, rest = text.split(a, 1)
    _, post = rest.split(b, 1)
    readme.write_text(pre + a + "\n" + table(records) + "\n" + b + post)
    print(json.dumps({"readme": str(readme), "records": len(records)}))


if __name__ == "__main__":
    main(sys.argv[1])
