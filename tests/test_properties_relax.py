"""Relaxation and batched evaluation: EMT references, failure modes, input never modified."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from matdesign.properties.batch import evaluate_many
from matdesign.properties.relax import NotConvergedError, relax, require_converged


class CountingEMT(EMT):
    """EMT that counts how often it is asked to compute."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.n_calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        self.n_calls += 1
        super().calculate(atoms, properties, system_changes)


class NaNCalculator(Calculator):
    implemented_properties = ["energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        self.results = {"energy": float("nan"), "forces": np.zeros((n, 3)),
                        "stress": np.zeros(6)}


def test_cell_relaxation_reaches_emt_lattice_constant():
    start = bulk("Cu", "fcc", a=3.75)
    before = start.copy()
    relaxed, res = relax(start, EMT(), fmax=1e-4)
    assert res.converged and res.steps > 0
    assert res.spacegroup_before == res.spacegroup_after == "Fm-3m (225)"
    # independent reference: minimum of an EMT energy scan over the fcc lattice constant
    scan = np.linspace(3.55, 3.65, 41)
    energies = []
    for a in scan:
        at = bulk("Cu", "fcc", a=a)
        at.calc = EMT()
        energies.append(at.get_potential_energy())
    coeffs = np.polyfit(scan, energies, 4)
    fine = np.linspace(3.55, 3.65, 10001)
    a_min = fine[np.argmin(np.polyval(coeffs, fine))]
    assert relaxed.get_volume() == pytest.approx(a_min**3 / 4, rel=1e-4)
    assert np.abs(res.stress_ev_per_a3).max() < 1e-4
    assert relaxed.calc is None
    assert np.allclose(start.cell.array, before.cell.array) and start.calc is None


def test_ions_only_keeps_cell_and_removes_forces():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=3)
    relaxed, res = relax(atoms, EMT(), relax_cell=False, optimizer="BFGS", fmax=1e-3)
    assert res.converged and res.max_force_ev_per_a < 1e-3
    assert np.allclose(relaxed.cell.array, atoms.cell.array)
    check = relaxed.copy()
    check.calc = EMT()
    assert np.abs(check.get_forces()).max() < 1e-3


def test_unconverged_is_reported_not_raised():
    _, res = relax(bulk("Cu", "fcc", a=3.8), EMT(), max_steps=2)
    assert res.converged is False and res.steps == 2
    with pytest.raises(NotConvergedError, match="did not converge"):
        require_converged(res, "elastic")


def test_overlapping_atoms_rejected_before_any_calculator_call():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0.2, 0, 0]], cell=[5, 5, 5], pbc=True)
    calc = CountingEMT()
    with pytest.raises(ValueError, match="overlapping"):
        relax(atoms, calc)
    assert calc.n_calls == 0


def test_nan_energy_raises():
    with pytest.raises(FloatingPointError):
        relax(bulk("Cu", "fcc", a=3.6), NaNCalculator())


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="optimizer"):
        relax(bulk("Cu", "fcc", a=3.6), EMT(), optimizer="SGD")


def test_fix_symmetry_keeps_space_group():
    atoms = bulk("Cu", "hcp", a=2.6, c=4.1)
    relaxed, res = relax(atoms, EMT(), fix_symmetry=True, fmax=1e-3)
    assert res.converged
    assert res.spacegroup_after == res.spacegroup_before == "P6_3/mmc (194)"
    assert relaxed.constraints == []


@pytest.mark.parametrize("max_batch_atoms", [512, 3])  # one call; groups (and one alone)
def test_evaluate_many_batched_equals_one_by_one(calc_factory, sheared, max_batch_atoms):
    """MatdesignCalculator.calculate_batch path vs plain ASE per-structure calls."""
    calc = calc_factory()
    structures = [sheared, bulk("Cu", "fcc", a=3.7), bulk("Au", "fcc", a=4.1) * (1, 1, 2),
                  bulk("Cu", "fcc", a=3.6)]
    batched = evaluate_many(calc, structures, max_batch_atoms=max_batch_atoms)
    assert len(batched) == len(structures)
    for atoms, r in zip(structures, batched, strict=True):
        ref = atoms.copy()
        ref.calc = calc_factory()
        assert r["energy"] == pytest.approx(ref.get_potential_energy(), abs=1e-9)
        assert np.allclose(r["forces"], ref.get_forces(), atol=1e-9)
        assert np.allclose(r["stress"], ref.get_stress(), atol=1e-9)


def test_evaluate_many_plain_calculator_and_nonperiodic():
    cluster = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0]])
    results = evaluate_many(EMT(), [bulk("Cu", "fcc", a=3.6), cluster])
    assert results[0]["stress"].shape == (6,) and results[1]["stress"] is None
    with pytest.raises(FloatingPointError):
        evaluate_many(NaNCalculator(), [bulk("Cu", "fcc", a=3.6)])


def test_lockstep_ionic_relaxation_follows_the_one_by_one_path():
    """Relaxing strained cells together (one batched call per step) must give what ASE's FIRE
    gives one cell at a time: same converged energies and stresses."""
    from matdesign.properties.elastic import strained
    from matdesign.properties.relax import relax_ions_together
    from tests.helpers import make_calc, sheared_cell

    calc = make_calc(arch="two_body")
    base = sheared_cell(rattle=0.03)
    cells = [strained(base, j, s) for j, s in ((0, 0.01), (3, -0.01), (5, 0.005))]
    together = relax_ions_together(calc, cells, fmax=1e-4, max_steps=400)
    for atoms, (res, steps) in zip(cells, together, strict=True):
        _, alone = relax(atoms, calc, fmax=1e-4, max_steps=400, relax_cell=False)
        assert alone.converged and 0 < steps <= 400
        assert np.linalg.norm(res["forces"], axis=1).max() <= 1e-4
        assert res["energy"] == pytest.approx(alone.energy_ev, abs=1e-6)
        np.testing.assert_allclose(res["stress"], alone.stress_ev_per_a3, atol=1e-6)


def test_properties_with_emt_never_import_torch():
    """properties/ promises to run with any ASE calculator without the model stack."""
    import subprocess
    import sys

    code = ("import sys; from ase.build import bulk; from ase.calculators.emt import EMT; "
            "from matdesign.properties import relax; "
            "relax(bulk('Cu', cubic=True), EMT(), fmax=0.05); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_fast_frechet_filter_matches_ase():
    """``FastFrechetCellFilter`` against ASE's ``FrechetCellFilter`` (the reference): the same
    optimiser variables, generalised forces and convergence stress step by step on a sheared,
    rattled CuAu cell with EMT; the adjoint identity against SciPy's nine Fréchet derivatives."""
    from ase.filters import FrechetCellFilter
    from scipy.linalg import expm_frechet

    from matdesign.properties.cellfilter import FastFrechetCellFilter, expm_frechet_adjoint

    rng = np.random.default_rng(0)
    x, g = 0.05 * rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    nine = np.array([[np.sum(expm_frechet(x, np.eye(3)[[m]].T @ np.eye(3)[[n]],
                                          compute_expm=False) * g) for n in range(3)]
                     for m in range(3)])
    assert np.allclose(expm_frechet_adjoint(x, g), nine, atol=1e-13)

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 1)
    atoms.symbols[[1, 5]] = "Au"
    atoms.rattle(0.05, seed=0)
    atoms.set_cell(atoms.cell.array @ np.array([[1.03, 0.02, 0], [0.01, 0.98, 0.03], [0, 0, 1.02]]),
                   scale_atoms=True)
    ref_atoms, fast_atoms = atoms.copy(), atoms.copy()
    ref_atoms.calc, fast_atoms.calc = EMT(), EMT()
    ref, fast = FrechetCellFilter(ref_atoms), FastFrechetCellFilter(fast_atoms)
    for _ in range(4):
        p_ref, p_fast = ref.get_positions(), fast.get_positions()
        f_ref, f_fast = ref.get_forces(), fast.get_forces()
        assert np.abs(p_ref - p_fast).max() < 1e-10
        assert np.abs(f_ref - f_fast).max() < 1e-10 and np.abs(f_ref).max() > 0.1
        assert np.abs(ref.stress - fast.stress).max() < 1e-12
        step = 0.02 * f_ref + 1e-3 * rng.standard_normal(f_ref.shape)
        ref.set_positions(p_ref + step)
        fast.set_positions(p_fast + step)
        assert np.abs(ref_atoms.cell.array - fast_atoms.cell.array).max() < 1e-10
