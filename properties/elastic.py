"""Elastic constants from stress-strain finite differences, and derived moduli."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.units import GPa

from matdesign.properties.base import PropertyCalculator, PropertyResult, gate_field
from matdesign.properties.relax import evaluate_relaxing_ions
from matdesign.structure_io import require_bulk

# Voigt index -> tensor index pair, ASE order xx, yy, zz, yz, xz, xy.
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


@dataclass(frozen=True)
class ElasticResult(PropertyResult):
    """Elastic tensor (Voigt, GPa) and the moduli derived from it."""

    elastic_tensor_gpa: list[list[float]]  # 6x6, Voigt xx, yy, zz, yz, xz, xy
    bulk_modulus_voigt_gpa: float
    bulk_modulus_reuss_gpa: float
    bulk_modulus_vrh_gpa: float = gate_field()
    shear_modulus_voigt_gpa: float
    shear_modulus_reuss_gpa: float
    shear_modulus_vrh_gpa: float = gate_field()
    youngs_modulus_gpa: float = gate_field()  # from K and G (VRH)
    poisson_ratio: float = gate_field()  # from K and G (VRH)
    pugh_ratio: float = gate_field()  # K_VRH / G_VRH
    cauchy_pressure_gpa: float = gate_field()  # C12 - C44
    universal_anisotropy: float  # 5 G_V/G_R + K_V/K_R - 6 (Ranganathan & Ostoja-Starzewski)
    born_stable: bool = gate_field()  # all eigenvalues of C > 0
    eigenvalues_gpa: list[float]
    fit_residual_gpa: float  # RMS deviation of the stresses from the linear fit
    asymmetry_gpa: float  # max |C_ij - C_ji| before symmetrisation
    reference_stress_gpa: list[float]  # stress of the unstrained cell (subtracted), Voigt
    relaxed_ions: bool
    strains: list[float]  # tensor strain magnitudes applied to every component


def elastic_moduli(c_gpa: np.ndarray) -> dict[str, Any]:
    """Voigt, Reuss and Hill moduli and stability measures of a 6x6 Voigt tensor (GPa).

    Voigt: 9 K_V = (C11+C22+C33) + 2(C12+C23+C13);
    15 G_V = (C11+C22+C33) - (C12+C23+C13) + 3(C44+C55+C66). Reuss: the same with the
    compliance S = C^-1, 1/K_R = (S11+S22+S33) + 2(S12+S23+S13),
    15/G_R = 4(S11+S22+S33) - 4(S12+S23+S13) + 3(S44+S55+S66). Hill = mean of both.
    E = 9KG/(3K+G), ν = (3K-2G)/(2(3K+G)). Reuss values are NaN if C is singular.
    """
    c = np.asarray(c_gpa, dtype=float)
    if c.shape != (6, 6) or not np.all(np.isfinite(c)):
        raise ValueError(f"elastic tensor must be a finite 6x6 array, got shape {c.shape}")
    eig = np.linalg.eigvalsh(0.5 * (c + c.T))
    kv = (np.trace(c[:3, :3]) + 2 * (c[0, 1] + c[1, 2] + c[0, 2])) / 9
    gv = (np.trace(c[:3, :3]) - (c[0, 1] + c[1, 2] + c[0, 2]) + 3 * np.trace(c[3:, 3:])) / 15
    try:
        s = np.linalg.inv(c)
        kr = 1 / (np.trace(s[:3, :3]) + 2 * (s[0, 1] + s[1, 2] + s[0, 2]))
        gr = 15 / (4 * np.trace(s[:3, :3]) - 4 * (s[0, 1] + s[1, 2] + s[0, 2])
                   + 3 * np.trace(s[3:, 3:]))
    except np.linalg.LinAlgError:
        kr = gr = float("nan")
    k, g = (kv + kr) / 2, (gv + gr) / 2
    return {
        "bulk_modulus_voigt_gpa": float(kv), "bulk_modulus_reuss_gpa": float(kr),
        "bulk_modulus_vrh_gpa": float(k), "shear_modulus_voigt_gpa": float(gv),
        "shear_modulus_reuss_gpa": float(gr), "shear_modulus_vrh_gpa": float(g),
        "youngs_modulus_gpa": float(9 * k * g / (3 * k + g)),
        "poisson_ratio": float((3 * k - 2 * g) / (2 * (3 * k + g))),
        "pugh_ratio": float(k / g),
        "cauchy_pressure_gpa": float(c[0, 1] - c[3, 3]),
        "universal_anisotropy": float(5 * gv / gr + kv / kr - 6),
        "born_stable": bool(np.all(eig > 0)),
        "eigenvalues_gpa": [float(x) for x in eig],
    }


def strained(atoms: Atoms, voigt_index: int, magnitude: float) -> Atoms:
    """Copy of ``atoms`` deformed by F = I + ε, ε symmetric with one tensor component set.

    For a shear component (3, 4, 5) both ε_ab and ε_ba equal ``magnitude``, so the engineering
    strain is 2 * magnitude. Positions move with the cell (fractional coordinates kept).
    """
    a, b = VOIGT_PAIRS[voigt_index]
    eps = np.zeros((3, 3))
    eps[a, b] = eps[b, a] = magnitude
    out = atoms.copy()
    out.calc = None
    out.set_cell(atoms.cell.array @ (np.eye(3) + eps).T, scale_atoms=True)
    return out


class ElasticCalculator(PropertyCalculator[ElasticResult]):
    """Elastic tensor by linear stress-strain fits, C_ij = dσ_i/de_j (Voigt engineering e_j).

    Each of the six tensor strain components is applied at every magnitude in ``strains``
    (symmetric ± pairs cancel the quadratic term of σ(e)); the unstrained stress is subtracted.
    All strained cells are evaluated in one :func:`evaluate_many` call.
    """

    def __init__(self, calculator: Any, *, strains: Sequence[float] = (-0.01, -0.005, 0.005, 0.01),
                 relax_ions: bool = True, fmax: float = 1e-3, max_steps: int = 300) -> None:
        """Set up.

        Args:
            calculator: any ASE calculator.
            strains: tensor strain magnitudes (not engineering strains; shear is 2x these).
            relax_ions: relax atomic positions in each strained cell (cell fixed), giving the
                relaxed-ion tensor; otherwise clamped-ion.
            fmax: force threshold for those relaxations, eV/Å.
            max_steps: step limit of each relaxation.
        """
        super().__init__(calculator)
        strains = [float(s) for s in strains]
        if len(strains) < 2 or any(s == 0 or abs(s) > 0.05 for s in strains):
            raise ValueError(f"strains need >= 2 non-zero values with |s| <= 0.05, got {strains}")
        self.strains = strains
        self.relax_ions = relax_ions
        self.fmax = fmax
        self.max_steps = max_steps

    def _stresses(self, cells: list[Atoms]) -> np.ndarray:
        results = evaluate_relaxing_ions(self.calculator, cells, relax_ions=self.relax_ions,
                                         fmax=self.fmax, max_steps=self.max_steps,
                                         what="elastic: strained cell")
        return np.array([r["stress"] for r in results]) / GPa

    def calc(self, atoms: Atoms) -> ElasticResult:
        """Elastic tensor of ``atoms`` (assumed relaxed; not modified; 3D periodic)."""
        require_bulk(atoms, "elastic constants")  # a slab or molecule has no bulk moduli
        cells = [atoms.copy()]
        engineering = []
        for j in range(6):
            for s in self.strains:
                cells.append(strained(atoms, j, s))
                engineering.append((j, s if j < 3 else 2 * s))
        sig = self._stresses(cells)
        ref, dsig = sig[0], sig[1:] - sig[0]
        c = np.zeros((6, 6))
        residuals = []
        for j in range(6):
            rows = [k for k, (jj, _) in enumerate(engineering) if jj == j]
            e = np.array([engineering[k][1] for k in rows])
            slope = e @ dsig[rows] / (e @ e)  # least squares through the origin
            c[:, j] = slope
            residuals.append(dsig[rows] - np.outer(e, slope))
        asym = float(np.abs(c - c.T).max())
        c = 0.5 * (c + c.T)
        return ElasticResult(
            elastic_tensor_gpa=[[float(x) for x in row] for row in c],
            **elastic_moduli(c),
            fit_residual_gpa=float(np.sqrt(np.mean(np.concatenate(residuals) ** 2))),
            asymmetry_gpa=asym,
            reference_stress_gpa=[float(x) for x in ref],
            relaxed_ions=self.relax_ions,
            strains=list(self.strains),
        )
