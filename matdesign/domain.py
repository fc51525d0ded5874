"""The chemical domain of a potential's training data, and whether a structure lies inside it.

A committee spread measures how far an atom's features are from the training features; it
does not see chemistry the data never contained. Left without one binary family, the shipped
recipe predicts that pair's mixing wrongly by the full mixing energy (40–90 meV/atom) while
its committee stays as confident as in domain (benchmarks/README.md, leave one family out).
This module records two plain facts about the training data and checks a structure against
them, numpy only:

* **element pairs** that ever met within the cutoff (``"Mo-Ta"``): an unseen pair has no data;
* **species per neighbourhood**: the most distinct elements in one atom's cutoff sphere (the
  atom included). Data of elements and binaries have 2; every atom of a random ternary or
  quaternary alloy sees 3–4, a many-body chemistry the data never sampled (the held-out
  quaternary error of the format-1 model was 10× its binary error).

A structure outside either is flagged with a reason naming the pair or the count; it still
gets its numbers. The domain is stored in the checkpoint metadata (``chemical_domain``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

METADATA_KEY = "chemical_domain"


def pair_name(a: str, b: str) -> str:
    """``"Mo-Ta"``: the two symbols in alphabetical order."""
    return "-".join(sorted((a, b)))


def environment(symbols: np.ndarray, receivers: np.ndarray, senders: np.ndarray
                ) -> tuple[set[str], int]:
    """Element pairs on the edges and the most species in one atom's neighbourhood.

    Args:
        symbols: (n,) chemical symbols.
        receivers, senders: (m,) atom indices of each edge within the cutoff.
    """
    symbols = np.asarray(symbols)
    pairs = {pair_name(a, b) for a, b in set(zip(symbols[receivers], symbols[senders],
                                                 strict=True))}
    if len(symbols) == 0:
        return pairs, 0
    _, codes = np.unique(symbols, return_inverse=True)
    seen = np.zeros((len(symbols), codes.max() + 1), dtype=bool)
    seen[np.arange(len(symbols)), codes] = True
    seen[receivers, codes[senders]] = True
    return pairs, int(seen.sum(1).max())


def structure_environment(atoms: Atoms, cutoff: float) -> tuple[set[str], int]:
    """:func:`environment` of a structure, neighbours within ``cutoff`` (Å)."""
    i, j = neighbor_list("ij", atoms, cutoff)
    return environment(np.array(atoms.get_chemical_symbols()), i, j)


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
    """

    pairs: tuple[str, ...]
    max_species_per_environment: int
    cutoff_a: float

    @classmethod
    def from_environments(cls, environments: Iterable[tuple[set[str], int]],
                          cutoff_a: float) -> ChemicalDomain:
        """Union of per-structure :func:`environment` results."""
        pairs: set[str] = set()
        most = 0
        for found, count in environments:
            pairs |= found
            most = max(most, count)
        return cls(tuple(sorted(pairs)), most, float(cutoff_a))

    @classmethod
    def from_dict(cls, data: dict) -> ChemicalDomain:
        return cls(tuple(data["pairs"]), int(data["max_species_per_environment"]),
                   float(data["cutoff_a"]))

    def to_dict(self) -> dict:
        return {"pairs": list(self.pairs),
                "max_species_per_environment": self.max_species_per_environment,
                "cutoff_a": self.cutoff_a}

    def check(self, atoms: Atoms) -> DomainCheck:
        """Compare ``atoms`` with the training chemistry (neighbours within ``cutoff_a``)."""
        pairs, count = structure_environment(atoms, self.cutoff_a)
        unseen = tuple(sorted(pairs - set(self.pairs)))
        reasons = []
        if unseen:
            reasons.append(f"element pairs absent from the training data: {', '.join(unseen)}")
        if count > self.max_species_per_environment:
            reasons.append(f"{count} elements in one neighbourhood; the training data had at "
                           f"most {self.max_species_per_environment}")
        return DomainCheck(unseen, count, "; ".join(reasons))
