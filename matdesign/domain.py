"""The chemical domain of a potential's training data, and whether a structure lies inside it.

A committee spread measures how far an atom's features are from the training features; it
does not see chemistry the data never contained. Left without one binary family, the shipped
recipe predicts that pair's mixing wrongly by the full mixing energy (40–90 meV/atom) while
its committee stays as confident as in domain (benchmarks/README.md, leave one family out).
This module records two plain facts about the training data and checks a structure against
them (numpy; pymatgen only for the chemical prior's periods and groups):

* **element pairs** that ever met within the cutoff (``"Mo-Ta"``): an unseen pair has no data;
* **species per neighbourhood**: the most distinct elements in one atom's cutoff sphere (the
  atom included). Data of elements and binaries have 2; every atom of a random ternary or
  quaternary alloy sees 3–4, a many-body chemistry the data never sampled (the held-out
  quaternary error of the format-1 model was 10× its binary error).

* **shortest contact per pair**: how close the two elements of each pair ever came. The
  NbMoTaW binaries are nearly relaxed cells (unlike pairs never closer than 2.71-2.85 Å) while
  only the elements' AIMD pushes atoms together (down to 2.02-2.15 Å), so a hot alloy puts
  unlike atoms closer than any data did; on the EMT proxy of benchmarks/synthetic_alloys.py
  that is where the error of a hot quaternary triples over a cold one.

* **a prior for unseen pairs**: the energy of a never-seen pair's bonds is unknown; its size
  is that of the seen pairs' mixing coefficients, or, for a model with the chemical pair
  term, that term's leave-one-pair-out error (:func:`pair_prior`). The calculator adds
  σ_pair · (fraction of edges joining an unseen pair) to the committee's spread
  (:func:`energy_spread`), so a structure with an unseen pair is uncertain by the typical
  mixing energy, not as confident as in domain.

* **a prior for many-species neighbourhoods** (twenty-second session): atoms that see more
  elements than any training atom did (a ternary or quaternary alloy for data of binaries)
  add σ_many · (their fraction) to the spread, σ_many the potential's RMS mixing-energy error
  on reference cells of that kind (GPAW PBE, ``benchmarks/mixing_check.py --write-to``).

A structure outside any of them is flagged with a reason naming the pair, the count or the
distance; it still gets its numbers. The domain is stored in the checkpoint metadata
(``chemical_domain``); a record without shortest contacts (written before they existed)
checks pairs and counts only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

METADATA_KEY = "chemical_domain"
#: A contact counts as closer than the data when it is this fraction shorter than the pair's
#: shortest training contact (cold relaxed alloys stay within it; hot cells do not).
CONTACT_TOLERANCE = 0.05


def pair_name(a: str, b: str) -> str:
    """``"Mo-Ta"``: the two symbols in alphabetical order."""
    return "-".join(sorted((a, b)))


def _pair_codes(symbols: np.ndarray, receivers: np.ndarray, senders: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct symbols, each atom's index into them, and one integer per edge naming its
    unordered element pair (``lo * n_names + hi``)."""
    names, codes = np.unique(np.asarray(symbols), return_inverse=True)
    a, b = codes[receivers], codes[senders]
    return names, codes, np.minimum(a, b) * len(names) + np.maximum(a, b)


def _pair_label(names: np.ndarray, code: int) -> str:
    return pair_name(names[code // len(names)], names[code % len(names)])


def environment(symbols: np.ndarray, receivers: np.ndarray, senders: np.ndarray
                ) -> tuple[set[str], int]:
    """Element pairs on the edges and the most species in one atom's neighbourhood.

    Args:
        symbols: (n,) chemical symbols.
        receivers, senders: (m,) atom indices of each edge within the cutoff.
    """
    if len(symbols) == 0:
        return set(), 0
    names, codes, pair = _pair_codes(symbols, receivers, senders)
    pairs = {_pair_label(names, int(k)) for k in np.unique(pair)}
    seen = np.zeros((len(codes), len(names)), dtype=bool)
    seen[np.arange(len(codes)), codes] = True
    seen[receivers, codes[senders]] = True
    return pairs, int(seen.sum(1).max())


def shortest_contacts(symbols: np.ndarray, receivers: np.ndarray, senders: np.ndarray,
                      distances: np.ndarray) -> dict[str, float]:
    """Shortest distance (Å) of each element pair over the edges ``receivers``-``senders``."""
    if len(receivers) == 0:
        return {}
    names, _, pair = _pair_codes(symbols, receivers, senders)
    shortest = np.full(len(names) ** 2, np.inf)
    np.minimum.at(shortest, pair, np.asarray(distances, dtype=float))
    return {_pair_label(names, int(k)): float(shortest[k])
            for k in np.flatnonzero(np.isfinite(shortest))}


def structure_environment(atoms: Atoms, cutoff: float
                          ) -> tuple[set[str], int, dict[str, float]]:
    """:func:`environment` and :func:`shortest_contacts` of a structure from one neighbour list
    within ``cutoff`` (Å): (element pairs, most species per neighbourhood, shortest contact
    per pair in Å)."""
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    symbols = np.array(atoms.get_chemical_symbols())
    return (*environment(symbols, i, j), shortest_contacts(symbols, i, j, d))


def pair_coefficients(samples: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, float]]
                      ) -> dict[str, float]:
    """ε_AB (eV/atom) of every unlike pair the data contain, by least squares.

    Over the structures with at least two elements: E/N ≈ Σ_s x_s e_s + Σ_AB ε_AB u_AB, with
    x_s the fraction of atoms of element s and u_AB the fraction of edges joining A and B.
    ε_AB is the energy per atom, beyond the elements' references, of a structure whose every
    edge were an A-B bond. An element's reference e_s is its lowest energy per atom among the
    structures of that element alone (its ground state), so ε measures mixing against the
    pure elements; an element with no such structure gets e_s fitted with the ε (free
    references absorb part of the mixing where the binaries' compositions and volumes
    correlate). Empty when no structure has two elements.

    Args:
        samples: per structure (symbols (n,), receivers (m,), senders (m,), energy in eV).
    """
    rows = []  # (composition {element: x}, unlike-edge fractions {pair: u}, E/N)
    ground: dict[str, float] = {}  # lowest E/N of each element's own structures
    for symbols, receivers, senders, energy in samples:
        symbols = np.asarray(symbols)
        names, codes, pair = _pair_codes(symbols, receivers, senders)
        if len(names) == 1:
            ground[str(names[0])] = min(energy / len(symbols), ground.get(str(names[0]), np.inf))
        if len(names) < 2 or len(pair) == 0:
            continue
        counts = np.bincount(codes, minlength=len(names)) / len(symbols)
        found, n = np.unique(pair, return_counts=True)
        fractions = {_pair_label(names, int(k)): c / len(pair)
                     for k, c in zip(found, n, strict=True) if k // len(names) != k % len(names)}
        rows.append((dict(zip(names.tolist(), counts, strict=True)), fractions,
                     energy / len(symbols)))
    if not rows:
        return {}
    columns = sorted({e for x, _, _ in rows for e in x} - set(ground))
    n_free = len(columns)
    columns += sorted({p for _, u, _ in rows for p in u})
    where = {name: k for k, name in enumerate(columns)}
    design = np.zeros((len(rows), len(columns)))
    target = np.zeros(len(rows))
    for k, (x, u, e) in enumerate(rows):
        target[k] = e - sum(v * ground[s] for s, v in x.items() if s in ground)
        for name, value in (*x.items(), *u.items()):
            if name in where:
                design[k, where[name]] = value
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return {name: float(c) for name, c in zip(columns[n_free:], coef[n_free:], strict=True)}


def descriptor_loo_residuals(coefficients: dict[str, float]) -> np.ndarray | None:
    """Leave-one-pair-out residuals (eV/atom) of ε_AB as a quadratic form of the (period,
    group) difference, the form of :class:`matdesign.mixing.ChemicalPairTerm`.

    Each pair's ε is predicted from the others' by least squares on q = (Δperiod², Δgroup²,
    Δperiod·Δgroup), no intercept (like atoms have d = 0). A component no other pair carries
    gets weight 0 (minimum-norm solution), so a pair whose kind no other pair shows is
    predicted without it, as a model fitted without it would be. None with fewer than four
    pairs (three weights leave nothing to test).
    """
    if len(coefficients) < 4:
        return None
    from pymatgen.core import Element

    def q(name: str) -> list[float]:
        a, b = (Element(s) for s in name.split("-"))
        dp, dg = float(a.row - b.row), float(a.group - b.group)
        return [dp * dp, dg * dg, dp * dg]

    names = sorted(coefficients)
    design = np.array([q(n) for n in names])
    target = np.array([coefficients[n] for n in names])
    out = np.empty(len(names))
    for k in range(len(names)):
        keep = np.arange(len(names)) != k
        w, *_ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
        out[k] = target[k] - design[k] @ w
    return out


def pair_prior(samples: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, float]],
               chemical: bool = False) -> float:
    """σ_pair (eV/atom): how wrong a never-seen pair's bonds may be.

    Without a chemical pair term the model knows nothing of an unseen pair's mixing, so σ_pair
    is the RMS of the seen pairs' ε_AB (:func:`pair_coefficients`). With one
    (``chemical=True``) the term predicts an unseen pair from the seen ones, and σ_pair is the
    RMS of its leave-one-pair-out residuals (:func:`descriptor_loo_residuals`); with fewer
    than four seen pairs, the RMS of ε as without. 0 when no structure has two elements.

    Args:
        samples: per structure (symbols (n,), receivers (m,), senders (m,), energy in eV).
        chemical: the model has :class:`matdesign.mixing.ChemicalPairTerm`.
    """
    coefficients = pair_coefficients(samples)
    if not coefficients:
        return 0.0
    residuals = descriptor_loo_residuals(coefficients) if chemical else None
    values = np.array(list(coefficients.values())) if residuals is None else residuals
    return float(np.sqrt(np.mean(values ** 2)))


def energy_spread(committee: np.ndarray | float, unseen_edge_fraction: np.ndarray | float,
                  scale: float, prior: float, many_species_fraction: np.ndarray | float = 0.0,
                  many_species_prior: float = 0.0) -> np.ndarray | float:
    """Calibrated energy uncertainty (eV/atom): √((α·committee)² + (σ_pair·u)² + (σ_many·w)²).

    Args:
        committee: the committee's raw standard deviation of E/N, eV/atom.
        unseen_edge_fraction: u, the fraction of the structure's edges joining an element pair
            absent from the training data.
        scale: α, the committee's calibration factor (``metadata["uncertainty_scale"]``).
        prior: σ_pair of :func:`pair_prior`, eV/atom.
        many_species_fraction: w, the fraction of atoms whose cutoff sphere holds more
            elements than any training atom's (:func:`many_species_fractions`).
        many_species_prior: σ_many, eV/atom: the potential's RMS mixing-energy error on
            reference cells of that kind (``benchmarks/mixing_check.py --write-to``).
    """
    return np.sqrt((scale * committee) ** 2 + (prior * unseen_edge_fraction) ** 2
                   + (many_species_prior * many_species_fraction) ** 2)


def many_species_fractions(species: np.ndarray, receivers: np.ndarray, senders: np.ndarray,
                           owner: np.ndarray, n_structures: int, most: int) -> np.ndarray:
    """(b,) fraction of each structure's atoms whose cutoff sphere (the atom included) holds
    more than ``most`` distinct elements.

    Args:
        species: (n,) integer element index of each atom.
        receivers, senders: (m,) atom indices of each edge within the cutoff.
        owner: (n,) structure index of each atom.
        n_structures: b.
        most: the training data's most elements per neighbourhood.
    """
    n = len(species)
    if n == 0:
        return np.zeros(n_structures)
    seen = np.zeros((n, int(species.max()) + 1), dtype=bool)
    seen[np.arange(n), species] = True
    seen[receivers, species[senders]] = True
    many = seen.sum(1) > most
    atoms = np.bincount(owner, minlength=n_structures)
    return np.bincount(owner, weights=many, minlength=n_structures) / np.maximum(atoms, 1)


@dataclass(frozen=True)
class DomainCheck:
    """Where a structure sits against the training data's chemistry.

    Attributes:
        unseen_pairs: element pairs within the cutoff that no training structure contained.
        species_per_environment: most distinct elements in one atom's cutoff sphere.
        reason: empty inside the domain; else one line naming what is outside.
    """

    unseen_pairs: tuple[str, ...]
    species_per_environment: int
    reason: str

    @property
    def outside(self) -> bool:
        return bool(self.reason)


@dataclass(frozen=True)
class ChemicalDomain:
    """The training data's chemistry.

    Attributes:
        pairs: element pairs (``"A-B"``, like pairs included) that met within ``cutoff_a``.
        max_species_per_environment: most distinct elements any training atom saw.
        cutoff_a: the neighbour cutoff, Å.
        shortest_a: (pair, shortest distance in Å) of every pair; empty in records written
            before it existed (then distances are not checked).
        pair_prior_ev_per_atom: σ_pair of :func:`pair_prior`; 0 in records written before it
            existed (then an unseen pair adds nothing to the spread).
        many_species_prior_ev_per_atom: σ_many of :func:`energy_spread`, measured against
            reference cells with more elements per neighbourhood than the data; 0 where not
            measured (then such atoms add nothing to the spread).
    """

    pairs: tuple[str, ...]
    max_species_per_environment: int
    cutoff_a: float
    shortest_a: tuple[tuple[str, float], ...] = ()
    pair_prior_ev_per_atom: float = 0.0
    many_species_prior_ev_per_atom: float = 0.0

    @classmethod
    def from_environments(cls, environments: Iterable[tuple[set[str], int]],
                          cutoff_a: float,
                          contacts: Iterable[dict[str, float]] = (),
                          prior: float = 0.0) -> ChemicalDomain:
        """Union of per-structure :func:`environment` and :func:`shortest_contacts` results;
        ``prior`` is :func:`pair_prior` of the same structures (eV/atom)."""
        pairs: set[str] = set()
        most = 0
        for found, count in environments:
            pairs |= found
            most = max(most, count)
        shortest: dict[str, float] = {}
        for found in contacts:
            for key, d in found.items():
                shortest[key] = min(d, shortest.get(key, np.inf))
        return cls(tuple(sorted(pairs)), most, float(cutoff_a),
                   tuple(sorted((k, round(v, 4)) for k, v in shortest.items())), float(prior))

    @classmethod
    def from_edges(cls, structures: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray,
                                                    np.ndarray, float]],
                   cutoff_a: float, chemical: bool = False) -> ChemicalDomain:
        """The domain of structures given as (symbols (n,), receivers (m,), senders (m,),
        edge lengths (m,) in Å, energy in eV), their edges within ``cutoff_a``: pairs,
        species per neighbourhood, shortest contacts and :func:`pair_prior` (``chemical``:
        the model has the chemical pair term)."""
        structures = list(structures)
        return cls.from_environments(
            (environment(s, i, j) for s, i, j, _, _ in structures), cutoff_a,
            (shortest_contacts(s, i, j, d) for s, i, j, d, _ in structures),
            pair_prior(((s, i, j, e) for s, i, j, _, e in structures), chemical))

    @classmethod
    def from_dict(cls, data: dict) -> ChemicalDomain:
        shortest = tuple(sorted((k, float(v)) for k, v in data.get("shortest_a", {}).items()))
        return cls(tuple(data["pairs"]), int(data["max_species_per_environment"]),
                   float(data["cutoff_a"]), shortest,
                   float(data.get("pair_prior_ev_per_atom", 0.0)),
                   float(data.get("many_species_prior_ev_per_atom", 0.0)))

    def to_dict(self) -> dict:
        out = {"pairs": list(self.pairs),
               "max_species_per_environment": self.max_species_per_environment,
               "cutoff_a": self.cutoff_a}
        if self.shortest_a:
            out["shortest_a"] = dict(self.shortest_a)
        if self.pair_prior_ev_per_atom:
            out["pair_prior_ev_per_atom"] = self.pair_prior_ev_per_atom
        if self.many_species_prior_ev_per_atom:
            out["many_species_prior_ev_per_atom"] = self.many_species_prior_ev_per_atom
        return out

    def unseen_pair_matrix(self, elements: Sequence[str]) -> np.ndarray:
        """(k, k) bool: whether the pair of ``elements[a]`` and ``elements[b]`` is absent from
        the data; index it with per-atom element indices to mark edges."""
        known = set(self.pairs)
        return np.array([[pair_name(a, b) not in known for b in elements] for a in elements],
                        dtype=bool).reshape(len(elements), len(elements))

    def unseen_edges(self, symbols: np.ndarray, receivers: np.ndarray, senders: np.ndarray
                     ) -> np.ndarray:
        """(m,) bool: the edges ``receivers``-``senders`` whose element pair the data lack."""
        names, codes = np.unique(np.asarray(symbols), return_inverse=True)
        return self.unseen_pair_matrix(names.tolist())[codes[receivers], codes[senders]]

    def check(self, atoms: Atoms) -> DomainCheck:
        """Compare ``atoms`` with the training chemistry (neighbours within ``cutoff_a``)."""
        pairs, count, contacts = structure_environment(atoms, self.cutoff_a)
        unseen = tuple(sorted(pairs - set(self.pairs)))
        reasons = []
        if unseen:
            reasons.append(f"element pairs absent from the training data: {', '.join(unseen)}")
        if count > self.max_species_per_environment:
            reasons.append(f"{count} elements in one neighbourhood; the training data had at "
                           f"most {self.max_species_per_environment}")
        close = self._closer_than_data(contacts)
        if close:
            reasons.append("atoms closer than the training data: " + ", ".join(close))
        return DomainCheck(unseen, count, "; ".join(reasons))

    def _closer_than_data(self, found: dict[str, float]) -> list[str]:
        """``"Mo-Ta 2.41 Å (data ≥ 2.71)"`` for each pair of ``found`` (shortest contacts, Å)
        beyond :data:`CONTACT_TOLERANCE`."""
        if not self.shortest_a:
            return []
        limits = dict(self.shortest_a)
        return [f"{key} {d:.2f} Å (data ≥ {limits[key]:.2f})"
                for key, d in sorted(found.items())
                if key in limits and d < (1 - CONTACT_TOLERANCE) * limits[key]]
