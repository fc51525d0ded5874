"""Energy and force errors of a checkpoint per config_type of an extxyz file (float64).

Columns: frames, mean atoms, energy MAE and signed mean error (prediction − DFT, meV/atom),
force MAE and RMSE (eV/Å), mean |F| of the DFT forces (eV/Å).

Usage: python benchmarks/results/s13/per_config_errors.py MODEL.pt DATA.extxyz
"""

from __future__ import annotations

import collections
import sys

import numpy as np
from ase.io import read

from matdesign.calculator import MatdesignCalculator


def main(model: str, path: str) -> None:
    calc = MatdesignCalculator.from_checkpoint(model, dtype="float64")
    by: dict[str, list[tuple[float, ...]]] = collections.defaultdict(list)
    for atoms in read(path, ":"):
        f_ref, e_ref = atoms.get_forces().copy(), atoms.get_potential_energy()
        trial = atoms.copy()
        trial.calc = calc
        df = trial.get_forces() - f_ref
        de = (trial.get_potential_energy() - e_ref) / len(atoms) * 1000
        by[atoms.info.get("config_type", "?")].append(
            (len(atoms), abs(de), de, np.abs(df).mean(), (df**2).mean(), np.abs(f_ref).mean()))
    print(f"{'type':16s} {'n':>4s} {'atoms':>5s} {'E_mae':>7s} {'E_sgn':>7s} {'F_mae':>6s} "
          f"{'F_rmse':>6s} {'|F|':>6s}")
    for kind, rows in sorted(by.items()):
        a = np.array(rows)
        print(f"{kind:16s} {len(a):4d} {a[:, 0].mean():5.0f} {a[:, 1].mean():7.2f} "
              f"{a[:, 2].mean():7.2f} {a[:, 3].mean():6.3f} {np.sqrt(a[:, 4].mean()):6.3f} "
              f"{a[:, 5].mean():6.3f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
