"""Time the EGNN N-body train step (batch 100): median and spread after warm-up.

    python scripts/time_nbody_step.py [data_dir] [--repeats 200]
    python scripts/time_nbody_step.py --loop [--steps-per-call 1,30]   # host loop incl. batching

``--loop`` times whole epochs the way ``Trainer.fit`` runs them (host batching, transfer,
dispatch) for each ``steps_per_call`` value, alternating the variants round by round so they
see the same machine load, and reports ms per step (median and spread over rounds).

Prints one JSON object on its last line.
"""
import argparse
import json
import time

import jax
import numpy as np

from equilab.cli import default_data_dir, setup_jax


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir", nargs="?", default=default_data_dir())
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--layout", default="graph", choices=["dense", "graph"])
    ap.add_argument("--loop", action="store_true")
    ap.add_argument("--steps-per-call", default="1,30")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    setup_jax()
    from equilab.train.loop import Trainer

    cfg = {
        "seed": 0, "paths": {"data_dir": a.data_dir},
        "model": {"name": "egnn", "hidden": 64, "layers": 4},
        "data": {"name": "nbody", "batch_size": a.batch, "max_train": 3000, "max_valid": 100, "max_test": 100,
                 "generate_if_missing": True, "layout": a.layout},
        "task": {"name": "position_regression"},
        "optim": {"name": "adam", "lr": 5e-4, "weight_decay": 1e-12, "schedule": {"name": "constant"}, "ema": None},
        "trainer": {"max_steps": 10, "eval_every": 10, "log_every": 10, "precision": "float32"},
        "logger": {"name": "none"},
    }
    tr = Trainer(cfg, "/tmp/equilab_time_nbody")
    if a.loop:
        return time_loop(tr, [int(k) for k in a.steps_per_call.split(",")], a.rounds)
    state = tr.sharder.replicate(tr.init_state())
    batches = [tr.sharder.batch(b, tr.dtype) for b, _ in zip(tr.data.train_batches(0, 0), range(10))]
    t0 = time.perf_counter()
    state, m = tr.train_step(state, batches[0], tr.key)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    for i in range(20):
        state, m = tr.train_step(state, batches[i % 10], tr.key)
    jax.block_until_ready(state)
    times = []
    for i in range(a.repeats):
        t0 = time.perf_counter()
        state, m = tr.train_step(state, batches[i % 10], tr.key)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
    print(json.dumps({"batch": a.batch, "layout": a.layout, "params": int(n_params), "compile_s": round(compile_s, 2),
                      "median_ms": round(float(np.median(ms)), 3), "p10_ms": round(float(np.percentile(ms, 10)), 3),
                      "p90_ms": round(float(np.percentile(ms, 90)), 3), "device": str(jax.devices()[0])}))


def time_loop(tr, ks, rounds):
    spe = tr.data.steps_per_epoch
    states = {k: tr.sharder.replicate(tr.init_state()) for k in ks}

    def epoch(k, state, e):
        bs = list(tr.data.train_batches(e, 0))
        for i in range(0, spe, k):
            state, m = tr.run_chunk(state, bs[i:i + k])
        jax.block_until_ready(state)
        return state

    for k in ks:  # compile and warm up
        states[k] = epoch(k, states[k], 0)
    times = {k: [] for k in ks}
    for r in range(rounds):
        for k in ks:
            t0 = time.perf_counter()
            states[k] = epoch(k, states[k], r + 1)
            times[k].append((time.perf_counter() - t0) / spe * 1e3)
    out = {"batch": tr.data.batch_size, "steps_per_epoch": spe, "device": str(jax.devices()[0])}
    for k in ks:
        ms = np.array(times[k])
        out[f"k{k}_median_ms"] = round(float(np.median(ms)), 3)
        out[f"k{k}_min_ms"] = round(float(ms.min()), 3)
        out[f"k{k}_max_ms"] = round(float(ms.max()), 3)
    if len(ks) == 2:
        out["ratio_median"] = round(out[f"k{ks[0]}_median_ms"] / out[f"k{ks[1]}_median_ms"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
