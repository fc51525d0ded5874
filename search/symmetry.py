"""Which ordered decorations are the same crystal, and bond-level features of a candidate.

Two decorations are the same material when their ideal structures match under pymatgen's
``StructureMatcher`` (primitive cells, volume scaled): B2 Nb-Mo and B2 Mo-Nb, or a Heusler
L2_1 with equal B and C sublattices and the B2 cell it reduces to. A campaign evaluates one
member of each class (the first in enumeration order), so neither BO nor random search spends
evaluations on a relabelling of a crystal it already has.

Bond features describe chemical order, which composition features cannot: over the bonds of
the ideal structure shorter than ``BOND_SHELL`` × the shortest one (bcc: shells 1 and 2; fcc:
shell 1), the fraction of unlike bonds and the bond-averaged squared contrast of
electronegativity, valence electron count and atomic radius. For a disordered candidate the
random-alloy expectation is used (bond a-b with probability x_a x_b), so both kinds share one
scale.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from matdesign.search.prototypes import Prototype
from matdesign.search.space import DesignPoint, DesignSpace

BOND_SHELL = 1.25  # bonds up to this multiple of the shortest interatomic distance
BOND_FEATURES = ("unlike_bond_fraction", "bond_electronegativity_contrast",
                 "bond_vec_contrast", "bond_radius_contrast_a2")


_CLASSES: dict[tuple, dict[str, str]] = {}  # ordered families -> classes (pure geometry)


def equivalence_classes(space: DesignSpace) -> dict[str, str]:
    """Map every ordered candidate key to the key of its class representative.

    Computed once per set of ordered families and prototypes in a process (a few seconds for a
    few hundred decorations), so repeated campaigns over one space do not redo it.

    Returns:
        ``{key: canonical key}``; a candidate unique up to symmetry maps to itself.
    """
    memo = (space.ordered, tuple(sorted(space.user_prototypes.items())))
    if memo not in _CLASSES:
        _CLASSES[memo] = _classes(space)
    return dict(_CLASSES[memo])


def _classes(space: DesignSpace) -> dict[str, str]:
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    matcher = StructureMatcher(primitive_cell=True, scale=True, attempt_supercell=True)
    reps: dict[str, list[tuple[str, object]]] = {}  # reduced formula -> [(key, structure)]
    out: dict[str, str] = {}
    for x in space.enumerate_ordered():
        c = space.decode(x)
        if c.key in out:
            continue
        s = AseAtomsAdaptor.get_structure(space.prototype(c.prototype).decorate(c.elements))
        bucket = reps.setdefault(s.composition.reduced_formula, [])
        match = next((k for k, r in bucket if matcher.fit(s, r)), None)
        if match is None:
            bucket.append((c.key, s))
        out[c.key] = match or c.key
    return out


@cache
def _ordered_bonds(prototype: Prototype, elements: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Element pairs of every bond within the shell of the ideal decorated cell (a = 1)."""
    from ase.neighborlist import neighbor_list

    atoms = prototype.decorate(elements)
    d_min = neighbor_list("d", atoms, 1.5 * atoms.cell.lengths().min() + 1e-6).min()
    i, j = neighbor_list("ij", atoms, BOND_SHELL * d_min)
    sym = atoms.get_chemical_symbols()
    return tuple((sym[a], sym[b]) for a, b in zip(i, j, strict=True))


def bond_features(candidate: DesignPoint, space: DesignSpace) -> np.ndarray:
    """The :data:`BOND_FEATURES` of one candidate (dimensionless except radius², Å²)."""
    from matdesign.search.features import element_properties

    if candidate.kind == "ordered":
        bonds = _ordered_bonds(space.prototype(candidate.prototype), candidate.elements)
        pairs: dict[tuple[str, str], float] = {}
        for b in bonds:
            pairs[b] = pairs.get(b, 0.0) + 1.0 / len(bonds)
    else:
        comp = candidate.composition(space.prototype(candidate.prototype))
        pairs = {(a, b): comp[a] * comp[b] for a in comp for b in comp}
    unlike = chi = vec = rad = 0.0
    for (a, b), p in pairs.items():
        ra, xa, va, _ = element_properties(a)
        rb, xb, vb, _ = element_properties(b)
        unlike += p * (a != b)
        chi += p * (xa - xb) ** 2
        vec += p * (va - vb) ** 2
        rad += p * (ra - rb) ** 2
    return np.array([unlike, chi, vec, rad])
