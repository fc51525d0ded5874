"""Record a training set's chemical domain in a checkpoint, and measure what the domain flag
catches on leave-one-family-out frames.

``matdesign train`` writes the domain itself; this is for checkpoints trained before it did
(the shipped default model) and for the leave-one-family-out table: with ``--leave-out`` it
computes the domain of the frames that fit trained on (every family but the left-out ones)
and reports the fraction of validation and left-out frames it flags.

Usage:
    python benchmarks/domain.py --data ../shared/data/NbMoTaW/train.extxyz \\
        --write-to matdesign/models/default.pt
    python benchmarks/domain.py --data ../shared/data/NbMoTaW/train.extxyz --leave-out MoTa_SS
"""

from __future__ import annotations

import argparse

import numpy as np
from ase.io import read
from ase.neighborlist import neighbor_list

from matdesign.domain import METADATA_KEY, ChemicalDomain
from matdesign.training.data import split


def domain_of(frames: list, cutoff: float) -> ChemicalDomain:
    """The chemical domain of ASE frames (neighbours within ``cutoff``, Å), with the
    unseen-pair prior of their DFT energies."""
    return ChemicalDomain.from_edges(
        ((np.array(atoms.get_chemical_symbols()), *neighbor_list("ijd", atoms, cutoff),
          atoms.get_potential_energy()) for atoms in frames), cutoff)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--cutoff", type=float, default=5.0, help="Å (the model's cutoff)")
    ap.add_argument("--leave-out", default="", help="comma-separated config_type prefixes")
    ap.add_argument("--write-to", help="checkpoint whose metadata receives the domain")
    args = ap.parse_args()
    frames = read(args.data, ":")
    prefixes = tuple(p for p in args.leave_out.split(",") if p)
    if not prefixes:
        domain = domain_of(frames, args.cutoff)
        print(domain.to_dict())
        if args.write_to:
            from matdesign.checkpoint import load_potential, save_potential

            model = load_potential(args.write_to)
            save_potential(model, args.write_to, metadata={METADATA_KEY: domain.to_dict()})
            print(f"wrote the chemical domain into {args.write_to}")
        return
    left = [a for a in frames if a.info["config_type"].startswith(prefixes)]
    kept = [a for a in frames if not a.info["config_type"].startswith(prefixes)]
    train, valid = split(len(kept), 0.1, 0)  # benchmarks/lofo.py's split
    domain = domain_of([kept[i] for i in train], args.cutoff)
    for name, group in (("validation", [kept[i] for i in valid]), ("left out", left)):
        flagged = [domain.check(a).outside for a in group]
        print(f"{name}: {len(group)} frames, {100 * np.mean(flagged):.0f} % outside the domain")


if __name__ == "__main__":
    main()
