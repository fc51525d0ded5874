"""Running many items on an executor whose workers may die: one policy for ``screen`` and
``design``.

* A worker crash (:func:`~matdesign.search.executor.is_worker_crash`: a pool process died, e.g.
  killed for memory, or Dask's ``KilledWorker``) records nothing for the items in flight: they
  run again, each alone, so a second crash is the item's own; an item that crashes a worker
  twice is handed to ``on_failure`` (``worker crashed``).
* A process pool that breaks at submit hands the unsubmitted item back, with no crash counted
  against it.
* Any other exception out of a task is a ``worker error``; with a hard limit, an item with no
  result after it is abandoned (``timeout``).
* A broken process pool, or one with a stuck worker, is torn down and a fresh one runs the rest.
  A Dask executor is kept: Dask reruns the tasks of a dead worker by itself.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from matdesign.errors import CandidateTimeout
from matdesign.search.executor import executor_slots, is_worker_crash

#: failure classes of what the coordinator itself records (workers' failures carry the label
#: of their exception type, ``matdesign.errors``)
WORKER_CRASHED, WORKER_ERROR = "worker crashed", "worker error"

Item = TypeVar("Item")


@dataclass(frozen=True)
class WorkerFailure:
    """Why an item got no result from its worker.

    Attributes:
        failure_class: :data:`WORKER_CRASHED`, :data:`WORKER_ERROR` or ``timeout``.
        reason: one line naming the cause, e.g. ``worker crashed twice: BrokenProcessPool: ...``.
    """

    failure_class: str
    reason: str


def _always(item: Any) -> bool:
    return True


@dataclass(frozen=True)
class Job(Generic[Item]):
    """What to do with the items of one run.

    Attributes:
        submit: ``submit(executor, item)``, the future of the item's result.
        on_result: called with ``(item, result)`` as each result arrives.
        on_failure: called with ``(item, WorkerFailure)`` for an item that gets no result.
        key: the item's identity for counting worker crashes (stable between runs).
        admit: called just before an item is submitted; False skips it (e.g. claimed by
            another process).
    """

    submit: Callable[[Executor, Item], Future]
    on_result: Callable[[Item, Any], None]
    on_failure: Callable[[Item, WorkerFailure], None]
    key: Callable[[Item], str]
    admit: Callable[[Item], bool] = _always


class CrashTolerantRunner:
    """Runs items on an executor, replacing it when its workers die (policy: module docstring).

    The executor is opened on first use and kept for later :meth:`run` calls until it breaks;
    use the runner as a context manager to shut it down.

    Args:
        open_executor: returns a context manager yielding a fresh executor.
        workers: items in flight at least (a Dask cluster: its worker threads, if more).
        hard_limit_s: an item with no result this long after its submission, s, is abandoned
            (None: no limit).
    """

    def __init__(self, open_executor: Callable[[], AbstractContextManager[Executor]],
                 workers: int, *, hard_limit_s: float | None = None) -> None:
        self._open = open_executor
        self.workers = workers
        self.hard_limit_s = hard_limit_s
        self.crashes: Counter[str] = Counter()  # item key -> worker crashes while in flight
        self._stack: ExitStack | None = None
        self._executor: Executor | None = None

    def __enter__(self) -> CrashTolerantRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Shut the executor down (a process pool's stuck processes included)."""
        stack, self._stack, self._executor = self._stack, None, None
        if stack is not None:
            stack.close()

    def _current(self) -> Executor:
        if self._executor is None:
            stack = ExitStack()
            self._executor = stack.enter_context(self._open())
            self._stack = stack
        return self._executor

    def run(self, items: list[Item], job: Job[Item]) -> None:
        """Run every item; each one ends in ``job.on_result`` or ``job.on_failure`` (or is
        skipped by ``job.admit``)."""
        todo = list(items)
        while todo:
            ex = self._current()
            todo, replace = self.drain(ex, todo, job, executor_slots(ex, self.workers))
            if replace:
                self.close()

    def drain(self, ex: Executor, todo: list[Item], job: Job[Item],
              window: int) -> tuple[list[Item], bool]:
        """Run ``todo`` on ``ex`` with at most ``window`` items in flight.

        Returns:
            The items still to run and whether ``ex`` must be replaced first (a broken
            process pool, or one with a stuck worker).
        """
        queue = list(reversed(todo))  # a stack: an item that crashed goes back on top
        pending: dict[Future, tuple[Item, float]] = {}
        while queue or pending:
            if not self._submit_window(ex, queue, pending, job, window) and not pending:
                return list(reversed(queue)), True
            if not pending:  # every item left was skipped
                continue
            finished, _ = wait(list(pending), timeout=self._wait_s(pending),
                               return_when=FIRST_COMPLETED)
            broken = self._collect(finished, pending, queue, job)
            expired = self._expire(pending, job)
            if (broken or expired) and isinstance(ex, ProcessPoolExecutor):
                return [item for item, _ in pending.values()] + list(reversed(queue)), True
        return [], False

    def _submit_window(self, ex: Executor, queue: list[Item],
                       pending: dict[Future, tuple[Item, float]], job: Job[Item],
                       window: int) -> bool:
        """Fill the window from the top of ``queue``; an item that has crashed a worker runs
        alone.

        Returns:
            False when the pool broke before a submission (a worker in flight died): that
            item goes back to ``queue`` with no crash counted against it.
        """
        while queue and len(pending) < window:
            if any(self.crashes[job.key(item)] for item, _ in pending.values()):
                return True
            if self.crashes[job.key(queue[-1])] and pending:
                return True
            item = queue.pop()
            if not job.admit(item):
                continue
            try:
                future = job.submit(ex, item)
            except BrokenProcessPool:
                queue.append(item)
                return False
            pending[future] = (item, time.monotonic())
        return True

    def _wait_s(self, pending: dict[Future, tuple[Item, float]]) -> float | None:
        """Seconds until the oldest item in flight reaches the hard limit (None: no limit)."""
        if self.hard_limit_s is None:
            return None
        oldest = min(t0 for _, t0 in pending.values())
        return max(0.0, oldest + self.hard_limit_s - time.monotonic())

    def _collect(self, finished: set[Future], pending: dict[Future, tuple[Item, float]],
                 queue: list[Item], job: Job[Item]) -> bool:
        """Hand on each finished item's result or failure.

        Returns:
            True when the process pool broke: every other item in flight died with it and
            counts a crash too.
        """
        broke: BaseException | None = None
        for future in finished:
            item, _ = pending.pop(future)
            exc = future.exception()
            if exc is None:
                job.on_result(item, future.result())
            elif is_worker_crash(exc):
                broke = exc if isinstance(exc, BrokenProcessPool) else broke
                self._crashed(item, exc, queue, job)
            else:
                job.on_failure(item, WorkerFailure(
                    WORKER_ERROR, f"worker error: {type(exc).__name__}: {exc}"))
        if broke is not None:
            for future, (item, _) in list(pending.items()):
                del pending[future]
                self._crashed(item, broke, queue, job)
        return broke is not None

    def _crashed(self, item: Item, exc: BaseException, queue: list[Item],
                 job: Job[Item]) -> None:
        """Count a worker crash against ``item``: the first puts it back on ``queue``, the
        second is its failure."""
        key = job.key(item)
        self.crashes[key] += 1
        if self.crashes[key] < 2:
            queue.append(item)
        else:
            job.on_failure(item, WorkerFailure(
                WORKER_CRASHED, f"worker crashed twice: {type(exc).__name__}: {exc}"))

    def _expire(self, pending: dict[Future, tuple[Item, float]], job: Job[Item]) -> bool:
        """Abandon the items in flight longer than the hard limit; True if there were any."""
        if self.hard_limit_s is None:
            return False
        now = time.monotonic()
        expired = [f for f, (_, t0) in pending.items() if now - t0 > self.hard_limit_s]
        for future in expired:
            item, _ = pending.pop(future)
            future.cancel()
            job.on_failure(item, WorkerFailure(
                CandidateTimeout.label,
                f"timeout: no result after {self.hard_limit_s:g} s (worker abandoned)"))
        return bool(expired)
