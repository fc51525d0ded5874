"""Thermodynamic stability: elemental references, formation energy, energy above the hull.

Energies are in eV. Formation energy per atom of a compound with atom fractions ``x_i``:

    E_f = E / N - sum_i x_i * mu_i

where ``mu_i`` is the energy per atom of element ``i`` in its reference state, relaxed with the
same potential. The energy above the convex hull comes from pymatgen's ``PhaseDiagram``, whose
``PDEntry`` takes the TOTAL energy of the given composition (not per atom).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, reference_states

from matdesign.errors import UnknownElementError

# Relaxation of molecular (non-periodic) references happens in a box this large, Å.
MOLECULE_BOX_A = 12.0


def known_elements(calc: object) -> set[str] | None:
    """Elements a calculator can handle, or ``None`` if it does not say.

    Args:
        calc: an ASE calculator. A ``MatdesignCalculator`` reports ``species``; ASE's EMT
            reports the keys of ``ase.calculators.emt.parameters``.
    """
    species = getattr(calc, "species", None)
    if species is not None:
        return {str(s) for s in species}
    from ase.calculators.emt import EMT, parameters

    if isinstance(calc, EMT):
        return set(parameters)
    return None


def check_known_elements(atoms: Atoms, calc: object) -> None:
    """Raise ``ValueError`` naming any element of ``atoms`` the calculator does not know."""
    known = known_elements(calc)
    if known is None:
        return
    unknown = sorted(set(atoms.get_chemical_symbols()) - known)
    if unknown:
        raise UnknownElementError(
            f"element(s) {unknown} not known to the potential (it knows {sorted(known)})"
        )


def reference_structure(symbol: str) -> Atoms:
    """ASE's reference crystal (or molecule) for an element, from ``ase.data.reference_states``.

    Periodic references (fcc, bcc, hcp, diamond, sc, ...) come from ``ase.build.bulk``.
    Diatomic references (H2, N2, O2, ...) and single atoms are placed in a non-periodic box.

    Raises:
        ValueError: the element has no reference state that ASE can build; supply a reference
            structure file instead.
    """
    from ase.build import bulk

    if symbol not in atomic_numbers:
        raise ValueError(f"unknown chemical symbol {symbol!r}")
    state = reference_states[atomic_numbers[symbol]]
    if state is None:
        raise ValueError(f"ASE has no reference state for {symbol}; supply a reference file")
    sym = state["symmetry"]
    if sym == "diatom":
        d = float(state["d"])
        atoms = Atoms(2 * symbol, positions=[[0, 0, 0], [0, 0, d]], cell=[MOLECULE_BOX_A] * 3)
    elif sym == "atom":
        atoms = Atoms(symbol, positions=[[0, 0, 0]], cell=[MOLECULE_BOX_A] * 3)
    else:
        try:
            return bulk(symbol)
        except Exception as exc:
            raise ValueError(
                f"ASE cannot build the {sym} reference state of {symbol} ({exc}); "
                "supply a reference structure file"
            ) from exc
    atoms.center()
    atoms.pbc = False
    return atoms


RelaxFn = Callable[[Atoms], tuple[Atoms, float]]


def elemental_reference_energies(
    symbols: Iterable[str],
    relax_fn: RelaxFn,
    *,
    overrides: Mapping[str, float] | None = None,
    cache: dict[str, float] | None = None,
) -> dict[str, float]:
    """Energy per atom (eV) of each element in its relaxed reference state.

    Args:
        symbols: elements needed.
        relax_fn: ``relax_fn(atoms) -> (relaxed_atoms, energy_per_atom_ev)`` with the same
            potential and settings as the candidates; it must raise if relaxation fails.
            It decides itself whether to relax the cell (``atoms.pbc.all()``).
        overrides: user-supplied reference energies per atom (eV), used instead of ASE's.
        cache: dict reused across calls (filled with newly computed energies).

    Returns:
        ``{symbol: energy_per_atom_ev}``.
    """
    cache = {} if cache is None else cache
    out: dict[str, float] = {}
    for symbol in sorted(set(symbols)):
        if overrides and symbol in overrides:
            out[symbol] = float(overrides[symbol])
            continue
        if symbol not in cache:
            try:
                _, e = relax_fn(reference_structure(symbol))
            except Exception as exc:
                raise ValueError(f"reference state of {symbol} failed: {exc}") from exc
            cache[symbol] = float(e)
        out[symbol] = cache[symbol]
    return out


def formation_energy_per_atom(
    formula_or_atoms: str | Atoms, energy_per_atom_ev: float, references: Mapping[str, float]
) -> float:
    """Formation energy per atom, eV/atom: ``E/N - sum_i x_i mu_i``.

    Args:
        formula_or_atoms: chemical formula (e.g. ``"Cu3Au"``) or the structure.
        energy_per_atom_ev: energy of the compound per atom, eV/atom.
        references: ``{symbol: mu_i}`` elemental energies per atom, eV/atom.

    Raises:
        ValueError: an element lacks a reference energy.
    """
    fractions = _atom_fractions(formula_or_atoms)
    missing = sorted(set(fractions) - set(references))
    if missing:
        raise ValueError(f"no elemental reference energy for {missing}")
    return float(energy_per_atom_ev - sum(x * references[el] for el, x in fractions.items()))


def formula_elements(formula: str) -> set[str]:
    """The element symbols of a chemical formula, e.g. ``"Nb2MoW"`` -> ``{"Nb", "Mo", "W"}``."""
    return set(_atom_fractions(formula))


def _atom_fractions(formula_or_atoms: str | Atoms) -> dict[str, float]:
    from pymatgen.core import Composition

    formula = (
        formula_or_atoms.get_chemical_formula()
        if isinstance(formula_or_atoms, Atoms)
        else formula_or_atoms
    )
    comp = Composition(formula)
    return {str(el): float(comp.get_atomic_fraction(el)) for el in comp.elements}


@dataclass(frozen=True)
class HullEntry:
    """One phase for the convex hull.

    Attributes:
        name: unique identifier (row id, file name, ``"ref:Cu"``, ...).
        formula: chemical formula, any multiple of the composition.
        energy_per_atom_ev: energy per atom, eV/atom.
    """

    name: str
    formula: str
    energy_per_atom_ev: float


def hull_energies(entries: Iterable[HullEntry]) -> dict[str, float]:
    """Energy above the convex hull (eV/atom) of every entry, via pymatgen's ``PhaseDiagram``.

    Each chemical system is treated with the entries whose elements are a subset of it, so a
    screen over many systems never builds one high-dimensional hull.

    Args:
        entries: phases, including an elemental entry for every element that appears.

    Returns:
        ``{entry.name: e_above_hull_ev_per_atom}`` (>= 0 up to round-off).

    Raises:
        ValueError: duplicate names, a non-finite energy, or an element with no elemental entry.
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    entries = list(entries)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError("hull entries must have unique names")
    pd_entries = []
    for e in entries:
        if not np.isfinite(e.energy_per_atom_ev):
            raise ValueError(f"hull entry {e.name}: non-finite energy {e.energy_per_atom_ev}")
        comp = Composition(e.formula)
        pd_entries.append(PDEntry(comp, e.energy_per_atom_ev * comp.num_atoms, name=e.name))
    elements_present = {str(el) for pe in pd_entries if pe.composition.is_element
                        for el in pe.composition.elements}
    systems: dict[frozenset[str], list] = {}
    for pe in pd_entries:
        chemsys = frozenset(str(el) for el in pe.composition.elements)
        missing = sorted(chemsys - elements_present)
        if missing:
            raise ValueError(f"hull entry {pe.name}: no elemental reference for {missing}")
        systems.setdefault(chemsys, []).append(pe)
    out: dict[str, float] = {}
    for chemsys, members in systems.items():
        pool = [pe for pe in pd_entries
                if {str(el) for el in pe.composition.elements} <= chemsys]
        diagram = PhaseDiagram(pool)
        for pe in members:
            out[pe.name] = float(diagram.get_e_above_hull(pe))
    return out


def user_references(
    files: Iterable[str], relax_fn: RelaxFn
) -> tuple[dict[str, float], list[HullEntry]]:
    """Relax user-supplied reference / competing-phase structures.

    Single-element structures override ASE's reference state for that element (the lowest
    energy per atom wins); compounds become competing phases on the hull.

    Args:
        files: structure files ASE reads; every frame is used.
        relax_fn: as in ``elemental_reference_energies``.

    Returns:
        ``({symbol: energy_per_atom_ev}, [HullEntry, ...])``.

    Raises:
        ValueError: a file cannot be read or a structure fails to relax (naming the file).
    """
    from ase.io import read

    elements: dict[str, float] = {}
    phases: list[HullEntry] = []
    for path in files:
        try:
            frames = read(path, index=":")
        except Exception as exc:
            raise ValueError(f"reference file {path}: cannot read: {exc}") from exc
        for k, atoms in enumerate(frames):
            name = f"{Path(path).name}@{k}"
            try:
                _, e = relax_fn(atoms)
            except Exception as exc:
                raise ValueError(f"reference {name} failed: {exc}") from exc
            symbols = set(atoms.get_chemical_symbols())
            if len(symbols) == 1:
                (el,) = symbols
                elements[el] = min(float(e), elements.get(el, math.inf))
            else:
                phases.append(HullEntry(f"ref:{name}", atoms.get_chemical_formula(), float(e)))
    return elements, phases
