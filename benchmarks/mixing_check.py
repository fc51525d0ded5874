"""A potential's mixing energies of ternary and quaternary cells against reference (GPAW PBE)
values: the chemistry the NbMoTaW data never show.

    python benchmarks/mixing_check.py --potential default \\
        --targets benchmarks/results/s22/mixing_energies_pbe.json \\
        --data ../shared/data/NbMoTaW/train.extxyz --json out.json

Each cell is built as ``train.mixing_energies`` builds it (matdesign.training.mixing_energies):
the reference's cell shape and fractional positions at the same fraction of the potential's
Vegard volume, V₀ per element from the data's lowest-energy elemental frame. Prints ΔE_mix of
the potential and of the reference, their difference per cell (meV/atom), the mean signed
and absolute error, and the committee's σ per atom where the checkpoint has one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    from ase.io import read

    from matdesign.calculator import load_calculator
    from matdesign.checkpoint import load_potential
    from matdesign.potential_spec import DEFAULT_MODEL
    from matdesign.training.compression import equilibrium_volumes
    from matdesign.training.data import to_frame
    from matdesign.training.mixing_energies import MixingEnergyTerm, load_mixing_targets

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--potential", default="default")
    parser.add_argument("--targets", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="training data (for V0)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    path = DEFAULT_MODEL if args.potential == "default" else Path(args.potential)
    model = load_potential(path, dtype="float64")
    member = model.members[0] if hasattr(model, "members") else model
    cutoff = member.config.cutoff
    elemental = [a for a in read(args.data, ":") if len(set(a.numbers)) == 1]
    frames = [to_frame(a, cutoff, member.species_index, f"{args.data}") for a in elemental]
    volumes = equilibrium_volumes(frames)
    targets = load_mixing_targets(args.targets)
    term = MixingEnergyTerm.build(targets, volumes, member.species, cutoff, 0.0)
    mix = term.mixing_energies(model, training=False).detach().numpy()
    calc = load_calculator(str(path), dtype="float64")
    rows = []
    by_name = {t.name: t for t in targets}
    for name, m, ref in zip(term.labels, mix, term.targets_ev.numpy()):
        atoms = by_name[name].cell(volumes)
        atoms.calc = calc
        atoms.get_potential_energy()
        std = calc.results.get("energy_std")
        rows.append({"cell": name, "model_mev": round(1e3 * float(m), 2),
                     "reference_mev": round(1e3 * float(ref), 2),
                     "error_mev": round(1e3 * float(m - ref), 2),
                     "sigma_mev_per_atom": None if std is None
                     else round(1e3 * float(std) / len(atoms), 2)})
        print(f"{name:24s} model {1e3 * m:8.1f}  ref {1e3 * ref:8.1f}  error "
              f"{1e3 * (m - ref):+7.1f} meV/atom  σ/N {rows[-1]['sigma_mev_per_atom']}")
    err = np.array([r["error_mev"] for r in rows])
    summary = {"potential": str(path), "targets": str(args.targets),
               "mean_error_mev": round(float(err.mean()), 2),
               "mae_mev": round(float(np.abs(err).mean()), 2), "cells": rows}
    print(f"mean signed error {summary['mean_error_mev']:+.1f}, MAE {summary['mae_mev']:.1f} "
          f"meV/atom over {len(rows)} cells")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
