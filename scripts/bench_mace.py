"""Training-step time of the same MACE on the same data for each ``model.tp``, side by side, and
(optionally) the same-size model in ``mace-torch`` in the same process on the same machine.

    PYTHONPATH=. JAX_PLATFORMS=cpu .venv/bin/python scripts/bench_mace.py \
        --data-dir ../shared/data --tp cg,gaunt_s2grid,gaunt_fourier --channels 32 --steps 20

For each backend: compile time of the train step (first call), then the median, min and max
of ``--steps`` timed steps after ``--warmup`` untimed ones (each synchronised with
``block_until_ready``), and the same for the forward pass (energy and forces, no update). The
batches are the same sequence for every backend. Prints one JSON object per backend and a final
summary line with ratios to the fastest equilab backend; compare ratios from one run only.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np


def _stats(ts):
    return {"median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts), "max_ms": 1e3 * max(ts), "n": len(ts)}


def bench_equilab(tp, dm, args, batches):
    import jax
    import optax

    from equilab.registry import MODELS, TASKS

    model_cfg = {"tp": tp, "num_channels": args.channels, "hidden_lmax": args.hidden_lmax, "max_ell": args.max_ell,
                 "correlation": args.correlation, "num_interactions": 2, "radial_mlp": [64, 64, 64]}
    model = MODELS.get("mace")(model_cfg, dm)
    task = TASKS.get("energy_forces")({}, dm)
    tx = optax.amsgrad(0.01)
    t0 = time.perf_counter()
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batches[0])
    jax.block_until_ready(params)
    t_init = time.perf_counter() - t0
    opt_state = tx.init(params)
    batches = jax.device_put(batches)  # on the accelerator before timing, as the torch side's

    @jax.jit
    def step(params, opt_state, batch):
        (loss, _), g = jax.value_and_grad(lambda p: task.loss(model, p, batch, None, True), has_aux=True)(params)
        upd, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, upd), opt_state, loss

    fwd = jax.jit(lambda p, b: model.apply(p, b))
    t0 = time.perf_counter()
    out = step(params, opt_state, batches[0])
    jax.block_until_ready(out)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(fwd(params, batches[0]))
    t_compile_fwd = time.perf_counter() - t0
    ts, tf = [], []
    for i in range(args.warmup + args.steps):
        b = batches[i % len(batches)]
        t0 = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, b)
        jax.block_until_ready(loss)
        if i >= args.warmup:
            ts.append(time.perf_counter() - t0)
    for i in range(args.warmup + args.steps):
        b = batches[i % len(batches)]
        t0 = time.perf_counter()
        jax.block_until_ready(fwd(params, b))
        if i >= args.warmup:
            tf.append(time.perf_counter() - t0)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    return {"backend": f"equilab/{tp}", "params": int(n_params), "init_s": t_init, "compile_step_s": t_compile,
            "compile_forward_s": t_compile_fwd, "train_step": _stats(ts), "forward": _stats(tf),
            "final_loss": float(loss)}


def bench_mace_torch(dm, args, frames):
    """The same-size model in mace-torch (ScaleShiftMACE), float32/float64 as --precision."""
    import torch

    # e3nn 0.4.4 (mace-torch's pin) torch.load()s its constants file, which holds `slice`
    # objects that torch >= 2.6 refuses under weights_only=True unless allow-listed.
    torch.serialization.add_safe_globals([slice])
    from e3nn import o3
    from mace import data as mdata
    from mace import modules, tools
    from mace.tools import torch_geometric

    torch.set_default_dtype(torch.float64 if args.precision == "float64" else torch.float32)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.torch_device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    zs = dm.stats["atomic_numbers"]
    z_table = tools.AtomicNumberTable(zs)
    hidden = " + ".join(f"{args.channels}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(args.hidden_lmax + 1))
    model = modules.ScaleShiftMACE(
        r_max=dm.cutoff, num_bessel=8, num_polynomial_cutoff=5, max_ell=args.max_ell,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_interactions=2, num_elements=len(zs), hidden_irreps=o3.Irreps(hidden), MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.asarray(dm.stats["e0"]), avg_num_neighbors=dm.stats["avg_num_neighbors"],
        atomic_numbers=zs, correlation=args.correlation, gate=torch.nn.functional.silu,
        radial_MLP=[64, 64, 64], atomic_inter_scale=dm.stats["scale"], atomic_inter_shift=dm.stats["shift"]).to(dev)
    configs = [mdata.Configuration(atomic_numbers=f.Z, positions=f.positions,
                                   properties={"energy": f.energy, "forces": f.forces},
                                   property_weights={"energy": 1.0, "forces": 1.0}) for f in frames]
    ds = [mdata.AtomicData.from_config(c, z_table=z_table, cutoff=dm.cutoff) for c in configs]
    loader = torch_geometric.dataloader.DataLoader(ds, batch_size=args.batch_size, shuffle=False, drop_last=True)
    loss_fn = modules.WeightedEnergyForcesLoss(energy_weight=1.0, forces_weight=1000.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    batches = [b.to(dev) for b in loader]

    def step(b):
        opt.zero_grad()
        out = model(b.to_dict(), training=True)
        loss = loss_fn(pred=out, ref=b)
        loss.backward()
        opt.step()
        sync()
        return loss

    t0 = time.perf_counter()
    step(batches[0])
    t_first = time.perf_counter() - t0
    ts, tf = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        step(batches[i % len(batches)])
        if i >= args.warmup:
            ts.append(time.perf_counter() - t0)
    for i in range(args.warmup + args.steps):
        b = batches[i % len(batches)]
        t0 = time.perf_counter()
        model(b.to_dict(), training=False)
        sync()
        if i >= args.warmup:
            tf.append(time.perf_counter() - t0)
    return {"backend": "mace-torch", "params": int(sum(p.numel() for p in model.parameters())),
            "first_step_s": t_first, "train_step": _stats(ts), "forward": _stats(tf),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "torch_device": str(dev)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--data", default="acac", choices=["acac", "bpa3", "rmd17"])
    p.add_argument("--molecule", default="ethanol")
    p.add_argument("--tp", default="cg,gaunt_s2grid,gaunt_fourier")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--hidden-lmax", type=int, default=2)
    p.add_argument("--max-ell", type=int, default=3)
    p.add_argument("--correlation", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precision", default="float32", choices=["float32", "float64"])
    p.add_argument("--torch", action="store_true", help="also time mace-torch (pip install torch mace-torch)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (match the JAX CPU)")
    p.add_argument("--torch-device", default="cpu", help="cpu | cuda (the model and batches are moved there; "
                   "each timed step ends in torch.cuda.synchronize)")
    args = p.parse_args(argv)

    import jax

    if args.precision == "float64":
        jax.config.update("jax_enable_x64", True)
    import equilab.data.atoms  # noqa: F401  (register)
    import equilab.models.mace  # noqa: F401
    import equilab.tasks.energy_forces  # noqa: F401
    from equilab.registry import DATASETS

    cfg = {"batch_size": args.batch_size, "cutoff": 5.0}
    if args.data == "rmd17":
        cfg["molecule"] = args.molecule
    if args.data == "bpa3":
        cfg["on_missing_test"] = "skip"
    dm = DATASETS.get(args.data)(cfg, args.data_dir)
    batches = list(dm.train_batches(epoch=0, seed=0))[: max(8, args.steps)]
    results = []
    print(json.dumps({"device": str(jax.devices()[0]), "jax": jax.__version__, "precision": args.precision,
                      "channels": args.channels, "batch_size": args.batch_size, "data": args.data}), flush=True)
    for tp in [t for t in args.tp.split(",") if t]:
        try:
            r = bench_equilab(tp, dm, args, batches)
        except Exception as e:  # noqa: BLE001 — report the backend as unavailable, keep going
            r = {"backend": f"equilab/{tp}", "error": f"{type(e).__name__}: {e}"}
        results.append(r)
        print(json.dumps(r), flush=True)
    if args.torch:
        try:
            r = bench_mace_torch(dm, args, dm.splits["train"][: args.batch_size * max(8, args.steps)])
        except Exception as e:  # noqa: BLE001
            r = {"backend": "mace-torch", "error": f"{type(e).__name__}: {e}"}
        results.append(r)
        print(json.dumps(r), flush=True)
    ok = [r for r in results if "train_step" in r]
    eq = [r for r in ok if r["backend"].startswith("equilab/")]
    if eq:
        best = min(eq, key=lambda r: r["train_step"]["median_ms"])
        ratios = {r["backend"]: r["train_step"]["median_ms"] / best["train_step"]["median_ms"] for r in ok}
        print(json.dumps({"fastest_equilab": best["backend"], "train_step_time_ratio_to_fastest": ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
