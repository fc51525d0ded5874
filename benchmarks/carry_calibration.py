"""Copy a checkpoint's committee calibration (α, τ and its record) into a fine-tuned one.

    python benchmarks/carry_calibration.py --from matdesign/models/default.pt --to runs/v23/model.pt

A fine-tuning stage re-attaches the last-layer committee and drops the old calibration
(it belonged to other weights). Where no leave-out fits of the new stage exist, this carries
the parent's α (``uncertainty_scale``) and τ (``uncertainty_threshold_ev_per_atom``) over and
records that it did (``uncertainty_calibration_carried_from``): an approximation, stated.
"""

from __future__ import annotations

import argparse


def main() -> None:
    from matdesign.checkpoint import load_potential, save_potential

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", required=True)
    ap.add_argument("--to", dest="target", required=True)
    args = ap.parse_args()
    meta = load_potential(args.source).metadata
    keys = ("uncertainty_scale", "uncertainty_threshold_ev_per_atom", "uncertainty_calibration")
    missing = [k for k in keys if k not in meta]
    if missing:
        raise SystemExit(f"{args.source} has no {missing}: nothing to carry")
    model = load_potential(args.target)
    if model.num_heads < 2:
        raise SystemExit(f"{args.target} has no committee to calibrate")
    carried = {k: meta[k] for k in keys}
    carried["uncertainty_calibration_carried_from"] = str(args.source)
    save_potential(model, args.target, metadata=carried)
    print(f"α {meta['uncertainty_scale']:.4f}, τ {meta['uncertainty_threshold_ev_per_atom']:.4f} "
          f"eV/atom carried from {args.source} into {args.target}")


if __name__ == "__main__":
    main()
