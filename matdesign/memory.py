"""Keep freed memory in the process instead of handing it back to the OS (glibc only).

A model call allocates and frees tensors of a few MB (per-edge features: 3,328 edges × 256
float32 is 3.4 MB at 128 atoms) hundreds of times. With glibc's default malloc settings such a
block is either mapped afresh with ``mmap`` or returned by trimming the top of the heap when it
is freed, so the next call touches new pages: one page fault and a zeroed 4 KiB page each. On
this project's CPU that was 600-2,700 page faults and 2-6 ms of system time per
energy+forces+stress call of a 128-atom cell (20-25 ms), and gathers of fresh (edges, 256)
buffers ran 10× slower in the model than in isolation. :func:`keep_freed_memory` raises the
two thresholds once per process so freed blocks are reused: no page faults after the first
call (benchmarks/README.md, issue 12).

The cost: the process keeps its peak heap (a 10,000-atom float32 call peaks near 1 GB) until
it exits instead of returning it between calls. Set ``MATDESIGN_KEEP_FREED_MEMORY=0`` to leave
malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: blocks up to this size come from the heap, never from mmap: glibc's largest allowed value
#: on 64-bit (HEAP_MAX_SIZE / 2)
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
#: free memory at the top of the heap is handed back only above this
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024

#: environment variable that switches the setting off ("0") or on ("1", the default)
ENV_SWITCH = "MATDESIGN_KEEP_FREED_MEMORY"

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process, once.

    Returns:
        True if the settings are in force (now or from an earlier call); False on a C library
        without ``mallopt`` (musl, macOS, Windows) or when ``MATDESIGN_KEEP_FREED_MEMORY=0``.

    Raises:
        ValueError: ``MATDESIGN_KEEP_FREED_MEMORY`` set to anything but 0 or 1 (the message
            names the variable).
    """
    global _done
    if _done is not None:
        return _done
    setting = os.environ.get(ENV_SWITCH, "1").strip()
    if setting not in ("0", "1"):
        raise ValueError(f"{ENV_SWITCH} must be 0 or 1 (unset means 1), got {setting!r}")
    _done = False
    if setting == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; setting the mmap threshold also stops glibc's own dynamic
    # adjustment of both thresholds
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _done
