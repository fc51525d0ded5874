"""Screening across processes: SIGKILL mid-run then resume, process pool and Dask vs serial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ase.build import bulk
from ase.io import write

from matdesign.search.database import ResultsDB
from matdesign.search.pipeline import ScreenSettings
from matdesign.search.screen import run_screen

SETTINGS = ScreenSettings(potential="emt", fmax=1e-2, max_steps=500)
CLI = [sys.executable, "-c", "import sys; from matdesign.cli import main; sys.exit(main())"]


def write_alloys(folder: Path, n: int, repeat: int = 1) -> Path:
    """``n`` distinct rattled Cu/Ni/Au fcc cells (4 * repeat**3 atoms)."""
    folder.mkdir()
    symbols = ["Cu", "Ni", "Au"]
    for k in range(n):
        atoms = bulk("Cu", a=3.6, cubic=True) * (repeat, repeat, repeat)
        atoms.symbols[k % len(atoms)] = symbols[k % 3]
        atoms.symbols[(3 * k + 1) % len(atoms)] = symbols[(k + 1) % 3]
        atoms.rattle(0.05, seed=k)
        write(folder / f"c{k:02d}.xyz", atoms, format="extxyz")
    return folder


def rows_by_hash(db: Path) -> dict[str, object]:
    rows = ResultsDB(str(db)).rows()
    hashes = [r.content_hash for r in rows]
    assert len(hashes) == len(set(hashes)), "a candidate appears twice"
    return {r.content_hash: r for r in rows}


def test_sigkill_then_resume_gives_each_candidate_once(tmp_path: Path) -> None:
    inputs = write_alloys(tmp_path / "in", 8, repeat=2)
    db = tmp_path / "r.db"
    cmd = [*CLI, "screen", str(inputs), "--db", str(db), "--potential", "emt",
           "--fmax", "1e-2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists() and ResultsDB(str(db)).count() >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed; enlarge it"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    n_before = ResultsDB(str(db)).count()
    assert 2 <= n_before < 8
    export = tmp_path / "rows.csv"
    out = subprocess.run([*cmd, "--export", str(export)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(export.read_text().strip().splitlines()) == 1 + 8  # header + one line per row
    assert f"skipped (already in the database) {n_before}" in out.stdout
    rows = rows_by_hash(db)
    assert len(rows) == 8 and all(r.status == "done" for r in rows.values())


@pytest.fixture(scope="module")
def serial_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("par")
    inputs = write_alloys(root / "in", 4)
    run_screen([str(inputs)], str(root / "serial.db"), SETTINGS, progress=False)
    return inputs, rows_by_hash(root / "serial.db")


def assert_same_rows(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and len(a) == 4
    for key, ra in a.items():
        rb = b[key]
        assert ra.status == rb.status == "done"
        for name in ("energy_per_atom_ev", "formation_energy_ev_per_atom",
                     "e_above_hull_ev_per_atom"):
            assert ra[name] == pytest.approx(rb[name], abs=1e-8)


def test_process_pool_matches_serial(serial_rows: tuple[Path, dict], tmp_path: Path) -> None:
    inputs, serial = serial_rows
    summary = run_screen([str(inputs)], str(tmp_path / "pool.db"), SETTINGS, workers=2,
                         progress=False)
    assert summary.n_done == 4
    assert_same_rows(serial, rows_by_hash(tmp_path / "pool.db"))


def test_dask_local_cluster_matches_serial(serial_rows: tuple[Path, dict],
                                           tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    inputs, serial = serial_rows
    summary = run_screen([str(inputs)], str(tmp_path / "dask.db"), SETTINGS, workers=2,
                         scheduler="local", progress=False)
    assert summary.n_done == 4
    assert_same_rows(serial, rows_by_hash(tmp_path / "dask.db"))
