"""Generative tasks on QM9: ``edm`` (E(3) diffusion) and ``flow_matching`` (equivariant FM).

Both train a dynamics network (``egnn_dynamics``) on dense QM9 batches (``equilab.data.qm9``):
positions zero-CoM, node features [one_hot·0.25, charge·0.1] (EDM's scaling).  The metric is the
per-molecule objective (``loss``); sample quality is measured by ``equilab-sample``.
Optional conditioning on one QM9 property (``data.condition_on``; ``task.condition_on`` follows
it), normalised as (p − mean)/MAD with the data module's norms (EDM's ``prepare_context``); the
context (B, 1) is appended to every node's features (EDM's ``context_node_nf``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from equilab.errors import ConfigError
from equilab.generative import diffusion, flow
from equilab.generative.common import decode, sample_node_mask
from equilab.generative.schedules import gamma_table
from equilab.models.egnn_dynamics import FEATURE_SCALES, data_features, remove_mean
from equilab.registry import TASKS

PROPERTIES = ("alpha", "gap", "homo", "lumo", "mu", "Cv")


class _Generative:
    n_features = 6

    def __init__(self, stats: dict, condition_on: Optional[str] = None,
                 feature_scales: Sequence[float] = FEATURE_SCALES):
        self.stats = dict(stats or {})
        try:
            self.scales = tuple(float(s) for s in feature_scales)
        except (TypeError, ValueError):
            self.scales = ()
        if len(self.scales) != 3 or min(self.scales) <= 0:
            raise ConfigError("task.feature_scales must be three positive numbers [positions, one-hot, charges], "
                              f"got {feature_scales!r}")
        data_cond = self.stats.get("condition_on")
        if condition_on is not None and data_cond is not None and condition_on != data_cond:
            raise ConfigError(f"task.condition_on={condition_on!r} but data.condition_on={data_cond!r}; "
                              "set data.condition_on only (the task follows it)")
        condition_on = condition_on or data_cond
        self.condition_on = condition_on
        if condition_on is not None:
            if condition_on not in PROPERTIES:
                raise ConfigError(f"task.condition_on must be one of {PROPERTIES}, got {condition_on!r}")
            i = PROPERTIES.index(condition_on)
            self._prop = (i, float(self.stats["property_mean"][i]), float(self.stats["property_mad"][i]))

    # -- inputs ---------------------------------------------------------------------------
    def normalise(self, values):
        """Property values in their units -> the normalised context (p − mean)/MAD."""
        _, mu, mad = self._prop
        return (values - mu) / mad

    def denormalise(self, context):
        _, mu, mad = self._prop
        return context * mad + mu

    def _inputs(self, batch):
        mask = jnp.asarray(batch["node_mask"]) & jnp.asarray(batch["graph_mask"])[:, None]
        x = remove_mean(jnp.asarray(batch["positions"]) * self.scales[0], mask)
        h = data_features(batch, self.scales) * mask[..., None]
        ctx = None
        if self.condition_on is not None:
            if "context" in batch:
                ctx = jnp.asarray(batch["context"], x.dtype).reshape(-1, 1)
            else:
                ctx = self.normalise(jnp.asarray(batch["properties"])[:, self._prop[0]])[:, None].astype(x.dtype)
        return x, h, mask, ctx

    @staticmethod
    def _dyn(model, params, mask, ctx):
        def dyn(x, h, t):
            inp = {"positions": x, "features": h, "t": t, "node_mask": mask}
            if ctx is not None:
                inp["context"] = ctx
            return model.apply(params, inp)

        return dyn

    # -- Task interface -------------------------------------------------------------------
    def loss(self, model, params, batch, key, train: bool = True):
        per = self._loss_per_molecule(model, params, batch, key)
        gm = jnp.asarray(batch["graph_mask"]).astype(per.dtype)
        loss = (per * gm).sum() / jnp.maximum(gm.sum(), 1.0)
        return loss, {}

    def eval_sums(self, model, params, batch):
        # Fixed noise so that evaluations of different checkpoints are comparable.
        per = self._loss_per_molecule(model, params, batch, jax.random.PRNGKey(0))
        gm = jnp.asarray(batch["graph_mask"]).astype(per.dtype)
        return {"loss": ((per * gm).sum(), gm.sum())}

    def finalize(self, totals):
        return {k: float(s / max(float(c), 1.0)) for k, (s, c) in totals.items()}

    # -- sampling -------------------------------------------------------------------------
    def sample_node_mask(self, key, n: int, max_atoms: int = 29):
        return sample_node_mask(key, self.stats["n_nodes_hist"], n, max_atoms)

    def sample(self, model, params, key, node_mask, context=None, **opts):
        """Pure, jittable: node mask (B, N) -> positions (B, N, 3) Å, type index (B, N) (−1 pad).

        ``context`` (B, 1): normalised property value when conditioning (``normalise``; draw it
        jointly with the atom count, see ``equilab.generative.conditioning``).  ``opts`` override
        the task's sampler settings (``steps``, ``solver`` for flow matching).
        """
        if self.condition_on is not None and context is None:
            raise ValueError(f"this model is conditioned on {self.condition_on}: pass context=(B, 1)")
        dyn = self._dyn(model, params, node_mask, context)
        x, h = self._sample(dyn, key, node_mask, **opts)
        return decode(x, h, node_mask, self.scales)


class EDMTask(_Generative):
    """EDM: ε-prediction diffusion, ``noise_schedule`` γ on T = ``timesteps`` steps."""

    def __init__(self, stats, timesteps: int = 1000, noise_schedule: str = "polynomial_2",
                 noise_precision: float = 1e-5, **kw):
        super().__init__(stats, **kw)
        self.timesteps = int(timesteps)
        try:
            self.gamma = np.asarray(gamma_table(noise_schedule, self.timesteps, float(noise_precision)), np.float32)
        except ValueError as e:
            raise ConfigError(f"task.noise_schedule: {e}") from None

    def _loss_per_molecule(self, model, params, batch, key):
        x, h, mask, ctx = self._inputs(batch)
        return diffusion.loss_per_molecule(self._dyn(model, params, mask, ctx), jnp.asarray(self.gamma), x, h, mask, key)

    def _sample(self, dyn, key, node_mask, steps: Optional[int] = None):
        g = self.gamma
        if steps is not None and int(steps) != self.timesteps:
            # Fewer sampling steps: the same schedule evaluated on a coarser grid of t.
            idx = np.round(np.linspace(0, self.timesteps, int(steps) + 1)).astype(int)
            g = g[idx]
        return diffusion.sample(dyn, jnp.asarray(g), key, node_mask, self.n_features)


class FlowMatchingTask(_Generative):
    """Equivariant flow matching; sampler ``solver`` with ``steps`` fixed steps."""

    def __init__(self, stats, steps: int = 50, solver: str = "heun", t_eps: float = 0.0, align: str = "none",
                 param: str = "velocity", t_dist: str = "uniform", t_beta=(2.0, 1.0), bond_weight: float = 0.0,
                 bond_cutoff: float = 2.0, bond_power: float = 2.0, sde_noise: float = 1.0,
                 time_power: float = 1.0, **kw):
        super().__init__(stats, **kw)
        if solver not in flow.SOLVERS:
            raise ConfigError(f"task.solver must be one of {flow.SOLVERS}, got {solver!r}")
        if align not in flow.ALIGNS:
            raise ConfigError(f"task.align must be one of {flow.ALIGNS}, got {align!r}")
        try:
            flow.check_param(param, solver)
        except ValueError as e:
            raise ConfigError(f"task.param={param!r} with task.solver={solver!r}: {e}") from None
        self.steps, self.solver, self.t_eps, self.align = int(steps), solver, float(t_eps), align
        self.param = param
        try:
            self.sde_noise = flow.check_noise(sde_noise)
        except ValueError as e:
            raise ConfigError(f"task.sde_noise: {e}") from None
        try:
            self.time_power = flow.check_time_power(time_power)
        except ValueError as e:
            raise ConfigError(f"task.time_power: {e}") from None
        try:
            self.t_beta = flow.check_t_dist(t_dist, t_beta)
        except ValueError as e:
            field = "task.t_dist" if t_dist not in flow.T_DISTS else "task.t_beta"
            raise ConfigError(f"{field}: {e}") from None
        self.t_dist = t_dist
        try:
            w, c, k = flow.check_bond(bond_weight, bond_cutoff, param, bond_power)
        except ValueError as e:
            raise ConfigError(f"task.bond_weight / task.bond_cutoff / task.bond_power: {e}") from None
        # the cutoff is in Å; the task's positions are scaled by feature_scales[0]
        self.bond_weight, self.bond_cutoff, self.bond_power = w, c * self.scales[0], k

    def _loss_per_molecule(self, model, params, batch, key):
        x, h, mask, ctx = self._inputs(batch)
        return flow.loss_per_molecule(self._dyn(model, params, mask, ctx), x, h, mask, key, self.t_eps, self.align,
                                      self.param, self.t_dist, self.t_beta, self.bond_weight, self.bond_cutoff,
                                      self.bond_power)

    def _sample(self, dyn, key, node_mask, steps: Optional[int] = None, solver: Optional[str] = None,
                noise: Optional[float] = None, time_power: Optional[float] = None):
        return flow.sample(dyn, key, node_mask, self.n_features, steps=int(steps or self.steps),
                           solver=solver or self.solver, param=self.param,
                           noise=self.sde_noise if noise is None else noise,
                           time_power=self.time_power if time_power is None else time_power)


@TASKS.register("edm")
def build_edm(cfg: dict, data) -> EDMTask:
    return EDMTask(getattr(data, "stats", {}), **cfg)


@TASKS.register("flow_matching")
def build_flow_matching(cfg: dict, data) -> FlowMatchingTask:
    return FlowMatchingTask(getattr(data, "stats", {}), **cfg)
