"""``equilab-eval-property evaluator=<run_dir> [generator=<run_dir>] [n=10000] [batch=100]
[steps=...] [solver=...] [seed=0] [params=ema|raw] [max_data=...] [eval_batch=500]
[data_dir=...] [out=<file.json>]``: the property-conditioning table of the EDM protocol.

The evaluator is a ``property_regression`` run (``experiment=qm9_prop_evaluator``, trained on the
first half of the EDM training set).  Reported, all in the property's units:

- ``mae_lower_bound``: the evaluator's MAE on the second half (the generator's training data);
- ``mae_naive``: the same predictions against the second half's properties shuffled (seeded);
- ``mae_n_atoms``: predicting the property from the atom count alone, the mean property per
  atom count of the second half (``mae_n_atoms_median``: the median, the L1-optimal choice);
- with ``generator=`` (a run with ``data.condition_on`` set, trained on the second half):
  ``mae_generator``, the evaluator's MAE on ``n`` molecules sampled for targets drawn jointly
  with their atom counts from the second half (EDM's ``DistributionProperty``), plus the EDM
  stability of those molecules; and two diagnostics (``equilab.metrics.property.context_use``):
  ``mae_n_atoms_paired`` (#Atoms on the generator's own targets and counts) and
  ``residual_corr`` / ``residual_slope`` (do the predictions follow the targets beyond the
  per-count mean?).

``max_data`` caps the second-half molecules used for the three baselines (default: all 50,000).
Writes the JSON into ``out`` (default ``<generator>/property_eval/<prop>_n<n>_steps<steps>_seed<seed>.json``,
or ``<evaluator>/property_eval/data_seed<seed>.json`` without a generator; the generator's
targets and predictions go beside it as ``.npz``) and prints it on the last line.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from equilab.kvargs import int_arg, parse_kv

KNOWN = {"evaluator", "generator", "n", "batch", "steps", "solver", "seed", "params", "max_data", "eval_batch",
         "data_dir", "out"}


def _parse(argv):
    return parse_kv(argv, KNOWN, {"evaluator": "<run_dir> (a run of experiment=qm9_prop_evaluator)"})


def restore_run(run_dir: str, field: str, *, use_ema: bool = True, data_dir: str | None = None):
    """(cfg, trainer, params, checkpoint step) of a run's best checkpoint; ``field`` names the
    argument in errors.  The data module is rebuilt (its statistics hold the norms)."""
    from equilab.cli import setup_jax
    from equilab.errors import ConfigError
    from equilab.train.checkpoint import read_meta

    if not (Path(run_dir) / "checkpoints").exists():
        raise ConfigError(f"{field}={run_dir}: no checkpoints/ folder there — is it a run directory?")
    try:
        meta, _ = read_meta(run_dir, "best")
    except FileNotFoundError as e:
        raise ConfigError(f"{field}={run_dir}: {e}") from None
    cfg = meta["config"]
    if data_dir:
        cfg["paths"] = dict(cfg.get("paths", {}), data_dir=data_dir)
    setup_jax(cfg["trainer"].get("precision", "float32"))
    from equilab.train.loop import Trainer

    trainer = Trainer(cfg, run_dir)
    state, _, step = trainer.restore_best()
    params = trainer.eval_params(state) if use_ema else state.params
    return cfg, trainer, params, step


def predictor(trainer):
    """The evaluator's jitted ``predict(params, batch)`` (property in its units)."""
    import jax

    return jax.jit(lambda p, b: trainer.task.predict(trainer.model, p, b))


def evaluator_predictions(trainer, params, batches, predict=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluator predictions (units), true values and atom counts over dense batches (real
    molecules only, by ``graph_mask``); ``predict`` from :func:`predictor` (built if None)."""
    task = trainer.task
    fn = predict or predictor(trainer)
    preds, ys, ns = [], [], []
    for b in batches:
        gm = np.asarray(b["graph_mask"], bool)
        inp = {k: b[k] for k in ("positions", "one_hot", "node_mask")}
        preds.append(np.asarray(fn(params, inp))[gm])
        ys.append(np.asarray(b["properties"])[gm, task.index])
        ns.append(np.asarray(b["n_atoms"])[gm])
    return np.concatenate(preds), np.concatenate(ys), np.concatenate(ns)


def sample_conditional(task, model, params, dist, *, n: int, batch: int, seed: int, opts: dict,
                       max_atoms: int = 29):
    """Draw ``n`` (atom count, target) pairs from ``dist`` and sample one molecule for each, in
    jitted batches of a fixed size.  Yields per batch (x (B, N, 3) Å, type index (B, N),
    node mask (B, N), targets (B,) in units), the last batch trimmed to n."""
    import jax
    import jax.numpy as jnp

    from equilab.generative.conditioning import node_mask_from_counts

    fn = jax.jit(lambda p, k, m, c: task.sample(model, p, k, m, context=c, **opts))
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    done = 0
    for i in range(-(-n // batch)):
        counts, targets = dist.sample(rng, batch)
        mask = node_mask_from_counts(counts, max_atoms)
        ctx = task.normalise(targets)[:, None].astype(np.float32)
        x, ty = jax.block_until_ready(fn(params, jax.random.fold_in(key, i), jnp.asarray(mask), jnp.asarray(ctx)))
        k = min(batch, n - done)
        done += k
        yield np.asarray(x)[:k], np.asarray(ty)[:k], mask[:k], targets[:k]


def generated_batch(x, types, mask, n_types: int = 5) -> dict:
    """Evaluator input from sampled molecules: positions, one-hot types, node mask."""
    oh = (types[..., None] == np.arange(n_types)).astype(np.float32) * mask[..., None]
    return {"positions": np.asarray(x, np.float32), "one_hot": oh, "node_mask": np.asarray(mask, bool)}


def evaluate(kv: dict) -> dict:
    from equilab.errors import ConfigError
    from equilab.metrics import molecules as M
    from equilab.metrics import property as P

    seed = int_arg(kv, "seed", 0)
    use_ema = kv.get("params", "ema")
    if use_ema not in ("ema", "raw"):
        raise ConfigError(f"params={use_ema!r}; choose ema or raw")
    use_ema = use_ema == "ema"
    ecfg, ev, eparams, estep = restore_run(kv["evaluator"], "evaluator", use_ema=use_ema, data_dir=kv.get("data_dir"))
    if ecfg["task"]["name"] != "property_regression":
        raise ConfigError(f"evaluator={kv['evaluator']}: task is {ecfg['task']['name']!r}, not property_regression "
                          "(train one with equilab-train experiment=qm9_prop_evaluator)")
    prop, dm = ev.task.property, ev.data
    warnings = []
    if ev.data.stats.get("subset") != "first_half":
        warnings.append(f"the evaluator was trained on data.subset={ev.data.stats.get('subset')}, not first_half")
    result = {"property": prop, "unit": ev.task.unit, "evaluator": str(kv["evaluator"]), "evaluator_step": estep,
              "evaluator_norm": {"mean": ev.task.mean, "mad": ev.task.mad}}

    # Baselines on the second half, with the same evaluator.
    t0 = time.perf_counter()
    rows = dm.subset_rows("second_half")
    max_data = int_arg(kv, "max_data", None, minimum=1)
    if max_data is not None:
        rows = rows[:max_data]
    eval_batch = int_arg(kv, "eval_batch", 500, minimum=1)
    predict = predictor(ev)
    pred, y, n_atoms = evaluator_predictions(ev, eparams, dm.batches_for_rows(rows, eval_batch), predict)
    result.update({
        "n_data": int(len(y)),
        "mae_lower_bound": P.mae(pred, y),
        "mae_naive": P.naive_mae(pred, y, np.random.default_rng(seed)),
        "mae_n_atoms": P.n_atoms_baseline_mae(n_atoms, y, n_atoms, y, "mean"),
        "mae_n_atoms_median": P.n_atoms_baseline_mae(n_atoms, y, n_atoms, y, "median"),
        "baselines_s": round(time.perf_counter() - t0, 3),
    })

    if "generator" in kv:
        from equilab.generative.common import to_molecules
        from equilab.generative.conditioning import from_stats

        gcfg, gen, gparams, gstep = restore_run(kv["generator"], "generator", use_ema=use_ema, data_dir=kv.get("data_dir"))
        task = gen.task
        cond = getattr(task, "condition_on", None)
        if cond is None:
            raise ConfigError(f"generator={kv['generator']}: not a conditional run (train it with data.condition_on={prop})")
        if cond != prop:
            raise ConfigError(f"generator={kv['generator']} is conditioned on {cond} but the evaluator predicts {prop}")
        if gen.data.stats.get("subset") != "second_half":
            warnings.append(f"the generator was trained on data.subset={gen.data.stats.get('subset')}, not second_half")
        n, batch = int_arg(kv, "n", 10_000, minimum=1), int_arg(kv, "batch", 100, minimum=1)
        batch = min(batch, n)
        opts = {}
        if "steps" in kv:
            opts["steps"] = int_arg(kv, "steps", None, minimum=1)
        if "solver" in kv:
            opts["solver"] = kv["solver"]
        steps = opts.get("steps", getattr(task, "steps", getattr(task, "timesteps", None)))
        dist = from_stats(gen.data.stats)
        t0 = time.perf_counter()
        targets, preds, counts = [], [], []
        stable_mol = stable_atoms = atoms = 0
        for x, ty, mask, tgt in sample_conditional(task, gen.model, gparams, dist, n=n, batch=batch, seed=seed, opts=opts):
            b = generated_batch(x, ty, mask)
            pad = batch - len(tgt)  # keep one static shape for the evaluator
            if pad:
                b = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in b.items()}
            preds.append(np.asarray(predict(eparams, b))[: len(tgt)])
            targets.append(tgt)
            counts.append(mask.sum(1))
            for mol in to_molecules(x, ty, mask):
                ok, k, m = M.stability(*mol)
                stable_mol += ok
                stable_atoms += k
                atoms += m
        targets, preds, counts = np.concatenate(targets), np.concatenate(preds), np.concatenate(counts)
        result.update(P.context_use(n_atoms, y, counts, targets, preds))
        result.update({
            "generator": str(kv["generator"]), "generator_step": gstep, "task": gcfg["task"]["name"],
            "n_generated": int(len(targets)), "sampling_steps": steps,
            "solver": opts.get("solver", getattr(task, "solver", None)), "weights": "ema" if use_ema else "raw",
            "mae_generator": P.mae(preds, targets),
            "atom_stability": stable_atoms / max(atoms, 1), "mol_stability": stable_mol / max(len(targets), 1),
            "generation_s": round(time.perf_counter() - t0, 3),
        })
        default_out = Path(kv["generator"]) / "property_eval" / f"{prop}_n{n}_steps{steps}_seed{seed}.json"
    else:
        targets = preds = counts = None
        default_out = Path(kv["evaluator"]) / "property_eval" / f"data_seed{seed}.json"
    result["seed"] = seed
    result["warnings"] = warnings
    out = Path(kv.get("out") or default_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if targets is not None:
        np.savez(out.with_suffix(".npz"), target=targets, prediction=preds, n_atoms=counts)
    result["out"] = str(out)
    return result


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from equilab.errors import EquilabError

    try:
        result = evaluate(_parse(argv))
    except EquilabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
