"""Coordination ρ_i = Σ_j f_cut(r_ij) (5 Å cutoff, p = 6 envelope) per config_type.

Prints the 1/10/50/90th percentiles and the fraction of atoms below AVG (the format-2
baseline's saturation, the training data's mean ρ).

Usage: python benchmarks/results/s13/coordination.py DATA.extxyz AVG
"""

from __future__ import annotations

import collections
import sys

import numpy as np
import torch
from ase.io import read
from ase.neighborlist import neighbor_list

from matdesign.radial import polynomial_envelope


def main(path: str, avg: float) -> None:
    by: dict[str, list[float]] = collections.defaultdict(list)
    for atoms in read(path, ":"):
        i, d = neighbor_list("id", atoms, 5.0)
        env = polynomial_envelope(torch.tensor(d), 5.0).numpy()
        by[atoms.info.get("config_type", "?")].extend(np.bincount(i, env, len(atoms)))
    for kind, values in sorted(by.items()):
        v = np.array(values)
        print(kind, len(v), np.percentile(v, [1, 10, 50, 90]).round(2),
              round(float((v < avg).mean()), 3))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
