"""Ordering energies of one binary family: does a model rank and scale the arrangements of a
fixed composition and volume as DFT does?

A binary family's frames (e.g. ``MoTa_SS``, 16-atom cells) come in groups of the same
composition and cell volume that differ only in which site holds which element. Within such
a group the energy differences are ordering energies, set by the unlike-pair interactions of
the first neighbour shells. For each group with at least ``--min-group`` frames this reports
the DFT and model spreads, their correlation and the least-squares slope of the model's
centred energies against DFT's (1 = right magnitude), plus the group's mean offset; then the
same pooled over all groups. A model fitted without the family (``benchmarks/lofo.py``) shows
how it extrapolates ordering to a pair it never saw.

    python benchmarks/ordering.py --data ../shared/data/NbMoTaW/train.extxyz --family MoTa_SS \\
        --potential runs/s17/lofo_chem/MoTa_SS/model.pt --json OUT.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def group_statistics(x: np.ndarray, volume: np.ndarray, e_dft: np.ndarray,
                     e_model: np.ndarray, min_group: int) -> tuple[list[dict], dict]:
    """Per (composition, volume) group and pooled statistics; energies in meV/atom.

    Args:
        x: fraction of the family's first element per frame.
        volume: volume per atom, Å³ (grouped to 0.01 Å³).
        e_dft, e_model: energies per atom, meV/atom.
        min_group: smallest group reported.
    """
    keys = np.stack([np.round(x, 4), np.round(volume, 2)], axis=1)
    rows, d_all, p_all = [], [], []
    for key in np.unique(keys, axis=0):
        idx = np.where((keys == key).all(axis=1))[0]
        if len(idx) < min_group:
            continue
        d = e_dft[idx] - e_dft[idx].mean()
        p = e_model[idx] - e_model[idx].mean()
        rows.append({"x": float(key[0]), "volume_a3_per_atom": float(key[1]), "n": int(len(idx)),
                     "dft_std_mev": float(d.std()), "model_std_mev": float(p.std()),
                     "correlation": float(np.corrcoef(d, p)[0, 1]),
                     "slope": float(d @ p / (d @ d)),
                     "offset_mev": float((e_model[idx] - e_dft[idx]).mean())})
        d_all.append(d)
        p_all.append(p)
    d, p = np.concatenate(d_all), np.concatenate(p_all)
    pooled = {"groups": len(rows), "frames": int(len(d)),
              "correlation": float(np.corrcoef(d, p)[0, 1]),
              "slope": float(d @ p / (d @ d)),
              "ordering_mae_mev": float(np.abs(p - d).mean())}
    return rows, pooled


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="extended XYZ with config_type per frame")
    ap.add_argument("--family", required=True, help="config_type prefix, e.g. MoTa_SS")
    ap.add_argument("--potential", default="default")
    ap.add_argument("--min-group", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    import torch
    from ase.io import read

    from matdesign.calculator import load_calculator

    torch.set_num_threads(args.threads)
    frames = [a for a in read(args.data, ":")
              if str(a.info.get("config_type", "")).startswith(args.family)]
    if not frames:
        raise SystemExit(f"{args.data}: no frame's config_type starts with {args.family!r}")
    elements = sorted({s for a in frames for s in a.get_chemical_symbols()})
    if len(elements) != 2:
        raise SystemExit(f"{args.family}: expected a binary family, found elements {elements}")
    calc = load_calculator(args.potential, dtype="float64")
    x, volume, e_dft, e_model = [], [], [], []
    for a in frames:
        n = len(a)
        e_dft.append(1e3 * a.get_potential_energy() / n)
        b = a.copy()
        b.calc = calc
        e_model.append(1e3 * b.get_potential_energy() / n)
        x.append(a.get_chemical_symbols().count(elements[0]) / n)
        volume.append(a.get_volume() / n)
    rows, pooled = group_statistics(np.array(x), np.array(volume), np.array(e_dft),
                                    np.array(e_model), args.min_group)
    print(f"| x({elements[0]}) | V (Å³/atom) | n | DFT std | model std | corr | slope | offset |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['x']:.3f} | {r['volume_a3_per_atom']:.2f} | {r['n']} | {r['dft_std_mev']:.1f} "
              f"| {r['model_std_mev']:.1f} | {r['correlation']:.2f} | {r['slope']:.2f} "
              f"| {r['offset_mev']:+.1f} |")
    print(f"pooled over {pooled['groups']} groups ({pooled['frames']} frames): correlation "
          f"{pooled['correlation']:.2f}, slope {pooled['slope']:.2f}, ordering MAE "
          f"{pooled['ordering_mae_mev']:.2f} meV/atom")
    if args.json:
        Path(args.json).write_text(json.dumps({"family": args.family, "potential": args.potential,
                                               "groups": rows, "pooled": pooled}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
