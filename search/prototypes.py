"""Prototype crystal structures with named sublattices, and Vegard's-law cell scaling.

A prototype is a cell in units of its lattice parameter ``a`` plus sites grouped into named
sublattices. A *decoration* puts one element on each sublattice; a disordered candidate puts a
composition on all sites of a prototype (normally a one-sublattice lattice such as A2).

Built-in library (Strukturbericht name, prototype compound, space group number):
A1 fcc Cu (225), A2 bcc W (229), A3 hcp Mg (194), B2 CsCl (221), L1_2 Cu3Au (221),
L1_0 CuAu (123), D0_3 BiF3/Fe3Al (225), L2_1 Cu2MnAl Heusler (225), C15 MgCu2 Laves (227),
B1 NaCl rock salt (225), E2_1 CaTiO3 cubic perovskite (221).
Cells are the smallest ones that hold the ordering (fcc-primitive cells for D0_3, L2_1, C15
and B1), so relaxations stay cheap. User prototypes come from a JSON file with the same fields.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

_FCC_PRIMITIVE = ((0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0))
_CUBIC = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
_C_OVER_A_HCP = float(np.sqrt(8.0 / 3.0))


@dataclass(frozen=True)
class Prototype:
    """A crystal prototype with named sublattices.

    Attributes:
        name: library key, e.g. ``"B2"``.
        cell_over_a: (3, 3) lattice vectors as rows, in units of the lattice parameter a.
        sublattices: ordered sublattice names, e.g. ``("A", "B")``.
        sites: per sublattice, the Cartesian positions in units of a (tuple of 3-tuples).
        space_group: international space-group number of the fully decorated structure.
        description: a human label, e.g. ``"CsCl"``.
    """

    name: str
    cell_over_a: tuple[tuple[float, float, float], ...]
    sublattices: tuple[str, ...]
    sites: tuple[tuple[tuple[float, float, float], ...], ...]
    space_group: int
    description: str = ""

    @property
    def n_atoms(self) -> int:
        """Number of atoms in the prototype cell."""
        return sum(len(s) for s in self.sites)

    def multiplicities(self) -> dict[str, int]:
        """Sites per sublattice in the prototype cell."""
        return {name: len(s) for name, s in zip(self.sublattices, self.sites, strict=True)}

    def decorate(self, elements: dict[str, str] | tuple[str, ...], a: float = 1.0) -> Atoms:
        """Return the cell with one element per sublattice, lattice parameter ``a`` in Å.

        Args:
            elements: sublattice name -> element symbol, or a tuple in sublattice order.
            a: lattice parameter in Å.
        """
        if not isinstance(elements, dict):
            elements = dict(zip(self.sublattices, elements, strict=True))
        missing = [s for s in self.sublattices if s not in elements]
        if missing:
            raise ValueError(f"prototype {self.name}: no element given for sublattice(s) {missing}")
        symbols, positions = [], []
        for name, sites in zip(self.sublattices, self.sites, strict=True):
            symbols += [elements[name]] * len(sites)
            positions += [np.asarray(p) * a for p in sites]
        return Atoms(symbols, positions=positions, cell=np.asarray(self.cell_over_a) * a,
                     pbc=True)

    def volume_over_a3(self) -> float:
        """Cell volume in units of a³."""
        return float(abs(np.linalg.det(np.asarray(self.cell_over_a))))


def _p(name: str, cell: Sequence[Sequence[float]], sublattices: Sequence[str],
       sites: Sequence[Sequence[Sequence[float]]], sg: int, desc: str) -> Prototype:
    return Prototype(
        name=name,
        cell_over_a=tuple(tuple(float(v) for v in row) for row in cell),
        sublattices=tuple(sublattices),
        sites=tuple(tuple(tuple(float(v) for v in p) for p in group) for group in sites),
        space_group=sg,
        description=desc,
    )


_H = _C_OVER_A_HCP
_BUILTIN: tuple[Prototype, ...] = (
    _p("A1", _FCC_PRIMITIVE, ["A"], [[(0, 0, 0)]], 225, "fcc Cu"),
    _p("A2", _CUBIC, ["A"], [[(0, 0, 0), (0.5, 0.5, 0.5)]], 229, "bcc W"),
    _p("A3", ((1, 0, 0), (-0.5, np.sqrt(3) / 2, 0), (0, 0, _H)), ["A"],
       [[(0.5, np.sqrt(3) / 6, 0.25 * _H), (0, np.sqrt(3) / 3, 0.75 * _H)]], 194, "hcp Mg"),
    _p("B2", _CUBIC, ["A", "B"], [[(0, 0, 0)], [(0.5, 0.5, 0.5)]], 221, "CsCl"),
    _p("L1_2", _CUBIC, ["A", "B"],
       [[(0, 0, 0)], [(0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]], 221, "Cu3Au (B = Cu)"),
    _p("L1_0", _CUBIC, ["A", "B"],
       [[(0, 0, 0), (0.5, 0.5, 0)], [(0.5, 0, 0.5), (0, 0.5, 0.5)]], 123, "CuAu"),
    _p("D0_3", _FCC_PRIMITIVE, ["A", "B"],
       [[(0, 0, 0)], [(0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (0.75, 0.75, 0.75)]], 225,
       "BiF3 / Fe3Al (A = Al 4a, B = Fe 4b+8c)"),
    _p("L2_1", _FCC_PRIMITIVE, ["A", "B", "C"],
       [[(0, 0, 0)], [(0.5, 0.5, 0.5)], [(0.25, 0.25, 0.25), (0.75, 0.75, 0.75)]], 225,
       "Heusler Cu2MnAl (A = Al 4a, B = Mn 4b, C = Cu 8c)"),
    _p("C15", _FCC_PRIMITIVE, ["A", "B"],
       [[(0.125, 0.125, 0.125), (0.875, 0.875, 0.875)],
        [(0.5, 0.5, 0.5), (0.5, 0.25, 0.25), (0.25, 0.5, 0.25), (0.25, 0.25, 0.5)]], 227,
       "Laves MgCu2 (A = Mg 8a, B = Cu 16d)"),
    _p("B1", _FCC_PRIMITIVE, ["A", "B"], [[(0, 0, 0)], [(0.5, 0.5, 0.5)]], 225, "NaCl"),
    _p("E2_1", _CUBIC, ["A", "B", "X"],
       [[(0, 0, 0)], [(0.5, 0.5, 0.5)], [(0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]], 221,
       "cubic perovskite CaTiO3 (A = Ca, B = Ti, X = O)"),
)
BUILTIN_PROTOTYPES: dict[str, Prototype] = {p.name: p for p in _BUILTIN}


def load_prototypes(path: str | Path) -> dict[str, Prototype]:
    """Read user prototypes from a JSON file.

    The file holds a list of objects with keys ``name``, ``cell_over_a`` (3×3, rows),
    ``sublattices`` (object: sublattice name -> list of Cartesian positions in units of a),
    ``space_group`` (int) and optional ``description``.

    Raises:
        ValueError: naming the file, the entry and the field when anything is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prototype file not found: {path}")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of prototype objects")
    allowed = {"name", "cell_over_a", "sublattices", "space_group", "description"}
    out: dict[str, Prototype] = {}
    for k, e in enumerate(entries):
        where = f"{path}: prototype #{k}"
        if not isinstance(e, dict):
            raise ValueError(f"{where}: expected an object")
        unknown = sorted(set(e) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed {sorted(allowed)}")
        for key in ("name", "cell_over_a", "sublattices", "space_group"):
            if key not in e:
                raise ValueError(f"{where}: missing key '{key}'")
        cell = np.asarray(e["cell_over_a"], dtype=float)
        if cell.shape != (3, 3) or abs(np.linalg.det(cell)) < 1e-6:
            raise ValueError(f"{where} ({e['name']}): 'cell_over_a' must be a non-singular 3x3")
        subs = e["sublattices"]
        if not isinstance(subs, dict) or not subs:
            raise ValueError(f"{where} ({e['name']}): 'sublattices' must be a non-empty object")
        sites = []
        for sname, pos in subs.items():
            arr = np.asarray(pos, dtype=float)
            if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
                raise ValueError(f"{where} ({e['name']}): sublattice '{sname}' needs Nx3 positions")
            sites.append(arr.tolist())
        out[str(e["name"])] = _p(str(e["name"]), cell, list(subs), sites, int(e["space_group"]),
                                 str(e.get("description", "")))
    return out


def get_prototype(name: str, extra: dict[str, Prototype] | None = None) -> Prototype:
    """Look up a prototype by name in ``extra`` (user prototypes) then the built-in library."""
    if extra and name in extra:
        return extra[name]
    if name in BUILTIN_PROTOTYPES:
        return BUILTIN_PROTOTYPES[name]
    known = sorted(set(BUILTIN_PROTOTYPES) | set(extra or {}))
    raise ValueError(f"unknown prototype '{name}'; known: {known}")


def elemental_volume(symbol: str) -> float:
    """Volume per atom of the element's reference crystal in Å³ (ASE reference states).

    Falls back to pymatgen's molar volume for elements without a crystalline reference state.
    """
    from ase.data import atomic_numbers, reference_states

    z = atomic_numbers.get(symbol)
    if z is None:
        raise ValueError(f"unknown element symbol '{symbol}'")
    ref = reference_states[z] or {}
    a = ref.get("a")
    sym = ref.get("symmetry")
    if sym == "fcc":
        return a**3 / 4
    if sym == "bcc":
        return a**3 / 2
    if sym == "hcp":
        c = ref.get("c/a", _C_OVER_A_HCP) * a
        return float(np.sqrt(3) / 2 * a * a * c / 2)
    if sym == "diamond":
        return a**3 / 8
    if sym == "sc":
        return a**3
    from pymatgen.core import Element

    molar = Element(symbol).molar_volume  # cm^3/mol
    if molar is None:
        raise ValueError(f"no elemental volume known for '{symbol}' (needed for Vegard's law)")
    return float(molar) / 6.02214076e23 * 1e24


def vegard_scale(atoms: Atoms) -> Atoms:
    """Scale a cell isotropically so its volume per atom is Vegard's law, V = Σ_i x_i V_i.

    ``V_i`` are elemental volumes per atom (Å³, :func:`elemental_volume`) and ``x_i`` the atom
    fractions. Returns a new Atoms; the input is not changed.
    """
    symbols = atoms.get_chemical_symbols()
    target = float(np.mean([elemental_volume(s) for s in symbols])) * len(atoms)
    out = atoms.copy()
    scale = (target / out.get_volume()) ** (1.0 / 3.0)
    out.set_cell(out.cell[:] * scale, scale_atoms=True)
    return out
