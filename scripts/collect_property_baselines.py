"""Append the property-conditioning baselines of trained evaluator runs to the QM9 results.json.

    python scripts/collect_property_baselines.py experiments/qm9_generation/results.json RUN [RUN ...] \
        --budget "EGNN property evaluator 4x64 ..." --command "equilab-train ... && equilab-eval-property ..."

Each RUN is an evaluator run directory on which ``equilab-eval-property evaluator=RUN`` (no
generator) has been run, so it holds ``property_eval/data_seed<seed>.json`` and ``metrics.jsonl``.
Writes the lower bound, Naive, #Atoms (mean and median) and the evaluator's validation MAE at its
best checkpoint, replacing earlier records of the same model and metric. ``{p}`` in ``--command``
is replaced by the property.
"""
import argparse
import json
from pathlib import Path

PAPER = {  # EDM's Naive and #Atoms rows (anchors §4), in our units
    "alpha": (9.01, 3.86), "gap": (1470, 866), "mu": (1.616, 1.053)}


def records(run: Path, budget: str, command: str, seed: int = 0) -> list:
    f = run / "property_eval" / f"data_seed{seed}.json"
    if not f.is_file():
        raise SystemExit(f"{f}: missing; run `equilab-eval-property evaluator={run}` first")
    d = json.loads(f.read_text())
    p, unit, n = d["property"], d["unit"], d["n_data"]
    cmd = command.replace("{p}", p)
    naive_paper, atoms_paper = PAPER.get(p, (None, None))
    paper = lambda v: f"; EDM paper {v}" if v is not None else "; not in the anchors"  # noqa: E731
    common = {"unit": unit, "n_samples": n, "sampling_steps": None, "command": cmd}
    out = [
        {"model": f"Lower bound: CPU evaluator on QM9 second half ({p})", "metric": "mae_lower_bound",
         "value": d["mae_lower_bound"], **common, "training_budget": budget,
         "note": f"evaluator MAE against the true {p} of the {n:,} second-half molecules"},
        {"model": f"Naive: CPU evaluator, shuffled properties ({p})", "metric": "mae_naive", "value": d["mae_naive"],
         **common, "training_budget": budget,
         "note": f"evaluator predictions on the second half against its {p} values permuted with seed {seed}"
                 + paper(naive_paper)},
        {"model": f"#Atoms: mean {p} per atom count of the second half", "metric": "mae_n_atoms",
         "value": d["mae_n_atoms"], **common, "training_budget": None,
         "note": "no network" + paper(atoms_paper)},
        {"model": f"#Atoms: median {p} per atom count of the second half", "metric": "mae_n_atoms_median",
         "value": d["mae_n_atoms_median"], **common, "training_budget": None,
         "note": "no network; the L1-optimal per-count predictor"},
    ]
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"valid/mae"' in line]
    if evals:
        best = min(evals, key=lambda r: r["valid/mae"])
        out.append({"model": f"QM9 property evaluator, CPU preset ({p})", "metric": "valid/mae",
                    "value": best["valid/mae"], "unit": unit, "n_samples": 1000, "sampling_steps": None,
                    "training_budget": budget, "command": cmd.split(" && ")[0],
                    "note": f"best checkpoint, step {best['step']}; 1,000 validation molecules evenly spaced "
                            "over the split (data.eval_pick=spread)"})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--budget", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    old = json.loads(a.results.read_text())
    new = [r for run in a.runs for r in records(run, a.budget, a.command, a.seed)]
    keys = {(r["model"], r["metric"]) for r in new}
    kept = [r for r in old if (r["model"], r["metric"]) not in keys]
    a.results.write_text(json.dumps(kept + new, indent=1))  # the file's layout: indent 1, no final newline
    print(json.dumps({"results": str(a.results), "replaced": len(old) - len(kept), "added": len(new)}))


if __name__ == "__main__":
    main()
