"""Is GPAW's k-point mesh converged for the mixing energies of ``gpaw_alloys.py``?

The mixing energies that the shipped model fits (``train.mixing_energies``, the hot frames of
``gpaw_hot_frames.py``) come from a Γ-centred 3×3×3 mesh per 16-atom cell and the
folded-equivalent 6×6×6 for the 2-atom references. On single binary frames GPAW's mixing
energy differs from the data's VASP by up to 21 meV/atom (twenty-second session). This script
recomputes committed cells with a denser mesh (k per 16-atom cell, 2k for the references, the
same folded equivalence) and prints how far each mixing energy moves::

    OMP_NUM_THREADS=1 /usr/bin/python3 benchmarks/gpaw_kpoints.py --kpts 5 \\
        --records runs/gpaw_alloys/check_NbW_SS_0.json --out-dir runs/gpaw_kpoints

Records are ``gpaw_alloys.py`` outputs (symbols, cell, scaled positions, energy); the
references are the committed ``benchmarks/results/s23/gpaw_refs``. System Python with Debian's
GPAW; resumable (one JSON per cell and mesh).

``--small-cells K [K ...]`` instead converges cheap cells over 2-atom meshes K: each element's
bcc cell at its GPAW V0 (against the densest mesh) and the B2 mixing energy of every pair at
Vegard's volume; mesh 2k on these cubic cells folds onto mesh k of the 16-atom cells::

    OMP_NUM_THREADS=1 /usr/bin/python3 benchmarks/gpaw_kpoints.py --small-cells 6 8 12 16 \\
        --json benchmarks/results/s24/kpoints/small_cells.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
from gpaw_alloys import KPTS_CELL, gpaw_energy
from gpaw_hot_frames import REFS_DIR


def energy_at(record: dict, kpts: int, out_dir: Path) -> tuple[float, list]:
    """GPAW energy (eV) and forces (eV/Å) of ``record``'s cell with a Γ-centred kpts³ mesh,
    cached on disk."""
    from ase import Atoms

    path = out_dir / f"{record['name']}_k{kpts}.json"
    if path.exists():
        done = json.loads(path.read_text())
        return done["energy_ev"], done.get("forces_ev_per_a")
    atoms = Atoms(record["symbols"], cell=record["cell"],
                  scaled_positions=record["scaled_positions"], pbc=True)
    start = time.time()
    energy, forces = gpaw_energy(atoms, kpts, str(out_dir / f"{record['name']}_k{kpts}.txt"))
    path.write_text(json.dumps({"name": record["name"], "kpts": kpts, "energy_ev": energy,
                                "forces_ev_per_a": forces,
                                "seconds": round(time.time() - start, 1)}, indent=1) + "\n")
    return energy, forces


def mixing_ev(record: dict, energy: float, refs: dict[str, float]) -> float:
    """(E − Σ_atoms E_ref,s) / N with E_ref,s the bcc energy per atom at each element's V0."""
    counts = Counter(record["symbols"])
    return (energy - sum(n * refs[s] for s, n in counts.items())) / len(record["symbols"])


def small_cells(meshes: list[int]) -> dict:
    """bcc energies (meV/atom against the densest mesh) and B2 mixing energies (meV/atom) per
    2-atom mesh."""
    from itertools import combinations

    from ase import Atoms
    from ase.build import bulk
    from gpaw_alloys import ELEMENTS, gpaw_v0

    v0 = gpaw_v0()
    bcc = {el: {k: gpaw_energy(bulk(el, "bcc", a=(2 * v0[el]) ** (1 / 3), cubic=True), k,
                               "/dev/null")[0] / 2 for k in meshes} for el in ELEMENTS}
    out = {"meshes": meshes, "bcc_vs_densest_mev": {}, "b2_mixing_mev": {}}
    for el, e in bcc.items():
        out["bcc_vs_densest_mev"][el] = {k: round(1e3 * (v - e[max(meshes)]), 2)
                                         for k, v in e.items()}
        print(el, out["bcc_vs_densest_mev"][el], flush=True)
    for a, b in combinations(ELEMENTS, 2):
        cell = (v0[a] + v0[b]) ** (1 / 3)
        b2 = Atoms([a, b], scaled_positions=[[0, 0, 0], [0.5] * 3], cell=[cell] * 3, pbc=True)
        out["b2_mixing_mev"][a + b] = {
            k: round(1e3 * (gpaw_energy(b2, k, "/dev/null")[0] - bcc[a][k] - bcc[b][k]) / 2, 2)
            for k in meshes}
        print(a + b, out["b2_mixing_mev"][a + b], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, nargs="+")
    parser.add_argument("--kpts", type=int, default=5, help="mesh per 16-atom cell")
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--small-cells", type=int, nargs="+", metavar="K",
                        help="2-atom meshes for the bcc and B2 convergence check")
    parser.add_argument("--json", type=Path, help="summary file")
    args = parser.parse_args()
    if args.small_cells:
        summary = small_cells(sorted(args.small_cells))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(summary, indent=1) + "\n")
        return
    if not args.records or args.out_dir is None:
        parser.error("--records and --out-dir are needed unless --small-cells is given")
    if args.kpts <= KPTS_CELL:
        raise SystemExit(f"--kpts {args.kpts}: choose a mesh denser than {KPTS_CELL}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    coarse, dense = {}, {}
    for path in sorted(REFS_DIR.glob("ref_*.json")):
        ref = json.loads(path.read_text())
        element = ref["symbols"][0]
        coarse[element] = ref["energy_ev"] / len(ref["symbols"])
        dense[element] = energy_at(ref, 2 * args.kpts, args.out_dir)[0] / len(ref["symbols"])
    rows = []
    for path in args.records:
        record = json.loads(path.read_text())
        before = mixing_ev(record, record["energy_ev"], coarse)
        energy, forces = energy_at(record, args.kpts, args.out_dir)
        after = mixing_ev(record, energy, dense)
        change = None
        if forces is not None and record.get("forces_ev_per_a") is not None:
            change = float(np.abs(np.subtract(forces, record["forces_ev_per_a"])).mean())
        rows.append({"cell": record["name"], "mixing_k3_mev": round(1e3 * before, 2),
                     f"mixing_k{args.kpts}_mev": round(1e3 * after, 2),
                     "change_mev": round(1e3 * (after - before), 2),
                     "force_change_mae_ev_per_a": None if change is None else round(change, 4)})
        print(f"{record['name']:24s} ΔE_mix k={KPTS_CELL}: {1e3 * before:+7.1f}  "
              f"k={args.kpts}: {1e3 * after:+7.1f}  change {1e3 * (after - before):+6.1f} "
              f"meV/atom; forces change {change} eV/Å (MAE)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"kpts": args.kpts, "cells": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
