"""``matdesign train``: fit a potential (or an ensemble, or a Pareto sweep of loss weights)."""

from __future__ import annotations

import argparse

from matdesign.cli.common import add_json_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a potential on energies/forces/stresses")
    p.add_argument("--data", required=True, help="training frames (extxyz or anything ASE reads)")
    p.add_argument("--valid", help="validation frames; default: a random split of --data")
    p.add_argument("--valid-fraction", type=float, default=None,
                   help="fraction of --data held out for validation (default from config: 0.1)")
    p.add_argument("--config", help="YAML with 'model' and 'train' sections (see examples/)")
    p.add_argument("--species", help="comma-separated elements (default: those in the data)")
    p.add_argument("--out", required=True, help="checkpoint to write (best validation model)")
    p.add_argument("--resume", help="training state to resume from (OUT.state)")
    p.add_argument("--init", help="fine-tune: start from this model's weights and architecture "
                   "(fresh optimiser, schedule and best score)")
    p.add_argument("--ensemble", type=int, default=1, help="train N members with different seeds")
    p.add_argument("--pareto", action="store_true",
                   help="sweep the energy/force loss weight ratio and write the validation front")
    p.add_argument("--pareto-ratios", default="1,10,100,1000",
                   help="energy_weight values (forces_weight = 1) for --pareto")
    p.add_argument("--max-time-min", type=float,
                   help="wall-clock budget per model in minutes (default 30, or the config's); "
                   "the learning-rate schedule and a progress line follow it")
    p.add_argument("--max-epochs", type=int, help="override the epoch limit")
    p.add_argument("--log", help="per-epoch JSON-lines log (default OUT.log.jsonl)")
    p.add_argument("--no-progress", action="store_true")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from matdesign.cli.common import write_json
    from matdesign.training.config import load_config
    from matdesign.training.workflow import run_training

    model_cfg, train_cfg = load_config(args.config)
    overrides = {k: v for k, v in {"max_time_min": args.max_time_min,
                                   "max_epochs": args.max_epochs,
                                   "valid_fraction": args.valid_fraction}.items() if v is not None}
    train_cfg = dataclasses.replace(train_cfg, **overrides)
    train_cfg.validate()  # command-line overrides get the same range checks as the YAML
    import torch

    torch.set_num_threads(train_cfg.threads)  # the library leaves threads to its caller
    summary = run_training(
        data=args.data, valid=args.valid, model_cfg=model_cfg, train_cfg=train_cfg, out=args.out,
        species=args.species.split(",") if args.species else None, resume=args.resume,
        init=args.init,
        ensemble=args.ensemble, pareto=[float(x) for x in args.pareto_ratios.split(",")]
        if args.pareto else None, log=args.log, progress=not args.no_progress,
        config_path=args.config,
    )
    write_json(summary, args.json)
    return 0
