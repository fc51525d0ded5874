"""The ASE calculator and ``load_calculator``: specs, caching, results, refusal of bad output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT

from matdesign.calculator import MatdesignCalculator, load_calculator
from matdesign.checkpoint import save_potential
from matdesign.potential_spec import parse_potential
from tests.helpers import make_calc, make_model, sheared_cell


def test_load_calculator_specs(tmp_path):
    assert isinstance(load_calculator("emt"), EMT)
    assert isinstance(load_calculator("ase.calculators.emt:EMT"), EMT)
    with pytest.raises(ValueError, match="no_such_module"):
        load_calculator("no_such_module:factory")
    with pytest.raises(TypeError, match="not an ASE calculator"):
        load_calculator("builtins:dict")
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_calculator(tmp_path / "nowhere.pt")
    with pytest.raises(ValueError, match="float16"):
        load_calculator("emt", dtype="float16")  # the dtype is checked for every kind
    mine = make_model(dtype=torch.float32)
    save_potential(mine, tmp_path / "mine.pt")
    spec = parse_potential(tmp_path / "mine.pt")
    from_spec = load_calculator(spec, dtype="float32")
    assert isinstance(from_spec, MatdesignCalculator) and from_spec.model.dtype == torch.float32
    calc = load_calculator(mine, dtype="float64")
    assert isinstance(calc, MatdesignCalculator) and calc.model.dtype == torch.float64
    assert mine.dtype == torch.float32  # the caller's model is not converted in place
    mine.train()
    assert load_calculator(mine, dtype="float32").model is not mine
    assert mine.training  # the calculator's eval() acts on its own copy


def test_results_keys_and_consistency():
    calc = make_calc()
    atoms = sheared_cell()
    positions0 = atoms.positions.copy()
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    # the default tiny model is a 3-head committee: its spread comes with every call
    assert set(calc.results) == {"energy", "free_energy", "energies", "forces", "stress",
                                 "energy_std"}
    assert atoms.get_potential_energy(force_consistent=True) == energy
    assert atoms.get_potential_energies().sum() == pytest.approx(energy, abs=1e-10)
    assert atoms.get_forces().shape == (4, 3) and atoms.get_stress().shape == (6,)
    assert isinstance(energy, float)
    np.testing.assert_array_equal(atoms.positions, positions0)


def test_ase_cache_invalidated_on_change():
    """After moving an atom the calculator must recompute (compare with a fresh calculator)."""
    calc = make_calc()
    atoms = sheared_cell()
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    atoms.positions[0] += [0.05, -0.02, 0.03]
    e1 = atoms.get_potential_energy()
    fresh = make_calc().calculate_batch([atoms])[0]
    assert e1 != e0 and e1 == pytest.approx(fresh["energy"], abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), fresh["forces"], atol=1e-12)
    atoms.set_cell(atoms.cell.array * 1.01, scale_atoms=True)
    fresh = make_calc().calculate_batch([atoms])[0]
    np.testing.assert_allclose(atoms.get_stress(), fresh["stress"], atol=1e-12)


def test_unchanged_structure_is_not_recomputed_and_every_change_is():
    """The exact-equality shortcut in ``check_state`` must agree with ASE's own comparison:
    no recalculation for the same structure, a recalculation for any change ASE sees."""
    calc = make_calc()
    calls = []
    inner = calc.calculate_batch
    calc.calculate_batch = lambda structures: calls.append(1) or inner(structures)
    atoms = sheared_cell()
    atoms.calc = calc
    atoms.get_potential_energy()
    atoms.get_forces()
    atoms.get_stress()
    assert len(calls) == 1

    def changed(edit) -> bool:
        before = len(calls)
        edit(atoms)
        atoms.get_forces()
        return len(calls) == before + 1

    assert changed(lambda a: a.positions.__setitem__((0, 0), a.positions[0, 0] + 1e-12))
    assert changed(lambda a: a.set_chemical_symbols(["Au", "Cu", "Cu", "Au"]))
    assert changed(lambda a: a.set_cell(a.cell.array * 1.001, scale_atoms=False))
    assert changed(lambda a: a.set_initial_magnetic_moments([0.5, 0, 0, 0]))
    assert changed(lambda a: a.set_pbc([True, True, False]))
    assert not changed(lambda a: a.set_momenta(np.ones((4, 3))))  # ASE ignores momenta
    assert not changed(lambda a: None)


def test_non_finite_output_is_an_error():
    model = make_model()
    with torch.no_grad():
        model.energy_scale.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite"):
        MatdesignCalculator(model).calculate_batch([sheared_cell()])
