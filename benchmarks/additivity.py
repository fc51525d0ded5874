"""Pair additivity of a potential's mixing energies: does a multi-component alloy mix as the sum
of its binaries?

For Nb–Mo–Ta–W, DFT mixing energies of bcc solid solutions are close to a regular-solution
sum of pair terms, ΔH(x) ≈ Σ_{i<j} Ω_ij x_i x_j (the same quadratic-form regularity that
``benchmarks/mixing_quadratic.py`` shows across the binaries). The training data contain only
elements and binaries, so a model's ternary and quaternary mixing energies are pure
extrapolation; their departure from the model's *own* binaries summed pairwise is a
many-body term no data constrain. This script measures that departure.

For each equiatomic binary, ternary and the quaternary it relaxes (ions and cell) random
bcc supercells, averages ``--seeds`` decorations, computes the mixing energy against the
relaxed elements, takes Ω_ij = ΔH_ij / (x_i x_j) from the binaries, and prints ΔH − Σ Ω_ij x_i x_j.

Usage:
    python benchmarks/additivity.py --potential default --reps 3 --seeds 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbmotaw_alloys import LATTICE, random_alloy

ELEMENTS = ["Nb", "Mo", "Ta", "W"]


def mixing_energy(calc: object, comp: tuple[str, ...], reps: int, seeds: int, fmax: float,
                  ref: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Mean mixing energy (meV/atom) of near-equiatomic random alloys of ``comp`` and their
    exact mole fractions (a cell's atom count need not divide by the number of elements)."""
    from matdesign.properties.relax import relax

    values = []
    for seed in range(seeds):
        atoms = random_alloy({s: 1 / len(comp) for s in comp}, reps, seed)
        _, res = relax(atoms, calc, fmax=fmax, max_steps=1000)
        x = {s: atoms.get_chemical_symbols().count(s) / len(atoms) for s in comp}
        values.append(1000 * (res.energy_per_atom_ev - sum(x[s] * ref[s] for s in comp)))
    return float(np.mean(values)), x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--potential", default="default")
    ap.add_argument("--reps", type=int, default=3, help="bcc supercell repeats (2*reps^3 atoms)")
    ap.add_argument("--seeds", type=int, default=3, help="random decorations per composition")
    ap.add_argument("--fmax", type=float, default=0.01, help="eV/Å")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from matdesign.calculator import load_calculator
    from matdesign.properties.relax import relax

    calc = load_calculator(args.potential, dtype="float64")
    ref = {el: relax(bulk(el, "bcc", a=LATTICE[el], cubic=True), calc, fmax=1e-4)[1]
           .energy_per_atom_ev for el in ELEMENTS}
    omega = {}
    rows = []
    for pair in itertools.combinations(ELEMENTS, 2):
        dh, x = mixing_energy(calc, pair, args.reps, args.seeds, args.fmax, ref)
        omega[pair] = dh / (x[pair[0]] * x[pair[1]])
        rows.append({"alloy": "".join(pair), "mixing_mev_per_atom": dh, "excess_mev_per_atom": 0.0})
    for k in (3, 4):
        for comp in itertools.combinations(ELEMENTS, k):
            dh, x = mixing_energy(calc, comp, args.reps, args.seeds, args.fmax, ref)
            pairwise = sum(omega[(a, b)] * x[a] * x[b] for a, b in itertools.combinations(comp, 2))
            rows.append({"alloy": "".join(comp), "mixing_mev_per_atom": dh,
                         "pairwise_mev_per_atom": pairwise, "excess_mev_per_atom": dh - pairwise})
    print(f"{'alloy':8s} {'ΔH':>8s} {'Σ pairs':>8s} {'excess':>8s}   (meV/atom)")
    for r in rows:
        print(f"{r['alloy']:8s} {r['mixing_mev_per_atom']:8.1f} "
              f"{r.get('pairwise_mev_per_atom', r['mixing_mev_per_atom']):8.1f} "
              f"{r['excess_mev_per_atom']:8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"potential": args.potential, "reps": args.reps,
                                               "seeds": args.seeds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
