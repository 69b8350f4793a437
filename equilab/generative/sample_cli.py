"""``equilab-sample run=<run_dir> n=<count> [steps=...] [solver=...] [noise=...] [time_power=...]
[batch=100] [seed=0] [out=<dir>] [novelty=true] [params=ema|raw]``: sample molecules from a trained
generative run. ``solver=sde noise=η`` samples a flow-matching run with the stochastic sampler,
``time_power=p`` on the grid t_i = 1 − (1 − i/N)^p (``equilab.generative.flow``).

Writes into ``out`` (default ``<run_dir>/samples/n<count>_steps<steps>_seed<seed>``, with
``_<solver>``, ``_noise<η>`` and ``_tp<p>`` appended when they are given):
``molecules.xyz``, ``molecules.sdf`` (EDM-rule bonds), ``metrics.json`` (the EDM metrics of
``equilab-eval-molecules`` plus sampling settings, compile time and throughput) and ``grid.png``
(RDKit 2-D depictions of the first valid molecules).  Prints the metrics JSON on its last line.
A conditional run (``data.condition_on``) samples for targets drawn jointly with the atom counts
from its training data and writes them to ``targets.json``; ``equilab-eval-property`` scores them.
"""
from __future__ import annotations

import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np

from equilab.kvargs import int_arg, parse_kv


def _parse(argv):
    known = {"run", "n", "steps", "solver", "noise", "time_power", "batch", "seed", "out", "novelty", "params", "data_dir"}
    return parse_kv(argv, known, {"run": "<run_dir>"})


def restore(run_dir: str, use_ema: bool = True):
    """(cfg, model, params, data_stats) of a run's best checkpoint: the training package's
    ``restore_for_inference`` when it exists (and EMA weights are wanted), else the Trainer's own
    restore; ``use_ema=False`` takes the raw weights (EMA of a short run is mostly its init)."""
    try:
        from equilab.train.checkpoint import restore_for_inference
    except ImportError:
        restore_for_inference = None
    if restore_for_inference is not None and use_ema:
        return restore_for_inference(run_dir)
    from equilab.cli import setup_jax
    from equilab.errors import ConfigError
    from equilab.train.checkpoint import read_meta

    try:
        meta, _ = read_meta(run_dir, "best")
    except FileNotFoundError as e:
        raise ConfigError(f"run={run_dir}: {e}") from None
    cfg = meta["config"]
    setup_jax(cfg["trainer"].get("precision", "float32"))
    import equilab.data.qm9  # noqa: F401  (registers qm9, egnn_dynamics, edm, flow_matching)
    import equilab.models.egnn_dynamics  # noqa: F401
    import equilab.tasks.generative  # noqa: F401
    from equilab.train.loop import Trainer

    trainer = Trainer(cfg, run_dir)
    state, _, step = trainer.restore_best()
    params = trainer.eval_params(state) if use_ema else state.params
    stats = dict(trainer.data.stats, checkpoint_step=step, weights="ema" if use_ema and trainer.ema_decay else "raw")
    return cfg, trainer.model, params, stats


def draw_grid(molecules, path: str, n: int = 16) -> int:
    """PNG grid of 2-D depictions (hydrogens removed) of the first ``n`` valid molecules."""
    from rdkit import Chem
    from rdkit.Chem import AllChem, Draw

    from equilab.metrics.molecules import _mol2smiles, _quiet_rdkit, _rdkit_molecule

    _quiet_rdkit()
    mols, legends = [], []
    for i, (x, z) in enumerate(molecules):
        m = _rdkit_molecule(x, z)
        if _mol2smiles(m) is None:
            continue
        frags = Chem.rdmolops.GetMolFrags(m, asMols=True)
        m = Chem.RemoveHs(max(frags, key=lambda f: f.GetNumAtoms()))
        AllChem.Compute2DCoords(m)
        mols.append(m)
        legends.append(f"#{i}")
        if len(mols) == n:
            break
    if mols:
        Draw.MolsToGridImage(mols, molsPerRow=4, subImgSize=(250, 250), legends=legends).save(path)
    return len(mols)


def sample_molecules(task, model, params, *, n: int, batch: int, seed: int, opts: dict):
    """Draw n molecules in jitted batches of a fixed size; returns (molecules, timing dict).

    A conditional task (``condition_on``) gets atom counts and targets drawn jointly from its
    training data (``equilab.generative.conditioning``); the targets are in ``timing["targets"]``.
    """
    import jax
    import jax.numpy as jnp

    from equilab.generative.common import to_molecules

    cond = getattr(task, "condition_on", None)
    if cond is not None:
        from equilab.generative.conditioning import from_stats, node_mask_from_counts

        dist, rng = from_stats(task.stats), np.random.default_rng(seed)
    fn = jax.jit(lambda p, k, m, c: task.sample(model, p, k, m, context=c, **opts))
    key = jax.random.PRNGKey(seed)
    mols, targets, t_compile, t_run = [], [], 0.0, 0.0
    for i in range(-(-n // batch)):
        kb, km = jax.random.split(jax.random.fold_in(key, i))
        if cond is None:
            mask, ctx = task.sample_node_mask(km, batch), None
        else:
            counts, tgt = dist.sample(rng, batch)
            mask = jnp.asarray(node_mask_from_counts(counts, task.stats.get("max_atoms", 29)))
            ctx = jnp.asarray(task.normalise(tgt)[:, None], jnp.float32)
            targets += tgt.tolist()
        if i == 0:
            # Compile ahead of time (a hit in the persistent compilation cache makes this short),
            # so that the throughput counts sampling only.
            t0 = time.perf_counter()
            fn = fn.lower(params, kb, mask, ctx).compile()
            t_compile = time.perf_counter() - t0
        t0 = time.perf_counter()
        x, ty = jax.block_until_ready(fn(params, kb, mask, ctx))
        dt = time.perf_counter() - t0
        t_run += dt
        mols += to_molecules(x, ty, mask)
    mols = mols[:n]
    nb = -(-n // batch)
    timing = {"compile_s": round(t_compile, 3), "sampling_s": round(t_run, 6),
              "molecules_per_s": round(nb * batch / t_run, 3)}
    if cond is not None:
        timing.update(condition_on=cond, targets=targets[:n])
    return mols, timing


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from equilab.errors import ConfigError, EquilabError

    try:
        kv = _parse(argv)
        run_dir = kv["run"]
        n, batch = int_arg(kv, "n", 100, minimum=1), int_arg(kv, "batch", 100, minimum=1)
        seed = int_arg(kv, "seed", 0)
        steps_arg = int_arg(kv, "steps", None, minimum=1)
        batch = min(batch, n)
        if kv.get("params", "ema") not in ("ema", "raw"):
            raise ConfigError(f"params={kv['params']!r}; choose ema or raw")
        cfg, model, params, stats = restore(run_dir, use_ema=kv.get("params", "ema") == "ema")
        from equilab.train.factories import build_task
        from equilab.metrics import molecules as M

        task = build_task(cfg, types.SimpleNamespace(stats=stats))
        opts = {}
        if steps_arg is not None:
            opts["steps"] = steps_arg
        from equilab.generative import flow

        sampler_opts = [k for k in ("solver", "noise", "time_power") if k in kv]
        if sampler_opts and getattr(task, "solver", None) is None:
            raise ConfigError(f"{sampler_opts[0]}= sets the flow-matching sampler; this run's task "
                              f"({cfg['task']['name']}) has none")
        if "solver" in kv:
            if kv["solver"] not in flow.SOLVERS:
                raise ConfigError(f"solver={kv['solver']!r}; choose one of {flow.SOLVERS}")
            try:
                flow.check_param(getattr(task, "param", "velocity"), kv["solver"])
            except ValueError as e:
                raise ConfigError(f"solver={kv['solver']!r} for this run's task.param: {e}") from None
            opts["solver"] = kv["solver"]
        if "noise" in kv:
            try:
                opts["noise"] = flow.check_noise(kv["noise"])
            except ValueError as e:
                raise ConfigError(f"noise={kv['noise']!r}: {e}") from None
            if opts.get("solver", task.solver) != "sde":
                raise ConfigError(f"noise= applies to solver=sde only (this call samples with "
                                  f"solver={opts.get('solver', task.solver)})")
        if "time_power" in kv:
            try:
                opts["time_power"] = flow.check_time_power(kv["time_power"])
            except ValueError as e:
                raise ConfigError(f"time_power={kv['time_power']!r}: {e}") from None
        steps = opts.get("steps", getattr(task, "steps", getattr(task, "timesteps", None)))
        # a solver, SDE noise or time grid given on the command line is part of the default folder name
        tag = "".join([f"_{opts['solver']}" if "solver" in opts else "", f"_noise{opts['noise']:g}" if "noise" in opts else "",
                       f"_tp{opts['time_power']:g}" if "time_power" in opts else ""])
        out = Path(kv.get("out") or Path(run_dir) / "samples" / f"n{n}_steps{steps}_seed{seed}{tag}")
        out.mkdir(parents=True, exist_ok=True)
        mols, timing = sample_molecules(task, model, params, n=n, batch=batch, seed=seed, opts=opts)
        targets = timing.pop("targets", None)
        if targets is not None:  # conditional run: the requested property of molecule i
            (out / "targets.json").write_text(json.dumps({"property": timing["condition_on"], "targets": targets}))
        M.write_xyz(str(out / "molecules.xyz"), mols)
        M.write_sdf(str(out / "molecules.sdf"), mols)
        ref = None
        if kv.get("novelty", "true").lower() not in ("false", "0", "no"):
            data_dir = kv.get("data_dir") or cfg.get("paths", {}).get("data_dir") or os.environ.get("EQUILAB_DATA_DIR", "data")
            ref = M.train_smiles(data_dir)
        metrics = M.evaluate(mols, ref)
        metrics["breakdown"] = M.breakdown(mols)
        solver_used = opts.get("solver", getattr(task, "solver", None))
        if solver_used == "sde":
            metrics["sde_noise"] = opts.get("noise", task.sde_noise)
        if solver_used is not None:
            metrics["time_power"] = opts.get("time_power", getattr(task, "time_power", 1.0))
        metrics.update({"task": cfg["task"]["name"], "steps": steps, "solver": solver_used,
                        "seed": seed, "batch": batch, "checkpoint_step": stats.get("checkpoint_step"),
                        "weights": stats.get("weights"), **timing})
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        metrics["grid_molecules"] = draw_grid(mols, str(out / "grid.png"))
        metrics["out"] = str(out)
    except EquilabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
