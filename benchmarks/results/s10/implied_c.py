"""Cubic C11/C12/C44 (GPa) implied by the NbMoTaW ``*_Elastic`` cells: DFT labels against
models' predictions on the same cells (least squares of stress on strain with a constant
pressure offset). Tenth session; the cells are the data's, not committed:

    python -c "from ase.io import read, write; write('runs/s10/elastic.extxyz', [a for a in
        read('../shared/data/NbMoTaW/train.extxyz', ':')
        if a.info.get('config_type', '').endswith('_Elastic')])"
    python benchmarks/results/s10/implied_c.py runs/s10/elastic.extxyz runs/v7/model.pt ...
"""

import sys

import numpy as np
import torch
from ase.io import read

from matdesign.calculator import load_calculator

A0 = {"Nb": 3.323, "Mo": 3.169, "Ta": 3.322, "W": 3.190}  # Å, the data README's
GPA = 160.21766  # eV/Å³ -> GPa


def fit(eps: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """C11, C12, C44 from Voigt strains and stresses (compression positive)."""
    rows, rhs = [], []
    for e, s in zip(eps, sig, strict=True):
        tr = e[0] + e[1] + e[2]
        for i in range(3):
            rows.append([e[i], tr - e[i], 0, 1])
            rhs.append(s[i])
        for i in range(3, 6):
            rows.append([0, 0, 2 * e[i], 0])
            rhs.append(s[i])
    x, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return -x[:3]


def main() -> None:
    torch.set_num_threads(2)
    frames = read(sys.argv[1], ":")
    calcs = {m: load_calculator(m, dtype="float64") for m in sys.argv[2:]}
    for el, a0 in A0.items():
        cells = [a for a in frames if a.info["config_type"] == f"{el}_Elastic"]
        eps, dft, pred = [], [], {m: [] for m in calcs}
        for a in cells:
            g = a.cell.array / a0
            e = 0.5 * (g + g.T) - np.eye(3)
            eps.append([e[0, 0], e[1, 1], e[2, 2], e[1, 2], e[0, 2], e[0, 1]])
            dft.append(a.calc.results["stress"])
            for m, c in calcs.items():
                b = a.copy()
                b.calc = c
                pred[m].append(b.get_stress())
        out = {"DFT": fit(eps, -GPA * np.array(dft))}
        out.update({m: fit(eps, -GPA * np.array(p)) for m, p in pred.items()})
        print(el, len(cells), "  ".join(f"{k}: " + "/".join(f"{v:.0f}" for v in c)
                                        for k, c in out.items()))


if __name__ == "__main__":
    main()
