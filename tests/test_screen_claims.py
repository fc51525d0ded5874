"""Several `matdesign screen` processes on one database: every candidate is computed and
written exactly once, and the work of a process that died is taken over."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ase.db.core import T2000, YEAR
from ase.io import read

from matdesign.search.database import ResultsDB
from matdesign.search.hashing import content_hash
from matdesign.search.pipeline import ScreenSettings
from matdesign.search.screen import run_screen
from tests.test_screen_parallel import write_alloys

CLI = [sys.executable, "-c", "import sys; from matdesign.cli import main; sys.exit(main())"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SETTINGS = ScreenSettings(potential="emt", fmax=1e-2, max_steps=300)
# the claim table as documented in matdesign.search.claims, created here so that a fake claim
# can be planted before the screen opens the database
CLAIMS_SQL = ("CREATE TABLE IF NOT EXISTS matdesign_claims (content_hash TEXT NOT NULL, "
              "settings_hash TEXT NOT NULL, owner TEXT NOT NULL, heartbeat REAL NOT NULL, "
              "PRIMARY KEY (content_hash, settings_hash))")


def screen_cmd(inputs: Path, db: Path, *extra: str) -> list[str]:
    return [*CLI, "screen", str(inputs), "--db", str(db), "--potential", "emt", "--fmax", "1e-2",
            "--max-steps", "300", "--no-progress", *extra]


def claims_left(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT content_hash, owner FROM matdesign_claims").fetchall()


def one_done_row_each(db: Path, n: int) -> dict[str, object]:
    rows = ResultsDB(str(db)).rows()
    hashes = [r.content_hash for r in rows]
    assert len(hashes) == len(set(hashes)) == n, f"{len(rows)} rows for {n} candidates"
    assert all(r.status == "done" for r in rows)
    return {r.content_hash: r for r in rows}


def test_claims_are_exclusive_and_stale_ones_are_taken_over(tmp_path: Path) -> None:
    from matdesign.search.claims import SqliteClaims

    db = tmp_path / "c.db"
    a = SqliteClaims(str(db), timeout_s=0.5, owner="hostA:1:a")
    b = SqliteClaims(str(db), timeout_s=0.5, owner="hostB:2:b")
    key = ("chash", "shash")
    assert a.claim(key) and a.claim(key)  # taking one's own claim again is fine
    assert not b.claim(key) and set(b.holders("shash")) == {"chash"}
    time.sleep(0.3)
    assert a.refresh() == 1
    time.sleep(0.3)
    assert not b.claim(key)  # the heartbeat kept it alive
    time.sleep(0.6)
    assert b.holders("shash") == {} and b.claim(key)  # stale: taken over
    a.release(key)  # a no longer owns it: nothing happens
    assert claims_left(db) == [("chash", "hostB:2:b")]
    b.release_all()
    assert claims_left(db) == []


def test_abandoned_claims_on_finished_inputs_are_dropped(tmp_path: Path) -> None:
    """A process killed between writing a row and releasing its claim leaves a claim that no
    run takes over (finished inputs are skipped); the next run deletes it. Live claims, and
    claims on unfinished inputs, stay."""
    import subprocess
    import sys

    from matdesign.search.claims import SqliteClaims, _host

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is gone
    db = tmp_path / "c.db"
    victim = SqliteClaims(str(db), timeout_s=60, owner=f"{_host()}:{dead.pid}:x")
    live = SqliteClaims(str(db), timeout_s=60, owner="hostB:2:b")
    assert victim.claim(("done1", "s")) and victim.claim(("todo1", "s"))
    assert live.claim(("done2", "s"))
    assert live.drop_abandoned("s", {"done1", "done2"}) == 1
    assert sorted(claims_left(db)) == [("done2", "hostB:2:b"), ("todo1", victim.owner)]


def test_three_processes_compute_each_candidate_once(tmp_path: Path) -> None:
    """Before claims: two processes wrote 20 rows for 10 candidates, both exiting 0."""
    inputs = write_alloys(tmp_path / "in", 8)
    db = tmp_path / "shared.db"
    procs = [subprocess.Popen(screen_cmd(inputs, db, "--json", str(tmp_path / f"s{k}.json")),
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
    one_done_row_each(db, 8)
    summaries = [json.loads((tmp_path / f"s{k}.json").read_text()) for k in range(3)]
    print("n_done per process:", [s["n_done"] for s in summaries],
          "n_by_others:", [s["n_by_others"] for s in summaries])
    assert sum(s["n_done"] for s in summaries) == 8
    for s in summaries:
        assert s["n_done"] + s["n_by_others"] + s["n_skipped"] == 8
    assert claims_left(db) == []


@pytest.mark.parametrize("age_s", [1e6, 0.0], ids=["long-dead", "just-died"])
def test_claim_of_a_dead_owner_is_taken_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             age_s: float) -> None:
    """A claim is honoured while its heartbeat is fresh, then taken over (before claims, the
    claim was ignored and stayed in the table)."""
    inputs = write_alloys(tmp_path / "in", 3)
    db = tmp_path / "r.db"
    ResultsDB(str(db))
    claimed = content_hash(read(inputs / "c02.xyz"))  # the last: nothing else in flight
    heartbeat = time.time() - age_s
    with sqlite3.connect(db) as con:
        con.execute(CLAIMS_SQL)
        con.execute("INSERT INTO matdesign_claims VALUES (?, ?, ?, ?)",
                    (claimed, SETTINGS.settings_hash(), "elsewhere:999999:dead", heartbeat))
    timeout_s = 3.0
    monkeypatch.setenv("MATDESIGN_CLAIM_TIMEOUT_S", str(timeout_s))
    summary = run_screen([str(inputs)], str(db), SETTINGS, progress=False, timeout_s=60)
    assert summary.n_done == 3
    rows = one_done_row_each(db, 3)
    written_s = rows[claimed].ctime * YEAR + T2000  # ase.db stores years since 2000
    assert written_s > heartbeat + timeout_s  # not before the claim went stale
    assert claims_left(db) == []


def victim_claims(db: Path, pid: int) -> list[tuple] | None:
    """Claims held by process ``pid``; None when the database has no claim table."""
    try:
        return [c for c in claims_left(db) if f":{pid}:" in c[1]]
    except sqlite3.OperationalError:
        return None


def test_sigkilled_process_leaves_no_hole(tmp_path: Path) -> None:
    """Two processes share a database; one is SIGKILLed while it holds a claim: the other one
    takes the claim over after the heartbeat timeout and finishes every candidate once."""
    inputs = write_alloys(tmp_path / "in", 6)
    db = tmp_path / "r.db"
    env = {**ENV, "MATDESIGN_CLAIM_TIMEOUT_S": "3"}
    victim = subprocess.Popen(screen_cmd(inputs, db), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    other = subprocess.Popen(screen_cmd(inputs, db, "--json", str(tmp_path / "s.json")),
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        held: list | None = []
        while time.monotonic() < deadline and victim.poll() is None and held == []:
            time.sleep(0.02)
            if db.exists() and ResultsDB(str(db)).count() >= 1:
                held = victim_claims(db, victim.pid)
        assert victim.poll() is None, "the victim finished before it could be killed"
        os.kill(victim.pid, signal.SIGKILL)
    finally:
        victim.wait(timeout=30)
    out, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    one_done_row_each(db, 6)
    assert held, "the victim held no claim when it was killed"
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["n_done"] + summary["n_by_others"] == 6
    assert claims_left(db) == []


def test_claim_timeout_option_is_checked(tmp_path: Path) -> None:
    inputs = write_alloys(tmp_path / "in", 1)
    out = subprocess.run(screen_cmd(inputs, tmp_path / "r.db", "--claim-timeout", "0"),
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "claim timeout must be positive" in out.stderr, out.stderr


def test_lock_file_of_a_killed_writer_does_not_block(tmp_path: Path) -> None:
    """ase.db's O_EXCL lock file outlives a writer SIGKILLed inside a write; on SQLite it is
    not used, so a later run with such a file beside the database still finishes (it used to
    wait forever)."""
    inputs = write_alloys(tmp_path / "in", 1)
    db = tmp_path / "r.db"
    first = subprocess.run(screen_cmd(inputs, db), env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    (tmp_path / "r.db.lock").write_text("")  # what a writer killed mid-write leaves behind
    more = write_alloys(tmp_path / "more", 2)
    second = subprocess.run(screen_cmd(more, db), env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr
    assert ResultsDB(str(db)).count() >= 2
