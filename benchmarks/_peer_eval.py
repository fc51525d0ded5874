"""Evaluation shared by benchmarks/peers.py and benchmarks/_mace_helper.py (numpy and ASE only).

Both models are scored by this same code: validation errors against the REF_* labels that
peers.py writes, and energy+forces time on one rattled 128-atom bcc Mo cell.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.io import read


def timing_cell(seed: int = 0) -> Atoms:
    """128-atom bcc Mo (4x4x4 cubic cells, a = 3.16 Å), rattled by 0.05 Å."""
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True) * (4, 4, 4)
    atoms.rattle(0.05, seed=seed)
    return atoms


def valid_errors(calc: Calculator, valid_path: str) -> dict[str, Any]:
    """Energy MAE (meV/atom) and force MAE (eV/Å, over components) vs REF_energy/REF_forces."""
    de, df = [], []
    for ref in read(valid_path, index=":"):
        atoms = Atoms(ref.numbers, ref.positions, cell=ref.cell, pbc=ref.pbc)
        atoms.calc = calc
        de.append((atoms.get_potential_energy() - ref.info["REF_energy"]) / len(atoms))
        df.append(atoms.get_forces() - ref.arrays["REF_forces"])
    return {"n_valid": len(de), "energy_mae_mev_per_atom": 1000 * float(np.mean(np.abs(de))),
            "force_mae_ev_per_a": float(np.mean(np.abs(np.concatenate(df))))}


def time_forces(calc: Calculator, repeats: int = 20, warmup: int = 3) -> dict[str, Any]:
    """Median µs/atom of ``get_forces`` (new positions every call) on :func:`timing_cell`."""
    atoms = timing_cell()
    atoms.calc = calc
    base = atoms.positions.copy()
    rng = np.random.default_rng(1)
    times = []
    for k in range(warmup + repeats):
        atoms.positions = base + rng.normal(0.0, 0.01, base.shape)
        t0 = time.perf_counter()
        atoms.get_forces()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    return {"us_per_atom": 1e6 * float(np.median(times)) / len(atoms), "n_atoms": len(atoms),
            "repeats": repeats}
