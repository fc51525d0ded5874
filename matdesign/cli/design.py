"""``matdesign design CAMPAIGN.yaml --db campaign.db``: Bayesian-optimisation design campaign."""

from __future__ import annotations

import argparse

from matdesign.cli.common import add_json_arg, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("design", help="propose and evaluate new materials (BO or random search)")
    p.add_argument("campaign", help="campaign YAML (see examples/refractory_hea.yaml)")
    p.add_argument("--db", required=True, help="campaign ase.db; an existing one is resumed")
    p.add_argument("--budget", type=int, default=None,
                   help="total evaluations wanted (default: the YAML's budget); extends a "
                        "finished campaign")
    p.add_argument("--strategy", choices=["bo", "random"], default="bo")
    p.add_argument("--workers", type=int, default=1, help="parallel evaluations")
    p.add_argument("--scheduler", default=None,
                   help="dask scheduler address, or 'local' for a LocalCluster")
    p.add_argument("--potential", default=None,
                   help="override the YAML's potential: 'default', 'emt', a checkpoint path, "
                        "or 'module:callable' (IMPORTS and runs that Python module: use only "
                        "code you trust)")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume a --db whose stored objectives, constraints, screen settings, "
                        "potential or space differ from the YAML (refused by default)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="per-candidate wall-time limit, s (as screen --timeout; a disordered "
                        "candidate's realisations each get this limit)")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from matdesign.search.campaign import Campaign
    from matdesign.search.config import load_campaign

    # command-line values first: all of these refuse before any evaluation
    if args.budget is not None and args.budget < 1:
        raise ValueError(f"--budget must be >= 1, got {args.budget}")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"--timeout must be positive, got {args.timeout}")
    config = load_campaign(args.campaign)
    campaign = Campaign(config, args.db, potential=args.potential, timeout_s=args.timeout,
                        allow_config_change=args.allow_config_change)

    def progress(record) -> None:  # noqa: ANN001 - a CampaignRow
        flags = ("feasible" if record.feasible else "infeasible") + (
            ", UNCERTAIN" if record.uncertain else "")
        objectives = ", ".join(f"{o.property}={record.properties.get(o.property)}"
                               for o in config.objectives)
        print(f"[{record.row_id}] {record.key}: {record.status} ({flags}) {objectives}",
              file=sys.stderr)

    summary = campaign.run(budget=args.budget, strategy=args.strategy, workers=args.workers,
                           scheduler=args.scheduler, on_result=progress)
    if summary.n_uncertain:
        print(f"{summary.n_uncertain} of {summary.n_evaluations} evaluations lie outside the "
              "potential's domain (committee σ above uncertainty_energy_std_ev_per_atom): "
              "check them with DFT before trusting their ranking", file=sys.stderr)
    if summary.n_outside_domain:
        print(f"{summary.n_outside_domain} of {summary.n_evaluations} evaluations lie outside the "
              "training data's chemistry (an element pair, more elements in one "
              "neighbourhood, or two atoms closer, than any training structure had; column "
              "outside_domain)",
              file=sys.stderr)
    write_json(summary.to_dict(), args.json)
    return 0
