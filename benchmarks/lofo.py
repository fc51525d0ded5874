"""Leave-one-family-out: train without a group of frames, judge the model on that group.

A random validation split only measures interpolation; a design campaign asks the potential
about chemistries it never saw. This trains on every frame whose ``config_type`` does not
start with one of ``--leave-out`` (e.g. ``NbW_SS`` = the Nb-W binary family, or ``W_`` = all
of W's own frames), keeps a random 10 % of the rest for validation, and reports errors on the
left-out frames with the committee spread's rank correlation to the error (Spearman).

Usage (one run; several at once on separate cores with --threads 1):
    python benchmarks/lofo.py --data ../shared/data/NbMoTaW/train.extxyz --leave-out NbW_SS \
        --config examples/train_nbmotaw.yaml --minutes 10 --threads 1 --out runs/lofo/nbw
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (no ties expected in continuous data)."""
    rx = np.argsort(np.argsort(x))
    ry = np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def judge(model, frames, domain=None) -> dict:
    """Errors on ``frames`` and how well the committee spread ranks them; with the training
    data's ``domain`` (:class:`matdesign.domain.ChemicalDomain`), also each frame's fraction of
    edges joining an unseen element pair and the domain's unseen-pair prior (eV/atom), which
    ``benchmarks/calibrate.py`` combines with the spread."""
    from matdesign.training.metrics import error_metrics

    metrics, preds = error_metrics(model, frames)
    signed = np.array([(p["energy"] - f.energy) / len(f.symbols) for p, f in zip(preds, frames)])
    err = np.abs(signed)
    row = {k: metrics[k] for k in ("energy_mae_mev_per_atom", "energy_rmse_mev_per_atom",
                                   "force_mae_ev_per_a", "stress_mae_gpa")}
    row["signed_mean_mev_per_atom"] = float(signed.mean() * 1000)  # prediction - reference
    row["n_frames"] = len(frames)
    if preds and preds[0].get("energy_std") is not None:
        std = np.array([p["energy_std"] / len(f.symbols) for p, f in zip(preds, frames)])
        row["spread_spearman"] = spearman(std, err)
        row["spread_median_mev_per_atom"] = float(np.median(std) * 1000)
        row["errors_mev_per_atom"] = (err * 1000).round(3).tolist()
        # prediction - reference per frame: several fits' signed errors on the same frames
        # form a committee of seeds (benchmarks/seed_committee.py)
        row["signed_errors_mev_per_atom"] = (signed * 1000).round(4).tolist()
        row["spread_mev_per_atom"] = (std * 1000).round(4).tolist()
    if domain is not None:
        row["pair_prior_mev_per_atom"] = domain.pair_prior_ev_per_atom * 1000
        row["unseen_edge_fraction"] = [
            round(float(domain.unseen_edges(np.array(f.symbols), *f.graph.edge_index.numpy())
                        .mean()), 5) if f.graph.edge_index.shape[1] else 0.0 for f in frames]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--leave-out", required=True, help="comma-separated config_type prefixes")
    ap.add_argument("--config", required=True, help="training YAML (model + train sections)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="folder for the model, log and result JSON")
    ap.add_argument("--init", help="fine-tune this model (e.g. a stage-1 leave-out fit of the "
                    "same family) instead of starting from scratch")
    ap.add_argument("--split-seed", type=int, default=None,
                    help="seed of the validation split (default: the config's train.seed); "
                    "fits that differ only in train.seed share a split with this")
    ap.add_argument("--rejudge", action="store_true",
                    help="no training: judge OUT/model.pt again and rewrite OUT/result.json")
    args = ap.parse_args()

    from ase.data import atomic_numbers

    from matdesign.checkpoint import load_potential
    from matdesign.training.config import load_config
    from matdesign.training.data import load_frames, species_in, split
    from matdesign.training.trainer import train_potential, training_domain

    model_cfg, train_cfg = load_config(args.config)
    train_cfg = dataclasses.replace(train_cfg, max_time_min=args.minutes, threads=args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.init and not Path(args.init).is_file():
        raise SystemExit(f"--init {args.init}: no such model file")
    prefixes = tuple(p for p in args.leave_out.split(",") if p)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    species = ["Nb", "Mo", "Ta", "W"] if "NbMoTaW" in args.data else species_in(args.data)
    index = {atomic_numbers[s]: k for k, s in enumerate(species)}
    frames = load_frames(args.data, model_cfg.cutoff, index)
    left = [f for f in frames if f.config_type.startswith(prefixes)]
    kept = [f for f in frames if not f.config_type.startswith(prefixes)]
    if not left:
        raise SystemExit(f"no frame's config_type starts with {prefixes}")
    split_seed = train_cfg.seed if args.split_seed is None else args.split_seed
    tr, va = split(len(kept), train_cfg.valid_fraction, split_seed)
    train = [kept[i] for i in tr]
    if args.rejudge:
        if not (out / "result.json").is_file() or not (out / "model.pt").is_file():
            raise SystemExit(f"--rejudge: {out} holds no model.pt and result.json of a run")
        result = json.loads((out / "result.json").read_text())
    else:
        t0 = time.time()
        summary = train_potential(train, [kept[i] for i in va], species, model_cfg, train_cfg,
                                  out / "model.pt", log_path=out / "log.jsonl", progress=True,
                                  init=args.init)
        result = {"leave_out": list(prefixes), "config": args.config, "minutes": args.minutes,
                  "threads": args.threads, "epochs": summary.epochs,
                  "seed": train_cfg.seed, "split_seed": split_seed,
                  **({"init": args.init} if args.init else {}),
                  "wall_min": (time.time() - t0) / 60}
    model = load_potential(out / "model.pt", dtype="float64")
    # as the trainer records it
    domain = training_domain(train, model_cfg.cutoff, model_cfg.chemical_pairs)
    result["valid"] = judge(model, [kept[i] for i in va], domain)
    result["left_out"] = judge(model, left, domain)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    for key in ("valid", "left_out"):
        r = result[key]
        print(f"{key:9s} E {r['energy_mae_mev_per_atom']:.2f} meV/atom (RMSE "
              f"{r['energy_rmse_mev_per_atom']:.2f}), F {r['force_mae_ev_per_a']:.4f} eV/Å, "
              f"spread Spearman {r.get('spread_spearman', float('nan')):.2f}")


if __name__ == "__main__":
    main()
