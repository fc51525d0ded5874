"""`matdesign design` end to end through the real screen pipeline with ASE's EMT."""

from __future__ import annotations

import json

import pytest
from ase.calculators.emt import EMT
from ase.db import connect

from matdesign.cli import main

YAML = """
name: emt_smoke
potential: emt
budget: 3
space:
  elements: [Cu, Au]
  ordered: [{prototype: B2}, {prototype: L1_2}]
objectives: [{property: formation_energy_ev_per_atom, goal: min}]
constraints: ["e_above_hull_ev_per_atom <= 0.2"]
screen: {properties: [], fmax: 0.01, max_steps: 300}
optimizer: {batch_size: 2, n_initial: 2}
"""


def test_design_cli_with_emt_pipeline(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text(YAML)
    db = tmp_path / "c.db"
    argv = ["design", str(tmp_path / "c.yaml"), "--db", str(db), "--json", str(tmp_path / "s.json")]
    assert main(argv) == 0
    assert json.loads((tmp_path / "s.json").read_text())["n_evaluations"] == 3
    rows = list(connect(str(db)).select())
    assert len(rows) == 3 and len({r.candidate_key for r in rows}) == 3
    for row in rows:
        assert row.status == "done" and "x" in row.data
        # independent check: EMT energy of the stored relaxed structure vs the elements
        atoms = row.toatoms()
        atoms.calc = EMT()
        e = atoms.get_potential_energy() / len(atoms)
        refs = {}
        for el in ("Cu", "Au"):
            from ase.build import bulk
            from ase.filters import FrechetCellFilter
            from ase.optimize import BFGS

            ref = bulk(el, "fcc", a=3.6 if el == "Cu" else 4.08)
            ref.calc = EMT()
            BFGS(FrechetCellFilter(ref), logfile=None).run(fmax=1e-4)
            refs[el] = ref.get_potential_energy()
        syms = atoms.get_chemical_symbols()
        ef = e - sum(refs[s] for s in syms) / len(syms)
        assert row.formation_energy_ev_per_atom == pytest.approx(ef, abs=3e-3)
    # resume with a larger budget: two more, none repeated
    assert main(["design", str(tmp_path / "c.yaml"), "--db", str(db), "--budget", "5"]) == 0
    keys = [r.candidate_key for r in connect(str(db)).select()]
    assert len(keys) == 5 == len(set(keys))


def test_design_cli_bad_yaml_names_key(tmp_path, capsys) -> None:
    (tmp_path / "c.yaml").write_text(YAML.replace("budget: 3", "budgte: 3"))
    assert main(["design", str(tmp_path / "c.yaml"), "--db", str(tmp_path / "c.db")]) == 1
    assert "budgte" in capsys.readouterr().err


def test_design_cli_timeout(tmp_path, capsys) -> None:
    (tmp_path / "c.yaml").write_text(YAML.replace("budget: 3", "budget: 2"))
    db = tmp_path / "c.db"
    assert main(["design", str(tmp_path / "c.yaml"), "--db", str(db), "--timeout", "1e-4"]) == 0
    rows = list(connect(str(db)).select())
    assert len(rows) == 2
    for row in rows:
        assert row.status == "failed" and row.data["error"].startswith("timeout"), row.data
    assert main(["design", str(tmp_path / "c.yaml"), "--db", str(db), "--timeout", "0"]) == 1
    assert "--timeout" in capsys.readouterr().err
