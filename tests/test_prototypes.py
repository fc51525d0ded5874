"""Built-in prototypes: space group (spglib) and composition of each decorated cell."""

from __future__ import annotations

import json

import numpy as np
import pytest
import spglib

from matdesign.search.prototypes import (
    BUILTIN_PROTOTYPES,
    elemental_volume,
    load_prototypes,
    vegard_scale,
)

# independent expectations: (space group, atoms per formula unit per sublattice)
EXPECTED = {
    "A1": (225, (1,)), "A2": (229, (1,)), "A3": (194, (1,)), "B2": (221, (1, 1)),
    "L1_2": (221, (1, 3)), "L1_0": (123, (1, 1)), "D0_3": (225, (1, 3)),
    "L2_1": (225, (1, 1, 2)), "C15": (227, (1, 2)), "B1": (225, (1, 1)),
    "E2_1": (221, (1, 1, 3)),
}
ELEMENTS = ("Cu", "Au", "Al")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_space_group_and_composition(name: str) -> None:
    proto = BUILTIN_PROTOTYPES[name]
    atoms = proto.decorate(ELEMENTS[: len(proto.sublattices)], a=4.0)
    sg = spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(),
                                      atoms.numbers), symprec=1e-4).number
    assert sg == EXPECTED[name][0] == proto.space_group
    counts = [atoms.get_chemical_symbols().count(e) for e in ELEMENTS[: len(proto.sublattices)]]
    ratio = np.array(counts) / min(counts)
    assert np.allclose(ratio, EXPECTED[name][1])


def test_all_required_prototypes_present() -> None:
    assert set(EXPECTED) <= set(BUILTIN_PROTOTYPES)


def test_vegard_volume_matches_elements() -> None:
    # ASE reference lattice constants: bcc W a = 3.16 Å -> 15.78 Å^3/atom; fcc Cu a = 3.61 Å
    assert elemental_volume("W") == pytest.approx(3.16**3 / 2, rel=1e-3)
    b2 = vegard_scale(BUILTIN_PROTOTYPES["B2"].decorate(("Cu", "W")))
    expected = (3.61**3 / 4 + 3.16**3 / 2) / 2
    assert b2.get_volume() / len(b2) == pytest.approx(expected, rel=1e-3)


def test_user_prototypes_file(tmp_path) -> None:
    good = [{"name": "sc", "cell_over_a": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
             "sublattices": {"A": [[0, 0, 0]]}, "space_group": 221}]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(good))
    assert load_prototypes(path)["sc"].n_atoms == 1
    path.write_text(json.dumps([{**good[0], "colour": "red"}]))
    with pytest.raises(ValueError, match="colour"):
        load_prototypes(path)
