"""Forces and stress against finite differences of the energy (float64).

F_i = -∂E/∂r_i by central differences of positions; σ_ab = (1/V) ∂E/∂ε_ab by central
differences of a symmetric strain applied to cell and positions (ASE sign and Voigt order).
The finite-difference helper itself is first validated against ASE's EMT stress, and a
calculator with a flipped stress sign must be reported as a mismatch.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.calculators.emt import EMT
from ase.calculators.fd import calculate_numerical_forces
from ase.filters import FrechetCellFilter
from ase.stress import full_3x3_to_voigt_6_stress

from tests.helpers import ARCHS, make_calc, molecule, sheared_cell


def fd_forces(atoms, h: float = 1e-4) -> np.ndarray:
    """-∂E/∂r by central differences (eV/Å), shape (n, 3); uses ``atoms.calc``."""
    out = np.zeros((len(atoms), 3))
    pos0 = atoms.positions.copy()
    for i in range(len(atoms)):
        for a in range(3):
            energies = []
            for sign in (1, -1):
                atoms.positions = pos0
                atoms.positions[i, a] += sign * h
                energies.append(atoms.get_potential_energy())
            out[i, a] = -(energies[0] - energies[1]) / (2 * h)
    atoms.positions = pos0
    return out


def fd_stress(atoms, h: float = 1e-5) -> np.ndarray:
    """(1/V) ∂E/∂ε (eV/Å³, Voigt xx yy zz yz xz xy) by central differences of a symmetric strain."""
    cell0, pos0 = atoms.cell.array.copy(), atoms.positions.copy()
    volume = atoms.get_volume()
    sigma = np.zeros((3, 3))
    for a in range(3):
        for b in range(a, 3):
            energies = []
            for sign in (1, -1):
                eps = np.zeros((3, 3))
                eps[a, b] += 0.5 * sign * h
                eps[b, a] += 0.5 * sign * h  # symmetric: ε_ab = ε_ba = h/2 (h on the diagonal)
                deform = np.eye(3) + eps
                atoms.set_cell(cell0 @ deform, scale_atoms=False)
                atoms.positions = pos0 @ deform
                energies.append(atoms.get_potential_energy())
            sigma[a, b] = sigma[b, a] = (energies[0] - energies[1]) / (2 * h * volume)
    atoms.set_cell(cell0, scale_atoms=False)
    atoms.positions = pos0
    return full_3x3_to_voigt_6_stress(sigma)


def stress_fd_mismatch(atoms, h: float = 1e-5) -> float:
    """Largest |σ_calculator - σ_fd| (eV/Å³) for ``atoms.calc``."""
    analytic = atoms.get_stress(voigt=True).copy()
    return float(np.abs(analytic - fd_stress(atoms, h)).max())


class FlippedStress(Calculator):
    """Negative control: wraps a calculator and reports -σ (the classic sign bug)."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, inner: Calculator) -> None:
        super().__init__()
        self.inner = inner

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        r = self.inner.calculate_batch([self.atoms])[0]
        self.results = {"energy": r["energy"], "forces": r["forces"], "stress": -r["stress"]}


def _emt_cell():
    atoms = bulk("Cu", "fcc", a=3.5, cubic=True)
    atoms.symbols[1] = "Au"
    atoms.set_cell(atoms.cell.array @ [[1, 0.05, 0], [0, 1.02, -0.03], [0.02, 0, 0.98]],
                   scale_atoms=True)
    atoms.rattle(0.05, seed=3)
    atoms.calc = EMT()
    return atoms


def test_fd_stress_helper_matches_ase_emt():
    """The reference itself: our FD stress reproduces ASE's EMT stress (sign, Voigt order)."""
    atoms = _emt_cell()
    assert np.abs(atoms.get_stress()).max() > 1e-3
    assert stress_fd_mismatch(atoms) < 1e-6


@pytest.mark.parametrize("lmax", [1, 2])
@pytest.mark.parametrize("arch", ARCHS)
def test_forces_and_stress_match_finite_differences(lmax, arch):
    atoms = sheared_cell()
    atoms.calc = make_calc(lmax=lmax, arch=arch)
    forces = atoms.get_forces().copy()
    assert np.abs(forces).max() > 0.05
    np.testing.assert_allclose(forces, fd_forces(atoms), atol=1e-7)
    stress = atoms.get_stress().copy()
    assert np.abs(stress).max() > 1e-3
    assert stress_fd_mismatch(atoms) < 1e-7


def test_flipped_stress_sign_is_caught():
    """Negative control: the FD comparison must report a mismatch for -σ."""
    atoms = sheared_cell()
    atoms.calc = FlippedStress(make_calc())
    assert stress_fd_mismatch(atoms) > 1e-3


def test_frechet_cell_filter_gradient():
    """ASE's own check (as in MACE's tests): forces and cell forces are -∇ of the energy."""
    atoms = sheared_cell()
    atoms.calc = make_calc(lmax=2)
    # ASE's gradient_test repeats this at eight step sizes; one suffices (float64 model)
    target = FrechetCellFilter(atoms)
    f = target.get_forces()
    fn = calculate_numerical_forces(target, 1e-5)
    assert f.shape == (len(atoms) + 3, 3)
    assert np.abs(f[len(atoms):]).max() > 1e-3  # the cell rows carry a real stress
    np.testing.assert_allclose(f, fn, atol=1e-5)


def test_molecule_forces_fd_and_no_stress():
    atoms = molecule()
    atoms.calc = make_calc(lmax=2)
    forces = atoms.get_forces().copy()
    assert np.abs(forces).max() > 0.05
    np.testing.assert_allclose(forces, fd_forces(atoms), atol=1e-7)
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-10)  # Newton's third law
    # A non-periodic structure has no stress; the calculator must not invent one.
    with pytest.raises(PropertyNotImplementedError, match="stress"):
        atoms.get_stress()
