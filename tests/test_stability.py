"""Formation energies and convex hulls against analytic results, pymatgen and EMT EOS fits."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT, parameters
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from matdesign.properties.stability import (
    HullEntry,
    check_known_elements,
    elemental_reference_energies,
    formation_energy_per_atom,
    hull_energies,
    known_elements,
    reference_structure,
)


def test_hull_analytic_binary() -> None:
    # A, B at 0; AB at -0.5 eV/atom. The A-AB tie line at x_B = 0.25 is at -0.25 eV/atom, so
    # A3B at -0.2 lies 0.05 above the hull. AB3 at -0.3 is below the AB-B line (-0.25) and
    # so on the hull; it does not touch the A-AB side.
    entries = [HullEntry("A", "Cu", 0.0), HullEntry("B", "Au", 0.0),
               HullEntry("AB", "CuAu", -0.5), HullEntry("A3B", "Cu3Au", -0.2),
               HullEntry("AB3", "CuAu3", -0.3)]
    e = hull_energies(entries)
    assert e["A3B"] == pytest.approx(0.05, abs=1e-12)
    assert e["AB3"] == pytest.approx(0.0, abs=1e-12)
    assert e["AB"] == pytest.approx(0.0, abs=1e-12)


def test_hull_matches_one_pymatgen_phase_diagram() -> None:
    """Per-chemical-system hulls equal one hand-built PhaseDiagram over everything."""
    rng = np.random.default_rng(0)
    formulas = ["Cu", "Au", "Ni", "CuAu", "Cu3Au", "CuAu3", "CuNi", "Ni3Cu", "CuNiAu2", "Cu2Au2"]
    energies = {f: (0.0 if Composition(f).is_element else float(rng.uniform(-0.3, 0.2)))
                for f in formulas}
    energies["Cu"] = -3.5
    entries = [HullEntry(f, f, e) for f, e in energies.items()]
    ours = hull_energies(entries)
    pd_entries = [PDEntry(Composition(f), e * Composition(f).num_atoms, name=f)
                  for f, e in energies.items()]
    diagram = PhaseDiagram(pd_entries)
    for entry in pd_entries:
        assert ours[entry.name] == pytest.approx(diagram.get_e_above_hull(entry), abs=1e-9)
    assert max(ours.values()) > 0.01  # the test has something above the hull to find


def test_hull_rejects_missing_element_and_nan() -> None:
    with pytest.raises(ValueError, match="Au"):
        hull_energies([HullEntry("Cu", "Cu", 0.0), HullEntry("x", "CuAu", -0.1)])
    with pytest.raises(ValueError, match="non-finite"):
        hull_energies([HullEntry("Cu", "Cu", float("nan"))])


def test_formation_energy_analytic() -> None:
    mu = {"Cu": -1.0, "Au": -2.0}
    # Cu3Au at -1.5 eV/atom: -1.5 - (0.75 * -1 + 0.25 * -2) = -0.25
    assert formation_energy_per_atom("Cu3Au", -1.5, mu) == pytest.approx(-0.25)
    assert formation_energy_per_atom(bulk("Cu"), -1.0, mu) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="Ni"):
        formation_energy_per_atom("CuNi", -1.0, mu)


def test_known_elements_emt() -> None:
    assert known_elements(EMT()) == set(parameters)
    check_known_elements(bulk("Cu"), EMT())
    with pytest.raises(ValueError, match="Fe"):
        check_known_elements(bulk("Fe"), EMT())


def test_reference_structures() -> None:
    assert reference_structure("Cu").get_chemical_formula() == "Cu"
    assert reference_structure("Cu").pbc.all()
    h2 = reference_structure("H")
    assert len(h2) == 2 and not h2.pbc.any()
    with pytest.raises(ValueError, match="Xx"):
        reference_structure("Xx")


def _min_energy(symbol: str) -> float:
    """EMT energy per atom minimised over the lattice constant (independent of any relaxer)."""
    from scipy.optimize import minimize_scalar

    def energy(a: float) -> float:
        atoms = bulk(symbol, a=a)
        atoms.calc = EMT()
        return atoms.get_potential_energy() / len(atoms)

    a0 = bulk(symbol).cell.lengths()[0] * np.sqrt(2)  # fcc primitive vector -> cubic a
    return float(minimize_scalar(energy, bracket=(0.95 * a0, a0, 1.05 * a0), tol=1e-10).fun)


def test_elemental_references_match_eos_minimum() -> None:
    from matdesign.properties.relax import relax

    calls = []

    def relax_fn(atoms):
        calls.append(atoms.get_chemical_formula())
        relaxed, info = relax(atoms, EMT(), fmax=1e-4, max_steps=300)
        assert info.converged
        return relaxed, info.energy_per_atom_ev

    cache: dict[str, float] = {}
    mu = elemental_reference_energies(["Cu", "Au", "Cu"], relax_fn, cache=cache)
    for el in ("Cu", "Au"):
        assert mu[el] == pytest.approx(_min_energy(el), abs=1e-7)
    again = elemental_reference_energies(["Cu"], relax_fn, overrides={"Au": 0.5}, cache=cache)
    assert again == {"Cu": mu["Cu"]} and len(calls) == 2  # cached, not relaxed twice
    assert elemental_reference_energies(["Au"], relax_fn, overrides={"Au": 0.5}) == {"Au": 0.5}
