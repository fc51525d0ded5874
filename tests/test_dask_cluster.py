"""A real Dask cluster: ``dask scheduler`` and ``dask worker`` as separate OS processes on
localhost. ``matdesign screen --scheduler`` and ``matdesign design --scheduler`` run on it while
one worker is SIGKILLed mid-task; every candidate must finish exactly once, with the same
results as a process-pool run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from pathlib import Path

import pytest
from ase.db import connect

from matdesign.search.executor import SerialExecutor
from tests.test_postgres import write_cells

pytest.importorskip("distributed", reason="pip install 'matdesign[dask]'")

CLI = [sys.executable, "-c", "import sys; from matdesign.cli import main; sys.exit(main())"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
DASK = Path(sys.executable).parent / "dask"
CAMPAIGN = """
name: dask_kill
potential: emt
budget: 4
space:
  elements: [Cu, Ni, Au]
  ordered: [{prototype: B2}, {prototype: L1_2}]
objectives: [{property: formation_energy_ev_per_atom, goal: min}]
screen: {properties: [], fmax: 0.02, max_steps: 300}
optimizer: {batch_size: 2, n_initial: 2, seed: 3}
"""


class Cluster:
    """A scheduler and named single-threaded workers (no nanny: killing the process kills the
    worker, nothing restarts it)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.workers, self.started = folder, {}, 0
        self.file = folder / "scheduler.json"
        self.scheduler = self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1",
                                                   "--port", "0", "--no-dashboard",
                                                   "--scheduler-file", str(self.file)])
        deadline = time.monotonic() + 60
        self.address = ""
        while not self.address and time.monotonic() < deadline:
            # the scheduler creates the file before it writes it: on a busy machine it can
            # be read empty (a flake seen with two other processes on two cores)
            try:
                self.address = json.loads(self.file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        if not self.address:
            self.close()
            pytest.fail(f"dask scheduler did not start: {self.log('scheduler')}")

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")
        return subprocess.Popen([str(DASK), *args], env=ENV, stdout=log, stderr=log)

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text()[-2000:]

    def add_worker(self, name: str) -> None:
        self.workers[name] = self._spawn(name, [
            "worker", "--scheduler-file", str(self.file), "--nthreads", "1", "--no-nanny",
            "--no-dashboard", "--host", "127.0.0.1", "--name", name, "--death-timeout", "60"])

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=30)

    def kill_busy_worker(self, ready, limit_s: float = 120) -> str:
        """Once ``ready()``, SIGKILL a worker that has a task; return its name."""
        with self.client() as client:
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline:
                if ready():
                    info = client.scheduler_info()["workers"]
                    busy = [info[a]["name"] for a, keys in client.processing().items()
                            if keys and a in info]
                    if busy:
                        os.kill(self.workers[busy[0]].pid, signal.SIGKILL)
                        self.workers.pop(busy[0]).wait(timeout=30)
                        return busy[0]
                time.sleep(0.02)
        pytest.fail("no worker was busy to be killed")

    def ensure_workers(self, n: int) -> None:
        """Start workers until ``n`` run, and wait until the scheduler knows them."""
        while len(self.workers) < n:
            self.started += 1
            self.add_worker(f"w{self.started}")
        with self.client() as client:
            client.wait_for_workers(n, timeout=60)

    def close(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            proc.terminate()
        for proc in [*self.workers.values(), self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    if not DASK.exists():
        pytest.skip(f"no dask command at {DASK}: pip install 'matdesign[dask]'")
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        yield c
    finally:
        c.close()


def rows(db: Path) -> list:
    return list(connect(str(db)).select(sort="id")) if db.exists() else []


def rows_so_far(db: Path) -> list:
    """:func:`rows` while another process may still be creating the file's tables (ase.db then
    tries to create them too and SQLite refuses): nothing yet."""
    import sqlite3

    try:
        return rows(db)
    except sqlite3.OperationalError:
        return []


def run_cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, cluster: Cluster) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{err}\n{cluster.log('scheduler')}"


def test_screen_on_cluster_survives_a_killed_worker(cluster: Cluster, tmp_path: Path) -> None:
    from matdesign.search.pipeline import ScreenSettings
    from matdesign.search.screen import run_screen

    n = 10
    inputs = write_cells(tmp_path / "in", n)
    cluster.ensure_workers(2)
    db = tmp_path / "dask.db"
    proc = run_cli(["screen", str(inputs), "--db", str(db), "--potential", "emt", "--fmax",
                    "0.05", "--no-progress", "--scheduler", cluster.address, "--workers", "2",
                    "--json", str(tmp_path / "s.json")])
    cluster.kill_busy_worker(lambda: len(rows_so_far(db)) >= 2)
    finish(proc, cluster)
    got = {r.content_hash: r for r in rows(db)}
    assert len(rows(db)) == n == len(got), "a candidate is missing or repeated"
    assert json.loads((tmp_path / "s.json").read_text())["n_done"] == n
    pool_db = tmp_path / "pool.db"
    run_screen([str(inputs)], str(pool_db), ScreenSettings(potential="emt", fmax=0.05),
               workers=2, progress=False)
    ref = {r.content_hash: r for r in rows(pool_db)}
    assert set(got) == set(ref)
    for key, row in got.items():
        assert row.status == ref[key].status == "done"
        assert row.energy == ref[key].energy  # the same computation, bit for bit
        assert (row.positions == ref[key].positions).all()


def test_design_on_cluster_survives_a_killed_worker(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CAMPAIGN)
    cluster.ensure_workers(2)  # a previous test may have killed one
    db = tmp_path / "dask.db"
    proc = run_cli(["design", str(tmp_path / "c.yaml"), "--db", str(db), "--scheduler",
                    cluster.address, "--workers", "2"])
    cluster.kill_busy_worker(lambda: len(rows_so_far(db)) >= 1)
    finish(proc, cluster)
    pool_db = tmp_path / "pool.db"
    ref = run_cli(["design", str(tmp_path / "c.yaml"), "--db", str(pool_db), "--workers", "2"])
    finish(ref, cluster)
    got = {r.candidate_key: r for r in rows(db)}
    want = {r.candidate_key: r for r in rows(pool_db)}
    assert len(rows(db)) == 4 == len(got), "a candidate is missing or repeated"
    assert set(got) == set(want)
    for key, row in got.items():
        assert row.status == want[key].status == "done", row.get("reason")
        assert row.formation_energy_ev_per_atom == want[key].formation_energy_ev_per_atom


class KillsFirstTry(Executor):
    """Runs tasks in this process, except that each task's first submission ends in Dask's
    ``KilledWorker`` (what Dask reports once a task's workers died too often)."""

    def __init__(self) -> None:
        self.tries: Counter = Counter()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        from distributed.scheduler import KilledWorker

        key = repr(args[1:3]) if fn.__name__ == "evaluate_candidate" else repr(args[2])
        self.tries[key] += 1
        if self.tries[key] == 1:
            fut: Future = Future()
            fut.set_exception(KilledWorker(key, "tcp://127.0.0.1:1", 3))
            return fut
        return SerialExecutor().submit(fn, *args, **kwargs)


def test_killed_worker_is_rerun_not_failed(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``KilledWorker`` is a crash, not the candidate's failure: the screen and the campaign
    run the task again, once, and write one done row for it."""
    import matdesign.search.executor as executor
    import matdesign.search.screen as screen
    from matdesign.search.campaign import Campaign
    from matdesign.search.config import parse_campaign
    from matdesign.search.pipeline import ScreenSettings

    ex = KillsFirstTry()

    @contextmanager
    def fake(workers: int = 1, scheduler: str | None = None):
        yield ex

    monkeypatch.setattr(screen, "get_executor", fake)
    monkeypatch.setattr(executor, "get_executor", fake)
    inputs = write_cells(tmp_path / "in", 3, rattle=0.0)
    summary = screen.run_screen([str(inputs)], str(tmp_path / "s.db"),
                                ScreenSettings(potential="emt", fmax=0.5), workers=2,
                                scheduler="tcp://dask:8786", progress=False)
    assert summary.n_done == 3 and sorted(ex.tries.values()) == [2, 2, 2]
    cfg = parse_campaign({"name": "kw", "budget": 3, "objectives": [{"property": "score"}],
                          "space": {"elements": ["Cu", "Au"], "ordered": [{"prototype": "B2"},
                                                                          {"prototype": "L1_2"}]},
                          "optimizer": {"batch_size": 3, "n_initial": 3, "seed": 0}},
                         custom_evaluator=True)
    camp = Campaign(cfg, str(tmp_path / "c.db"), score_evaluator)
    ex.tries.clear()
    camp.run(strategy="random", workers=2, scheduler="tcp://dask:8786")
    records = camp.store.records()
    assert [r.status for r in records] == ["done"] * 3 and sorted(ex.tries.values()) == [2] * 3


def score_evaluator(atoms, source: str):
    from matdesign.search.evaluation import Evaluation

    return Evaluation("done", {"score": float(atoms.get_masses().mean())}, atoms)
