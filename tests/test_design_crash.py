"""A campaign worker killed mid-candidate (as by the OOM killer): the candidates in flight run
again in a fresh pool instead of being stored as failed; two crashes make a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from matdesign.search.campaign import Campaign
from matdesign.search.config import parse_campaign as _parse
from matdesign.search.evaluation import Evaluation

CFG = {"name": "crash", "space": {"elements": ["Nb", "Mo", "Ta"],
                                  "ordered": [{"prototype": "B2"}, {"prototype": "L1_2"}]},
       "objectives": [{"property": "score"}], "budget": 5,
       "optimizer": {"batch_size": 3, "n_initial": 2, "seed": 0}}


def parse_campaign(d: dict):
    return _parse(d, custom_evaluator=True)


class DieOnce:
    """Picklable evaluator: the first call (any process) kills its worker, or every call on
    candidates whose key contains ``always``."""

    def __init__(self, marker: str, always: str = "\0") -> None:
        self.marker, self.always = marker, always

    def __call__(self, atoms, source: str) -> Evaluation:
        if self.always in source:
            os._exit(1)
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)
        return Evaluation("done", {"score": float(atoms.get_masses().mean())}, atoms)


def test_worker_crash_reruns_in_flight_candidates(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    camp = Campaign(parse_campaign(CFG), str(tmp_path / "c.db"), DieOnce(str(marker)))
    summary = camp.run(strategy="random", workers=2)
    assert marker.exists()  # a worker really died
    records = camp.store.records()
    assert summary.n_evaluations == 5 == len({r.key for r in records})
    assert [r.status for r in records] == ["done"] * 5, [r.properties for r in records]


def test_candidate_crashing_twice_is_failed(tmp_path: Path) -> None:
    (tmp_path / "crashed").touch()
    camp = Campaign(parse_campaign(CFG), str(tmp_path / "c.db"),
                    DieOnce(str(tmp_path / "crashed"), always="L1_2"))
    camp.run(strategy="random", workers=2, budget=4)
    records = camp.store.records()
    assert len(records) == 4 == len({r.key for r in records})
    for r in records:
        assert r.status == ("failed" if "L1_2" in r.key else "done"), r.key
    rows = {row.candidate_key: row for row in camp.store.db.rows()}
    failed = [row for key, row in rows.items() if "L1_2" in key]
    assert failed and all(row.data["error"].startswith("worker crashed twice")
                          for row in failed)


# ---- hull over the campaign's own candidates ----------------------------------------------
MU = {"Cu": -3.5, "Au": -3.8}  # eV/atom, arbitrary elemental references
FORMATION = {0.25: -0.075, 0.5: -0.06, 0.75: -0.075}  # eV/atom by Au fraction


def hull_toy(atoms, source: str) -> Evaluation:
    """Energies with a known hull: B2 CuAu (-0.06) lies above the L1_2 tie line (-0.075),
    which only the campaign's other candidates reveal; against the elements alone every
    candidate is on the hull (what the pipeline reports per candidate)."""
    syms = atoms.get_chemical_symbols()
    x = syms.count("Au") / len(syms)
    ef = next((v for k, v in FORMATION.items() if abs(k - x) < 1e-9), 0.0)
    e = ef + x * MU["Au"] + (1 - x) * MU["Cu"]
    kvp = {"energy_per_atom_ev": e, "formation_energy_ev_per_atom": ef,
           "e_above_hull_ev_per_atom": max(ef, 0.0)}
    return Evaluation("done", kvp, atoms, {"references": {"elements": MU, "competing": []}})


def test_campaign_recomputes_hull_over_its_candidates(tmp_path: Path) -> None:
    from ase.db import connect
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    cfg = parse_campaign({"space": {"elements": ["Cu", "Au"],
                                    "ordered": [{"prototype": "B2"}, {"prototype": "L1_2"}]},
                          "objectives": [{"property": "formation_energy_ev_per_atom",
                                          "goal": "min"}],
                          "constraints": ["e_above_hull_ev_per_atom <= 0.001"], "budget": 20,
                          "optimizer": {"batch_size": 2, "n_initial": 2, "seed": 0}})
    camp = Campaign(cfg, str(tmp_path / "c.db"), hull_toy)
    camp.run(strategy="random")
    rows = list(connect(str(tmp_path / "c.db")).select())
    assert any(abs(r.formation_energy_ev_per_atom + 0.06) < 1e-12 for r in rows)  # B2 CuAu
    entries = [PDEntry(Composition(el), e, name=el) for el, e in MU.items()]
    cands = {r.id: PDEntry(Composition(r.formula), r.energy_per_atom_ev
                           * Composition(r.formula).num_atoms) for r in rows}
    pd = PhaseDiagram(entries + list(cands.values()))
    records = {rec.row_id: rec for rec in camp.store.records()}
    for r in rows:
        expected = pd.get_e_above_hull(cands[r.id])
        assert r.e_above_hull_ev_per_atom == pytest.approx(expected, abs=1e-9), r.formula
        assert r.feasible == records[r.id].feasible == (expected <= 0.001)
    assert not all(r.feasible for r in rows)  # B2 CuAu is above the hull: infeasible
