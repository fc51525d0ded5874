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
        help="checkpoint path, 'default' (shipped NbMoTaW model), 'emt', or 'module:callable' "
             "(IMPORTS and runs that Python module: use only code you trust)",
    )


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-' = stdout)")


def add_index_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", type=int, metavar="N",
                   help="frame N of a multi-frame file (0 = first, -1 = last); required when "
                        "the file holds more than one structure")


def read_structure(path: str | Path, index: int | None = None):  # noqa: ANN201 - ase.Atoms
    """Read one structure; any failure becomes ``ValueError`` naming the file.

    A file with several frames needs ``index`` (the ``--index`` option): no frame is picked
    silently. POSCAR counts are checked against the coordinate lines
    (:func:`matdesign.structure_io.read_one`).
    """
    from matdesign.structure_io import read_one

    return read_one(path, index, hint="choose one with --index N")


def write_json(obj: Any, out: str | None) -> None:
    """Write ``obj`` as JSON to ``out`` ('-' or None = stdout)."""
    text = json.dumps(to_plain(obj), indent=2)
    if out in (None, "-"):
        print(text)
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
        print(f"wrote {out}", file=sys.stderr)
