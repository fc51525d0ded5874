"""Equation of state: energy-volume curve and a Birch–Murnaghan fit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.units import GPa

from matdesign.properties.base import PropertyCalculator, PropertyResult
from matdesign.properties.relax import evaluate_relaxing_ions


@dataclass(frozen=True)
class EOSResult(PropertyResult):
    """Birch–Murnaghan fit of E(V) for the whole cell (not per atom)."""

    volumes_a3: list[float]
    energies_ev: list[float]
    v0_a3: float
    e0_ev: float
    b0_gpa: float
    b0_prime: float  # dB/dP at V0, dimensionless
    eos_name: str
    n_atoms: int
    v0_per_atom_a3: float
    e0_per_atom_ev: float
    rms_residual_ev: float  # RMS of fitted minus computed energies
    max_linear_strain: float
    relaxed_ions: bool


class EOSCalculator(PropertyCalculator[EOSResult]):
    """E(V) on isotropically scaled cells, fitted with the Birch–Murnaghan equation.

    E(V) = E0 + 9 V0 B0/16 {[(V0/V)^(2/3) - 1]^3 B0' + [(V0/V)^(2/3) - 1]^2 [6 - 4 (V0/V)^(2/3)]}
    (Birch, Phys. Rev. 71, 809 (1947)); fitted with :class:`ase.eos.EquationOfState`.
    """

    def __init__(self, calculator: Any, *, n_points: int = 7, max_strain: float = 0.04,
                 relax_ions: bool = True, fmax: float = 1e-3, max_steps: int = 300) -> None:
        """Set up.

        Args:
            calculator: any ASE calculator.
            n_points: number of volumes (at least 5).
            max_strain: largest linear strain, e.g. 0.04 scales lengths by 0.96 ... 1.04.
            relax_ions: relax atomic positions at each fixed volume (only where forces exceed
                ``fmax``; the cell shape is kept).
            fmax: force threshold for the ionic relaxations, eV/Å.
            max_steps: step limit of each ionic relaxation.
        """
        super().__init__(calculator)
        if n_points < 5:
            raise ValueError(f"n_points must be at least 5 for a 4-parameter fit, not {n_points}")
        if not 0 < max_strain < 0.2:
            raise ValueError(f"max_strain must be in (0, 0.2), not {max_strain}")
        self.n_points = n_points
        self.max_strain = max_strain
        self.relax_ions = relax_ions
        self.fmax = fmax
        self.max_steps = max_steps

    def _energies(self, cells: list[Atoms]) -> list[float]:
        results = evaluate_relaxing_ions(self.calculator, cells, relax_ions=self.relax_ions,
                                         fmax=self.fmax, max_steps=self.max_steps,
                                         what="EOS point")
        return [r["energy"] for r in results]

    def calc(self, atoms: Atoms) -> EOSResult:
        """Compute and fit E(V) around ``atoms`` (not modified; 3D periodic)."""
        from ase.eos import EquationOfState

        if not atoms.pbc.all():
            raise ValueError("an equation of state needs a structure periodic in 3D")
        factors = 1.0 + np.linspace(-self.max_strain, self.max_strain, self.n_points)
        cells = []
        for f in factors:
            a = atoms.copy()
            a.calc = None
            a.set_cell(atoms.cell.array * f, scale_atoms=True)
            cells.append(a)
        volumes = [float(a.get_volume()) for a in cells]
        energies = self._energies(cells)
        eos = EquationOfState(volumes, energies, eos="birchmurnaghan")
        v0, e0, b0 = eos.fit(warn=False)
        bp = float(eos.eos_parameters[2])
        if not (min(volumes) <= v0 <= max(volumes)) or b0 <= 0:
            raise ValueError(
                f"EOS fit failed: V0 = {v0:.3f} Å³ outside the sampled {min(volumes):.3f}–"
                f"{max(volumes):.3f} Å³ or B0 = {b0 / GPa:.3g} GPa <= 0; relax the structure first"
            )
        resid = eos.func(np.array(volumes), *eos.eos_parameters) - np.array(energies)
        n = len(atoms)
        return EOSResult(
            volumes_a3=volumes, energies_ev=[float(e) for e in energies],
            v0_a3=float(v0), e0_ev=float(e0), b0_gpa=float(b0 / GPa), b0_prime=bp,
            eos_name="birchmurnaghan", n_atoms=n, v0_per_atom_a3=float(v0) / n,
            e0_per_atom_ev=float(e0) / n, rms_residual_ev=float(np.sqrt(np.mean(resid**2))),
            max_linear_strain=float(self.max_strain), relaxed_ions=self.relax_ions,
        )
