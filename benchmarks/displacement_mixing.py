"""Is a potential softer for displaced unlike atoms than for displaced like atoms?

The held-out quaternary NbMoTaW cells are hot AIMD snapshots, and a model that is too soft for
displacements in mixed cells would put them too low. Without hot mixed DFT data, this compares a
model with itself: for relaxed random bcc cells (128 atoms, equiatomic, ions and volume relaxed)
it adds the same random displacement patterns (Gaussian, σ per Cartesian component) and reports
the mean energy rise per atom, beside the composition average of the pure elements' rises
(a rule of mixtures for the force constants). A ratio well below 1 would flag soft mixing.

Usage:
    python benchmarks/displacement_mixing.py --potential default --sigmas 0.05 0.1 0.15
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from physcheck import DFT_A as LATTICE  # the data README's DFT lattice constants, Å


def relaxed_cell(calc: object, elements: tuple[str, ...], order: np.ndarray, reps: int):
    """A relaxed bcc supercell with the elements dealt out in the fixed random ``order``."""
    from ase.build import bulk
    from ase.filters import UnitCellFilter
    from ase.optimize import FIRE

    a = float(np.mean([LATTICE[e] for e in elements]))
    atoms = bulk("W", "bcc", a=a, cubic=True).repeat((reps,) * 3)
    symbols = [elements[k % len(elements)] for k in range(len(atoms))]
    atoms.set_chemical_symbols([symbols[i] for i in order])
    atoms.calc = calc
    opt = FIRE(UnitCellFilter(atoms, hydrostatic_strain=True), logfile=None)
    if not opt.run(fmax=1e-3, steps=400):
        raise RuntimeError(f"{''.join(elements)}: relaxation did not converge in 400 steps")
    return atoms


def rise_mev(atoms: object, patterns: list[np.ndarray]) -> float:
    """Mean E(displaced) − E(relaxed) per atom over the patterns, meV/atom."""
    e0 = atoms.get_potential_energy() / len(atoms)
    base = atoms.positions.copy()
    rises = []
    for u in patterns:
        atoms.positions = base + u
        rises.append(atoms.get_potential_energy() / len(atoms) - e0)
    atoms.positions = base
    return 1e3 * float(np.mean(rises))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--potential", default="default")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.10, 0.15], help="Å")
    ap.add_argument("--patterns", type=int, default=6, help="displacement patterns per σ")
    ap.add_argument("--reps", type=int, default=4, help="bcc cubic repeats (2·reps³ atoms)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    from matdesign.calculator import load_calculator

    torch.set_num_threads(args.threads)
    calc = load_calculator(args.potential, dtype="float64")
    rng = np.random.default_rng(0)
    n = 2 * args.reps**3
    patterns = {s: [rng.normal(scale=s, size=(n, 3)) for _ in range(args.patterns)]
                for s in args.sigmas}
    order = rng.permutation(n)
    elements = tuple(LATTICE)
    pure = {e: {s: rise_mev(relaxed_cell(calc, (e,), order, args.reps), patterns[s])
                for s in args.sigmas} for e in elements}
    rows = [{"cell": e, **{f"rise_{s}": pure[e][s] for s in args.sigmas}} for e in elements]
    header = "".join(f"σ={s} Å: rise (mean of elements, ratio)   " for s in args.sigmas)
    print("cell      " + header)
    for e in elements:
        print(f"{e:9s} " + "".join(f"{pure[e][s]:8.1f}{'':31s}" for s in args.sigmas))
    combos = [*itertools.combinations(elements, 2), elements]
    for combo in combos:
        atoms = relaxed_cell(calc, combo, order, args.reps)
        row = {"cell": "".join(combo)}
        text = f"{row['cell']:9s} "
        for s in args.sigmas:
            rise = rise_mev(atoms, patterns[s])
            mean = float(np.mean([pure[e][s] for e in combo]))
            row.update({f"rise_{s}": rise, f"elements_mean_{s}": mean, f"ratio_{s}": rise / mean})
            text += f"{rise:8.1f} ({mean:6.1f}, {rise / mean:5.3f}){'':14s}"
        rows.append(row)
        print(text)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "unit": "meV/atom", "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
