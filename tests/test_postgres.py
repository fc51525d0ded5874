"""PostgreSQL as the results database: a real server for the module (``tests/pg_server.py``),
screens killed and resumed, several screens at once with one SIGKILLed, claims, status and the
streamed export. Skipped, saying why, where no server can be started (no PostgreSQL, or no
psycopg2 / ase-db-backends: ``pip install 'matdesign[postgres]'``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ase.build import bulk
from ase.io import write

from matdesign.search.hashing import content_hash

CLI = [sys.executable, "-c", "import sys; from matdesign.cli import main; sys.exit(main())"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def write_cells(folder: Path, n: int, rattle: float = 0.05) -> Path:
    """``n`` distinct 4-atom Cu/Ni/Au fcc cells near EMT's equilibrium (fast relaxations)."""
    folder.mkdir(parents=True)
    symbols = ["Cu", "Ni", "Au"]
    for k in range(n):
        atoms = bulk("Cu", a=3.6, cubic=True)
        for i in range(4):
            atoms.symbols[i] = symbols[(k // 3**i) % 3]
        atoms.rattle(rattle, seed=k)
        write(folder / f"c{k:03d}.xyz", atoms, format="extxyz")
    return folder


def screen_cmd(inputs: Path, url: str, *extra: str) -> list[str]:
    return [*CLI, "screen", str(inputs), "--db", url, "--potential", "emt", "--fmax", "0.05",
            "--max-steps", "300", "--no-progress", *extra]


@pytest.fixture(scope="module")
def pg():
    """A PostgreSQL server for this module; every test makes its own database on it."""
    pytest.importorskip("psycopg2", reason="pip install 'matdesign[postgres]'")
    pytest.importorskip("ase_db_backends", reason="pip install 'matdesign[postgres]'")
    from tests.pg_server import NoServer, start_server

    try:
        server = start_server()
    except NoServer as exc:
        pytest.skip(f"no PostgreSQL server could be started: {exc}")
    yield server
    server.stop()


def query(url: str, sql: str) -> list[tuple]:
    import psycopg2

    con = psycopg2.connect(url)
    try:
        with con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        con.close()


def rows_once(url: str, n: int) -> dict[str, object]:
    """Assert ``n`` rows, one per candidate, all done; return them by content hash."""
    from matdesign.search.database import ResultsDB

    rows = ResultsDB(url).rows()
    hashes = [r.content_hash for r in rows]
    assert len(rows) == n and len(set(hashes)) == n, f"{len(rows)} rows, {len(set(hashes))} " \
        f"distinct candidates, expected {n}"
    assert all(r.status == "done" for r in rows)
    assert not query(url, "SELECT * FROM matdesign_claims"), "claims left behind"
    return dict(zip(hashes, rows))


def test_float_like_hashes_are_storable() -> None:
    """A content hash such as '006086e456557282' reads as a float; ase.db refused the row
    ("is put in as string but can be interpreted as float")."""
    from matdesign.search.hashing import _storable

    assert _storable("006086e456557282") == "x06086e456557282"
    assert _storable("1234567890123456") == "x234567890123456"
    assert _storable("00a086e456557282") == "00a086e456557282"
    assert len(content_hash(bulk("Cu"))) == 16


def test_claims_exclusive_and_stale_taken_over(pg) -> None:
    from matdesign.search.claims import PostgresClaims

    url = pg.create_database("claims")
    a = PostgresClaims(url, timeout_s=0.5, owner="hostA:1:a")
    b = PostgresClaims(url, timeout_s=0.5, owner="hostB:2:b")
    key = ("chash", "shash")
    assert a.claim(key) and a.claim(key) and not b.claim(key)
    assert set(b.holders("shash")) == {"chash"} and b.counts() == (1, 0)
    time.sleep(0.7)
    assert b.counts() == (0, 1) and b.claim(key)  # stale: taken over
    a.release(key)
    assert query(url, "SELECT owner FROM matdesign_claims") == [("hostB:2:b",)]
    # eight owners race for the same 30 keys: each key goes to exactly one of them
    owners = [PostgresClaims(url, timeout_s=60, owner=f"h{k}:{k}:x") for k in range(8)]
    won: list[list[str]] = [[] for _ in owners]

    def grab(k: int) -> None:
        won[k] = [f"c{i}" for i in range(30) if owners[k].claim((f"c{i}", "race"))]

    threads = [threading.Thread(target=grab, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c for w in won for c in w) == sorted(f"c{i}" for i in range(30))


def test_concurrent_writers_index_their_own_rows(pg) -> None:
    """ase-db-backends read a new row's id as the sequence's global last value: with two
    writers, key-value index rows could be filed under the other writer's row."""
    from matdesign.search.database import ResultsDB
    from matdesign.search.record import CandidateResult

    url = pg.create_database("writers")
    ResultsDB(url)
    written: dict[int, str] = {}

    def writer(tag: str) -> None:
        db = ResultsDB(url)
        for i in range(15):
            atoms = bulk("Cu", a=3.6 + 0.01 * i)
            res = CandidateResult("done", None, tag, "Cu", f"{tag}{i:03d}", "s", atoms,
                                  {"status": "done", "writer": tag}, {}, 0.0)
            written[db.write(res)] = f"{tag}{i:03d}"

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db = ResultsDB(url)
    assert len(written) == 45 and db.count() == 45
    assert {r.id: r.content_hash for r in db.rows()} == written
    index = query(url, "SELECT id, value FROM text_key_values WHERE key = 'content_hash'")
    assert dict(index) == written  # the key-value index agrees with each row


def run_until(proc: subprocess.Popen, ready, limit_s: float = 120) -> None:
    """Poll ``ready()`` until true while ``proc`` runs; then SIGKILL ``proc``."""
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        assert proc.poll() is None, "the process finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)


def row_count(url: str) -> int:
    try:
        return int(query(url, "SELECT COUNT(*) FROM systems")[0][0])
    except Exception:
        return 0


def test_shared_screens_one_killed_then_resumed(pg, tmp_path: Path, capsys) -> None:
    """Two screens share one database; one is SIGKILLed while it holds claims and a third is
    started at once (a resume): it takes the dead process's claims without waiting for the
    heartbeat timeout (same machine, pid gone). Every candidate gets exactly one row."""
    from matdesign.cli import main

    n = 12
    inputs = write_cells(tmp_path / "in", n)
    url = pg.create_database("shared")
    env = {**ENV, "MATDESIGN_CLAIM_TIMEOUT_S": "3"}

    def start(k: int) -> subprocess.Popen:
        return subprocess.Popen(screen_cmd(inputs, url, "--json", str(tmp_path / f"s{k}.json")),
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)

    victim, other = start(0), start(1)
    held: list[tuple] = []

    def victim_holds() -> bool:
        if row_count(url) < 2:
            return False
        held[:] = query(url, "SELECT content_hash FROM matdesign_claims WHERE owner LIKE "
                             f"'%:{victim.pid}:%'")
        return bool(held)

    run_until(victim, victim_holds)
    resumed = start(2)
    errs = [p.communicate(timeout=300)[1] for p in (other, resumed)]
    assert [other.returncode, resumed.returncode] == [0, 0], errs
    assert held, "the victim held no claim when it was killed"
    rows = rows_once(url, n)
    for k in (1, 2):
        s = json.loads((tmp_path / f"s{k}.json").read_text())
        assert s["n_done"] + s["n_by_others"] + s["n_skipped"] == n
    # status: nothing pending, every row done; --export streams every row
    assert main(screen_cmd(inputs, url, "--status", "--json", str(tmp_path / "st.json"),
                           "--export", str(tmp_path / "rows.json"))[len(CLI):]) == 0
    assert "pending 0 of 12" in capsys.readouterr().out
    report = json.loads((tmp_path / "st.json").read_text())
    assert (report["n_done"], report["n_failed"], report["n_pending"]) == (n, 0, 0)
    assert report["n_claimed"] == 0 and report["rows_per_hour"] > 0
    exported = json.loads((tmp_path / "rows.json").read_text())
    assert sorted(r["content_hash"] for r in exported) == sorted(rows)


def test_status_counts_pending_and_paged_export(pg, tmp_path: Path) -> None:
    from matdesign.search.database import ResultsDB
    from matdesign.search.pipeline import ScreenSettings
    from matdesign.search.screen import run_screen
    from matdesign.search.status import format_status, screen_status

    inputs = write_cells(tmp_path / "in", 5, rattle=0.0)
    url = pg.create_database("status")
    settings = ScreenSettings(potential="emt", fmax=0.5, max_steps=50)
    run_screen([str(inputs / "c000.xyz"), str(inputs / "c001.xyz"), str(inputs / "c002.xyz")],
               url, settings, progress=False)
    st = screen_status(url, [str(inputs)], settings)
    assert (st.n_done, st.n_failed, st.n_pending, st.n_inputs) == (3, 0, 2, 5)
    assert st.eta_s is not None and st.eta_s > 0 and "pending 2 of 5" in format_status(st, url)
    assert screen_status(url).n_pending is None
    db = ResultsDB(url)
    records = list(db.iter_records(batch=2))  # three pages
    assert [r["id"] for r in records] == sorted(r.id for r in db.rows())
    out = tmp_path / "rows.csv"
    assert db.export(out, batch=2) == 3 and len(out.read_text().splitlines()) == 4
