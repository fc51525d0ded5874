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
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from gpaw_alloys import KPTS_CELL, gpaw_energy

REFS_DIR = Path(__file__).parent / "results" / "s23" / "gpaw_refs"


def energy_at(record: dict, kpts: int, out_dir: Path) -> float:
    """GPAW energy (eV) of ``record``'s cell with a Γ-centred kpts³ mesh, cached on disk."""
    from ase import Atoms

    path = out_dir / f"{record['name']}_k{kpts}.json"
    if path.exists():
        return json.loads(path.read_text())["energy_ev"]
    atoms = Atoms(record["symbols"], cell=record["cell"],
                  scaled_positions=record["scaled_positions"], pbc=True)
    start = time.time()
    energy, _ = gpaw_energy(atoms, kpts, str(out_dir / f"{record['name']}_k{kpts}.txt"))
    path.write_text(json.dumps({"name": record["name"], "kpts": kpts, "energy_ev": energy,
                                "seconds": round(time.time() - start, 1)}, indent=1) + "\n")
    return energy


def mixing_ev(record: dict, energy: float, refs: dict[str, float]) -> float:
    """(E − Σ_atoms E_ref,s) / N with E_ref,s the bcc energy per atom at each element's V0."""
    counts = Counter(record["symbols"])
    return (energy - sum(n * refs[s] for s, n in counts.items())) / len(record["symbols"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, nargs="+", required=True)
    parser.add_argument("--kpts", type=int, default=5, help="mesh per 16-atom cell")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--json", type=Path, help="summary file")
    args = parser.parse_args()
    if args.kpts <= KPTS_CELL:
        raise SystemExit(f"--kpts {args.kpts}: choose a mesh denser than {KPTS_CELL}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    coarse, dense = {}, {}
    for path in sorted(REFS_DIR.glob("ref_*.json")):
        ref = json.loads(path.read_text())
        element = ref["symbols"][0]
        coarse[element] = ref["energy_ev"] / len(ref["symbols"])
        dense[element] = energy_at(ref, 2 * args.kpts, args.out_dir) / len(ref["symbols"])
    rows = []
    for path in args.records:
        record = json.loads(path.read_text())
        before = mixing_ev(record, record["energy_ev"], coarse)
        after = mixing_ev(record, energy_at(record, args.kpts, args.out_dir), dense)
        rows.append({"cell": record["name"], "mixing_k3_mev": round(1e3 * before, 2),
                     f"mixing_k{args.kpts}_mev": round(1e3 * after, 2),
                     "change_mev": round(1e3 * (after - before), 2)})
        print(f"{record['name']:24s} ΔE_mix k={KPTS_CELL}: {1e3 * before:+7.1f}  "
              f"k={args.kpts}: {1e3 * after:+7.1f}  change {1e3 * (after - before):+6.1f} "
              "meV/atom", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"kpts": args.kpts, "cells": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
