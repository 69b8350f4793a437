"""Energy and force regression for interatomic potentials (MACE's weighted loss).

loss = λ_E · mean_graphs ((Ê − E)/n_atoms)² + λ_F · mean_{atoms, xyz} (F̂ − F)²

Energies are compared through ``energy_residual`` (E − Σ_i (E0 + shift), formed in float64 by the
data module) so float32 training never subtracts two numbers near −10⁴ eV. Metrics: energy RMSE
and MAE of the total energy in meV, per-atom energy RMSE in meV/atom, force RMSE and MAE over
components in meV/Å; frames without forces (energy-only test sets) drop out of the force sums.
"""
from __future__ import annotations

import jax.numpy as jnp

from equilab.errors import ConfigError
from equilab.registry import TASKS


class EnergyForces:
    def __init__(self, energy_weight: float = 1.0, forces_weight: float = 1000.0):
        self.energy_weight = float(energy_weight)
        self.forces_weight = float(forces_weight)

    def _errors(self, model, params, batch):
        out = model.apply(params, batch)
        dtype = out["energy_residual"].dtype
        gm = batch["graph_mask"].astype(dtype)
        n = jnp.maximum(batch["n_atoms"].astype(dtype), 1.0)
        de = (out["energy_residual"] - batch["energy_residual"].astype(dtype)) * gm  # (G,) eV
        fm = batch.get("forces_mask", batch["node_mask"]).astype(dtype)[:, None]
        df = (out["forces"] - batch["forces"].astype(dtype)) * fm  # (N,3) eV/Å
        return de, n, gm, df, fm

    def loss(self, model, params, batch, key=None, train: bool = True):
        de, n, gm, df, fm = self._errors(model, params, batch)
        n_g = jnp.maximum(gm.sum(), 1.0)
        n_f = jnp.maximum(3.0 * fm.sum(), 1.0)
        loss_e = jnp.sum((de / n) ** 2) / n_g
        loss_f = jnp.sum(df ** 2) / n_f
        loss = self.energy_weight * loss_e + self.forces_weight * loss_f
        return loss, {"loss_energy": loss_e, "loss_forces": loss_f,
                      "energy_rmse_meV": 1e3 * jnp.sqrt(jnp.sum(de ** 2) / n_g),
                      "force_rmse_meV_A": 1e3 * jnp.sqrt(jnp.sum(df ** 2) / n_f)}

    def eval_sums(self, model, params, batch):
        de, n, gm, df, fm = self._errors(model, params, batch)
        n_g = gm.sum()
        n_f = 3.0 * fm.sum()
        return {
            "energy_sq": (jnp.sum(de ** 2), n_g),
            "energy_abs": (jnp.sum(jnp.abs(de)), n_g),
            "energy_per_atom_sq": (jnp.sum((de / n) ** 2), n_g),
            "force_sq": (jnp.sum(df ** 2), n_f),
            "force_abs": (jnp.sum(jnp.abs(df)), n_f),
        }

    def finalize(self, totals):
        def mean(k):
            s, c = totals[k]
            return float(s) / float(c) if float(c) > 0 else float("nan")

        out = {
            "energy_rmse": 1e3 * mean("energy_sq") ** 0.5,  # meV
            "energy_mae": 1e3 * mean("energy_abs"),  # meV
            "energy_per_atom_rmse": 1e3 * mean("energy_per_atom_sq") ** 0.5,  # meV/atom
        }
        if float(totals["force_sq"][1]) > 0:  # energy-only sets (AcAc H-transfer path) have no force metrics
            out["force_rmse"] = 1e3 * mean("force_sq") ** 0.5  # meV/Å
            out["force_mae"] = 1e3 * mean("force_abs")  # meV/Å
            out["loss"] = self.energy_weight * mean("energy_per_atom_sq") + self.forces_weight * mean("force_sq")
        else:
            out["loss"] = self.energy_weight * mean("energy_per_atom_sq")
        return out


@TASKS.register("energy_forces")
def build(cfg: dict, data) -> EnergyForces:
    """``task=energy_forces``: ``energy_weight`` (λ_E, paper 1) and ``forces_weight`` (λ_F, paper 1000)."""
    cfg = dict(cfg)
    ew = cfg.pop("energy_weight", 1.0)
    fw = cfg.pop("forces_weight", 1000.0)
    if cfg:
        raise ConfigError(f"task=energy_forces: unknown keys {sorted(cfg)}")
    return EnergyForces(ew, fw)
