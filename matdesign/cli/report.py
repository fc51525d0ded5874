"""``matdesign report campaign.db --out DIR``: static HTML report of a design campaign."""

from __future__ import annotations

import argparse

from matdesign.cli.common import add_json_arg, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="HTML report of a design campaign database")
    p.add_argument("db", help="campaign ase.db written by 'matdesign design'")
    p.add_argument("--out", required=True, help="output folder (index.html, figures, cif/)")
    p.add_argument("--top", type=int, default=10, help="candidates with CIF files")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from matdesign.search.report import build_report

    result = build_report(args.db, args.out, top=args.top)
    print(f"report: {result.html_path}", file=sys.stderr)
    write_json(result.to_dict(), args.json)
    return 0
