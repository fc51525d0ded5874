"""The training data's chemical domain (matdesign/domain.py) and where it reaches a screen row.

Checked against structures whose neighbour chemistry is known by construction.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from matdesign.domain import ChemicalDomain, environment
from tests.helpers import make_calc

BINARIES = ChemicalDomain(("Mo-Mo", "Mo-Nb", "Nb-Nb", "Nb-Ta", "Ta-Ta"), 2, 5.0)


def _bcc(symbols: list[str], a: float = 3.25):
    atoms = bulk("Nb", "bcc", a=a, cubic=True) * (2, 2, 2)  # 16 atoms
    atoms.set_chemical_symbols(symbols)
    return atoms


def test_environment_counts_pairs_and_species_per_neighbourhood():
    symbols = np.array(["Nb", "Mo", "Ta", "Nb"])
    # atom 0 sees 1 and 2 (three species with itself); atom 3 sees only 0
    receivers, senders = np.array([0, 0, 1, 2, 3, 0]), np.array([1, 2, 0, 0, 0, 3])
    pairs, most = environment(symbols, receivers, senders)
    assert pairs == {"Mo-Nb", "Nb-Ta", "Nb-Nb"}
    assert most == 3
    assert environment(symbols, np.array([], int), np.array([], int)) == (set(), 1)


def test_binary_inside_ternary_outside_with_reasons():
    inside = BINARIES.check(_bcc(["Nb", "Mo"] * 8))
    assert not inside.outside and inside.species_per_environment == 2
    ternary = BINARIES.check(_bcc(["Nb", "Mo", "Ta", "Nb"] * 4))
    assert ternary.outside
    assert ternary.unseen_pairs == ("Mo-Ta",)
    assert ternary.species_per_environment == 3
    assert "Mo-Ta" in ternary.reason and "3 elements in one neighbourhood" in ternary.reason
    # an unseen pair alone (two species) is still outside
    assert BINARIES.check(_bcc(["Mo", "Ta"] * 8)).unseen_pairs == ("Mo-Ta",)
    # round trip through the checkpoint metadata form
    assert ChemicalDomain.from_dict(BINARIES.to_dict()) == BINARIES


def test_calculator_and_screen_row_report_the_domain():
    from matdesign.search.pipeline import ScreenSettings, start_record, uncertainty_stage

    calc = make_calc(arch="two_body")
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.symbols[[1, 2]] = "Au"
    assert calc.domain(atoms) is None  # a checkpoint without the record: no claim either way
    calc.chemical_domain = ChemicalDomain(("Au-Au", "Cu-Cu"), 1, 3.8)
    settings = ScreenSettings(potential="emt")
    record = uncertainty_stage(start_record(atoms, settings), calc, settings)
    assert "Au-Cu" in record.columns()["outside_domain"]
    calc.chemical_domain = ChemicalDomain(("Au-Au", "Au-Cu", "Cu-Cu"), 2, 3.8)
    record = uncertainty_stage(start_record(atoms, settings), calc, settings)
    assert "outside_domain" not in record.columns()


@pytest.mark.parametrize("reps", [1, 2])
def test_supercell_does_not_change_the_verdict(reps):
    atoms = _bcc(["Nb", "Mo", "Ta", "Nb"] * 4) * (reps, 1, 1)
    check = BINARIES.check(atoms)
    assert check.unseen_pairs == ("Mo-Ta",) and check.species_per_environment == 3
