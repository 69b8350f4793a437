"""equilab.ase.Calculator: forces match ASE's numerical derivative of the energy, and a short
NVE run (velocity Verlet) conserves the total energy."""
import jax
import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.fd import calculate_numerical_forces
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

from equilab.ase import Calculator
from equilab.data.atoms import Budget, neighbour_list, pack_frames, read_extxyz
from equilab.errors import DataError
from equilab.models.mace import MACE


@pytest.mark.slow
def test_nve_conserves_energy(shared_data, x64):
    frame = read_extxyz(str(shared_data / "botnet/dataset_acac/test_MD_300K.xyz"))[0]
    stats = {"atomic_numbers": [1, 6, 8], "cutoff": 4.0}
    # A small untrained MACE is a smooth potential like any other: conservation is a property of
    # the forces being the exact gradient and of the envelope making the cutoff smooth.
    model = MACE(num_species=3, e0=(-13.57, -1026.85, -2037.80), shift=-4.87, scale=0.5, num_channels=4, max_ell=2,
                 hidden_lmax=1, num_interactions=2, correlation=2, num_bessel=6, cutoff=4.0, radial_mlp=(16,),
                 readout_mlp=4, avg_num_neighbors=10.0, tp="cg")
    atoms = Atoms(numbers=frame.Z, positions=frame.positions)
    si = np.full(9, -1, np.int32)
    si[[1, 6, 8]] = [0, 1, 2]
    batch = pack_frames([frame], [neighbour_list(frame.positions, 4.0)], Budget(16, 256, 2), si, np.zeros(3), 0.0)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
    calc = Calculator(model=model, params=params, stats=stats, edge_bucket=32)
    atoms.calc = calc

    f_num = calculate_numerical_forces(atoms, eps=1e-4)
    f = atoms.get_forces()
    np.testing.assert_allclose(f, f_num, atol=1e-7 * max(1.0, np.abs(f).max()))

    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    e_tot, e_kin = [], []
    dyn.attach(lambda: (e_tot.append(atoms.get_total_energy()), e_kin.append(atoms.get_kinetic_energy())), interval=1)
    dyn.run(200)
    e_tot, e_kin = np.array(e_tot), np.array(e_kin)
    drift = np.abs(e_tot - e_tot[0]).max()
    ekin = 1.5 * len(atoms) * units.kB * 300  # 0.58 eV for 15 atoms at 300 K
    # Stated tolerance: the total energy stays within 1 meV (0.2% of the kinetic energy) over
    # 200 steps of 0.25 fs, while the kinetic energy itself swings by far more.
    assert drift < 1e-3, f"NVE drift {drift:.2e} eV (kinetic scale {ekin:.2f} eV)"
    assert np.ptp(e_kin) > 20 * drift  # the dynamics is not trivial: energy flows between terms


def test_calculator_rejects_unknown_elements_and_cells():
    calc = Calculator.__new__(Calculator)
    calc.species_index = np.array([-1, 0, -1, -1, -1, -1, 1], np.int32)
    calc.stats = {"atomic_numbers": [1, 6]}
    with pytest.raises(DataError, match="not all in the model"):
        calc._batch(Atoms("NH3", positions=np.eye(4, 3)))
    with pytest.raises(DataError, match="molecules only"):
        calc._batch(Atoms("CH", positions=np.eye(2, 3), cell=np.eye(3) * 5, pbc=True))
