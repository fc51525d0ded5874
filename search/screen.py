"""The screening loop: expand inputs, skip finished work, evaluate in parallel, write rows.

Only this (coordinating) process writes to the database, one row as each candidate finishes, so
a run killed at any moment loses only the candidates in flight.

Sharing one database: any number of ``screen`` processes (on any machines that reach the
database) may run the same inputs at once. Each claims a candidate in the database just before
running it (:mod:`matdesign.search.claims`) and skips one that another live process holds or
that already has a row; at the end it waits for the candidates held elsewhere, counting those
finished there and taking over those whose owner stopped sending heartbeats (killed), so every
candidate gets exactly one row.

Timeouts: a per-candidate wall limit is enforced inside the worker (SIGALRM; the candidate
becomes ``failed`` with reason ``timeout`` and the worker goes on). Where that cannot work (Dask
worker threads) or a worker hangs inside C code, the coordinator gives up on the candidate after
``hard_timeout(timeout_s)`` and writes a failed row. A process pool is then torn down (its stuck
process terminated) and a fresh pool resumes the remaining candidates; other candidates in flight
at that moment are resubmitted. A stuck Dask task cannot be killed: it keeps its worker thread
busy until it returns, and its late result is discarded.

Dask workers that die: the scheduler reruns their tasks on other workers by itself (the future
just finishes later, once); a task whose workers died too often comes back as ``KilledWorker``
and is resubmitted like a candidate of a broken process pool (a second crash: a failed row).
Only this process writes rows, so neither path can write a candidate twice.
"""

from __future__ import annotations

import glob
import hashlib
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ase import Atoms

from matdesign.errors import CandidateTimeout, StructureFileError
from matdesign.search.claims import Claims, MemoryClaims, open_claims
from matdesign.search.database import ResultsDB
from matdesign.search.executor import executor_slots, get_executor, is_worker_crash
from matdesign.search.hashing import content_hash
from matdesign.search.pipeline import (
    CandidateResult,
    ScreenSettings,
    evaluate_candidate,
    failed_result,
    identify,
)
from matdesign.search.summary import ScreenSummary, best_rows, collect_references

#: failure classes of what the coordinator itself records (workers' failures carry the label
#: of their exception type, ``matdesign.errors``)
WORKER_CRASHED, WORKER_ERROR = "worker crashed", "worker error"


@dataclass(frozen=True)
class Candidate:
    """One input structure (or an input that could not be read: ``error`` set)."""

    source: str
    atoms: Atoms | None
    content_hash: str
    error: str | None = None


def _file_hash(path: Path) -> str:
    try:
        return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "file:" + hashlib.sha256(str(path).encode()).hexdigest()[:16]


def _read_file(path: Path) -> list[Candidate]:
    from matdesign.structure_io import StructureFileError, read_structures

    if path.suffix.lower() == ".db":
        import ase.db

        try:
            rows = list(ase.db.connect(str(path)).select())
        except Exception as exc:  # noqa: BLE001 - any unreadable file becomes a failed row
            return [Candidate(str(path), None, _file_hash(path), f"cannot read {path}: {exc}")]
        return [_candidate(f"{path}@id={row.id}", row.toatoms()) for row in rows]
    try:
        frames = read_structures(path)  # the CLI's reader: POSCAR counts checked, errors named
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes a failed row
        reason = (str(exc) if isinstance(exc, StructureFileError)
                  else f"cannot read {path}: {type(exc).__name__}: {exc}")
        return [Candidate(str(path), None, _file_hash(path), reason)]
    if len(frames) == 1:
        return [_candidate(str(path), frames[0])]
    return [_candidate(f"{path}@{k}", a) for k, a in enumerate(frames)]


def _candidate(source: str, atoms: Atoms) -> Candidate:
    atoms.calc = None
    return Candidate(source, atoms, content_hash(atoms))


def _is_excluded(path: Path, exclude: list[Path]) -> bool:
    """True for an excluded file or its SQLite companions (``-journal``, ``-wal``, ``-shm``)."""
    resolved = path.resolve()
    return any(resolved == ex or (resolved.parent == ex.parent
                                  and resolved.name.startswith(ex.name + "-"))
               for ex in exclude)


def expand_inputs(inputs: list[str], exclude: tuple[str, ...] = ()) -> list[Candidate]:
    """Files, directories (their files, sorted, not recursive), globs and ase.db files.

    Args:
        inputs: what to read.
        exclude: files never read as inputs (the run's own results database), also when a
            directory or glob names them.
    """
    skip = [Path(e).resolve() for e in exclude]
    out: list[Candidate] = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.exists():
            files = [path]
        else:
            files = [Path(p) for p in sorted(glob.glob(spec)) if Path(p).is_file()]
            if not files:
                out.append(Candidate(spec, None, _file_hash(path),
                                     f"cannot read {spec}: no such file, directory or glob match"))
        for f in files:
            if not _is_excluded(f, skip):
                out.extend(_read_file(f))
    return out


def hard_timeout(timeout_s: float) -> float:
    """Coordinator-side limit, s: the worker's own limit plus room for process start-up."""
    return 1.5 * timeout_s + 30.0


class _Loop:
    """Bookkeeping of one run: claim, submit within a window, collect, write, count.

    Args:
        db: the results database.
        settings: screening settings; ``shash`` their hash.
        timeout_s: per-candidate wall limit, s (None: none).
        bar: progress bar (``update(n)``).
        claims: this run's claims in ``db`` (default: private to this process).
        retry_failed: failed rows present now do not count as finished.
    """

    def __init__(self, db: ResultsDB, settings: ScreenSettings, shash: str,
                 timeout_s: float | None, bar: Any, *, claims: Claims | None = None,
                 retry_failed: bool = False) -> None:
        self.db, self.settings, self.shash, self.timeout_s, self.bar = (
            db, settings, shash, timeout_s, bar)
        self.claims = claims if claims is not None else MemoryClaims()
        self.retry_ids = ({int(r.id) for r in db.rows(status="failed", settings_hash=shash)}
                          if retry_failed else set())
        self.statuses: Counter = Counter()
        self.reasons: Counter = Counter()
        self.crashes: Counter = Counter()  # source -> worker crashes while it was in flight
        self.others: list[Candidate] = []  # claimed by another live process
        self.n_by_others = 0  # candidates of this run that other processes finished

    def finished_elsewhere(self, chash: str) -> bool:
        """True when ``chash`` has a row this run must not redo (done, or failed unless it is
        a failed row being retried)."""
        return any(status == "done" or (status == "failed" and rid not in self.retry_ids)
                   for rid, status in self.db.finished(chash, self.shash))

    def take(self, cand: Candidate) -> bool:
        """Claim ``cand`` just before running it.

        Returns:
            True when this run is to compute it. False when another live process holds it
            (kept in ``others`` to wait for) or another process finished it meanwhile.
        """
        key = (cand.content_hash, self.shash)
        if not self.claims.claim(key):
            self.others.append(cand)
            return False
        if self.finished_elsewhere(cand.content_hash):
            self.claims.release(key)
            self._by_others()
            return False
        return True

    def orphans(self) -> list[Candidate]:
        """Wait (polling) while other processes hold candidates of this run.

        Returns:
            The candidates this run has now claimed because their owner released them
            unfinished or died (stale heartbeat); [] once no candidate is held elsewhere.
            Those finished elsewhere are counted in ``n_by_others``.
        """
        poll_s = min(2.0, self.claims.timeout_s / 4)
        while self.others:
            time.sleep(poll_s)
            live = self.claims.holders(self.shash)
            free = [c for c in self.others if c.content_hash not in live]
            self.others = [c for c in self.others if c.content_hash in live]
            mine = [c for c in free if self.take(c)]
            if mine:
                return mine
        return []

    def _by_others(self) -> None:
        self.n_by_others += 1
        self.bar.update(1)

    def record(self, result: CandidateResult) -> None:
        key = (result.content_hash, self.shash)
        if self.finished_elsewhere(result.content_hash):  # our claim had gone stale
            self.claims.release(key)
            self._by_others()
            return
        self.db.write(result)
        self.claims.release(key)
        self.statuses[result.status] += 1
        if result.status == "failed":
            self.reasons[result.key_value_pairs.get("failure_class", WORKER_ERROR)] += 1
        self.bar.update(1)

    def fail(self, cand: Candidate, reason: str, failure_class: str) -> None:
        atoms = cand.atoms if cand.atoms is not None else Atoms()
        state: dict[str, Any] = {"kvp": {}, "data": {}}
        identify(self.settings, state)
        result = failed_result(atoms, self.shash, cand.source, reason, chash=cand.content_hash,
                               data=state["data"])
        result.key_value_pairs.update(state["kvp"], failure_class=failure_class)
        self.record(result)

    def _submit_window(self, ex: Any, queue: list[Candidate],
                       pending: dict[Future, tuple[Candidate, float]], window: int) -> bool:
        """Fill the window from ``queue``; a candidate that has crashed a worker runs alone,
        so a second crash is its own.

        Returns:
            False when the pool broke before a submission (a worker in flight died): that
            candidate goes back to ``queue`` with no crash counted against it.
        """
        while queue and len(pending) < window:
            if any(self.crashes[c.source] for c, _ in pending.values()):
                return True
            if self.crashes[queue[-1].source] and pending:
                return True
            cand = queue.pop()
            if not self.take(cand):
                continue
            try:
                fut = ex.submit(evaluate_candidate, cand.atoms, self.settings, cand.source,
                                timeout_s=self.timeout_s)
            except BrokenProcessPool:
                queue.append(cand)
                return False
            pending[fut] = (cand, time.monotonic())
        return True

    def _crashed(self, cand: Candidate, exc: BaseException) -> bool:
        """Count a worker crash against ``cand``; True when it is to run again (first crash),
        False when it was recorded as failed (second crash)."""
        self.crashes[cand.source] += 1
        if self.crashes[cand.source] < 2:
            return True
        self.fail(cand, f"worker crashed twice: {type(exc).__name__}: {exc}", WORKER_CRASHED)
        return False

    def drain(self, ex: Any, todo: list[Candidate], window: int) -> list[Candidate]:
        """Run ``todo``; return candidates still to run if the pool had to be restarted.

        A broken pool (a worker died, e.g. killed for memory) records nothing for the
        candidates in flight: they are returned to run again in a fresh pool, and one that
        crashes a worker a second time (running alone) is recorded as failed.
        """
        queue = list(reversed(todo))
        pending: dict[Future, tuple[Candidate, float]] = {}
        while queue or pending:
            if not self._submit_window(ex, queue, pending, window) and not pending:
                return list(reversed(queue))
            if not pending:  # the rest is claimed by other processes
                continue
            limit = None if self.timeout_s is None else hard_timeout(self.timeout_s)
            wait_s = None if limit is None else max(
                0.0, min(t0 + limit for _, t0 in pending.values()) - time.monotonic())
            finished, _ = wait(list(pending), timeout=wait_s, return_when=FIRST_COMPLETED)
            crash: BaseException | None = None
            for fut in finished:
                cand, _ = pending.pop(fut)
                exc = fut.exception()
                if exc is None:
                    self.record(fut.result())
                elif is_worker_crash(exc):  # a dead pool process, or Dask's KilledWorker
                    if isinstance(exc, BrokenProcessPool):
                        crash = exc
                    if self._crashed(cand, exc):
                        queue.append(cand)
                else:
                    self.fail(cand, f"worker error: {type(exc).__name__}: {exc}", WORKER_ERROR)
            if crash is not None:  # every other candidate in flight died with the pool
                for fut, (cand, _) in list(pending.items()):
                    del pending[fut]
                    if self._crashed(cand, crash):
                        queue.append(cand)
            expired = [f for f, (_, t0) in pending.items()
                       if limit is not None and time.monotonic() - t0 > limit]
            for fut in expired:
                cand, _ = pending.pop(fut)
                fut.cancel()
                self.fail(cand, f"timeout: no result after {limit:g} s (worker abandoned)",
                          CandidateTimeout.label)
            if (expired or crash is not None) and isinstance(ex, ProcessPoolExecutor):
                return [c for c, _ in pending.values()] + list(reversed(queue))
        return []


def run_all(loop: _Loop, todo: list[Candidate], workers: int, scheduler: str | None) -> None:
    """Run ``todo`` through ``loop``, starting a fresh executor whenever a pool broke or a
    stuck worker had to be torn down."""
    while todo:
        with get_executor(workers, scheduler) as ex:
            window = 1 if workers == 1 and not scheduler else executor_slots(ex, workers)
            todo = loop.drain(ex, todo, window)


def run_candidates(loop: _Loop, todo: list[Candidate], workers: int,
                   scheduler: str | None) -> None:
    """Run ``todo`` (unreadable inputs are recorded as failed), then wait for the candidates
    that other processes hold, running those whose owner died."""
    while todo:
        for cand in [c for c in todo if c.error is not None]:
            if loop.take(cand):
                loop.fail(cand, cand.error, StructureFileError.label)
        run_all(loop, [c for c in todo if c.error is None], workers, scheduler)
        todo = loop.orphans()


def _unfinished(candidates: list[Candidate], finished: set[tuple[str, str]],
                shash: str) -> list[Candidate]:
    """The first candidate of each key not in ``finished``."""
    todo, seen = [], set(finished)
    for cand in candidates:
        key = (cand.content_hash, shash)
        if key not in seen:
            seen.add(key)
            todo.append(cand)
    return todo


def run_screen(inputs: list[str], db_url: str, settings: ScreenSettings, *, workers: int = 1,
               scheduler: str | None = None, timeout_s: float | None = None,
               progress: bool = True, retry_failed: bool = False,
               claim_timeout_s: float | None = None) -> ScreenSummary:
    """Screen every input structure into ``db_url``; see the module docstring.

    Args:
        inputs: structure files, directories, globs, ase.db files.
        db_url: results database (path or ase.db URL).
        settings: screening settings.
        workers: parallel worker processes.
        scheduler: Dask scheduler address or ``"local"``.
        timeout_s: per-candidate wall limit, s (None: no limit).
        progress: show a tqdm progress bar on stderr.
        retry_failed: recompute candidates whose earlier row is ``failed``.
        claim_timeout_s: another process's claim whose heartbeat is older than this, s, is
            taken over (None: ``$MATDESIGN_CLAIM_TIMEOUT_S`` or 120 s).
    """
    from tqdm import tqdm

    start = time.perf_counter()
    settings = replace(settings, references=tuple(str(Path(r).resolve())
                                                  for r in settings.references))
    shash = settings.settings_hash()
    db = ResultsDB(db_url)
    claims = open_claims(db.sqlite_path, claim_timeout_s, url=db.url)
    finished = db.done_keys(include_failed=not retry_failed)
    own = () if "://" in db_url else (db_url, db_url + ".db")
    candidates = expand_inputs(inputs, exclude=own)
    todo = _unfinished(candidates, finished, shash)
    with (tqdm(total=len(todo), disable=not progress, file=sys.stderr, desc="screen") as bar,
          claims.keep_alive()):
        loop = _Loop(db, settings, shash, timeout_s, bar, claims=claims,
                     retry_failed=retry_failed)
        run_candidates(loop, todo, workers, scheduler)
    db.update_hull(collect_references(db, shash), settings_hash=shash)
    return ScreenSummary(
        n_candidates=len(candidates), n_skipped=len(candidates) - len(todo),
        n_done=loop.statuses["done"], n_failed=loop.statuses["failed"],
        elapsed_s=time.perf_counter() - start, best=best_rows(db, shash),
        failures_by_reason=dict(loop.reasons), n_by_others=loop.n_by_others,
    )
