"""Mixing energy of cold and rattled random alloys, several models side by side.

No DFT labels exist for hot mixed NbMoTaW cells (the held-out quaternary AIMD), so this only
says where models disagree: random equiatomic 128-atom bcc cells at Vegard's lattice constant
(the data README's DFT lattice constants), unrelaxed, optionally rattled (Gaussian σ per
Cartesian component), energy per atom minus the composition average of each pure element's
bcc energy at its own lattice constant (meV/atom), averaged over decorations.

Usage:
    python benchmarks/hot_mixing.py --potentials default runs/v18/model.pt --sigmas 0 0.1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from physcheck import DFT_A as LATTICE  # the data README's DFT lattice constants, Å

ALLOYS = (("Nb", "Mo", "Ta", "W"), ("Nb", "Mo", "Ta"), ("Mo", "Ta", "W"), ("Mo", "Ta"),
          ("Nb", "W"))


def cell(elements: tuple[str, ...], sigma: float, seed: int):
    """A random 4×4×4 bcc cell of ``elements`` (as equal as 128 sites allow), rattled by σ Å."""
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    atoms = bulk("W", "bcc", a=float(np.mean([LATTICE[e] for e in elements])),
                 cubic=True).repeat(4)
    symbols = np.resize(np.array(elements), len(atoms))
    rng.shuffle(symbols)
    atoms.set_chemical_symbols(symbols.tolist())
    if sigma:
        atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
    return atoms


def mixing_energy(calc: object, atoms, reference: dict[str, float]) -> float:
    """E/N − Σ x_s E_s (meV/atom)."""
    atoms.calc = calc
    pure = np.mean([reference[s] for s in atoms.get_chemical_symbols()])
    return 1000 * (atoms.get_potential_energy() / len(atoms) - pure)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--potentials", nargs="+", required=True)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.1], help="Å")
    ap.add_argument("--decorations", type=int, default=4)
    args = ap.parse_args()
    from ase.build import bulk

    from matdesign.calculator import load_calculator

    calcs = [load_calculator(p, dtype="float64") for p in args.potentials]
    references = []
    for calc in calcs:
        ref = {}
        for element, a in LATTICE.items():
            atoms = bulk(element, "bcc", a=a, cubic=True)
            atoms.calc = calc
            ref[element] = atoms.get_potential_energy() / len(atoms)
        references.append(ref)
    print("alloy      σ (Å)  " + "  ".join(f"{p[-24:]:>24s}" for p in args.potentials))
    for elements in ALLOYS:
        for sigma in args.sigmas:
            row = [np.mean([mixing_energy(c, cell(elements, sigma, k), ref)
                            for k in range(args.decorations)])
                   for c, ref in zip(calcs, references, strict=True)]
            print(f"{''.join(elements):10s} {sigma:5.2f}  "
                  + "  ".join(f"{v:24.1f}" for v in row))


if __name__ == "__main__":
    main()
