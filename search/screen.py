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
Only this process writes rows, so neither path can write a candidate twice. The crash and
timeout policy is :mod:`matdesign.search.runner`'s, shared with ``matdesign design``.
"""

from __future__ import annotations

import glob
import hashlib
import sys
import time
from collections import Counter
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from ase import Atoms

from matdesign.errors import StructureFileError
from matdesign.search.claims import Claims, MemoryClaims, open_claims
from matdesign.search.database import ResultsDB
from matdesign.search.executor import get_executor
from matdesign.search.hashing import content_hash
from matdesign.search.pipeline import ScreenSettings, evaluate_candidate, start_record
from matdesign.search.record import CandidateResult
from matdesign.search.runner import WORKER_ERROR, CrashTolerantRunner, Job, WorkerFailure
from matdesign.search.summary import ScreenSummary, best_rows


@dataclass(frozen=True)
class InputStructure:
    """One structure read from the inputs (or an input that could not be read: ``error`` set).

    Attributes:
        source: where it came from: ``path``, ``path@k`` (frame k) or ``path@id=n`` (ase.db row).
        atoms: the structure; None when unreadable.
        content_hash: identity of the structure (``search/hashing.py``); of the file when
            unreadable.
        error: why the input could not be read.
    """

    source: str
    atoms: Atoms | None
    content_hash: str
    error: str | None = None


def _file_hash(path: Path) -> str:
    try:
        return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "file:" + hashlib.sha256(str(path).encode()).hexdigest()[:16]


def _read_file(path: Path) -> list[InputStructure]:
    from matdesign.structure_io import StructureFileError, read_structures

    if path.suffix.lower() == ".db":
        import ase.db

        try:
            rows = list(ase.db.connect(str(path)).select())
        except Exception as exc:  # noqa: BLE001 - any unreadable file becomes a failed row
            return [InputStructure(str(path), None, _file_hash(path), f"cannot read {path}: {exc}")]
        return [_input_structure(f"{path}@id={row.id}", row.toatoms()) for row in rows]
    try:
        frames = read_structures(path)  # the CLI's reader: POSCAR counts checked, errors named
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes a failed row
        reason = (str(exc) if isinstance(exc, StructureFileError)
                  else f"cannot read {path}: {type(exc).__name__}: {exc}")
        return [InputStructure(str(path), None, _file_hash(path), reason)]
    if len(frames) == 1:
        return [_input_structure(str(path), frames[0])]
    return [_input_structure(f"{path}@{k}", a) for k, a in enumerate(frames)]


def _input_structure(source: str, atoms: Atoms) -> InputStructure:
    atoms.calc = None
    return InputStructure(source, atoms, content_hash(atoms))


def _is_excluded(path: Path, exclude: list[Path]) -> bool:
    """True for an excluded file or its SQLite companions (``-journal``, ``-wal``, ``-shm``)."""
    resolved = path.resolve()
    return any(resolved == ex or (resolved.parent == ex.parent
                                  and resolved.name.startswith(ex.name + "-"))
               for ex in exclude)


def expand_inputs(inputs: list[str], exclude: tuple[str, ...] = ()) -> list[InputStructure]:
    """Files, directories (their files, sorted, not recursive), globs and ase.db files.

    Args:
        inputs: what to read.
        exclude: files never read as inputs (the run's own results database), also when a
            directory or glob names them.
    """
    skip = [Path(e).resolve() for e in exclude]
    out: list[InputStructure] = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.exists():
            files = [path]
        else:
            files = [Path(p) for p in sorted(glob.glob(spec)) if Path(p).is_file()]
            if not files:
                out.append(InputStructure(
                    spec, None, _file_hash(path),
                    f"cannot read {spec}: no such file, directory or glob match"))
        for f in files:
            if not _is_excluded(f, skip):
                out.extend(_read_file(f))
    return out


def hard_timeout(timeout_s: float) -> float:
    """Coordinator-side limit, s: the worker's own limit plus room for process start-up."""
    return 1.5 * timeout_s + 30.0


class ScreenRun:
    """One screen's bookkeeping: claim each input just before it runs, write its row, count.

    Args:
        db: the results database.
        settings: screening settings.
        settings_hash: their hash.
        timeout_s: per-candidate wall limit enforced inside the worker, s (None: none).
        bar: progress bar (``update(n)``).
        claims: this run's claims in ``db`` (default: private to this process).
        retry_failed: failed rows present now do not count as finished.
    """

    def __init__(self, db: ResultsDB, settings: ScreenSettings, settings_hash: str,
                 timeout_s: float | None, bar: Any, *, claims: Claims | None = None,
                 retry_failed: bool = False) -> None:
        self.db, self.settings, self.settings_hash = db, settings, settings_hash
        self.timeout_s, self.bar = timeout_s, bar
        self.claims = claims if claims is not None else MemoryClaims()
        self.retry_ids = ({int(r.id) for r in db.rows(status="failed",
                                                       settings_hash=settings_hash)}
                          if retry_failed else set())
        self.statuses: Counter = Counter()
        self.reasons: Counter = Counter()
        self.others: list[InputStructure] = []  # claimed by another live process
        self.n_by_others = 0  # inputs of this run that other processes finished

    def finished_elsewhere(self, structure_hash: str) -> bool:
        """True when ``structure_hash`` has a row this run must not redo (done, or failed
        unless it is a failed row being retried)."""
        return any(status == "done" or (status == "failed" and row_id not in self.retry_ids)
                   for row_id, status in self.db.finished(structure_hash, self.settings_hash))

    def take(self, structure: InputStructure) -> bool:
        """Claim ``structure`` just before running it.

        Returns:
            True when this run is to compute it. False when another live process holds it
            (kept in ``others`` to wait for) or another process finished it meanwhile.
        """
        key = (structure.content_hash, self.settings_hash)
        if not self.claims.claim(key):
            self.others.append(structure)
            return False
        if self.finished_elsewhere(structure.content_hash):
            self.claims.release(key)
            self._by_others()
            return False
        return True

    def orphans(self) -> list[InputStructure]:
        """Wait (polling) while other processes hold inputs of this run.

        Returns:
            The inputs this run has now claimed because their owner released them unfinished
            or died (stale heartbeat); [] once no input is held elsewhere. Those finished
            elsewhere are counted in ``n_by_others``.
        """
        poll_s = min(2.0, self.claims.timeout_s / 4)
        while self.others:
            time.sleep(poll_s)
            live = self.claims.holders(self.settings_hash)
            free = [s for s in self.others if s.content_hash not in live]
            self.others = [s for s in self.others if s.content_hash in live]
            mine = [s for s in free if self.take(s)]
            if mine:
                return mine
        return []

    def _by_others(self) -> None:
        self.n_by_others += 1
        self.bar.update(1)

    def record(self, result: CandidateResult) -> None:
        """Write one input's row (unless another process finished it meanwhile)."""
        key = (result.content_hash, self.settings_hash)
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

    def fail(self, structure: InputStructure, reason: str, failure_class: str) -> None:
        """Write a failed row the coordinator decided on (unreadable, crashed, timed out)."""
        atoms = structure.atoms if structure.atoms is not None else Atoms()
        self.record(start_record(atoms, self.settings).failed(
            reason, failure_class, source=structure.source,
            content_hash=structure.content_hash, settings_hash=self.settings_hash))

    def job(self) -> Job[InputStructure]:
        """The runner's callbacks: claim, evaluate in a worker, write the row or the failure."""
        def submit(ex: Executor, structure: InputStructure) -> Future:
            return ex.submit(evaluate_candidate, structure.atoms, self.settings,
                             structure.source, timeout_s=self.timeout_s)

        def on_failure(structure: InputStructure, failure: WorkerFailure) -> None:
            self.fail(structure, failure.reason, failure.failure_class)

        return Job(submit=submit, on_result=lambda _, result: self.record(result),
                   on_failure=on_failure, key=lambda structure: structure.source,
                   admit=self.take)


def run_inputs(run: ScreenRun, todo: list[InputStructure], runner: CrashTolerantRunner) -> None:
    """Run ``todo`` (unreadable inputs are recorded as failed), then wait for the inputs that
    other processes hold, running those whose owner died."""
    while todo:
        for structure in [s for s in todo if s.error is not None]:
            if run.take(structure):
                run.fail(structure, structure.error, StructureFileError.label)
        runner.run([s for s in todo if s.error is None], run.job())
        todo = run.orphans()


def _unfinished(structures: list[InputStructure], finished: set[tuple[str, str]],
                settings_hash: str) -> list[InputStructure]:
    """The first input of each key not in ``finished``."""
    todo, seen = [], set(finished)
    for structure in structures:
        key = (structure.content_hash, settings_hash)
        if key not in seen:
            seen.add(key)
            todo.append(structure)
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
    settings_hash = settings.settings_hash()
    db = ResultsDB(db_url)
    claims = open_claims(db.sqlite_path, claim_timeout_s, url=db.url)
    finished = db.done_keys(include_failed=not retry_failed)
    own = () if "://" in db_url else (db_url, db_url + ".db")
    structures = expand_inputs(inputs, exclude=own)
    todo = _unfinished(structures, finished, settings_hash)
    claims.drop_abandoned(settings_hash, {s.content_hash for s in structures}
                          - {s.content_hash for s in todo})
    runner = CrashTolerantRunner(
        partial(get_executor, workers, scheduler), workers,
        hard_limit_s=None if timeout_s is None else hard_timeout(timeout_s))
    with (tqdm(total=len(todo), disable=not progress, file=sys.stderr, desc="screen") as bar,
          claims.keep_alive(), runner):
        run = ScreenRun(db, settings, settings_hash, timeout_s, bar, claims=claims,
                        retry_failed=retry_failed)
        run_inputs(run, todo, runner)
    db.update_hull(settings_hash=settings_hash)
    return ScreenSummary(
        n_candidates=len(structures), n_skipped=len(structures) - len(todo),
        n_done=run.statuses["done"], n_failed=run.statuses["failed"],
        elapsed_s=time.perf_counter() - start, best=best_rows(db, settings_hash),
        failures_by_reason=dict(run.reasons), n_by_others=run.n_by_others,
    )
