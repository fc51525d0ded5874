"""A committee of seeds against the last-layer Laplace committee, on leave-one-family-out frames.

The issue asks for "a committee from different seeds and data orders, or a cheaper scheme you
show to be equally well calibrated". The shipped model carries the cheaper scheme (a last-layer
Laplace committee, :mod:`matdesign.training.committee`). This script puts the two side by side
on the same frames: several ``benchmarks/lofo.py`` fits of one recipe that differ only in
``train.seed`` (initial weights and data order) and share their validation split
(``--split-seed``), per left-out family. Per frame it forms

* the seeds' committee: mean and standard deviation over the fits of E/N (eV/atom);
* each fit's own Laplace spread (the shipped scheme, raw, eV/atom).

Each score is calibrated as the calculator does (:func:`matdesign.domain.energy_spread`:
σ = √((α·spread)² + (σ_pair·u)²), α over the frames without an unseen pair, τ flagging 80 % of
the frames whose error exceeds three times the median; ``benchmarks/calibrate.py``), pooled
over the validation and left-out frames of every family, and judged against the error it is
meant to rank:

* ``laplace``: member 0's Laplace spread against member 0's error (the shipped scheme; the
  members' average Spearman is reported beside it);
* ``seeds``: the seeds' spread against the error of their mean (a shipped committee of seeds);
* ``seeds_vs_member``: the seeds' spread against member 0's error (seeds as an uncertainty of
  one model).

Usage:
    python benchmarks/seed_committee.py runs/s20/seeds/*/result.json \
        --json benchmarks/results/s20/seed_committee.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from calibrate import calibrate  # benchmarks/ is on sys.path when run as a script
from lofo import spearman

from matdesign.domain import energy_spread

PARTS = ("valid", "left_out")


def _load(path: str) -> dict:
    if not Path(path).is_file():
        raise SystemExit(f"{path}: no such result file of benchmarks/lofo.py")
    data = json.loads(Path(path).read_text())
    for key in PARTS:
        part = data.get(key, {})
        missing = [k for k in ("signed_errors_mev_per_atom", "spread_mev_per_atom",
                               "unseen_edge_fraction") if k not in part]
        if missing:
            raise SystemExit(f"{path}: {key} lacks {missing}; judge it again with "
                             f"benchmarks/lofo.py --rejudge")
    return data


def family_frames(results: list[dict], paths: list[str]) -> dict[str, np.ndarray]:
    """Per-frame arrays of one family's fits (same frames in the same order), eV/atom.

    Returns:
        ``signed`` (fits, frames), ``laplace`` (fits, frames), ``unseen`` and ``prior``
        (frames,), ``left`` (frames,) True for left-out frames.

    Raises:
        SystemExit: the fits do not share their split or their frames.
    """
    splits = {r.get("split_seed", r.get("seed")) for r in results}
    counts = {tuple(len(r[k]["signed_errors_mev_per_atom"]) for k in PARTS) for r in results}
    if len(splits) != 1 or len(counts) != 1:
        raise SystemExit(f"{paths}: the fits do not share a validation split "
                         f"(split seeds {splits}, frame counts {counts})")
    out: dict[str, list] = defaultdict(list)
    for key in PARTS:
        parts = [r[key] for r in results]
        out["signed"].append(np.array([p["signed_errors_mev_per_atom"] for p in parts]))
        out["laplace"].append(np.array([p["spread_mev_per_atom"] for p in parts]))
        unseen = np.array([p["unseen_edge_fraction"] for p in parts])
        if np.ptp(unseen, axis=0).max() > 0:
            raise SystemExit(f"{paths}: {key} frames differ between the fits")
        out["unseen"].append(unseen[0])
        out["prior"].append(np.full(unseen.shape[1], parts[0]["pair_prior_mev_per_atom"]))
        out["left"].append(np.full(unseen.shape[1], key == "left_out"))
    arrays = {k: np.concatenate(v, axis=-1) for k, v in out.items()}
    for k in ("signed", "laplace", "prior"):
        arrays[k] = arrays[k] / 1000.0
    return arrays


def judge_score(err: np.ndarray, spread: np.ndarray, unseen: np.ndarray, prior: np.ndarray,
                left: np.ndarray, family: np.ndarray) -> dict:
    """Calibrate one (error, spread) pair pooled, then rank within each part and family."""
    result = calibrate(err, spread, unseen, prior, recall=0.8)
    sigma = energy_spread(np.maximum(spread, 1e-12), unseen, result["uncertainty_scale"], prior)
    tau = result["uncertainty_threshold_ev_per_atom"]
    result["spearman_valid"] = spearman(sigma[~left], err[~left])
    result["spearman_left_out"] = spearman(sigma[left], err[left])
    result["valid_flagged"] = float(np.mean(sigma[~left] > tau))
    result["left_out_flagged"] = float(np.mean(sigma[left] > tau))
    result["spearman_within_left_out_family"] = {
        f: spearman(sigma[left & (family == f)], err[left & (family == f)])
        for f in sorted(set(family[left]))}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", help="result.json files of benchmarks/lofo.py")
    ap.add_argument("--no-prior", action="store_true", help="the spreads alone (u = 0)")
    ap.add_argument("--json", help="write the comparison here")
    args = ap.parse_args()
    groups: dict[str, list[str]] = defaultdict(list)
    loaded = {p: _load(p) for p in args.results}
    for path, data in loaded.items():
        groups[",".join(data["leave_out"])].append(path)
    fams = {}
    for fam, paths in sorted(groups.items()):
        if len(paths) < 2:
            raise SystemExit(f"family {fam}: one fit ({paths[0]}); a committee needs two or more")
        paths.sort(key=lambda p: loaded[p].get("seed", 0))
        fams[fam] = family_frames([loaded[p] for p in paths], paths)
    pooled = {k: np.concatenate([f[k] for f in fams.values()], axis=-1)
              for k in ("signed", "laplace", "unseen", "prior", "left")}
    family = np.concatenate([np.full(f["left"].shape, name) for name, f in fams.items()])
    if args.no_prior:
        pooled["unseen"] = np.zeros_like(pooled["unseen"])
    signed, laplace = pooled["signed"], pooled["laplace"]
    mean, std = signed.mean(0), signed.std(0)
    common = (pooled["unseen"], pooled["prior"], pooled["left"], family)
    members = [judge_score(np.abs(signed[k]), laplace[k], *common) for k in range(len(signed))]
    report = {
        "families": {f: len(p) for f, p in groups.items()},
        "n_frames": int(signed.shape[1]),
        "prior": not args.no_prior,
        "laplace": members[0],
        "laplace_spearman_per_member": [m["spearman"] for m in members],
        "seeds": judge_score(np.abs(mean), std, *common),
        "seeds_vs_member": judge_score(np.abs(signed[0]), std, *common),
        "mae_mev_per_atom": {
            part: {"members": [float(np.mean(np.abs(s[sel])) * 1000) for s in signed],
                   "seed_mean": float(np.mean(np.abs(mean[sel])) * 1000)}
            for part, sel in (("valid", ~pooled["left"]), ("left_out", pooled["left"]))},
    }
    for name in ("laplace", "seeds", "seeds_vs_member"):
        r = report[name]
        print(f"{name:16s} Spearman pooled {r['spearman']:.2f} valid {r['spearman_valid']:.2f} "
              f"left-out {r['spearman_left_out']:.2f} | large errors flagged "
              f"{r['large_error_flagged']:.0%}, valid flagged {r['valid_flagged']:.1%}, "
              f"left-out flagged {r['left_out_flagged']:.0%} | within families "
              + ", ".join(f"{f} {v:.2f}" for f, v in r["spearman_within_left_out_family"].items()))
    print("Laplace Spearman per member:",
          ", ".join(f"{v:.2f}" for v in report["laplace_spearman_per_member"]))
    print("MAE (meV/atom):", json.dumps(report["mae_mev_per_atom"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
