"""keep_freed_memory: freed blocks of a few MB are reused, not faulted in again (glibc)."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import textwrap

import pytest

# a child process per case: malloc settings are process-wide and cannot be undone
CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    if sys.argv[1] == "on":
        from matdesign.memory import keep_freed_memory
        assert keep_freed_memory()
    def one_call():
        # like a model call: ten 3 MiB per-edge buffers alive at once, all freed at the end
        blocks = [np.empty(3 * 1024 * 1024, dtype=np.uint8) for _ in range(10)]
        for a in blocks:
            a[::4096] = 1  # one write per page
    one_call()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        one_call()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str) -> int:
    env = {**os.environ, "MATDESIGN_KEEP_FREED_MEMORY": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         env=env, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc",
                    reason="mallopt thresholds are glibc's")
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    pages = 3 * 1024 * 1024 // resource.getpagesize()
    off, on = _faults("off"), _faults("on")
    # glibc's default hands the freed 30 MiB back (trim): every call faults all pages again
    assert off > 5 * 10 * pages // 2
    assert on < pages


def test_the_setting_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from matdesign import memory

    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.setenv("MATDESIGN_KEEP_FREED_MEMORY", "0")
    assert memory.keep_freed_memory() is False
    monkeypatch.setattr(memory, "_done", None)  # the real state for later tests


def test_a_mistyped_switch_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from matdesign import memory

    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.setenv("MATDESIGN_KEEP_FREED_MEMORY", "no")
    with pytest.raises(ValueError, match="MATDESIGN_KEEP_FREED_MEMORY must be 0 or 1"):
        memory.keep_freed_memory()
    monkeypatch.setattr(memory, "_done", None)
