"""Generalisation check of an NbMoTaW potential on ternary and quaternary random bcc alloys.

None of these compositions is in the training set (it has elements and binaries only). For
random 54-atom bcc supercells the script relaxes cell and ions and reports, per composition:
energy per atom, mixing energy against the relaxed elements, lattice constant against Vegard's
law, residual force, and the committee spread when the checkpoint is an ensemble. Physical
behaviour: finite forces, small negative or near-zero mixing energies (the DFT binaries mix
exothermically), lattice constants within a few per cent of Vegard, and a smooth energy
along a composition line (checked as the largest deviation from a quadratic fit).

Usage:
    python benchmarks/nbmotaw_alloys.py --potential default --json benchmarks/results/alloys.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase.build import bulk

LATTICE = {"Nb": 3.30, "Mo": 3.16, "Ta": 3.31, "W": 3.17}  # starting guesses only, Å


def random_alloy(fractions: dict[str, float], reps: int, seed: int):
    """Random decoration of a reps³ conventional bcc supercell with exact integer counts."""
    n = 2 * reps**3
    symbols = list(fractions)
    counts = np.floor(np.array([fractions[s] for s in symbols]) * n).astype(int)
    for k in np.argsort([-(fractions[s] * n) % 1 for s in symbols])[: n - counts.sum()]:
        counts[k] += 1
    a0 = sum(fractions[s] * LATTICE[s] for s in symbols)
    atoms = bulk("W", "bcc", a=a0, cubic=True).repeat(reps)
    labels = np.repeat(symbols, counts)
    np.random.default_rng(seed).shuffle(labels)
    atoms.set_chemical_symbols(list(labels))
    return atoms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--potential", default="default")
    ap.add_argument("--reps", type=int, default=3, help="bcc supercell repeats (2*reps^3 atoms)")
    ap.add_argument("--fmax", type=float, default=5e-3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from matdesign.calculator import load_calculator
    from matdesign.properties.relax import relax

    calc = load_calculator(args.potential, dtype="float64")
    elements = ["Nb", "Mo", "Ta", "W"]
    ref = {}
    for el in elements:
        relaxed, res = relax(bulk(el, "bcc", a=LATTICE[el], cubic=True), calc, fmax=1e-4)
        ref[el] = {"energy_per_atom_ev": res.energy_per_atom_ev,
                   "a_a": float(relaxed.cell.lengths()[0])}
    comps = [
        {"Nb": 1 / 3, "Mo": 1 / 3, "Ta": 1 / 3}, {"Mo": 1 / 3, "Ta": 1 / 3, "W": 1 / 3},
        {"Nb": 1 / 3, "Ta": 1 / 3, "W": 1 / 3}, {"Nb": 1 / 3, "Mo": 1 / 3, "W": 1 / 3},
        {"Nb": 0.25, "Mo": 0.25, "Ta": 0.25, "W": 0.25},
    ] + [{"Nb": (1 - x) / 2, "Mo": x / 2, "Ta": (1 - x) / 2, "W": x / 2}
         for x in np.linspace(0.0, 1.0, 7)]
    rows = []
    for k, comp in enumerate(comps):
        atoms = random_alloy(comp, args.reps, seed=k)
        relaxed, res = relax(atoms, calc, fmax=args.fmax, max_steps=2000)
        n = len(relaxed)
        frac = {s: relaxed.get_chemical_symbols().count(s) / n for s in elements}
        e_lin = sum(frac[s] * ref[s]["energy_per_atom_ev"] for s in elements)
        a_vegard = sum(frac[s] * ref[s]["a_a"] for s in elements)
        a = (relaxed.get_volume() / n * 2) ** (1 / 3)
        r = calc.calculate_batch([relaxed])[0]
        rows.append({
            "composition": {s: round(v, 4) for s, v in frac.items() if v},
            "converged": res.converged, "steps": res.steps,
            "energy_per_atom_ev": res.energy_per_atom_ev,
            "mixing_energy_mev_per_atom": 1000 * (res.energy_per_atom_ev - e_lin),
            "lattice_a": a, "vegard_a": a_vegard,
            "max_force_ev_per_a": float(np.abs(r["forces"]).max()),
            "energy_std_mev_per_atom": 1000 * r.get("energy_std", float("nan")) / n,
        })
        x = rows[-1]
        print(f"{x['composition']}: E_mix {x['mixing_energy_mev_per_atom']:+.1f} meV/atom, "
              f"a {a:.4f} Å (Vegard {a_vegard:.4f}), converged {res.converged}", flush=True)
    line = rows[5:]
    xs = np.linspace(0.0, 1.0, len(line))
    ys = np.array([r["mixing_energy_mev_per_atom"] for r in line])
    fit = np.polyval(np.polyfit(xs, ys, 2), xs)
    out = {"elements": ref, "alloys": rows,
           "line_NbTa_to_MoW_max_dev_from_quadratic_mev": float(np.abs(ys - fit).max())}
    dev = out["line_NbTa_to_MoW_max_dev_from_quadratic_mev"]
    print(f"NbTa->MoW line: max deviation from a quadratic {dev:.2f} meV/atom")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
