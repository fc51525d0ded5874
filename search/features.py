"""Physical features of a design point for the surrogate model.

For atom fractions x_i and an elemental property p_i the features are the composition-weighted
mean p̄ = Σ x_i p_i and the spread sqrt(Σ x_i (p_i - p̄)²), for
atomic radius (Å, pymatgen), Pauling electronegativity, valence electron count (VEC: group
number for groups 1–12, group − 10 for 13–18) and atomic mass (u). The size mismatch of
high-entropy-alloy design, δ = sqrt(Σ x_i (1 - r_i / r̄)²), is included as well, and so are
bond features of chemical order (:mod:`symmetry`: unlike-bond fraction and bond-averaged
property contrasts), which tell apart decorations of one composition. These are followed by
the prototype one-hot, the ordered/disordered flag and the fraction of every element of the
space, so the GP can both generalise across chemistry (physics features) and resolve
individual compositions.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from matdesign.search.space import DesignPoint, DesignSpace
from matdesign.search.symmetry import BOND_FEATURES, bond_features

PHYSICAL_FEATURES = (
    "radius_mean_a", "radius_spread_a", "size_mismatch_delta",
    "electronegativity_mean", "electronegativity_spread",
    "vec_mean", "vec_spread", "mass_mean_u", "mass_spread_u",
)


@cache
def element_properties(symbol: str) -> tuple[float, float, float, float]:
    """(atomic radius Å, Pauling electronegativity, valence electron count, mass u).

    Raises:
        ValueError: when a property is unknown for the element.
    """
    from ase.data import atomic_masses, atomic_numbers
    from pymatgen.core import Element

    if symbol not in atomic_numbers:
        raise ValueError(f"unknown element symbol '{symbol}'")
    el = Element(symbol)
    radius = el.atomic_radius
    chi = el.X
    if radius is None or chi is None or not np.isfinite(float(chi)):
        raise ValueError(f"element '{symbol}': atomic radius or electronegativity unknown")
    group = int(el.group)
    vec = group if group <= 12 else group - 10
    return float(radius), float(chi), float(vec), float(atomic_masses[atomic_numbers[symbol]])


def composition_features(composition: dict[str, float]) -> np.ndarray:
    """The :data:`PHYSICAL_FEATURES` of a composition (element -> atom fraction)."""
    els = list(composition)
    x = np.array([composition[e] for e in els], float)
    x = x / x.sum()
    props = np.array([element_properties(e) for e in els])  # (n, 4)
    mean = x @ props
    spread = np.sqrt(np.maximum(x @ (props - mean) ** 2, 0.0))
    delta = float(np.sqrt(x @ (1.0 - props[:, 0] / mean[0]) ** 2))
    return np.array([mean[0], spread[0], delta, mean[1], spread[1], mean[2], spread[2],
                     mean[3], spread[3]])


def feature_names(space: DesignSpace) -> list[str]:
    """Names of the columns of :func:`featurize`."""
    protos = sorted({s.prototype for s in space.ordered} | {s.lattice for s in space.disordered})
    return ([*PHYSICAL_FEATURES, *BOND_FEATURES] + [f"prototype_{p}" for p in protos]
            + ["is_disordered"] + [f"x_{e}" for e in space.elements])


def featurize(points: list[DesignPoint], space: DesignSpace) -> np.ndarray:
    """Feature matrix (n_points, n_features); columns named by :func:`feature_names`."""
    protos = sorted({s.prototype for s in space.ordered} | {s.lattice for s in space.disordered})
    elements = space.elements
    rows = []
    for point in points:
        comp = point.composition(space.prototype(point.prototype))
        onehot = [1.0 if point.prototype == p else 0.0 for p in protos]
        frac = [comp.get(e, 0.0) for e in elements]
        rows.append(np.concatenate([composition_features(comp), bond_features(point, space),
                                    onehot, [1.0 if point.kind == "disordered" else 0.0], frac]))
    return np.asarray(rows, float).reshape(len(points), -1)
