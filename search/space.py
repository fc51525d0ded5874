"""The design space: ordered decorations and disordered compositions, and their encodings.

Design variables (the vector ``x`` that scikit-optimize asks and is told) are
``[group, s0..s{m-1}, u0..u{k-2}]``:

* ``group`` — categorical label of one candidate family: ``"ordered:<prototype>"`` or
  ``"disordered:<lattice>#<i>"``;
* ``s_j`` in [0, 1) — the element on sublattice j of an ordered decoration,
  ``allowed[floor(s_j * len(allowed))]``;
* ``u_i`` in [0, 1] — unit-hypercube coordinates mapped to the bounded composition simplex by
  :func:`simplex_from_unit` (exact, no rejection), then rounded to integer atom counts of the
  supercell by :func:`round_to_counts` (sum exact, bounds kept).

Unused variables are ignored by :meth:`DesignSpace.decode`, which is many-to-one; a candidate's
identity is :attr:`DesignPoint.key` (integer counts, not fractions), so two ``x`` that round to
the same supercell composition are the same candidate and are never evaluated twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from matdesign.search.prototypes import Prototype, get_prototype, vegard_scale

_EPS = 1e-9


@dataclass(frozen=True)
class OrderedSpec:
    """Ordered decorations of one prototype: allowed elements per sublattice (sublattice order)."""

    prototype: str
    sublattice_elements: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class DisorderedSpec:
    """Disordered compositions on every site of a one-sublattice prototype.

    Attributes:
        lattice: prototype name (one sublattice), e.g. ``"A2"``.
        elements: components, e.g. ``("Nb", "Mo", "Ta", "W")``.
        lower, upper: atom-fraction bounds per component (same order as ``elements``).
        supercell: diagonal repetition of the prototype cell, e.g. ``(2, 2, 2)``.
        method: ``"random"`` or ``"sqs"`` (best of many shuffles on pair correlations).
        realisations: independent supercells averaged per candidate.
        seed: base random seed for the realisations.
    """

    lattice: str
    elements: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    supercell: tuple[int, int, int] = (2, 2, 2)
    method: str = "sqs"
    realisations: int = 1
    seed: int = 0


@dataclass(frozen=True)
class DesignPoint:
    """One point of the design space: a material to evaluate.

    Attributes:
        kind: ``"ordered"`` or ``"disordered"``.
        prototype: prototype (ordered) or lattice (disordered) name.
        elements: ordered: element per sublattice; disordered: the components.
        counts: disordered: integer atoms per component in the supercell; ordered: ``()``.
        group: the design-variable group label this point came from.
    """

    kind: str
    prototype: str
    elements: tuple[str, ...]
    counts: tuple[int, ...] = ()
    group: str = ""

    @property
    def key(self) -> str:
        """Unique identity, e.g. ``ordered:B2:Nb-Mo`` or ``disordered:A2:Mo4Nb4Ta4W4``."""
        if self.kind == "ordered":
            return f"ordered:{self.prototype}:{'-'.join(self.elements)}"
        pairs = sorted(zip(self.elements, self.counts, strict=True))
        body = "".join(f"{e}{n}" for e, n in pairs if n > 0)
        return f"disordered:{self.prototype}:{body}"

    def composition(self, prototype: Prototype) -> dict[str, float]:
        """Atom fractions per element (sum 1)."""
        if self.kind == "ordered":
            mult = prototype.multiplicities()
            comp: dict[str, float] = {}
            for sub, el in zip(prototype.sublattices, self.elements, strict=True):
                comp[el] = comp.get(el, 0.0) + mult[sub] / prototype.n_atoms
            return comp
        total = sum(self.counts)
        return {e: n / total for e, n in zip(self.elements, self.counts, strict=True) if n > 0}


def simplex_from_unit(u: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Map a point of the unit hypercube [0,1]^(k-1) onto the bounded simplex.

    Bounded stick-breaking: component i takes ``x_i = lo_i + v_i (hi_i - lo_i)`` with
    ``lo_i = max(l_i, R - Σ_{j>i} u_j)``, ``hi_i = min(u_i, R - Σ_{j>i} l_j)`` and R the
    remaining mass; the last component takes the rest, so Σx = 1 and every bound holds exactly
    whenever Σl ≤ 1 ≤ Σu. ``v_i = 1 - (1 - u_i)^(1/(k-1-i))`` is the Beta(1, k-1-i) quantile, which
    makes the map uniform on the simplex when the bounds are [0, 1].

    Args:
        u: (k-1,) coordinates in [0, 1].
        lower, upper: (k,) fraction bounds.

    Returns:
        (k,) fractions.
    """
    lower = np.asarray(lower, float)
    upper = np.asarray(upper, float)
    k = len(lower)
    if lower.sum() > 1 + _EPS or upper.sum() < 1 - _EPS or np.any(lower > upper):
        raise ValueError(f"infeasible fraction bounds lower={lower.tolist()} "
                         f"upper={upper.tolist()}")
    u = np.clip(np.asarray(u, float), 0.0, 1.0)
    x = np.zeros(k)
    rest = 1.0
    for i in range(k - 1):
        lo = max(lower[i], rest - upper[i + 1:].sum())
        hi = min(upper[i], rest - lower[i + 1:].sum())
        v = 1.0 - (1.0 - u[i]) ** (1.0 / (k - 1 - i))
        x[i] = lo + v * max(hi - lo, 0.0)
        rest -= x[i]
    x[-1] = rest
    return np.clip(x, lower, upper)


def unit_from_simplex(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Inverse of :func:`simplex_from_unit`: unit-cube coordinates (k-1,) of fractions x (k,)."""
    lower, upper, x = (np.asarray(v, float) for v in (lower, upper, x))
    k = len(x)
    u = np.zeros(k - 1)
    rest = 1.0
    for i in range(k - 1):
        lo = max(lower[i], rest - upper[i + 1:].sum())
        hi = min(upper[i], rest - lower[i + 1:].sum())
        v = float(np.clip((x[i] - lo) / (hi - lo), 0.0, 1.0)) if hi - lo > _EPS else 0.5
        u[i] = 1.0 - (1.0 - v) ** (k - 1 - i)
        rest -= x[i]
    return u


def round_to_counts(x: np.ndarray, n: int, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Round fractions to integer counts summing exactly to ``n`` while keeping the bounds.

    Largest-remainder rounding inside integer bounds ``ceil(l n) <= c <= floor(u n)``.

    Raises:
        ValueError: when no integer composition of ``n`` atoms satisfies the bounds.
    """
    lo = np.ceil(np.asarray(lower) * n - 1e-6).astype(int)
    hi = np.floor(np.asarray(upper) * n + 1e-6).astype(int)
    if lo.sum() > n or hi.sum() < n or np.any(lo > hi):
        raise ValueError(f"no composition of {n} atoms satisfies bounds {lower} .. {upper}; "
                         "use a larger supercell or wider bounds")
    target = np.asarray(x, float) * n
    c = np.clip(np.floor(target).astype(int), lo, hi)
    while c.sum() != n:
        rem = target - c
        if c.sum() < n:
            rem[c >= hi] = -np.inf
            c[int(np.argmax(rem))] += 1
        else:
            rem[c <= lo] = np.inf
            c[int(np.argmin(rem))] -= 1
    return c


@dataclass(frozen=True)
class DesignSpace:
    """Candidate families and the mapping between design vectors and design points."""

    ordered: tuple[OrderedSpec, ...] = ()
    disordered: tuple[DisorderedSpec, ...] = ()
    user_prototypes: dict[str, Prototype] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.ordered and not self.disordered:
            raise ValueError("space: needs at least one 'ordered' or 'disordered' family")
        for spec in self.ordered:
            proto = self.prototype(spec.prototype)
            if len(spec.sublattice_elements) != len(proto.sublattices):
                raise ValueError(f"space.ordered {spec.prototype}: {len(proto.sublattices)} "
                                 f"sublattices {proto.sublattices}, got "
                                 f"{len(spec.sublattice_elements)} element lists")
        for spec in self.disordered:
            if len(self.prototype(spec.lattice).sublattices) != 1:
                raise ValueError(f"space.disordered lattice '{spec.lattice}' must have one "
                                 "sublattice (e.g. A1, A2, A3)")
            n = self.prototype(spec.lattice).n_atoms * int(np.prod(spec.supercell))
            round_to_counts(simplex_from_unit(np.full(len(spec.elements) - 1, 0.5),
                                              np.array(spec.lower), np.array(spec.upper)),
                            n, np.array(spec.lower), np.array(spec.upper))

    def prototype(self, name: str) -> Prototype:
        """Prototype by name (user prototypes first)."""
        return get_prototype(name, self.user_prototypes)

    @property
    def groups(self) -> list[str]:
        """Family labels, the categories of the ``group`` design variable."""
        return ([f"ordered:{s.prototype}" for s in self.ordered]
                + [f"disordered:{s.lattice}#{i}" for i, s in enumerate(self.disordered)])

    @property
    def n_slots(self) -> int:
        return max([len(s.sublattice_elements) for s in self.ordered] or [0])

    @property
    def n_unit(self) -> int:
        return max([len(s.elements) - 1 for s in self.disordered] or [0])

    @property
    def elements(self) -> tuple[str, ...]:
        """All elements that can appear, sorted."""
        els = {e for s in self.ordered for sub in s.sublattice_elements for e in sub}
        els |= {e for s in self.disordered for e in s.elements}
        return tuple(sorted(els))

    def dimensions(self) -> list[Any]:
        """scikit-optimize dimensions of the design vector."""
        from skopt.space import Categorical, Real

        dims: list[Any] = [Categorical(self.groups, name="group")]
        dims += [Real(0.0, 1.0 - 1e-9, name=f"s{j}") for j in range(self.n_slots)]
        dims += [Real(0.0, 1.0, name=f"u{i}") for i in range(self.n_unit)]
        return dims

    def decode(self, x: list[Any]) -> DesignPoint:
        """Design vector -> design point (unused variables ignored)."""
        group = str(x[0])
        slots = [float(v) for v in x[1:1 + self.n_slots]]
        unit = np.array([float(v) for v in x[1 + self.n_slots:]])
        if group.startswith("ordered:"):
            spec = self.ordered[[f"ordered:{s.prototype}" for s in self.ordered].index(group)]
            els = tuple(allowed[min(int(s * len(allowed)), len(allowed) - 1)]
                        for s, allowed in zip(slots, spec.sublattice_elements, strict=False))
            return DesignPoint("ordered", spec.prototype, els, group=group)
        spec = self.disordered[int(group.split("#")[1])]
        lo, hi = np.array(spec.lower), np.array(spec.upper)
        frac = simplex_from_unit(unit[:len(spec.elements) - 1], lo, hi)
        n = self.prototype(spec.lattice).n_atoms * int(np.prod(spec.supercell))
        counts = round_to_counts(frac, n, lo, hi)
        return DesignPoint("disordered", spec.lattice, tuple(spec.elements),
                           tuple(int(c) for c in counts), group=group)

    def enumerate_ordered(self) -> list[list[Any]]:
        """One design vector per ordered decoration (slot values at bin centres)."""
        import itertools

        out = []
        for spec in self.ordered:
            sizes = [range(len(a)) for a in spec.sublattice_elements]
            for idx in itertools.product(*sizes):
                slots = [(i + 0.5) / len(a) for i, a in zip(idx, spec.sublattice_elements,
                                                          strict=True)]
                slots += [0.5] * (self.n_slots - len(slots))
                out.append([f"ordered:{spec.prototype}", *slots, *([0.5] * self.n_unit)])
        return out

    def enumerate_disordered(self, limit: int) -> tuple[list[list[Any]], set[str]]:
        """Design vectors of every integer composition of each disordered family that has at
        most ``limit`` of them, and the group labels of the families enumerated (larger
        families are left to random sampling)."""
        import itertools

        out: list[list[Any]] = []
        done: set[str] = set()
        for i, spec in enumerate(self.disordered):
            n = self.prototype(spec.lattice).n_atoms * int(np.prod(spec.supercell))
            lo = np.ceil(np.array(spec.lower) * n - 1e-6).astype(int)
            hi = np.floor(np.array(spec.upper) * n + 1e-6).astype(int)
            ranges = [range(a, b + 1) for a, b in zip(lo[:-1], hi[:-1], strict=True)]
            if np.prod([len(r) for r in ranges], dtype=float) > 20 * limit:
                continue
            vecs = []
            for head in itertools.product(*ranges):
                last = n - sum(head)
                if lo[-1] <= last <= hi[-1]:
                    u = unit_from_simplex(np.array([*head, last]) / n, spec.lower, spec.upper)
                    vecs.append([f"disordered:{spec.lattice}#{i}", *([0.5] * self.n_slots),
                                 *u, *([0.5] * (self.n_unit - len(u)))])
            if len(vecs) <= limit:
                out += vecs
                done.add(f"disordered:{spec.lattice}#{i}")
        return out, done

    def structures(self, point: DesignPoint) -> list[Atoms]:
        """Unrelaxed structures of a design point, Vegard-scaled (one per disorder realisation)."""
        proto = self.prototype(point.prototype)
        if point.kind == "ordered":
            return [vegard_scale(proto.decorate(point.elements))]
        spec = self.disordered[int(point.group.split("#")[1])]
        base = proto.decorate((point.elements[0],)).repeat(spec.supercell)
        symbols = np.repeat(point.elements, point.counts)
        out = []
        for r in range(spec.realisations):
            rng = np.random.default_rng([spec.seed, r, *point.counts])
            atoms = base.copy()
            atoms.set_chemical_symbols(_arrange(base, symbols, spec.method, rng))
            out.append(vegard_scale(atoms))
        return out


def _arrange(base: Atoms, symbols: np.ndarray, method: str, rng: np.random.Generator) -> list[str]:
    """Place ``symbols`` on the sites of ``base``: a random shuffle, or for ``"sqs"`` the best
    of 200 shuffles by the squared deviation of the first two neighbour shells' pair
    probabilities P_ab from the random-alloy value x_a x_b (a special-quasirandom search)."""
    if method == "random":
        return list(rng.permutation(symbols))
    if method != "sqs":
        raise ValueError(f"disorder method must be 'random' or 'sqs', not '{method}'")
    from ase.neighborlist import neighbor_list

    cutoff = 1.01 * _second_shell(base)
    i, j, d = neighbor_list("ijd", base, cutoff)
    shells = [np.round(d, 3) == v for v in np.unique(np.round(d, 3))]
    species, idx = np.unique(symbols, return_inverse=True)
    k = len(species)
    x = np.bincount(idx, minlength=k) / len(idx)
    target = np.outer(x, x).ravel()
    best, best_score = idx, np.inf
    for _ in range(200):
        s = idx[rng.permutation(len(idx))]
        pair = s[i] * k + s[j]
        score = sum(float(((np.bincount(pair[m], minlength=k * k) / m.sum() - target) ** 2).sum())
                    for m in shells)
        if score < best_score:
            best, best_score = s, score
    return [str(species[n]) for n in best]


def _second_shell(atoms: Atoms) -> float:
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", atoms, 1.5 * atoms.cell.lengths().min())
    shells = np.unique(np.round(d, 3))
    return float(shells[min(1, len(shells) - 1)])
