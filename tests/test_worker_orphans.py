"""Worker processes exit when the `screen` process that started them is SIGKILLed (before:
both workers, ~0.5 GB each, and multiprocessing's resource tracker lived on forever)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from matdesign.search.database import ResultsDB
from tests.test_screen_parallel import CLI, write_alloys


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (psutil if installed, else Linux's /proc)."""
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children()]
    except ImportError:
        pass
    out = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(x) for x in path.read_text().split()]
    return out


def alive(pid: int) -> bool:
    """True for a running process (a zombie waiting for its new parent to reap it is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def test_workers_exit_with_a_sigkilled_parent(tmp_path: Path) -> None:
    inputs = write_alloys(tmp_path / "in", 8, repeat=2)
    db = tmp_path / "r.db"
    cmd = [*CLI, "screen", str(inputs), "--db", str(db), "--potential", "emt",
           "--workers", "2", "--no-progress"]
    parent = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and parent.poll() is None and not (
                len(kids) >= 3 and db.exists() and ResultsDB(str(db)).count() >= 1):
            time.sleep(0.1)
            kids = children(parent.pid)  # two workers and the resource tracker
        assert parent.poll() is None and len(kids) >= 3, f"children {kids}"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(k) for k in kids):
            time.sleep(0.1)
        assert not [k for k in kids if alive(k)], "orphaned worker processes survived"
    finally:
        if parent.poll() is None:
            parent.kill()
        for k in kids:  # on failure, do not leave the orphans running
            if alive(k):
                os.kill(k, signal.SIGKILL)
