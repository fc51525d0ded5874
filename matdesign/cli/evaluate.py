"""``matdesign evaluate``: error metrics of a potential on labelled frames, with parity plots."""

from __future__ import annotations

import argparse

from matdesign.cli.common import add_json_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="energy/force/stress errors of a potential on a data set")
    p.add_argument("--potential", default="default", help="checkpoint path or 'default'")
    p.add_argument("--data", required=True, help="labelled frames (extxyz or anything ASE reads)")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    add_json_arg(p)
    p.add_argument("--plot", metavar="PNG", help="write energy/force/stress parity plots")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from matdesign.cli.common import write_json
    from matdesign.training.evaluate import evaluate_file

    metrics = evaluate_file(args.potential, args.data, dtype=args.dtype, plot=args.plot)
    write_json(metrics, args.json)
    return 0
