"""Helpers shared by CLI verbs: structure reading, potential option, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from matdesign.plain import to_plain


def add_potential_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--potential", default="default",
        help="checkpoint path, 'default' (shipped NbMoTaW model), 'emt', or 'module:callable'",
    )


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-' = stdout)")


def read_structure(path: str | Path, index: int | str = -1):  # noqa: ANN201 - returns ase.Atoms
    """Read one structure with ASE; any failure becomes ``ValueError`` naming the file."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure file not found: {path}")
    try:
        atoms = read(path, index=index)
    except Exception as exc:  # ASE raises many types for malformed input
        raise ValueError(f"cannot read structure from {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(atoms, list):
        raise ValueError(f"{path}: expected one structure, got {len(atoms)}")
    if len(atoms) == 0:
        raise ValueError(f"{path}: the file holds no atoms")
    return atoms


def write_json(obj: Any, out: str | None) -> None:
    """Write ``obj`` as JSON to ``out`` ('-' or None = stdout)."""
    text = json.dumps(to_plain(obj), indent=2)
    if out in (None, "-"):
        print(text)
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
