"""Command-line interface: ``matdesign <verb> ...``.

Each verb lives in ``matdesign/cli/<verb>.py`` with ``register(subparsers)``; those modules
import only the standard library at import time, so ``matdesign --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# verb -> module under matdesign.cli; a module may register several verbs.
VERB_MODULES = ["calc", "train", "evaluate", "properties", "screen", "design", "report"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matdesign",
        description="Equivariant GNN potential, materials properties and design campaigns.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(f"matdesign.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"matdesign.cli.{name}":
                continue  # verb not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, FloatingPointError) as exc:
        print(f"matdesign {args.verb}: error: {exc}", file=sys.stderr)
        return 1
    except (TypeError, RuntimeError, OSError) as exc:  # e.g. a plug-in factory or torch failing
        print(f"matdesign {args.verb}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
