"""``matdesign screen INPUT... --db results.db``: relax, formation/hull energy, properties.

Every candidate becomes one row of an ase.db database as soon as it finishes; re-running skips
what is already there. See ``matdesign.search.screen`` for the details.
"""

from __future__ import annotations

import argparse

from matdesign.cli.common import add_json_arg, add_potential_arg, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "screen", help="screen many structures into an ase.db database (resumable, parallel)",
        description="Relax each structure, compute its formation energy and energy above the "
                    "convex hull, optionally elastic/phonon properties, and write one database "
                    "row per candidate. Re-running skips candidates already in the database.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="structure files (CIF, POSCAR, extxyz, ...), directories, globs, ase.db "
                        "(optional with --status)")
    p.add_argument("--db", required=True, help="results database (SQLite path or ase.db URL)")
    add_potential_arg(p)
    p.add_argument("--dtype", default=None, choices=["float32", "float64"],
                   help="model precision (default float32: the same elastic constants and "
                        "phonons as float64 to 2e-3 GPa and 1e-4 THz, 1.6x faster)")
    p.add_argument("--properties", default="",
                   help="comma-separated subset of elastic,phonon (default: none)")
    p.add_argument("--fmax", type=float, default=None,
                   help="relaxation force threshold, eV/Å (default 5e-3)")
    p.add_argument("--max-steps", type=int, default=500, help="relaxation step limit")
    p.add_argument("--fix-symmetry", action="store_true", help="keep the input space group")
    p.add_argument("--phonon-min-length", type=float, default=15.0,
                   help="minimum phonon supercell length, Å")
    p.add_argument("--gate", action="append", default=[], metavar="KEY<=VALUE",
                   help="skip elastic/phonon unless this holds, e.g. "
                        "'e_above_hull_ev_per_atom<=0.1' (repeatable)")
    p.add_argument("--references", nargs="+", default=[], metavar="FILE",
                   help="reference / competing-phase structures (elemental ones override ASE's)")
    p.add_argument("--workers", type=int, default=1,
                   help="parallel worker processes (with --scheduler: tasks in flight, at "
                        "least the cluster's worker threads)")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address (tcp://host:8786), or 'local' to start a "
                        "LocalCluster")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="per-candidate wall-time limit, s")
    p.add_argument("--retry-failed", action="store_true",
                   help="recompute candidates whose earlier row is 'failed'")
    p.add_argument("--claim-timeout", type=float, default=None, metavar="S",
                   help="several screens may share one --db: a candidate claimed by a process "
                        "that sent no heartbeat for S seconds (it died) is taken over "
                        "(default $MATDESIGN_CLAIM_TIMEOUT_S or 120)")
    p.add_argument("--export", default=None, metavar="FILE",
                   help="also write all rows to FILE (.csv or .json), streamed")
    p.add_argument("--status", action="store_true",
                   help="compute nothing: print done / failed / claimed counts, throughput and, "
                        "with the INPUTs and the same settings options, pending work and ETA")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_arg(p)
    p.set_defaults(func=run)


def parse_gate(text: str) -> tuple[str, str, float]:
    """``"key<=0.1"`` -> ``("key", "<=", 0.1)`` (``matdesign.search.gates.parse_gate``)."""
    from matdesign.search.gates import parse_gate as parse

    return parse(text)


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad option values and an unusable ``--potential`` before any input is read.

    Raises:
        ValueError: naming the option.
    """
    from matdesign.search.potentials import check_potential

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"--timeout must be positive, got {args.timeout}")
    if not (args.phonon_min_length > 0 and args.phonon_min_length < float("inf")):
        raise ValueError(f"--phonon-min-length must be a positive length in Å, "
                         f"got {args.phonon_min_length}")
    check_potential(args.potential, key="--potential")


def run(args: argparse.Namespace) -> int:
    """Screen; exit status 1 when candidates were evaluated and every one failed."""
    import sys

    from matdesign.search.database import ResultsDB
    from matdesign.search.pipeline import SCREEN_DTYPE, SCREEN_FMAX, ScreenSettings
    from matdesign.search.screen import run_screen
    from matdesign.search.summary import format_summary

    check_args(args)
    if not args.inputs and not args.status:
        raise ValueError("give the INPUT structures to screen (or --status)")
    props = tuple(p.strip() for p in args.properties.split(",") if p.strip())
    settings = ScreenSettings(
        potential=args.potential, dtype=args.dtype or SCREEN_DTYPE, properties=props,
        fmax=SCREEN_FMAX if args.fmax is None else args.fmax, max_steps=args.max_steps,
        fix_symmetry=args.fix_symmetry, phonon_min_length=args.phonon_min_length,
        gates=tuple(parse_gate(g) for g in args.gate), references=tuple(args.references),
    )
    if args.status:
        return show_status(args, settings)
    summary = run_screen(args.inputs, args.db, settings, workers=args.workers,
                         scheduler=args.scheduler, timeout_s=args.timeout,
                         progress=not args.no_progress, retry_failed=args.retry_failed,
                         claim_timeout_s=args.claim_timeout)
    print(format_summary(summary))
    if args.export:
        n = ResultsDB(args.db).export(args.export)
        print(f"exported {n} rows to {args.export}")
    if args.json:
        write_json(summary.to_dict(), args.json)
    if summary.n_failed and not summary.n_done:
        print(f"matdesign screen: all {summary.n_failed} candidate(s) evaluated in this run "
              f"failed (rows kept in {args.db}; see their 'reason')", file=sys.stderr)
        return 1
    return 0


def show_status(args: argparse.Namespace, settings: object) -> int:
    """``--status``: print (and with ``--json`` write) the database's status."""
    from matdesign.search.database import ResultsDB
    from matdesign.search.status import format_status, screen_status

    status = screen_status(args.db, args.inputs or None, settings,  # type: ignore[arg-type]
                           claim_timeout_s=args.claim_timeout)
    print(format_status(status, args.db))
    if args.export:
        n = ResultsDB(args.db, existing=True).export(args.export)
        print(f"exported {n} rows to {args.export}")
    if args.json:
        write_json(status.to_dict(), args.json)
    return 0
