"""Can the architecture fit a handful of frames? A capacity probe, not an accuracy benchmark.

A model that cannot bring the training force error of a few frames far below its
validation error on the full set is limited by what it can express, not by data or epochs.
This trains a config on the first ``--frames`` frames of a file (of one ``--only`` group),
with no validation split: the same frames are "validated", so the log's validation errors
are training errors of the EMA model. It runs for ``--minutes`` and prints the force and
energy errors per epoch.

Usage:
    python benchmarks/overfit.py --data ../shared/data/mlearn/Mo/train.extxyz --only AIMD \
        --frames 20 --minutes 10 --threads 1 --config defaults --json runs/overfit_defaults.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--frames", type=int, default=20, help="the first N frames of --data")
    ap.add_argument("--only", default="", help="keep frames whose config_type starts with this")
    ap.add_argument("--config", default="defaults", help="training YAML, or 'defaults'")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", required=True, help="per-epoch errors and the settings")
    args = ap.parse_args()
    if args.frames < 1:
        raise SystemExit("--frames must be at least 1")

    import torch
    from ase.data import atomic_numbers

    from matdesign.training.config import load_config
    from matdesign.training.data import load_frames, species_in
    from matdesign.training.trainer import train_potential

    torch.set_num_threads(args.threads)
    model_cfg, train_cfg = load_config(None if args.config == "defaults" else args.config)
    train_cfg = dataclasses.replace(train_cfg, max_time_min=args.minutes, max_epochs=100_000,
                                    patience=100_000, committee=False, threads=args.threads)
    species = species_in(args.data)
    index = {atomic_numbers[s]: k for k, s in enumerate(species)}
    frames = [f for f in load_frames(args.data, model_cfg.cutoff, index)
              if f.config_type.startswith(args.only)][: args.frames]
    if not frames:
        raise SystemExit(f"{args.data}: no frame's config_type starts with {args.only!r}")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.jsonl"
        train_potential(frames, frames, species, model_cfg, train_cfg, Path(tmp) / "m.pt",
                        log_path=log, progress=False)
        rows = [json.loads(line) for line in log.read_text().splitlines()]
    epochs = [{"epoch": r["epoch"], "minutes": round(r["time_s"] / 60, 2),
               "train_force_rmse_ev_per_a": round(r["train_mse_forces"] ** 0.5, 4),
               "fit_force_mae_ev_per_a": r["valid_force_mae_ev_per_a"],
               "fit_energy_mae_mev_per_atom": r["valid_energy_mae_mev_per_atom"]} for r in rows]
    Path(args.json).write_text(json.dumps({
        "data": args.data, "frames": len(frames), "only": args.only, "config": args.config,
        "minutes": args.minutes, "threads": args.threads, "epochs": epochs}, indent=1))
    for e in epochs[:: max(1, len(epochs) // 10)] + epochs[-1:]:
        print(f"epoch {e['epoch']:4d} {e['minutes']:6.2f} min  train F RMSE "
              f"{e['train_force_rmse_ev_per_a']:.4f}  fitted F MAE "
              f"{e['fit_force_mae_ev_per_a']:.4f} eV/Å  E MAE "
              f"{e['fit_energy_mae_mev_per_atom']:.2f} meV/atom")


if __name__ == "__main__":
    main()
