"""Symmetry-equivalent decorations and bond features, against hand-derived crystallography."""

from __future__ import annotations

import numpy as np
import pytest

from matdesign.search.campaign import Campaign
from matdesign.search.config import parse_campaign
from matdesign.search.evaluation import Evaluation
from matdesign.search.features import element_properties, feature_names, featurize
from matdesign.search.symmetry import BOND_FEATURES, bond_features, equivalence_classes


def _space(prototypes: list[str], elements: list[str] = ("Nb", "Mo", "Ta", "W")):
    d = {"name": "t", "space": {"elements": list(elements),
                                "ordered": [{"prototype": p} for p in prototypes]},
         "objectives": [{"property": "score", "goal": "max"}], "budget": 5}
    return parse_campaign(d, custom_evaluator=True)


def test_equivalent_decorations_share_a_class() -> None:
    cls = equivalence_classes(_space(["A2", "B2", "L2_1", "L1_2", "A1", "L1_0"]).space)
    # CsCl: swapping the two simple-cubic sublattices is a translation by (½,½,½)
    assert cls["ordered:B2:Mo-Nb"] == cls["ordered:B2:Nb-Mo"]
    # Heusler A2BC with A = B on 4a and 4b: C on 8c forms the CsCl structure with them
    assert cls["ordered:L2_1:Mo-Mo-Ta"] == cls["ordered:B2:Mo-Ta"]
    # one element on every site: bcc and fcc
    assert cls["ordered:B2:W-W"] == cls["ordered:A2:W"]
    assert cls["ordered:L1_2:W-W"] == cls["ordered:L1_0:W-W"] == cls["ordered:A1:W"]
    # different crystals stay apart: L1_2 A3B is not AB3, B2 is not L1_0, W is not Mo
    assert cls["ordered:L1_2:Mo-Nb"] != cls["ordered:L1_2:Nb-Mo"]
    assert cls["ordered:B2:Mo-Nb"] != cls["ordered:L1_0:Mo-Nb"]
    assert cls["ordered:A2:W"] != cls["ordered:A2:Mo"]
    # B2: 16 labellings, 4 pure (= A2) + 6 unordered pairs
    assert len({cls[f"ordered:B2:{a}-{b}"] for a in "Nb Mo Ta W".split()
                for b in "Nb Mo Ta W".split()}) == 10


def test_bond_features_b2_and_random_alloy() -> None:
    space = _space(["B2"]).space
    c = space.decode(space.enumerate_ordered()[1])  # B2 Nb-Mo
    assert c.key == "ordered:B2:Nb-Mo"
    chi = {e: element_properties(e)[1] for e in ("Nb", "Mo")}
    f = bond_features(c, space)
    # bcc shells 1 + 2 (within 1.25 d_min): 8 unlike first neighbours, 6 like second neighbours
    assert f[0] == pytest.approx(8 / 14)
    assert f[1] == pytest.approx(8 / 14 * (chi["Nb"] - chi["Mo"]) ** 2)
    assert f[2] == pytest.approx(8 / 14 * 1.0)  # VEC 5 vs 6
    # random equiatomic binary: P(unlike) = 2 x_a x_b = 1/2
    d = {"name": "t", "space": {"elements": ["Nb", "Mo"],
                                "disordered": [{"lattice": "A2", "supercell": [2, 2, 2]}]},
         "objectives": [{"property": "score"}], "budget": 5}
    dspace = parse_campaign(d, custom_evaluator=True).space
    half = next(dspace.decode(x) for x in
                (["disordered:A2#0", u] for u in np.linspace(0, 1, 101))
                if dspace.decode(x).counts == (8, 8))
    assert bond_features(half, dspace)[0] == pytest.approx(0.5)
    names = feature_names(space)
    assert [names.index(n) for n in BOND_FEATURES] == [9, 10, 11, 12]
    assert featurize([c], space).shape == (1, len(names))


def test_campaign_never_evaluates_an_equivalent_crystal(tmp_path) -> None:
    cfg = _space(["A2", "B2"], ["Nb", "Mo", "Ta"])
    # A2: 3 crystals; B2: 9 labellings = 3 pure (= A2) + 3 pairs, so 6 crystals in all
    seen: list[str] = []

    def evaluator(atoms, source: str) -> Evaluation:
        seen.append(source)
        return Evaluation("done", {"score": float(len(seen))}, atoms)

    camp = Campaign(cfg, str(tmp_path / "c.db"), evaluator)
    summary = camp.run(budget=20, strategy="random")
    assert summary.n_evaluations == 6
    assert len({camp.canonical(k.split("#")[0]) for k in seen}) == 6
