"""Collect trained MACE runs into an experiment's results.json (paper rows kept), then regenerate
the README table.

    python scripts/collect_mace.py experiments/acac RUN_DIR [RUN_DIR ...] [--hardware "..."]
    python scripts/collect_mace.py experiments/rmd17 RUN_DIR ...

Each run directory must hold eval.json (written at the end of training or by equilab-evaluate),
config.json and metrics.jsonl. One record per test set and metric (``energy_rmse``,
``force_rmse``, ``energy_mae``, ``force_mae``; meV and meV/Å). ``test_set`` is the data set's
name for the file (AcAc ``test_MD_300K``...; rMD17 ``<molecule>/test_01``). A later run of the
same (test set, tp, channels, precision, lr schedule, epochs) replaces the earlier record, unless
``--tag`` sets it apart (e.g. the same recipe rerun with faster code).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from equilab.train.logging import read_metrics, wall_time_s

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("energy_rmse", "force_rmse", "energy_mae", "force_mae")

# anchors §3 (MACE paper Tables 1-3); AcAc are RMSE, rMD17 MAE, energies meV, forces meV/Å
ACAC = [("BOTNet", "test_MD_300K", 0.89, 6.3), ("NequIP", "test_MD_300K", 0.81, 5.90),
        ("MACE", "test_MD_300K", 0.9, 5.1), ("BOTNet", "test_MD_600K", 6.2, 29.8),
        ("NequIP", "test_MD_600K", 6.04, 27.8), ("MACE", "test_MD_600K", 4.6, 22.4)]
RMD17 = {"aspirin": (2.2, 6.6), "azobenzene": (1.2, 3.0), "benzene": (0.4, 0.3), "ethanol": (0.4, 2.1),
         "malonaldehyde": (0.8, 4.1), "naphthalene": (0.5, 1.6), "paracetamol": (1.3, 4.8),
         "salicylic": (0.9, 3.1), "toluene": (0.5, 1.5), "uracil": (0.5, 2.1)}


def paper_records(kind: str):
    recs = []
    if kind == "acac":
        for model, ts, e, f in ACAC:
            recs += [{"model": model, "metric": "energy_rmse", "test_set": ts, "value": e, "source": "paper"},
                     {"model": model, "metric": "force_rmse", "test_set": ts, "value": f, "source": "paper"}]
    elif kind == "rmd17":
        for mol, (e, f) in RMD17.items():
            ts = f"{mol}/test_01"
            recs += [{"model": "MACE", "metric": "energy_mae", "test_set": ts, "value": e, "source": "paper"},
                     {"model": "MACE", "metric": "force_mae", "test_set": ts, "value": f, "source": "paper"}]
    return recs


def budget(run: Path, cfg: dict, hardware: str) -> str:
    recs = read_metrics(run / "metrics.jsonl")
    steps = max(r["step"] for r in recs)
    wall = wall_time_s(recs)
    m, t = cfg["model"], cfg["trainer"]
    radial = f", radial MLP {list(m['radial_mlp'])}" if m.get("radial_mlp") else ""
    return (f"{m['num_channels']} ch{radial}, tp={m.get('tp', 'cg')}, {t.get('precision', 'float32')}; "
            f"{steps} steps (planned {t.get('max_epochs')} epochs, {schedule_of(cfg)} lr), best step {{best}}; "
            f"~{wall / 3600:.2f} h train+eval, {hardware}")


def schedule_of(cfg: dict) -> str:
    sched = cfg.get("optim", {}).get("schedule") or {}
    name = str(sched.get("name", "constant"))
    if sched.get("anneal_fraction"):
        of = "of trainer.time_budget_s" if sched.get("anneal_by") == "time" else ""
        name += (f" + cosine tail over the last {float(sched['anneal_fraction']):.3g} {of} "
                 f"to x{float(sched.get('anneal_to', 0.01)):g}").replace("  ", " ")
    return name


def run_key(cfg: dict) -> str:
    """Runs with the same key replace each other: model, precision, lr schedule and length."""
    m, t = cfg["model"], cfg["trainer"]
    return f"{m.get('tp', 'cg')}/{m['num_channels']}ch/{t.get('precision')}/{schedule_of(cfg)}/{t.get('max_epochs')}ep"


def command_of(run: Path) -> str:
    """The equilab-train command line, from Hydra's record of the overrides."""
    f = run / ".hydra" / "overrides.yaml"
    if not f.exists():
        return "equilab-train ... (overrides not recorded)"
    import yaml
    return "equilab-train " + " ".join(yaml.safe_load(f.read_text()) or [])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("experiment", help="experiments/acac or experiments/rmd17")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--hardware", default="2-core CPU, 1 core")
    ap.add_argument("--command", default=None, help="the command (default: rebuilt from config.json)")
    ap.add_argument("--tag", default=None, help="kept beside (not replacing) an earlier run of the same key, e.g. "
                    "a rerun with newer code; appended to the key and the budget text")
    a = ap.parse_args()
    folder = Path(a.experiment)
    kind = folder.name
    old = json.loads((folder / "results.json").read_text()) if (folder / "results.json").exists() else []
    ours = {}
    for r in old:
        if r.get("source") != "paper":
            ours[(r["test_set"], r["metric"], r.get("key"))] = r
    for run in map(Path, a.runs):
        ev = json.loads((run / "eval.json").read_text())
        cfg = json.loads((run / "config.json").read_text())
        key = run_key(cfg) + (f"/{a.tag}" if a.tag else "")
        b = budget(run, cfg, a.hardware).replace("{best}", str(ev["best_step"])) + (f"; {a.tag}" if a.tag else "")
        cmd = a.command or command_of(run)
        for k, v in ev.items():
            if "/" not in k:
                continue
            split, metric = k.split("/", 1)
            if metric not in METRICS or split in ("train", "valid"):
                continue
            ts = f"{cfg['data']['molecule']}/test_01" if kind == "rmd17" else split
            ours[(ts, metric, key)] = {"model": "MACE", "metric": metric, "test_set": ts, "value": round(v, 3),
                                       "source": "equilab", "key": key, "seeds": [cfg["seed"]],
                                       "best_step": ev["best_step"], "budget": b, "command": cmd,
                                       "run_dir": str(run)}
    records = paper_records(kind) + sorted(ours.values(), key=lambda r: (r["test_set"], r["metric"]))
    (folder / "results.json").write_text(json.dumps(records, indent=2) + "\n")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_table.py"), str(folder)], check=True)


if __name__ == "__main__":
    main()
