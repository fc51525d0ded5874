"""Structure relaxation (ions, optionally the cell) with any ASE calculator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from matdesign.errors import NonFiniteError, NotConvergedError
from matdesign.properties.base import PropertyCalculator, PropertyResult, structure_field

OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")


@dataclass(frozen=True)
class RelaxResult(PropertyResult):
    """Outcome of a relaxation. Energies in eV, forces eV/Å, stress eV/Å³, volume Å³."""

    converged: bool
    steps: int
    energy_ev: float
    energy_per_atom_ev: float
    max_force_ev_per_a: float  # largest atomic force norm at the end (eV/Å)
    stress_ev_per_a3: list[float] | None  # Voigt xx, yy, zz, yz, xz, xy; None unless 3D periodic
    volume_a3: float | None  # None unless 3D periodic
    spacegroup_before: str
    spacegroup_after: str
    optimizer: str
    fmax_ev_per_a: float  # the convergence threshold that was asked for
    atoms: Atoms = structure_field()  # the relaxed copy, no calculator; not in to_dict


def spacegroup(atoms: Atoms, symprec: float = 1e-3) -> str:
    """International symbol and number, e.g. ``"Fm-3m (225)"``; ``"n/a"`` unless 3D periodic."""
    if not atoms.pbc.all():
        return "n/a"
    import spglib

    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    try:
        data = spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception:  # noqa: BLE001 - spglib >= 2.5 may raise instead of returning None
        data = None
    if data is None:
        return "unknown"
    return f"{data.international} ({int(data.number)})"


def _optimizer_class(name: str) -> type:
    from ase import optimize

    key = name.upper()
    if key not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, not {name!r}")
    return getattr(optimize, key)


def _raise_if_nonfinite(atoms: Atoms) -> None:
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
        raise NonFiniteError(
            f"non-finite energy or forces during relaxation of {atoms.get_chemical_formula()}"
        )


class RelaxCalculator(PropertyCalculator[RelaxResult]):
    """Relax atomic positions and, for a 3D-periodic structure, the cell.

    The cell is relaxed through :class:`ase.filters.FrechetCellFilter` (its fast twin,
    :mod:`matdesign.properties.cellfilter`), whose cell "forces"
    are the virial divided by the number of atoms, so ``fmax`` also bounds the stress
    (|σ| V/N < fmax). Non-periodic or partly periodic structures relax ions only.
    """

    def __init__(self, calculator: Any, *, fmax: float = 1e-3, max_steps: int = 1000,
                 optimizer: str = "FIRE", relax_cell: bool = True, fix_symmetry: bool = False,
                 min_distance: float = 0.5) -> None:
        """Set up.

        Args:
            calculator: any ASE calculator.
            fmax: convergence threshold on forces, eV/Å.
            max_steps: optimizer step limit.
            optimizer: ``"FIRE"``, ``"BFGS"`` or ``"LBFGS"`` (from :mod:`ase.optimize`).
            relax_cell: relax the cell too (only if periodic in all three directions).
            fix_symmetry: keep the starting space group (:class:`ase.constraints.FixSymmetry`).
            min_distance: pairs closer than this (Å) are rejected as overlapping atoms.

        Raises:
            ValueError: an unknown optimizer, ``fmax <= 0`` or ``max_steps < 0``.
        """
        super().__init__(calculator)
        self._optimizer_class = _optimizer_class(optimizer)
        if fmax <= 0 or max_steps < 0:
            raise ValueError(f"need fmax > 0 and max_steps >= 0 (got {fmax}, {max_steps})")
        self.fmax = fmax
        self.max_steps = max_steps
        self.optimizer = optimizer.upper()
        self.relax_cell = relax_cell
        self.fix_symmetry = fix_symmetry
        self.min_distance = min_distance

    def calc(self, atoms: Atoms, *, trajectory: str | Path | None = None) -> RelaxResult:
        """Relax ``atoms`` (never modified); the relaxed copy is ``result.atoms``.

        Args:
            atoms: the starting structure.
            trajectory: optional ASE trajectory file to write.

        Returns:
            The :class:`RelaxResult`. Not converging is reported as ``converged == False``.

        Raises:
            ValueError: overlapping atoms, NaN positions or a degenerate cell (checked before
                any calculator call).
            FloatingPointError: the calculator returned a non-finite energy or force.
        """
        from matdesign.structure_io import check_geometry

        calc = self.calculator
        check_geometry(atoms, float(getattr(calc, "cutoff", 0.0)), min_distance=self.min_distance)
        work = atoms.copy()
        original_constraints = [c.copy() for c in work.constraints]
        work.calc = calc
        if self.fix_symmetry:
            from ase.constraints import FixSymmetry

            work.set_constraint([*work.constraints, FixSymmetry(work)])
        target: Any = work
        if self.relax_cell and work.pbc.all():
            from matdesign.properties.cellfilter import FastFrechetCellFilter

            target = FastFrechetCellFilter(work)

        before = spacegroup(atoms)
        _raise_if_nonfinite(work)
        opt = self._optimizer_class(target, logfile=None,
                                    trajectory=None if trajectory is None else str(trajectory))
        opt.attach(lambda: _raise_if_nonfinite(work), interval=1)
        converged = bool(opt.run(fmax=self.fmax, steps=self.max_steps))
        relaxed = work.copy()
        relaxed.calc = None
        relaxed.set_constraint(original_constraints)
        return self._result(work, relaxed, converged, int(opt.nsteps), before)

    def _result(self, work: Atoms, relaxed: Atoms, converged: bool, steps: int,
                before: str) -> RelaxResult:
        """The :class:`RelaxResult` of ``work`` (calculator attached) and its ``relaxed`` copy."""
        periodic = bool(work.pbc.all())
        energy = float(work.get_potential_energy())
        forces = work.get_forces(apply_constraint=False)
        stress = [float(x) for x in work.get_stress(voigt=True)] if periodic else None
        return RelaxResult(
            converged=converged,
            steps=steps,
            energy_ev=energy,
            energy_per_atom_ev=energy / len(work),
            max_force_ev_per_a=float(np.linalg.norm(forces, axis=1).max()),
            stress_ev_per_a3=stress,
            volume_a3=float(work.get_volume()) if periodic else None,
            spacegroup_before=before,
            spacegroup_after=spacegroup(relaxed),
            optimizer=self.optimizer,
            fmax_ev_per_a=float(self.fmax),
            atoms=relaxed,
        )


def relax(
    atoms: Atoms,
    calc: Any,
    *,
    fmax: float = 1e-3,
    max_steps: int = 1000,
    optimizer: str = "FIRE",
    relax_cell: bool = True,
    fix_symmetry: bool = False,
    min_distance: float = 0.5,
    trajectory: str | Path | None = None,
) -> tuple[Atoms, RelaxResult]:
    """:class:`RelaxCalculator` in one call, for callers that want the structure first.

    Arguments as :class:`RelaxCalculator` and its ``calc``.

    Returns:
        ``(result.atoms, result)``: the relaxed copy (no calculator attached) and the
        :class:`RelaxResult`.
    """
    result = RelaxCalculator(calc, fmax=fmax, max_steps=max_steps, optimizer=optimizer,
                             relax_cell=relax_cell, fix_symmetry=fix_symmetry,
                             min_distance=min_distance).calc(atoms, trajectory=trajectory)
    return result.atoms, result


def require_converged(result: RelaxResult, what: str) -> None:
    """Raise :class:`NotConvergedError` with the reason when ``result`` did not converge."""
    if not result.converged:
        stress = ""
        if result.stress_ev_per_a3 is not None:
            stress = f", max |stress| {max(map(abs, result.stress_ev_per_a3)) * 160.21766:.3g} GPa"
        raise NotConvergedError(
            f"relaxation before {what} did not converge in {result.steps} {result.optimizer} "
            f"steps: max force {result.max_force_ev_per_a:.3g} eV/Å{stress}, asked for "
            f"{result.fmax_ev_per_a:.3g} eV/Å (cell forces are |stress| V/N); relax further "
            "or pass --no-relax"
        )


def evaluate_relaxing_ions(
    calc: Any, cells: list[Atoms], *, relax_ions: bool, fmax: float, max_steps: int, what: str
) -> list[dict[str, Any]]:
    """Energies and stresses of fixed cells, ions relaxed where the forces exceed ``fmax``.

    All cells go through one (batched) :func:`evaluate_many` call first; only cells whose
    largest force exceeds ``fmax`` are then relaxed at fixed cell (the relaxed-ion response
    of EOS points and strained cells).

    Args:
        calc: any ASE calculator.
        cells: the structures; none is modified.
        relax_ions: False gives the clamped-ion results of the first call.
        fmax: force threshold, eV/Å.
        max_steps: step limit of each relaxation.
        what: how to name a cell in errors, e.g. "EOS point" -> "EOS point 3".

    Returns:
        One dict per cell with ``energy`` (eV) and ``stress`` (Voigt, eV/Å³ or None).

    Raises:
        NotConvergedError: a relaxation did not converge.
    """
    from matdesign.properties.batch import evaluate_many

    results = evaluate_many(calc, cells)
    todo = [k for k, r in enumerate(results)
            if relax_ions and np.linalg.norm(r["forces"], axis=1).max() > fmax]
    if todo and hasattr(calc, "calculate_batch"):
        relaxed = relax_ions_together(calc, [cells[k] for k in todo], fmax=fmax,
                                      max_steps=max_steps)
        for k, (res, steps) in zip(todo, relaxed, strict=True):
            _raise_unconverged(what, k, cells[k], np.linalg.norm(res["forces"], axis=1).max(),
                               steps, fmax)
            results[k] = res
        return results
    for k in todo:
        res = RelaxCalculator(calc, fmax=fmax, max_steps=max_steps, relax_cell=False).calc(cells[k])
        _raise_unconverged(what, k, cells[k], res.max_force_ev_per_a, res.steps, fmax)
        stress = None if res.stress_ev_per_a3 is None else np.array(res.stress_ev_per_a3)
        results[k] = {"energy": res.energy_ev, "stress": stress}
    return results


def _raise_unconverged(what: str, k: int, atoms: Atoms, worst: float, steps: int,
                       fmax: float) -> None:
    if worst > fmax:
        raise NotConvergedError(
            f"{what} {k} (V = {atoms.get_volume():.3f} Å³): ionic relaxation did not "
            f"converge in {steps} steps (max force {worst:.3g} eV/Å)"
        )


def relax_ions_together(calc: Any, cells: list[Atoms], *, fmax: float, max_steps: int
                        ) -> list[tuple[dict[str, Any], int]]:
    """Relax the ions of many fixed cells in lockstep: one batched model call per step.

    Each cell has its own FIRE optimizer (as :func:`relax` uses); a cell leaves the batch
    when its largest force is at most ``fmax``. Small cells are dominated by per-call cost, so
    relaxing the strained cells of an elastic calculation together is several times faster
    than one after another.

    Args:
        calc: a calculator with ``calculate_batch`` (a MatdesignCalculator).
        cells: the structures; none is modified.
        fmax: force threshold, eV/Å.
        max_steps: step limit per cell.

    Returns:
        Per cell ``(result, steps)``: ``result`` has ``energy`` (eV), ``forces`` (eV/Å) and
        ``stress`` (Voigt eV/Å³, or None) at the last positions; the caller checks ``fmax``.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.optimize import FIRE

    from matdesign.properties.batch import evaluate_many

    work = [c.copy() for c in cells]
    optimizers = [FIRE(a, logfile=None) for a in work]
    final: list[tuple[dict[str, Any], int] | None] = [None] * len(work)
    active = list(range(len(work)))
    for step in range(max_steps + 1):
        results = evaluate_many(calc, [work[k] for k in active])
        still = []
        for k, r in zip(active, results, strict=True):
            if np.linalg.norm(r["forces"], axis=1).max() <= fmax or step == max_steps:
                final[k] = (r, step)
            else:  # the optimizer reads the batch's forces through a single-point calculator
                work[k].calc = SinglePointCalculator(work[k], energy=r["energy"],
                                                     forces=r["forces"])
                optimizers[k].step()
                work[k].calc = None
                still.append(k)
        active = still
        if not active:
            break
    return [f for f in final if f is not None]
