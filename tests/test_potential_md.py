"""NVE molecular dynamics conserves energy only if forces are exactly -∇E.

An untrained random model has no short-range repulsion (atoms collapse onto each other in
MD), so the crystal is held together by ASE's EMT and the model is added on top with a scale
that gives realistic forces (~0.4 eV/Å). Energy conservation of the sum requires the model's
forces to be the gradient of its energy. Negative control: a small non-conservative
rotational force (~0.01 eV/Å, 2-3 % of the model's forces) must break the same bound.
"""

from __future__ import annotations

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.mixing import SumCalculator
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from tests.helpers import make_calc

DRIFT_BOUND_EV = 1e-3  # 32 atoms, 200 fs: ~3e-5 eV/atom


class Swirl(Calculator):
    """A non-conservative force F_i = c ẑ × (r_i - centre) (its curl is 2c ẑ ≠ 0), zero energy."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c  # eV/Å²

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        r = self.atoms.positions - 0.5 * self.atoms.cell.array.sum(0)
        f = self.c * np.stack([-r[:, 1], r[:, 0], np.zeros(len(r))], axis=1)
        self.results = {"energy": 0.0, "forces": f}


def _nve_energy_deviation(extra: list[Calculator]) -> tuple[float, float]:
    """Run 200 × 1 fs VelocityVerlet at 300 K; return (max |E_tot(t) - E_tot(0)|, T_end)."""
    model = make_calc(scale=50.0, arch="two_body")  # the shipped architecture
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)  # 32 atoms
    atoms.symbols[::3] = "Au"
    atoms.rattle(0.02, seed=1)
    atoms.calc = SumCalculator([model, EMT(), *extra])
    model_forces = model.calculate_batch([atoms])[0]["forces"]
    assert 0.2 < np.abs(model_forces).max() < 2.0  # realistic magnitude
    # Maxwell-Boltzmann momenta at 300 K (p = sqrt(m k_B T) N(0, 1)), then zero total momentum.
    masses = atoms.get_masses()[:, None]
    normal = np.random.default_rng(0).normal(size=(len(atoms), 3))
    atoms.set_momenta(np.sqrt(masses * units.kB * 300.0) * normal)
    Stationary(atoms)
    totals = []
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dyn.attach(lambda: totals.append(atoms.get_total_energy()), interval=1)
    dyn.run(200)
    distances = atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)]
    assert distances.min() > 1.8  # the crystal stayed a crystal
    return float(np.abs(np.array(totals) - totals[0]).max()), float(atoms.get_temperature())


def test_nve_conserves_energy():
    deviation, temperature = _nve_energy_deviation([])
    assert 100 < temperature < 600
    assert deviation < DRIFT_BOUND_EV


def test_nve_bound_catches_non_conservative_force():
    deviation, _ = _nve_energy_deviation([Swirl(0.002)])
    assert deviation > DRIFT_BOUND_EV
