"""Sampling throughput (molecules/s) of EDM at 1000 steps and flow matching at 50 Heun steps.

Throughput does not depend on the weights, so freshly initialised networks of a given size are
timed (compile excluded, one timed batch after a warm-up call).

Usage: PYTHONPATH=. python experiments/qm9_generation/throughput.py <data_dir> [hidden layers batch] [full]
"""
import json
import sys

import jax

from equilab.data import qm9
from equilab.generative.sample_cli import sample_molecules
from equilab.models.egnn_dynamics import build as build_model
from equilab.tasks.generative import build_edm, build_flow_matching


def main():
    data_dir = sys.argv[1]
    nums = [a for a in sys.argv[2:5] if a.isdigit()]
    hidden, layers, batch = (int(a) for a in nums + ["64", "4", "100"][len(nums):])
    dm = qm9.QM9DataModule(data_dir, batch_size=8, train_subset=64)
    model = build_model({"hidden": hidden, "n_layers": layers}, dm)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), dm.example_batch())
    out = {"hidden": hidden, "layers": layers, "batch": batch, "device": str(jax.devices()[0])}
    # EDM at 1000 steps costs 1000 network calls per batch (~15 min per batch of 100 on the shared
    # CPU), so by default it is timed at 100 steps of the same schedule and scaled by 10: each
    # ancestral step is one network call plus elementwise work. Pass "full" to time 1000 steps.
    full = "full" in sys.argv
    edm_steps = 1000 if full else 100
    for name, task, opts, scale in (
        ("flow_matching_heun_50", build_flow_matching({"steps": 50, "solver": "heun"}, dm), {}, 1),
        (f"edm_{edm_steps}", build_edm({"timesteps": 1000}, dm), {"steps": edm_steps}, 1000 // edm_steps),
    ):
        _, timing = sample_molecules(task, model, params, n=batch, batch=batch, seed=0, opts=opts)
        out[name] = timing
        if scale != 1:
            out["edm_1000_extrapolated_molecules_per_s"] = round(timing["molecules_per_s"] / scale, 4)
        print(name, timing, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
