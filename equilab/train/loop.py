"""The host training loop: data → jitted steps → evaluation → checkpoints → metrics.

Deterministic given the config: the data order depends on (seed, epoch), step keys on
``fold_in(key, step)``, and everything the host keeps (best metric, plateau schedule) is saved
in each checkpoint, so a run stopped at step k and resumed to n ends exactly where an
uninterrupted run to n ends.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import equilab
from equilab.errors import ConfigError, EquilabError
from equilab.train.checkpoint import Checkpoints, restore_state_readonly
from equilab.train.factories import build_data, build_model, build_task, check_names
from equilab.train.logging import MetricsLogger, plot_curves
from equilab.train.optim import Plateau, anneal_settings, build_optimizer, time_anneal_factor
from equilab.train.state import create_state, make_eval_step, make_train_step

log = logging.getLogger("equilab")


class TrainingDiverged(EquilabError):
    pass


def _int(cfg: dict, key: str, default=None, group="trainer"):
    v = cfg.get(key, default)
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{group}.{key}={v!r} is not an integer") from None


class Sharder:
    """Places batches on all local devices, split along their leading axis (data parallelism
    with ``jax.sharding``); arrays whose leading size does not divide are replicated."""

    def __init__(self, n_devices: int | None = None):
        devices = jax.local_devices()
        if n_devices is not None and not 1 <= n_devices <= len(devices):
            raise ConfigError(f"trainer.devices={n_devices} but {len(devices)} local device(s) are available")
        self.devices = devices[:n_devices] if n_devices else devices
        self.mesh = Mesh(np.array(self.devices), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.split = NamedSharding(self.mesh, P("data"))

        self.split_stacked = NamedSharding(self.mesh, P(None, "data"))

    def batch(self, batch, dtype, stacked: bool = False):
        """Place one batch (or, with ``stacked``, a (k, ...) stack of k batches, split along
        axis 1) on the devices."""
        n = len(self.devices)
        ax = 1 if stacked else 0

        def put(x):
            x = np.asarray(x)
            if np.issubdtype(x.dtype, np.floating):
                x = x.astype(dtype)
            ok = x.ndim > ax and x.shape[ax] % n == 0
            sh = (self.split_stacked if stacked else self.split) if ok else self.replicated
            return jax.device_put(x, sh)

        return jax.tree_util.tree_map(put, batch)

    def replicate(self, tree):
        return jax.device_put(tree, self.replicated)


def _cast_floats(tree, dtype):
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


class Trainer:
    """Builds everything from a resolved config dict and runs or evaluates it in ``run_dir``."""

    def __init__(self, cfg: Dict[str, Any], run_dir: str | Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        t = cfg["trainer"]
        self.dtype = {"float32": jnp.float32, "float64": jnp.float64}.get(t.get("precision", "float32"))
        if self.dtype is None:
            raise ConfigError(f"trainer.precision={t.get('precision')!r}; choose float32 or float64")
        if self.dtype == jnp.float64 and not jax.config.jax_enable_x64:
            raise ConfigError("trainer.precision=float64 needs jax_enable_x64 (set by the entry point before tracing)")
        for key in ("max_steps", "max_epochs", "eval_every", "eval_every_epochs", "log_every", "ckpt_every", "devices",
                    "steps_per_call", "time_limit_s", "time_budget_s"):
            _int(t, key)  # fail on a wrong type before any data is loaded
        check_names(cfg)
        self.data = build_data(cfg)
        self.model = build_model(cfg, self.data)
        self.task = build_task(cfg, self.data)
        spe = self.data.steps_per_epoch
        self.max_steps = _int(t, "max_steps") or (_int(t, "max_epochs") or 1) * spe
        self.eval_every = _int(t, "eval_every") or (_int(t, "eval_every_epochs") or 1) * spe
        self.log_every = _int(t, "log_every", 50)
        self.ckpt_every = _int(t, "ckpt_every") or self.eval_every
        spc = _int(t, "steps_per_call", 1)
        self.steps_per_call = 1 if spc is None else spc
        if self.steps_per_call < 1:
            raise ConfigError(f"trainer.steps_per_call={self.steps_per_call} must be >= 1")
        if self.steps_per_call > 1 and getattr(self.data, "size_buckets", None) is not None \
                and getattr(self.data, "bucket_group", 1) % self.steps_per_call:
            log.warning("trainer.steps_per_call=%d with data.size_buckets: chunks that mix buckets run one step "
                        "per call; set data.bucket_group=%d so that each chunk has one shape",
                        self.steps_per_call, self.steps_per_call)
        self.time_limit_s = _int(t, "time_limit_s")
        if self.time_limit_s is not None and self.time_limit_s < 0:
            raise ConfigError(f"trainer.time_limit_s={self.time_limit_s} must be >= 0")
        self.time_budget_s = _int(t, "time_budget_s")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError(f"trainer.time_budget_s={self.time_budget_s} must be > 0")
        self.monitor = t.get("monitor", "valid/loss")
        self.init_from = t.get("init_from")
        self.init_from_checkpoint = t.get("init_from_checkpoint") or "latest"
        if self.init_from_checkpoint not in ("latest", "best"):
            raise ConfigError(f"trainer.init_from_checkpoint={self.init_from_checkpoint!r}; choose latest or best")
        self.seed = _int(cfg, "seed", 0, group="<top level>")
        o = cfg["optim"]
        self.ema_decay = float(o["ema"]) if o.get("ema") not in (None, False, 0) else None
        self.tx = build_optimizer(o, self.max_steps)
        sched = dict(o.get("schedule") or {})
        anneal = anneal_settings(sched)
        self.time_anneal = anneal[:2] if anneal is not None and anneal[2] == "time" else None
        if self.time_anneal is not None and self.time_budget_s is None:
            raise ConfigError("optim.schedule.anneal_by=time anneals over the last fraction of trainer.time_budget_s; "
                              "set trainer.time_budget_s (seconds) or use anneal_by=steps")
        self.time_scale = 1.0
        self.clock = time.perf_counter  # wall clock of the time budget and limit (tests put a fake one here)
        self.plateau = Plateau(sched.get("patience", 10), sched.get("factor", 0.5), sched.get("min_scale", 0.0)) \
            if sched.get("name") == "plateau" else None
        self.sharder = Sharder(_int(t, "devices"))
        self.key = jax.random.PRNGKey(self.seed)
        step_fn = make_train_step(self.model, self.task, self.tx, self.ema_decay)
        self.train_step = jax.jit(step_fn, donate_argnums=0)
        # k steps in one call (lax.scan over a stack of k batches): one dispatch and one host->device
        # transfer per k steps instead of per step, which is most of the step time of small models.
        self.train_steps = jax.jit(lambda state, batches, key: jax.lax.scan(
            lambda s, b: step_fn(s, b, key), state, batches), donate_argnums=0)
        self.eval_step = jax.jit(make_eval_step(self.model, self.task))

    # -- state ---------------------------------------------------------------------------
    def init_state(self):
        init_key = jax.random.fold_in(self.key, 0)
        example = self.sharder.batch(self.data.example_batch(), self.dtype)
        # jit: an un-jitted init of a deep model traces op by op and can take minutes
        params = _cast_floats(jax.jit(self.model.init)(init_key, example), self.dtype)
        return create_state(params, self.tx, self.ema_decay is not None)

    def abstract_state(self):
        return jax.eval_shape(self.init_state)

    def eval_params(self, state):
        return state.ema_params if self.ema_decay is not None else state.params

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, params, split: str) -> Dict[str, float]:
        totals = None
        for b in self.data.eval_batches(split):
            s = self.eval_step(params, self.sharder.batch(b, self.dtype))
            totals = s if totals is None else jax.tree_util.tree_map(jnp.add, totals, s)
        if totals is None:
            raise ConfigError(f"evaluation split {split!r} is empty")
        totals = jax.device_get(totals)
        return self.task.finalize({k: (float(a), float(c)) for k, (a, c) in totals.items()})

    # -- training ------------------------------------------------------------------------
    def fit(self, progress: bool = True) -> Dict[str, Any]:
        ckpt = Checkpoints(self.run_dir)
        state = self.init_state()
        loop = {"best": math.inf, "best_step": -1, "epoch": 0}
        restored = ckpt.restore("latest", jax.eval_shape(lambda: state))
        start = 0
        loop["elapsed_s"] = 0.0
        if restored is not None:
            state, meta, start = restored
            loop.update(meta.get("loop", {}))
            if self.plateau and "plateau" in meta:
                self.plateau.load_state_dict(meta["plateau"])
            log.info("resuming from checkpoint at step %d", start)
        elif self.init_from:
            try:
                state = self._init_from(state)
            except ConfigError:
                ckpt.close()  # this run's async checkpoint manager, before the error leaves fit
                raise
        state = self.sharder.replicate(state)
        if self.plateau:
            state = self._set_lr_scale(state, self.plateau.scale)
        elapsed0 = float(loop["elapsed_s"])  # seconds spent by earlier legs (trainer.time_budget_s)
        logger = MetricsLogger(self.run_dir, self.cfg.get("logger", {}), self.cfg, resume_step=start)
        step = start
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.max_steps, initial=start, desc="train", dynamic_ncols=True, mininterval=1.0)
        window, t_window = [], time.perf_counter()
        t_fit = self.clock()
        elapsed = lambda: elapsed0 + (self.clock() - t_fit)  # noqa: E731
        over_budget = lambda: self.time_budget_s is not None and elapsed() >= self.time_budget_s  # noqa: E731
        spent = over_budget() and step < self.max_steps
        if spent:
            log.info("trainer.time_budget_s=%d was spent by earlier legs (%.0f s): not training further",
                     self.time_budget_s, elapsed0)
        batches = self._batches_from(start)
        try:
            while step < self.max_steps and not spent:
                if self.time_anneal is not None:
                    state = self._set_time_scale(state, elapsed() / self.time_budget_s)
                # a chunk of up to steps_per_call steps that never crosses a log/eval/checkpoint
                # boundary, so chunks (and results) are the same whether or not the run resumed
                n = min(self.steps_per_call, self._next_boundary(step) - step)
                state, m = self.run_chunk(state, [next(batches) for _ in range(n)])
                window.append(m)
                step += n
                is_eval = step % self.eval_every == 0 or step == self.max_steps
                is_ckpt = is_eval or step % self.ckpt_every == 0
                if step % self.log_every == 0 or is_ckpt:
                    rec = self._flush(window, state, step, t_window)
                    window, t_window = [], time.perf_counter()
                    logger.log(step, rec)
                    if bar:
                        bar.update(step - bar.n)
                        bar.set_postfix(loss=f"{rec['train/loss']:.4g}", it_s=f"{rec['steps_per_s']:.1f}")
                if is_eval:
                    state = self._validate(state, step, loop, logger, ckpt)
                spent = step < self.max_steps and over_budget()
                if spent:
                    # the whole run's time budget is spent: end here as at max_steps (validate the
                    # last weights, checkpoint them); a re-run finds the budget spent and only tests
                    if window:
                        logger.log(step, self._flush(window, state, step, t_window))
                        window = []
                    if not is_eval:
                        state = self._validate(state, step, loop, logger, ckpt)
                    is_ckpt = True
                    log.info("trainer.time_budget_s=%d spent at step %d of %d: training ends here",
                             self.time_budget_s, step, self.max_steps)
                    logger.log(step, {"stopped_by_time_budget": 1.0, "elapsed_s": elapsed()})
                if is_ckpt:
                    loop["epoch"] = step // self.data.steps_per_epoch
                    loop["elapsed_s"] = elapsed()
                    ckpt.save("latest", step, state, self._meta(loop))
                    # wall-clock limit of this invocation (e.g. a SLURM or device lease): stop at a
                    # checkpoint, so the same command resumes the run; finish() still tests the best
                    if (self.time_limit_s is not None and step < self.max_steps and not spent
                            and self.clock() - t_fit >= self.time_limit_s):
                        log.info("trainer.time_limit_s=%d reached at step %d of %d: stopping (re-run to resume)",
                                 self.time_limit_s, step, self.max_steps)
                        logger.log(step, {"stopped_by_time_limit": 1.0})
                        break
            ckpt.wait()
        finally:
            if bar:
                bar.close()
            ckpt.close()
            logger.close()
        return self.finish()

    def run_chunk(self, state, chunk):
        """Train on a list of host batches: one ``train_step`` call for one batch, one scanned
        ``train_steps`` call for several. Returns (state, metrics)."""
        if len(chunk) == 1:
            return self.train_step(state, self.sharder.batch(chunk[0], self.dtype), self.key)
        shapes = [tuple(np.shape(v) for v in jax.tree_util.tree_leaves(b)) for b in chunk]
        if any(sh != shapes[0] for sh in shapes):
            # batches of different shapes (size-bucketed data) cannot be stacked: one single-step
            # call per batch (a scan per run of equal shapes would compile a program for every run
            # length of every shape; data.bucket_group = steps_per_call avoids mixed chunks)
            ms = []
            for b in chunk:
                state, m = self.train_step(state, self.sharder.batch(b, self.dtype), self.key)
                ms.append(m)
            return state, {k: jnp.concatenate([jnp.atleast_1d(m[k]) for m in ms]) for k in ms[0]}
        stack = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *chunk)
        return self.train_steps(state, self.sharder.batch(stack, self.dtype, stacked=True), self.key)

    def _batches_from(self, start: int):
        """Training batches from global step ``start`` on, across epochs."""
        spe = self.data.steps_per_epoch
        epoch, skip = divmod(start, spe)
        while True:
            for i, batch in enumerate(self.data.train_batches(epoch, self.seed)):
                if i >= skip:
                    yield batch
            epoch, skip = epoch + 1, 0

    def _next_boundary(self, step: int) -> int:
        nxt = lambda every: (step // every + 1) * every  # noqa: E731
        return min(nxt(self.log_every), nxt(self.eval_every), nxt(self.ckpt_every), self.max_steps)

    def _init_from(self, fresh):
        """A new run that starts from another run's parameters (and EMA) with a fresh optimizer,
        step 0 and this run's schedule (``trainer.init_from=<run_dir>``: fine-tuning, or a warm
        restart of a finished cosine schedule). Read-only on the source run."""
        key = f"trainer.init_from={self.init_from}"
        try:
            src, step = restore_state_readonly(self.init_from, self.init_from_checkpoint, jax.eval_shape(lambda: fresh))
        except FileNotFoundError as e:
            raise ConfigError(f"{key}: {e}") from None
        except Exception as e:  # noqa: BLE001 — a structure or shape mismatch deep inside orbax
            raise ConfigError(f"{key}: its {self.init_from_checkpoint} checkpoint does not fit this run's model and "
                              f"optimizer ({type(e).__name__}: {str(e).splitlines()[0][:300]})") from None
        log.info("initialising from %s (%s step %d: parameters%s; fresh optimizer and step 0)", self.init_from,
                 self.init_from_checkpoint, step, " and EMA" if self.ema_decay is not None else "")
        # the restored tree has this run's structure, so its EMA is {} exactly when this run keeps none
        return create_state(src.params, self.tx, False).replace(ema_params=src.ema_params)

    def _set_time_scale(self, state, frac: float):
        """``anneal_by=time``: the learning-rate multiplier for the fraction ``frac`` of the time
        budget spent, on top of the plateau scale."""
        self.time_scale = time_anneal_factor(frac, *self.time_anneal)
        return self._set_lr_scale(state, (self.plateau.scale if self.plateau else 1.0) * self.time_scale)

    def _set_lr_scale(self, state, scale):
        hp = dict(state.opt_state.hyperparams)
        hp["lr_scale"] = jnp.asarray(scale, dtype=jnp.asarray(hp["lr_scale"]).dtype)
        return state.replace(opt_state=state.opt_state._replace(hyperparams=hp))

    def _flush(self, window, state, step, t0):
        ms = [{k: np.atleast_1d(v) for k, v in m.items()} for m in jax.device_get(window)]
        bad = int(state.bad_step)
        if bad >= 0:
            raise TrainingDiverged(
                f"non-finite loss or gradient at step {bad + 1}: run stopped; the last good checkpoint is kept "
                f"in {self.run_dir / 'checkpoints' / 'latest'}")
        rec = {f"train/{k}": float(np.mean(np.concatenate([m[k] for m in ms]))) for k in ms[0]}
        dt = time.perf_counter() - t0
        rec["steps_per_s"] = sum(len(m["loss"]) for m in ms) / max(dt, 1e-9)
        rec["lr_scale"] = (float(self.plateau.scale) if self.plateau else 1.0) * self.time_scale
        return rec

    def _validate(self, state, step, loop, logger, ckpt):
        t0 = time.perf_counter()
        split = self.data.eval_splits[0]
        metrics = {f"{split}/{k}": v for k, v in self.evaluate(self.eval_params(state), split).items()}
        if self.monitor not in metrics:
            raise ConfigError(f"trainer.monitor={self.monitor!r} is not among the validation metrics {sorted(metrics)}")
        value = metrics[self.monitor]
        metrics["eval_time_s"] = time.perf_counter() - t0
        logger.log(step, metrics)
        if self.plateau:
            state = self._set_lr_scale(state, self.plateau.update(value) * self.time_scale)
        if value < loop["best"]:
            loop["best"], loop["best_step"] = float(value), int(step)
            ckpt.save("best", step, state, self._meta(loop))
        return state

    def _meta(self, loop):
        meta = {"config": self.cfg, "version": equilab.__version__, "loop": dict(loop)}
        if self.plateau:
            meta["plateau"] = self.plateau.state_dict()
        return meta

    # -- final evaluation ----------------------------------------------------------------
    def restore_best(self):
        ckpt = Checkpoints(self.run_dir)
        try:
            r = ckpt.restore("best", self.abstract_state()) or ckpt.restore("latest", self.abstract_state())
        finally:
            ckpt.close()
        if r is None:
            raise EquilabError(f"no readable checkpoint in {self.run_dir / 'checkpoints'}")
        return r

    def finish(self, splits=None) -> Dict[str, Any]:
        """Evaluate the best checkpoint on every split, write ``eval.json`` and the loss plot."""
        state, meta, step = self.restore_best()
        params = self.sharder.replicate(self.eval_params(state))
        splits = splits or self.data.eval_splits
        result: Dict[str, Any] = {"run_dir": str(self.run_dir), "best_step": step}
        for sp in splits:
            for k, v in self.evaluate(params, sp).items():
                result[f"{sp}/{k}"] = v
        out = self.run_dir / ("eval.json" if splits == self.data.eval_splits else f"eval_{'_'.join(splits)}.json")
        out.write_text(json.dumps(result, indent=2))
        plot_curves(self.run_dir, self.monitor)
        return result
