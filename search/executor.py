"""Executors for screening: in-process, a process pool, or Dask.

All three are ``concurrent.futures.Executor``-like, so the screening loop is the same.
Worker processes are started with ``spawn`` (``fork`` after torch has started its thread pools
can deadlock); each loads the potential once (``matdesign.search.pipeline`` caches). Workers
exit when the coordinating process dies, even by SIGKILL (:func:`exit_with_parent`); on Linux
that is when the thread that submitted the pool's first task exits, so submit from a thread that
outlives the pool.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class SerialExecutor(Executor):
    """Runs each task at once in the calling process; ``submit`` returns a finished future."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: B036 - handed to the caller through the future
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(exc)
        return future


def _init_worker(n_threads: int, parent_pid: int) -> None:
    """Worker initializer: cap threads, and exit when the coordinating process dies."""
    _limit_threads(n_threads)
    exit_with_parent(parent_pid)


def exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Make this process die with ``parent_pid`` (else a SIGKILLed coordinator leaves its
    workers, each holding a loaded potential, and multiprocessing's resource tracker alive).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; the kernel kills this process when the thread
    that started it exits. Elsewhere: a daemon thread polls ``os.getppid()``, which changes when
    the parent dies. Either way a parent already gone means exit now.
    """
    if not _set_parent_death_signal():
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(poll_s)
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="matdesign-parent-watch").start()
    if os.getppid() != parent_pid:
        os._exit(1)


def _set_parent_death_signal() -> bool:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)`` through libc; False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _limit_threads(n_threads: int) -> None:
    """Worker initializer: cap BLAS/OpenMP/torch threads so workers do not oversubscribe."""
    for var in THREAD_ENV:
        os.environ[var] = str(n_threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n_threads)


def threads_per_worker(workers: int) -> int:
    """Cores per worker: ``OMP_NUM_THREADS`` if set, else ``cpu_count // workers`` (>= 1)."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit():
        return max(1, int(env))
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def is_worker_crash(exc: BaseException | None) -> bool:
    """True when ``exc`` says the process running a task died, not that the task failed: a
    broken process pool, or Dask's ``KilledWorker`` (the task's workers died
    ``distributed.scheduler.allowed-failures`` + 1 times; after fewer deaths Dask reruns it on
    another worker by itself and the future simply finishes later)."""
    if isinstance(exc, BrokenProcessPool):
        return True
    return type(exc).__name__ == "KilledWorker" and "distributed" in type(exc).__module__


def executor_slots(ex: Executor, workers: int) -> int:
    """How many tasks to keep in flight on ``ex``: ``workers``, or for a Dask cluster at least
    its worker threads at this moment (workers that join later are used once slots free up)."""
    client = getattr(ex, "_client", None)
    if client is None:
        return workers
    try:
        threads = sum(client.nthreads().values())
    except Exception:  # noqa: BLE001 - the scheduler is busy: fall back to --workers
        threads = 0
    return max(workers, threads)


@contextmanager
def get_executor(workers: int = 1, scheduler: str | None = None) -> Iterator[Executor]:
    """Yield an executor; shut it down (and its workers) on exit.

    Args:
        workers: parallel worker processes (1 and no scheduler: run in this process).
        scheduler: Dask scheduler address (``tcp://host:port``), or ``"local"`` to start a
            ``LocalCluster`` of ``workers`` single-threaded processes on 127.0.0.1.

    Raises:
        ValueError: ``workers < 1``.
        ImportError: a scheduler was given but dask.distributed is not installed
            (``pip install matdesign[dask]``).
    """
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if scheduler:
        with _dask_executor(workers, scheduler) as ex:
            yield ex
        return
    if workers == 1:
        yield SerialExecutor()
        return
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("spawn"),
        initializer=_init_worker, initargs=(threads_per_worker(workers), os.getpid()),
    )
    try:
        yield pool
    finally:
        terminate_pool(pool)


def terminate_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel queued work and stop the pool's processes, including ones stuck in a task."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()


@contextmanager
def _dask_executor(workers: int, scheduler: str) -> Iterator[Executor]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError(
            "--scheduler needs dask.distributed: pip install 'matdesign[dask]'"
        ) from exc
    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers, processes=True, threads_per_worker=1,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    else:
        cluster, client = None, Client(scheduler)
    try:
        # pure=False: a task resubmitted after its worker died gets a new key instead of the
        # erred future of the first try
        yield client.get_executor(pure=False)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
