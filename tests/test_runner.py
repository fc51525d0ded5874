"""The crash policy shared by `screen` and `design` (search/runner.py), on fake executors: no
worker processes, each test well under a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

import pytest

from matdesign.search.executor import SerialExecutor
from matdesign.search.runner import (
    WORKER_CRASHED,
    WORKER_ERROR,
    CrashTolerantRunner,
    Job,
    WorkerFailure,
)

#: what distributed raises once a task's workers died too often (matched by class name/module)
KilledWorker = type("KilledWorker", (Exception,), {"__module__": "distributed.scheduler"})


class Outcomes:
    """Collects what the runner hands on."""

    def __init__(self) -> None:
        self.results: dict[str, object] = {}
        self.failures: dict[str, WorkerFailure] = {}

    def job(self, task: Callable[[str], object],
            admit: Callable[[str], bool] | None = None) -> Job[str]:
        extra = {} if admit is None else {"admit": admit}
        return Job(submit=lambda ex, item: ex.submit(task, item),
                   on_result=self.results.__setitem__, on_failure=self.failures.__setitem__,
                   key=str, **extra)


class PoolBrokenAtSecondSubmit:
    """A pool whose first worker died: its future fails, and the next ``submit`` raises."""

    def __init__(self) -> None:
        self.calls = 0

    def submit(self, fn: Callable, /, *args: object, **kwargs: object) -> Future:
        self.calls += 1
        if self.calls > 1:
            raise BrokenProcessPool("a child process terminated abruptly")
        future: Future = Future()
        future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
        return future


def test_pool_broken_at_submit_hands_back_the_unsubmitted() -> None:
    out = Outcomes()
    runner = CrashTolerantRunner(SerialExecutor, 2)
    left, replace = runner.drain(PoolBrokenAtSecondSubmit(), ["c0", "c1", "c2", "c3"],
                                 out.job(str.upper), window=2)
    assert replace and sorted(left) == ["c0", "c1", "c2", "c3"]  # nothing lost
    assert runner.crashes["c0"] == 1 and runner.crashes["c1"] == 0  # only the one in flight
    assert not out.results and not out.failures


def test_run_replaces_a_broken_executor_and_finishes() -> None:
    opened = []

    @contextmanager
    def open_executor():
        opened.append(PoolBrokenAtSecondSubmit() if not opened else SerialExecutor())
        yield opened[-1]

    out = Outcomes()
    runner = CrashTolerantRunner(open_executor, 2)
    with runner:
        runner.run(["c0", "c1", "c2"], out.job(str.upper))
    assert len(opened) == 2  # the broken one was replaced
    assert out.results == {"c0": "C0", "c1": "C1", "c2": "C2"} and not out.failures


def crashes_on(bad: dict[str, int], intervals: dict[str, list], delay_s: float = 0.03):
    """A task that raises KilledWorker for item k on its first ``bad[k]`` tries and records
    every try's (start, end) time."""
    lock = threading.Lock()

    def task(item: str) -> str:
        start = time.monotonic()
        time.sleep(delay_s)
        with lock:
            intervals.setdefault(item, []).append((start, time.monotonic()))
            if len(intervals[item]) <= bad.get(item, 0):
                raise KilledWorker(item)
        return item.upper()

    return task


def test_crashed_item_reruns_alone_and_a_second_crash_is_its_failure() -> None:
    intervals: dict[str, list] = {}
    out = Outcomes()
    items = [f"c{k}" for k in range(6)]
    with ThreadPoolExecutor(3) as ex:
        runner = CrashTolerantRunner(lambda: ex, 3)
        left, replace = runner.drain(ex, items, out.job(crashes_on({"c1": 1, "c4": 9},
                                                                   intervals)), window=3)
    assert (left, replace) == ([], False)  # a Dask-like crash keeps the executor
    assert set(out.results) == set(items) - {"c4"}
    assert out.failures["c4"].failure_class == WORKER_CRASHED
    assert out.failures["c4"].reason.startswith("worker crashed twice: KilledWorker")
    assert len(intervals["c1"]) == 2 and len(intervals["c4"]) == 2  # never a third try
    for suspect in ("c1", "c4"):  # the retry ran alone
        t0, t1 = intervals[suspect][1]
        others = [iv for key, ivs in intervals.items() for iv in ivs
                  if iv != intervals[suspect][1]]
        assert all(e <= t0 or s >= t1 for s, e in others), suspect


def test_an_exception_is_a_worker_error_not_a_crash() -> None:
    def task(item: str) -> str:
        if item == "bad":
            raise ValueError("boom")
        return item

    out = Outcomes()
    runner = CrashTolerantRunner(SerialExecutor, 1)
    runner.run(["a", "bad", "b"], out.job(task))
    assert out.failures == {"bad": WorkerFailure(WORKER_ERROR, "worker error: ValueError: boom")}
    assert set(out.results) == {"a", "b"} and not runner.crashes


def test_a_stuck_item_is_abandoned_after_the_hard_limit() -> None:
    release = threading.Event()

    def task(item: str) -> str:
        if item == "stuck":
            release.wait(10)
        return item

    out = Outcomes()
    with ThreadPoolExecutor(2) as ex:
        runner = CrashTolerantRunner(lambda: ex, 2, hard_limit_s=0.2)
        start = time.monotonic()
        left, replace = runner.drain(ex, ["stuck", "a", "b"], out.job(task), window=2)
        elapsed = time.monotonic() - start
        release.set()
    assert (left, replace) == ([], False)  # not a process pool: nothing to tear down
    assert out.failures["stuck"].failure_class == "timeout"
    assert out.failures["stuck"].reason == "timeout: no result after 0.2 s (worker abandoned)"
    assert set(out.results) == {"a", "b"} and 0.2 <= elapsed < 5


@pytest.mark.parametrize("window", [1, 3])
def test_skipped_items_get_nothing(window: int) -> None:
    out = Outcomes()
    runner = CrashTolerantRunner(SerialExecutor, window)
    runner.run(["a", "b", "c"], out.job(str.upper, admit=lambda item: item != "b"))
    assert out.results == {"a": "A", "c": "C"} and not out.failures
