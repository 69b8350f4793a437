"""Collect our N-body rows from run directories into results.json (paper rows kept), then
regenerate the README table.

    python experiments/nbody/collect.py MODEL=RUN_DIR [MODEL=RUN_DIR ...] [--hardware "..."]

Each run directory must hold eval.json (written at the end of training or by equilab-evaluate),
config.json and metrics.jsonl. The record's budget names the epochs and steps actually trained,
the wall time summed from metrics.jsonl, and the hardware.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from equilab.train.logging import read_metrics, wall_time_s

HERE = Path(__file__).resolve().parent
PAPER = [  # anchors §2 (EGNN paper Table 2 and follow-ups); (unverified) marks kept in `note`
    ("Linear", 0.0819, "unverified"), ("SE(3)-Transformer", 0.0244, ""), ("TFN", 0.0155, ""),
    ("GNN", 0.0107, ""), ("Radial Field", 0.0104, "unverified"), ("EGNN", 0.0071, "re-runs 0.0070"),
    ("FA-GNN", 0.0057, "unverified"), ("SEGNN", 0.0043, ""), ("PONITA", 0.0043, ""),
    ("CGENN", 0.0039, "unverified"), ("Multivector Neurons", 0.0035, ""),
]


def budget(run: Path, hardware: str):
    cfg = json.loads((run / "config.json").read_text())
    recs = read_metrics(run / "metrics.jsonl")
    steps = max(r["step"] for r in recs)
    bs, n = cfg["data"]["batch_size"], cfg["data"]["max_train"]
    spe = n // bs
    wall = wall_time_s(recs)
    planned = cfg["trainer"].get("max_epochs")
    return (f"{steps // spe} of {planned} epochs ({steps} steps, batch {bs}), "
            f"~{wall / 3600:.2f} h train+eval wall time, {hardware}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="MODEL=RUN_DIR")
    ap.add_argument("--hardware", default="2-core CPU (shared)")
    ap.add_argument("--command", action="append", default=[], help="MODEL=COMMAND")
    a = ap.parse_args()
    commands = dict(c.split("=", 1) for c in a.command)
    records = [{"model": m, "metric": "test_mse", "value": v, "source": "paper", "note": note} for m, v, note in PAPER]
    old = json.loads((HERE / "results.json").read_text()) if (HERE / "results.json").exists() else []
    ours = {(r["model"], tuple(r.get("seeds", []))): r for r in old if r.get("source") != "paper"}
    for item in a.runs:
        model, run = item.split("=", 1)
        run = Path(run)
        ev = json.loads((run / "eval.json").read_text())
        cfg = json.loads((run / "config.json").read_text())
        ours[(model, (cfg["seed"],))] = {"model": model, "metric": "test_mse", "value": ev["test/mse"], "source": "equilab",
                       "valid_mse": ev["valid/mse"], "best_step": ev["best_step"], "seeds": [cfg["seed"]],
                       "budget": budget(run, a.hardware),
                       "command": commands.get(model, f"equilab-train experiment=... seed={cfg['seed']}")}
    records += list(ours.values())
    (HERE / "results.json").write_text(json.dumps(records, indent=2) + "\n")
    subprocess.run([sys.executable, str(HERE.parents[1] / "scripts" / "make_table.py"), str(HERE)], check=True)


if __name__ == "__main__":
    main()
