"""A potential's mixing energies of ternary and quaternary cells against reference (GPAW PBE)
values: the chemistry the NbMoTaW data never show.

    python benchmarks/mixing_check.py --potential default \\
        --targets benchmarks/results/s22/mixing_energies_pbe.json \\
        --data ../shared/data/NbMoTaW/train.extxyz --json out.json

Each cell is built as ``train.mixing_energies`` builds it (matdesign.training.mixing_energies):
the reference's cell shape and fractional positions at the same fraction of the potential's
Vegard volume, V₀ per element from the data's lowest-energy elemental frame. Prints ΔE_mix of
the potential and of the reference, their difference per cell (meV/atom), the mean signed
and absolute error, and the calculator's σ per atom where the checkpoint has a committee.

``--write-to MODEL.pt`` stores σ_many = RMS(error / w) over the cells (w: the fraction of a
cell's atoms that see more elements than any training atom) in the checkpoint's chemical
domain (``many_species_prior_ev_per_atom``, matdesign.domain.energy_spread). Use cells the
model was not trained on: a cell named in the checkpoint's ``train.mixing_energies`` file is
refused. ``--reference-uncertainty U`` (meV/atom) adds the reference's own uncertainty against
the training data's DFT in quadrature, σ_many = sqrt(RMS² + U²): the errors measured here are
against GPAW, the model is judged against the data's VASP, and a model fitted to GPAW frames
inherits their difference (about 6 meV/atom for an equiatomic quaternary, estimated from the
binary check of benchmarks/gpaw_alloys.py; benchmarks/README.md, twenty-second session).
"""

from __future__ import annotations

import argparse
import dataclasses
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
    parser.add_argument("--write-to", type=Path, help="checkpoint that receives σ_many")
    parser.add_argument("--reference-uncertainty", type=float, default=0.0, metavar="MEV",
                        help="the reference's uncertainty against the data's DFT (meV/atom), "
                             "added to σ_many in quadrature")
    args = parser.parse_args()
    if args.reference_uncertainty < 0 or not np.isfinite(args.reference_uncertainty):
        raise SystemExit(f"--reference-uncertainty: {args.reference_uncertainty} is not a "
                         "non-negative number of meV/atom")

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
    if args.write_to:
        summary["reference_uncertainty_mev"] = args.reference_uncertainty
        summary["many_species_prior_ev_per_atom"] = write_prior(
            args.write_to, [by_name[r["cell"]] for r in rows], 1e-3 * err, volumes,
            1e-3 * args.reference_uncertainty)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


def write_prior(path: Path, cells: list, errors_ev: np.ndarray, volumes: dict,
                reference_uncertainty_ev: float = 0.0) -> float:
    """σ_many = sqrt(RMS(error / w)² + u²) into the chemical domain of the checkpoint at
    ``path`` (u: the reference's uncertainty against the data's DFT, eV/atom)."""
    from matdesign.checkpoint import load_potential, save_potential
    from matdesign.domain import METADATA_KEY, ChemicalDomain, many_species_fractions
    from matdesign.graph import atoms_to_graph
    from matdesign.training.mixing_energies import load_mixing_targets

    model = load_potential(path)
    meta = model.metadata
    trained_on = meta.get("train_config", {}).get("mixing_energies")
    if trained_on and Path(trained_on).is_file():
        overlap = {t.name for t in load_mixing_targets(trained_on)} & {c.name for c in cells}
        if overlap:
            raise SystemExit(f"--write-to: {sorted(overlap)} were in the model's training "
                             f"targets ({trained_on}); calibrate on cells it never saw")
    domain = ChemicalDomain.from_dict(meta[METADATA_KEY])
    member = model.members[0] if hasattr(model, "members") else model
    w = []
    for cell in cells:
        g = atoms_to_graph(cell.cell(volumes), member.config.cutoff, member.species_index)
        receivers, senders = g.edge_index.numpy()
        w.append(many_species_fractions(g.species.numpy(), receivers, senders,
                                        np.zeros(len(cell.symbols), dtype=int), 1,
                                        domain.max_species_per_environment)[0])
    w = np.array(w)
    if not np.any(w > 0):
        raise SystemExit("--write-to: no cell has more elements per neighbourhood than the "
                         "training data; σ_many cannot be measured on these cells")
    rms = float(np.sqrt(np.mean((errors_ev[w > 0] / w[w > 0]) ** 2)))
    sigma = float(np.hypot(rms, reference_uncertainty_ev))
    record = dataclasses.replace(domain, many_species_prior_ev_per_atom=round(sigma, 5))
    save_potential(model, path, metadata={METADATA_KEY: record.to_dict()})
    print(f"σ_many {1e3 * sigma:.1f} meV/atom (RMS {1e3 * rms:.1f} over {int(np.sum(w > 0))} "
          f"cells, reference {1e3 * reference_uncertainty_ev:.1f}) -> {path}")
    return sigma


if __name__ == "__main__":
    main()
