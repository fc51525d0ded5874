"""Identities for resumable screening: structure content hash, potential identity, file hashes.

All identities depend on content only (never on absolute paths), so moving or reinstalling a
checkpoint or a reference file keeps finished rows valid.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from matdesign.potential_spec import PotentialSpec, parse_potential


def content_hash(atoms: Atoms) -> str:
    """Stable 16-hex hash of atomic numbers, positions (1e-5 Å), cell (1e-5 Å) and pbc."""
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    for arr in (atoms.positions, atoms.cell.array):
        rounded = np.round(np.asarray(arr, dtype=np.float64), 5) + 0.0  # +0.0 folds -0.0 into 0.0
        h.update(rounded.tobytes())
    h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    return _storable(h.hexdigest()[:16])


def _storable(hex16: str) -> str:
    """``hex16``, or, when it reads as a number (``"006086e456557282"`` is a float to Python),
    the same with its first character replaced by ``"x"``: ase.db refuses a text key-value pair
    that reads as a number. Hashes changed here could never be stored, so no row changes."""
    try:
        float(hex16)
    except ValueError:
        return hex16
    return "x" + hex16[1:]


def potential_id(spec: str | PotentialSpec) -> str:
    """Identity of a potential (stored per row and per campaign, so never change it): ``"emt"``
    and ``"module:callable"`` as written, a checkpoint (the shipped default or a path)
    ``"sha256:<16 hex>"`` of the file's contents (independent of its path; ``"sha256:missing"``
    when there is no such file). Never raises for a string."""
    resolved = parse_potential(spec)
    if resolved.kind == "checkpoint":
        return f"sha256:{file_sha256(str(resolved.path))}"
    return resolved.text


def file_sha256(path: str) -> str:
    """16-hex sha256 of a file's contents ("missing" if it is not a file); cached by
    (path, mtime, size)."""
    p = Path(path)
    if not p.is_file():
        return "missing"
    stat = p.stat()
    return _file_sha256_cached(str(p.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _file_sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def payload_hash(payload: dict[str, Any]) -> str:
    """16-hex sha256 of a JSON-able mapping (keys sorted)."""
    text = json.dumps(payload, sort_keys=True)
    return _storable(hashlib.sha256(text.encode()).hexdigest()[:16])
