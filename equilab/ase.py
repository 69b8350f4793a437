"""ASE calculator for trained equilab interatomic potentials (MACE).

    >>> from equilab.ase import Calculator          # doctest: +SKIP
    >>> atoms.calc = Calculator("runs/acac_mace/...")   # a run directory of equilab-train
    >>> BFGS(atoms).run(fmax=0.01); VelocityVerlet(atoms, 0.5 * units.fs).run(1000)

Energies in eV, forces in eV/Å. Molecules only (no periodic images). The neighbour list is
rebuilt on the host at every call; the edge budget is rounded up to ``edge_bucket`` so a
molecular-dynamics run compiles once per bucket, not once per step. The total energy is formed
in float64 on the host, Σ_i (E0(z_i) + shift) + model residual, so a float32 model loses no
precision to the large absolute energies.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import jax
import numpy as np
from ase.calculators.calculator import Calculator as _AseCalculator
from ase.calculators.calculator import all_changes

from equilab.data.atoms import Budget, Frame, neighbour_list, pack_frames
from equilab.errors import DataError


def _restore(run_dir: str):
    """(model, params, stats) of the best checkpoint in ``run_dir``."""
    try:
        from equilab.train.checkpoint import restore_for_inference
    except ImportError:  # until the checkpoint module offers it: rebuild through the trainer
        restore_for_inference = None
    if restore_for_inference is not None:
        cfg, model, params, stats = restore_for_inference(run_dir)
        return model, params, stats
    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    if cfg["trainer"].get("precision") == "float64":
        jax.config.update("jax_enable_x64", True)
    import equilab.data.atoms  # noqa: F401  (register)
    import equilab.models.mace  # noqa: F401
    import equilab.tasks.energy_forces  # noqa: F401
    from equilab.train.loop import Trainer

    trainer = Trainer(cfg, run_dir)
    state, _, _ = trainer.restore_best()
    return trainer.model, trainer.eval_params(state), trainer.data.stats


class Calculator(_AseCalculator):
    """``Calculator(run_dir)`` or ``Calculator(model=..., params=..., stats=...)``.

    ``stats`` needs ``atomic_numbers`` (the species order the model was trained with) and
    ``cutoff``; E0s and shift are read from the model itself.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, run_dir: Optional[str] = None, *, model=None, params=None, stats=None,
                 edge_bucket: int = 64, **kwargs):
        super().__init__(**kwargs)
        if run_dir is not None:
            model, params, stats = _restore(str(run_dir))
        if model is None or params is None or stats is None:
            raise ValueError("give a run directory or model, params and stats")
        self.model, self.params, self.stats = model, params, stats
        zs = list(stats["atomic_numbers"])
        self.species_index = np.full(max(zs) + 1, -1, np.int32)
        self.species_index[zs] = np.arange(len(zs), dtype=np.int32)
        self.cutoff = float(stats["cutoff"])
        self.edge_bucket = int(edge_bucket)
        self.e0 = np.asarray(model.e0, np.float64)
        self.shift = float(model.shift)
        self.dtype = jax.tree.leaves(params)[0].dtype
        self._apply = jax.jit(model.apply)

    def _batch(self, atoms):
        if np.any(atoms.pbc):
            raise DataError("equilab.ase.Calculator handles molecules only (atoms.pbc must be all False)")
        Z = atoms.get_atomic_numbers()
        if Z.max() >= len(self.species_index) or np.any(self.species_index[Z] < 0):
            raise DataError(f"elements {sorted(set(Z.tolist()))} not all in the model's {self.stats['atomic_numbers']}")
        pos = np.asarray(atoms.get_positions(), np.float64)
        frame = Frame(Z.astype(np.int32), pos, 0.0, np.zeros_like(pos))
        graph = neighbour_list(pos, self.cutoff)
        n_edge = -(-(len(graph[0]) + 1) // self.edge_bucket) * self.edge_bucket
        b = pack_frames([frame], [graph], Budget(len(Z) + 1, n_edge, 2), self.species_index, self.e0, self.shift)
        b = {k: (v.astype(self.dtype) if np.issubdtype(v.dtype, np.floating) else v) for k, v in b.items()}
        ref = float(np.sum(self.e0[self.species_index[Z]]) + self.shift * len(Z))
        return b, ref

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        batch, ref = self._batch(self.atoms)
        out = self._apply(self.params, batch)
        n = len(self.atoms)
        energy = ref + float(out["energy_residual"][0])
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": np.asarray(out["forces"][:n], np.float64)}
