"""Calibrate the committee spread on leave-one-family-out frames and store it in a checkpoint.

Reads the ``result.json`` files of ``benchmarks/lofo.py`` runs (per-frame |error| and raw
committee spread, eV/atom, of the random validation frames and of the left-out family) and
pools them, as a campaign meets both in-domain and never-seen chemistry; then:

* ranks: Spearman correlation between spread and |error| (the issue's floor is 0.5);
* scales: α = sqrt(mean((error/spread)²)), the Gaussian maximum-likelihood factor that makes
  α·spread an error estimate in eV/atom;
* flags: the threshold τ on the calibrated spread (eV/atom) is the largest value that still
  flags ``--recall`` (default 80 %) of the frames whose error exceeds three times the median;
  the fraction flagged is reported for the validation and the left-out frames separately.

``--write-to MODEL.pt`` stores α as ``metadata["uncertainty_scale"]`` and τ as
``metadata["uncertainty_threshold_ev_per_atom"]`` (the calculator multiplies its spread by α).

Usage:
    python benchmarks/calibrate.py runs/lofo/*/result.json --write-to matdesign/models/default.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from lofo import spearman  # benchmarks/ is on sys.path when run as a script


def calibrate(err: np.ndarray, spread: np.ndarray, recall: float) -> dict:
    """α, τ and the statistics behind them; ``err`` and ``spread`` in eV/atom."""
    spread = np.maximum(spread, 1e-12)
    alpha = float(np.sqrt(np.mean((err / spread) ** 2)))
    sigma = alpha * spread
    bad = err > 3 * np.median(err)
    tau = float(np.quantile(sigma[bad], 1 - recall)) if bad.any() else float(np.max(sigma))
    flagged = sigma > tau
    return {"n_frames": int(len(err)), "spearman": spearman(spread, err),
            "uncertainty_scale": alpha, "uncertainty_threshold_ev_per_atom": tau,
            "n_large_error": int(bad.sum()),
            "large_error_flagged": float(flagged[bad].mean()) if bad.any() else None,
            "all_flagged": float(flagged.mean()),
            "median_error_mev_per_atom": float(np.median(err) * 1000)}


def _load(path: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    part = json.loads(Path(path).read_text())[key]
    if "spread_mev_per_atom" not in part:
        raise SystemExit(f"{path}: no committee spread (a single-head model)")
    return (np.array(part["errors_mev_per_atom"]) / 1000,
            np.array(part["spread_mev_per_atom"]) / 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", help="result.json files of benchmarks/lofo.py")
    ap.add_argument("--recall", type=float, default=0.8)
    ap.add_argument("--write-to", help="checkpoint whose metadata receives α and τ")
    ap.add_argument("--json", help="write the calibration here")
    args = ap.parse_args()
    parts = {key: [_load(p, key) for p in args.results] for key in ("valid", "left_out")}
    err = np.concatenate([e for key in parts for e, _ in parts[key]])
    spread = np.concatenate([s for key in parts for _, s in parts[key]])
    result = calibrate(err, spread, args.recall)
    alpha, tau = result["uncertainty_scale"], result["uncertainty_threshold_ev_per_atom"]
    for key, runs in parts.items():
        e = np.concatenate([x for x, _ in runs])
        s = np.concatenate([x for _, x in runs])
        result[key] = {"n_frames": int(len(e)), "spearman": spearman(s, e),
                       "flagged": float(np.mean(alpha * s > tau)),
                       "median_error_mev_per_atom": float(np.median(e) * 1000),
                       "median_sigma_mev_per_atom": float(np.median(alpha * s) * 1000)}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.write_to:
        from matdesign.checkpoint import load_potential, save_potential

        model = load_potential(args.write_to)
        save_potential(model, args.write_to, metadata={
            "uncertainty_scale": alpha, "uncertainty_threshold_ev_per_atom": tau,
            "uncertainty_calibration": result})
        print(f"wrote α and τ into {args.write_to}")


if __name__ == "__main__":
    main()
