"""Sampling throughput (molecules/s) of EDM at 1000 steps and flow matching at 50 Heun steps.

Throughput does not depend on the weights, so freshly initialised networks of a given size are
timed (compile excluded, one timed batch after a warm-up call).

Usage: PYTHONPATH=. python experiments/qm9_generation/throughput.py <data_dir> [hidden] [layers] [batch]
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
    hidden, layers, batch = (int(a) for a in (sys.argv[2:5] + ["64", "4", "100"][len(sys.argv[2:5]):]))
    dm = qm9.QM9DataModule(data_dir, batch_size=8, train_subset=64)
    model = build_model({"hidden": hidden, "n_layers": layers}, dm)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), dm.example_batch())
    out = {"hidden": hidden, "layers": layers, "batch": batch, "device": str(jax.devices()[0])}
    for name, task, opts in (
        ("flow_matching_heun_50", build_flow_matching({"steps": 50, "solver": "heun"}, dm), {}),
        ("edm_1000", build_edm({"timesteps": 1000}, dm), {}),
    ):
        _, timing = sample_molecules(task, model, params, n=batch, batch=batch, seed=0, opts=opts)
        out[name] = timing
        print(name, timing, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
