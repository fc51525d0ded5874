"""Calibrate the energy uncertainty on leave-one-family-out frames and store it in a checkpoint.

Reads the ``result.json`` files of ``benchmarks/lofo.py`` runs (per-frame |error|, raw
committee spread ℓ and fraction u of edges joining an element pair the fit never saw, with
that fit's unseen-pair prior σ_pair, all per atom) and pools them, as a campaign meets both
in-domain and never-seen chemistry. The uncertainty is the calculator's
σ = √((α·ℓ)² + (σ_pair·u)²) (:func:`matdesign.domain.energy_spread`); then:

* scales: α = sqrt(mean((error/ℓ)²)) over the frames without an unseen pair (u = 0), the
  Gaussian maximum-likelihood factor that makes α·ℓ an error estimate in eV/atom where the
  committee is the only term;
* ranks: Spearman correlation between σ and |error| (the issue's floor is 0.5), pooled, per
  group and per left-out family;
* flags: the threshold τ on σ (eV/atom) is the largest value that still flags ``--recall``
  (default 80 %) of the frames whose error exceeds three times the median; the fraction
  flagged is reported for the validation and the left-out frames separately.

``--no-prior`` drops the unseen-pair term (u = 0 everywhere: the committee alone, α over all
frames), for comparison. ``--write-to MODEL.pt`` stores α as
``metadata["uncertainty_scale"]`` and τ as ``metadata["uncertainty_threshold_ev_per_atom"]``
(σ_pair comes with the checkpoint's chemical domain). ``--refresh-domain DATA`` first recomputes
that domain (pairs, contacts, σ_pair) from the checkpoint's training frames: DATA split as the
trainer split it (the checkpoint's ``valid_fraction`` and ``seed``), refused when the
training-frame count differs from the checkpoint's ``n_train`` (another file). It is for a
model trained before σ_pair's definition changed (nineteenth session).

Usage:
    python benchmarks/calibrate.py runs/lofo/*/result.json --write-to matdesign/models/default.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from lofo import spearman  # benchmarks/ is on sys.path when run as a script

from matdesign.domain import energy_spread

if TYPE_CHECKING:
    from matdesign.checkpoint import PotentialEnsemble
    from matdesign.model import Potential


def calibrate(err: np.ndarray, spread: np.ndarray, unseen: np.ndarray, prior: np.ndarray,
              recall: float) -> dict:
    """α, τ and the statistics behind them; ``err``, ``spread``, ``prior`` in eV/atom."""
    spread = np.maximum(spread, 1e-12)
    known = unseen == 0
    ref = known if known.any() else np.ones_like(known)
    alpha = float(np.sqrt(np.mean((err[ref] / spread[ref]) ** 2)))
    sigma = energy_spread(spread, unseen, alpha, prior)
    bad = err > 3 * np.median(err)
    tau = float(np.quantile(sigma[bad], 1 - recall)) if bad.any() else float(np.max(sigma))
    flagged = sigma > tau
    return {"n_frames": int(len(err)), "spearman": spearman(sigma, err),
            "uncertainty_scale": alpha, "uncertainty_threshold_ev_per_atom": tau,
            "n_large_error": int(bad.sum()),
            "large_error_flagged": float(flagged[bad].mean()) if bad.any() else None,
            "all_flagged": float(flagged.mean()),
            "median_error_mev_per_atom": float(np.median(err) * 1000)}


def _load(path: str, key: str, use_prior: bool) -> np.ndarray:
    """(4, n) per frame: |error|, raw spread, unseen-edge fraction, prior; eV/atom."""
    if not Path(path).is_file():
        raise SystemExit(f"{path}: no such result file of benchmarks/lofo.py")
    part = json.loads(Path(path).read_text())[key]
    if "spread_mev_per_atom" not in part:
        raise SystemExit(f"{path}: no committee spread (a single-head model)")
    if use_prior and "unseen_edge_fraction" not in part:
        raise SystemExit(f"{path}: no unseen-pair fractions; judge it again with "
                         f"benchmarks/lofo.py --rejudge (or pass --no-prior)")
    n = len(part["errors_mev_per_atom"])
    unseen = part["unseen_edge_fraction"] if use_prior else np.zeros(n)
    prior = part["pair_prior_mev_per_atom"] / 1000 if use_prior else 0.0
    return np.array([np.array(part["errors_mev_per_atom"]) / 1000,
                     np.array(part["spread_mev_per_atom"]) / 1000, unseen, np.full(n, prior)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", help="result.json files of benchmarks/lofo.py")
    ap.add_argument("--recall", type=float, default=0.8)
    ap.add_argument("--no-prior", action="store_true", help="the committee alone (u = 0)")
    ap.add_argument("--write-to", help="checkpoint whose metadata receives α and τ")
    ap.add_argument("--json", help="write the calibration here")
    ap.add_argument("--refresh-domain", metavar="DATA",
                    help="recompute the --write-to checkpoint's chemical domain from its "
                    "training frames in DATA (the file it was trained on)")
    args = ap.parse_args()
    if args.refresh_domain and not args.write_to:
        raise SystemExit("--refresh-domain needs --write-to MODEL.pt")
    parts = {key: [_load(p, key, not args.no_prior) for p in args.results]
             for key in ("valid", "left_out")}
    pooled = np.concatenate([x for runs in parts.values() for x in runs], axis=1)
    result = calibrate(*pooled, args.recall)
    alpha, tau = result["uncertainty_scale"], result["uncertainty_threshold_ev_per_atom"]
    for key, runs in parts.items():
        e, s, u, p = np.concatenate(runs, axis=1)
        sigma = energy_spread(s, u, alpha, p)
        result[key] = {"n_frames": int(len(e)), "spearman": spearman(sigma, e),
                       "flagged": float(np.mean(sigma > tau)),
                       "median_error_mev_per_atom": float(np.median(e) * 1000),
                       "median_sigma_mev_per_atom": float(np.median(sigma) * 1000)}
    result["left_out_spearman_per_file"] = {
        path: spearman(energy_spread(s, u, alpha, p), e)
        for path, (e, s, u, p) in zip(args.results, parts["left_out"], strict=True)}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.write_to:
        from matdesign.checkpoint import load_potential, save_potential

        model = load_potential(args.write_to)
        meta = {"uncertainty_scale": alpha, "uncertainty_threshold_ev_per_atom": tau,
                "uncertainty_calibration": result}
        if args.refresh_domain:
            meta.update(_training_domain(model, args.refresh_domain))
        save_potential(model, args.write_to, metadata=meta)
        print(f"wrote α and τ into {args.write_to}")


def _training_domain(model: Potential | PotentialEnsemble, data: str) -> dict:
    """``{chemical_domain: ...}`` of ``model``'s training frames in ``data``, split as the
    trainer split them; SystemExit when the count of training frames is not the model's."""
    from ase.data import atomic_numbers

    from matdesign.domain import METADATA_KEY
    from matdesign.training.data import load_frames, split
    from matdesign.training.trainer import training_domain

    if not Path(data).is_file():
        raise SystemExit(f"--refresh-domain {data}: no such file")
    meta, config = model.metadata, model.config
    train_config = meta.get("train_config", {})
    if "n_train" not in meta or "valid_fraction" not in train_config:
        raise SystemExit("--refresh-domain: the checkpoint records no training split "
                         "(n_train, train_config.valid_fraction)")
    index = {atomic_numbers[s]: k for k, s in enumerate(model.species)}
    frames = load_frames(data, config.cutoff, index)
    tr, _ = split(len(frames), train_config["valid_fraction"], train_config.get("seed", 0))
    if len(tr) != meta["n_train"]:
        raise SystemExit(f"--refresh-domain {data}: {len(tr)} training frames, the checkpoint "
                         f"was trained on {meta['n_train']}: not its training file")
    domain = training_domain([frames[i] for i in tr], config.cutoff, config.chemical_pairs)
    print(f"chemical domain recomputed from {data}: σ_pair "
          f"{domain.pair_prior_ev_per_atom * 1000:.1f} meV/atom")
    return {METADATA_KEY: domain.to_dict()}


if __name__ == "__main__":
    main()
