"""The Data row of the EDM table, computed by our evaluator on the EDM QM9 splits.

Usage: PYTHONPATH=. python experiments/qm9_generation/data_row.py <data_dir> [out.json]
Writes {split: metrics} for the 100,000 training and 13,083 test molecules (and caches the
training SMILES used for novelty).
"""
import json
import sys
import time

from equilab.data import qm9
from equilab.metrics import molecules as M


def main():
    data_dir = sys.argv[1]
    out_path = sys.argv[2] if len(sys.argv) > 2 else "data_row.json"
    out = {}
    for split in ("train", "test"):
        t = time.time()
        r = M.evaluate(qm9.molecules(data_dir, split))
        r["seconds"] = round(time.time() - t, 1)
        out[split] = r
        print(split, r, flush=True)
    t = time.time()
    ref = M.train_smiles(data_dir)
    out["train_smiles"] = {"n": len(ref), "seconds": round(time.time() - t, 1)}
    with open(out_path, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
