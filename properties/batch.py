"""Evaluate many structures with one calculator, batched when the calculator can batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms


def _check_finite(result: dict[str, Any], index: int, atoms: Atoms) -> None:
    bad = [k for k in ("energy", "forces", "stress") if k in result and result[k] is not None
           and not np.all(np.isfinite(result[k]))]
    if bad:
        raise FloatingPointError(
            f"structure {index} ({atoms.get_chemical_formula()}): non-finite {bad} from the "
            "calculator"
        )


def evaluate_many(calc: Any, structures: Sequence[Atoms]) -> list[dict[str, Any]]:
    """Energy, forces and stress of many structures.

    Uses ``calc.calculate_batch(structures)`` (one model call for all of them) when the
    calculator has it; otherwise one calculator call per structure on a copy of it.

    Args:
        calc: any ASE calculator; a :class:`matdesign.calculator.MatdesignCalculator` is batched.
        structures: the structures; none is modified.

    Returns:
        One dict per structure with ``energy`` (eV), ``forces`` ((n, 3) eV/Å) and ``stress``
        (Voigt ``xx, yy, zz, yz, xz, xy``, eV/Å³, ASE sign; ``None`` unless periodic in 3D).

    Raises:
        FloatingPointError: a non-finite energy, force or stress.
    """
    structures = list(structures)
    if not structures:
        return []
    if hasattr(calc, "calculate_batch"):
        raw = calc.calculate_batch(structures)
        results = []
        for atoms, r in zip(structures, raw, strict=True):
            stress = r.get("stress") if atoms.pbc.all() else None
            results.append({
                "energy": float(r["energy"]),
                "forces": np.array(r["forces"], dtype=float),
                "stress": None if stress is None else np.array(stress, dtype=float),
            })
    else:
        results = []
        for atoms in structures:
            work = atoms.copy()
            work.calc = calc
            stress = work.get_stress(voigt=True) if work.pbc.all() else None
            results.append({
                "energy": float(work.get_potential_energy()),
                "forces": np.array(work.get_forces(apply_constraint=False), dtype=float),
                "stress": None if stress is None else np.array(stress, dtype=float),
            })
    for k, (atoms, r) in enumerate(zip(structures, results, strict=True)):
        _check_finite(r, k, atoms)
    return results
