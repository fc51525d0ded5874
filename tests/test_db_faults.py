"""A database that cannot serve the run is refused at open, with a message naming the file:
not a database, read-only, or written by the other command (screen vs design)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ase.build import bulk
from ase.db import connect
from ase.io import write

from matdesign.cli import main
from matdesign.search.campaign import Campaign
from matdesign.search.config import parse_campaign
from matdesign.search.database import WRITER_KEY, ResultsDB
from matdesign.search.evaluation import Evaluation
from matdesign.search.pipeline import ScreenSettings
from matdesign.search.screen import run_screen

SETTINGS = ScreenSettings(potential="emt", fmax=1e-2, max_steps=300)
CLI = [sys.executable, "-c", "import sys; from matdesign.cli import main; sys.exit(main())"]
CFG = {"name": "faults", "space": {"elements": ["Nb", "Mo"], "ordered": [{"prototype": "B2"}]},
       "objectives": [{"property": "score"}], "budget": 2,
       "optimizer": {"batch_size": 2, "n_initial": 2, "seed": 0}}
YAML = """
name: faults
potential: emt
budget: 1
space: {elements: [Cu, Au], ordered: [{prototype: B2}]}
objectives: [{property: formation_energy_ev_per_atom, goal: min}]
screen: {properties: [], fmax: 0.01, max_steps: 100}
"""


def mass_score(atoms, source: str) -> Evaluation:
    return Evaluation("done", {"score": float(atoms.get_masses().mean())}, atoms)


def campaign(db: Path) -> Campaign:
    return Campaign(parse_campaign(CFG, custom_evaluator=True), str(db), mass_score)


def one_input(tmp_path: Path) -> Path:
    atoms = bulk("Cu", a=3.6, cubic=True)
    atoms.symbols[0] = "Au"
    write(tmp_path / "cand.xyz", atoms, format="extxyz")
    return tmp_path / "cand.xyz"


def as_non_root() -> list[str]:
    """Command prefix under which file permissions apply (root ignores them)."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override"]
    if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"]).returncode:
        pytest.skip("running as root without a working setpriv: file modes do not apply")
    return prefix


@pytest.mark.parametrize("verb", ["screen", "design"])
def test_text_file_as_database_is_refused(tmp_path: Path, verb: str,
                                          capsys: pytest.CaptureFixture) -> None:
    """Before: `design` died with two chained sqlite3 tracebacks."""
    (tmp_path / "c.yaml").write_text(YAML)
    db = tmp_path / "notes.db"
    db.write_text("my notes, not a database\n")
    first = str(one_input(tmp_path)) if verb == "screen" else str(tmp_path / "c.yaml")
    assert main([verb, first, "--db", str(db), "--potential", "emt"]) == 1
    err = capsys.readouterr().err
    assert "notes.db" in err and "not a database" in err, err
    assert db.read_text() == "my notes, not a database\n"


@pytest.mark.parametrize("verb", ["screen", "design"])
def test_read_only_database_is_refused_before_any_work(tmp_path: Path, verb: str) -> None:
    """Before: `screen` computed every candidate, then died with a raw sqlite3 traceback."""
    prefix = as_non_root()
    (tmp_path / "c.yaml").write_text(YAML)
    db = tmp_path / "ro.db"
    ResultsDB(str(db)) if verb == "screen" else campaign(db)
    before = db.read_bytes()
    db.chmod(0o444)
    first = str(one_input(tmp_path)) if verb == "screen" else str(tmp_path / "c.yaml")
    out = subprocess.run([*prefix, *CLI, verb, first, "--db", str(db), "--potential", "emt"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert "cannot write" in out.stderr and str(db) in out.stderr, out.stderr
    assert db.read_bytes() == before


def test_screen_refuses_a_campaign_database(tmp_path: Path) -> None:
    """Before: the screen appended a row, and the campaign could no longer resume."""
    db = tmp_path / "camp.db"
    campaign(db).run(strategy="random")
    n = connect(str(db)).count()
    with pytest.raises(ValueError, match="matdesign design"):
        run_screen([str(one_input(tmp_path))], str(db), SETTINGS, progress=False)
    stripped = {k: v for k, v in connect(str(db)).metadata.items() if k != WRITER_KEY}
    connect(str(db)).metadata = stripped  # as written before the mark existed
    with pytest.raises(ValueError, match="matdesign design"):
        ResultsDB(str(db))
    assert connect(str(db)).count() == n
    assert len(campaign(db).store.records()) == n  # still resumable


def test_design_refuses_a_screen_database(tmp_path: Path) -> None:
    db = tmp_path / "screen.db"
    run_screen([str(one_input(tmp_path))], str(db), SETTINGS, progress=False)
    before = connect(str(db)).metadata
    with pytest.raises(ValueError, match="matdesign screen"):
        campaign(db)
    assert connect(str(db)).metadata == before
    connect(str(db)).metadata = {}  # as written before the mark existed: the rows tell
    with pytest.raises(ValueError, match="matdesign screen"):
        campaign(db)
    assert connect(str(db)).count() == 1


def test_a_locked_sqlite_transaction_is_run_again(monkeypatch):
    """SQLite's immediate "database is locked" (deadlock avoidance, no busy wait) is retried;
    other errors, and a lock that never clears, still raise."""
    import sqlite3

    import matdesign.search.database as database

    monkeypatch.setattr(database.time, "sleep", lambda s: None)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "written"

    assert database.retry_when_locked(flaky) == "written" and len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("no such table: systems")

    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        database.retry_when_locked(broken)
    assert len(calls) == 1

    def stuck() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("database is locked")

    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        database.retry_when_locked(stuck, attempts=4)
    assert len(calls) == 4

