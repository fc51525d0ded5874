"""A worker killed mid-candidate (as by the OOM killer) breaks the process pool: the candidates
in flight run again in a fresh pool; only one that kills a worker twice is recorded failed."""

from __future__ import annotations

import os
from pathlib import Path

from ase.build import bulk

from matdesign.search.database import ResultsDB
from matdesign.search.executor import get_executor
from matdesign.search.hashing import content_hash
from matdesign.search.pipeline import ScreenSettings
from matdesign.search.runner import CrashTolerantRunner
from matdesign.search.screen import InputStructure, ScreenRun, run_inputs

SETTINGS = ScreenSettings(potential="emt", fmax=1e-2, max_steps=300)


def _die_unless(marker: str) -> str:
    """Runs when a worker unpickles the structure: kill the process unless ``marker`` exists;
    create it first when its name ends in ``once`` (so the second attempt survives)."""
    if not os.path.exists(marker):
        if marker.endswith("once"):
            Path(marker).touch()
        os._exit(1)
    return "survived"


class Killer:
    """Kept in ``atoms.info``; unpickling it in a worker may kill that worker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (_die_unless, (self.marker,))


class _Bar:
    def update(self, n: int) -> None:
        pass


def input_structures(tmp_path: Path, killers: dict[int, str]) -> list[InputStructure]:
    out = []
    for k in range(4):
        atoms = bulk("Cu", a=3.6 + 0.02 * k, cubic=True)
        atoms.symbols[0] = "Ni"
        atoms.rattle(0.03, seed=k)
        if k in killers:
            atoms.info["killer"] = Killer(str(tmp_path / killers[k]))
        out.append(InputStructure(f"c{k}", atoms, content_hash(atoms)))
    return out


def run(tmp_path: Path, killers: dict[int, str]) -> dict[str, object]:
    db = ResultsDB(str(tmp_path / "r.db"))
    run = ScreenRun(db, SETTINGS, SETTINGS.settings_hash(), None, _Bar())
    with CrashTolerantRunner(lambda: get_executor(2), 2) as runner:
        run_inputs(run, input_structures(tmp_path, killers), runner)
    rows = db.rows()
    assert len(rows) == 4 and len({r.source for r in rows}) == 4  # each candidate once
    return {r.source: r for r in rows}


def test_one_crash_is_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    rows = run(tmp_path, {1: "marker_once"})
    assert (tmp_path / "marker_once").exists()  # the worker really died once
    assert {s: r.status for s, r in rows.items()} == dict.fromkeys(("c0", "c1", "c2", "c3"),
                                                                  "done")


def test_candidate_that_crashes_twice_fails_alone(tmp_path: Path) -> None:
    rows = run(tmp_path, {2: "never_created"})
    assert rows["c2"].status == "failed"
    assert rows["c2"].reason.startswith("worker crashed twice")
    assert all(rows[s].status == "done" for s in ("c0", "c1", "c3"))


def test_results_db_inside_the_input_folder_is_not_an_input(tmp_path: Path) -> None:
    from ase.io import write

    from matdesign.search.screen import run_screen

    folder = tmp_path / "in"
    folder.mkdir()
    for k, a in enumerate((3.6, 3.65)):
        write(folder / f"cu{k}.xyz", bulk("Cu", a=a), format="extxyz")
    db = folder / "results.db"
    for _ in range(2):
        summary = run_screen([str(folder)], str(db), SETTINGS, progress=False)
        assert summary.n_candidates == 2 and summary.n_failed == 0
    rows = ResultsDB(str(db)).rows()
    assert sorted(Path(r.source).name for r in rows) == ["cu0.xyz", "cu1.xyz"]
