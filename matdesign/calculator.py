"""A thin ASE calculator around a matdesign potential, and ``load_calculator``."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from matdesign.checkpoint import PotentialEnsemble, load_potential
from matdesign.domain import METADATA_KEY as DOMAIN_KEY
from matdesign.domain import (
    ChemicalDomain,
    DomainCheck,
    energy_spread,
    many_species_fractions,
)
from matdesign.errors import NonFiniteError, UnknownElementError
from matdesign.forces import energy_forces_stress, head_forces
from matdesign.graph import (
    Graph,
    NeighbourCache,
    atoms_to_graph,
    batch_graphs,
    check_min_distance,
)
from matdesign.memory import keep_freed_memory
from matdesign.model import Potential
from matdesign.potential_spec import PotentialSpec, parse_potential
from matdesign.structure_io import check_finite

#: neighbour-list skin of the calculator, Å: rebuilt once an atom may have moved 0.25 Å
NEIGHBOUR_SKIN = 0.5


class MatdesignCalculator(Calculator):
    """ASE calculator: energy, free_energy, energies, forces, stress (ASE units and sign).

    With a committee (a model with several readout heads, or an ensemble checkpoint),
    ``results`` also holds ``energy_std`` (eV, per structure): the committee's standard
    deviation times the model's calibration factor ``metadata["uncertainty_scale"]`` (1 if
    absent), combined in quadrature with the unseen-pair prior of the training data's chemical
    domain (:func:`matdesign.domain.energy_spread`: σ_pair per atom times the fraction of edges
    joining an element pair the data lack, and σ_many per atom times the fraction of atoms
    seeing more elements than any training atom; 0 in domain). An ensemble also gives
    ``forces_std`` (eV/Å, per atom and component) on every call;
    for a multi-head model, :meth:`uncertainty` computes it on demand (one backward pass per
    head), e.g. for a relaxed candidate rather than every optimiser step.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model: Potential | PotentialEnsemble, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        keep_freed_memory()  # no page faults on every call's per-edge buffers (memory.py)
        self.model = model.eval()
        self.members = list(model.members) if isinstance(model, PotentialEnsemble) else [model]
        self.cutoff = float(model.config.cutoff)
        metadata = getattr(model, "metadata", None) or {}
        self.uncertainty_scale = float(metadata.get("uncertainty_scale", 1.0))
        # single-structure calls (relaxation, MD steps) reuse one neighbour list
        self.neighbours = NeighbourCache(self.cutoff, skin=NEIGHBOUR_SKIN)
        stored = metadata.get(DOMAIN_KEY)
        self.chemical_domain = ChemicalDomain.from_dict(stored) if stored else None
        # (domain, its (species, species) unseen-pair matrix): rebuilt only when the domain
        # object is replaced
        self._unseen_pairs: tuple[ChemicalDomain, np.ndarray] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, dtype: str | torch.dtype = "float64",
                        device: str = "cpu", lean: bool = True) -> MatdesignCalculator:
        """The calculator of a checkpoint file (one model, a committee or an ensemble).

        Args:
            path: a file written by :func:`matdesign.checkpoint.save_potential`.
            dtype, device, lean: as :func:`load_calculator`.

        Raises:
            FileNotFoundError, ValueError: as :func:`matdesign.checkpoint.load_potential`.
        """
        model = load_potential(path, dtype=_resolve_dtype(dtype), device=device)
        return cls(_maybe_lean(model, lean))

    def domain(self, atoms: Atoms) -> DomainCheck | None:
        """``atoms`` against the training data's chemistry (:mod:`matdesign.domain`); None for a
        checkpoint that does not record it."""
        return None if self.chemical_domain is None else self.chemical_domain.check(atoms)

    @property
    def species(self) -> list[str]:
        return list(self.model.species)

    def check_elements(self, atoms: Atoms) -> None:
        """Raise ``ValueError`` naming any element the model was not trained on."""
        unknown = sorted(set(atoms.get_chemical_symbols()) - set(self.species))
        if unknown:
            raise UnknownElementError(
                f"element(s) {unknown} not known to this potential; it knows {self.species}"
            )

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """What changed since the last calculation: nothing when every property ASE compares
        (cell, pbc, positions, numbers, initial magnetic moments and charges) is exactly equal,
        else every one of them (this calculator recomputes everything anyway). ASE's own
        check runs ``allclose`` on every array for each property an optimiser asks for (0.1-0.2
        ms per request for a small cell); an exact comparison costs a few µs. ``tol`` is
        accepted for ASE's signature and not used: any difference counts."""
        checked = [k for k in all_changes if k not in self.ignored_changes]
        if self.atoms is not None and _identical(self.atoms, atoms, checked):
            return []
        return checked

    def calculate(self, atoms: Atoms | None = None, properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.results = self.calculate_batch([self.atoms])[0]

    def _checked_graph(self, structures: Sequence[Atoms]) -> Graph:
        """Validate (elements, finite values, no overlapping atoms) and batch, in the model's
        device and dtype; raises before any model call."""
        for atoms in structures:
            self.check_elements(atoms)
            check_finite(atoms)
        index = self.model.species_index
        cache = self.neighbours if len(structures) == 1 else None
        graphs = [atoms_to_graph(a, self.cutoff, index, cache) for a in structures]
        for g, atoms in zip(graphs, structures, strict=True):
            check_min_distance(g, atoms.numbers)  # overlapping atoms would give silent nonsense
        return batch_graphs(graphs).to(self.members[0].device, self.members[0].dtype)

    def calculate_batch(self, structures: Sequence[Atoms]) -> list[dict[str, Any]]:
        """Evaluate many structures in one model call per committee member.

        Returns one results dict per structure (same keys as ``results``).
        """
        graph = self._checked_graph(structures)
        outs = [energy_forces_stress(m, graph) for m in self.members]
        energy = torch.stack([o.energy for o in outs]).detach().cpu().double().numpy()
        forces = torch.stack([o.forces for o in outs]).detach().cpu().double().numpy()
        atomic = torch.stack([o.atomic_energies for o in outs]).detach().cpu().double().numpy()
        heads = None
        if outs[0].head_energy is not None:
            heads = outs[0].head_energy.detach().cpu().double().numpy()
        stress = None
        if outs[0].stress is not None:
            stress = torch.stack([o.stress for o in outs]).detach().cpu().double().numpy()
        committee = len(self.members) > 1 or heads is not None
        unseen = self._domain_fractions(graph) if committee else None
        results, start = [], 0
        for b, atoms in enumerate(structures):
            sl = slice(start, start + len(atoms))
            start += len(atoms)
            r: dict[str, Any] = {
                "energy": float(energy[:, b].mean()),
                "free_energy": float(energy[:, b].mean()),
                "energies": atomic[:, sl].mean(0),
                "forces": forces[:, sl].mean(0),
            }
            if stress is not None and atoms.pbc.all():
                r["stress"] = full_3x3_to_voigt_6_stress(stress[:, b].mean(0))
            if len(self.members) > 1:
                r["energy_std"] = self._energy_std(float(energy[:, b].std()), len(atoms),
                                                   unseen[0][b], unseen[1][b])
                r["forces_std"] = self.uncertainty_scale * forces[:, sl].std(0)
            elif heads is not None:
                r["energy_std"] = self._energy_std(float(heads[:, b].std()), len(atoms),
                                                   unseen[0][b], unseen[1][b])
            bad = [k for k, v in r.items() if not np.all(np.isfinite(v))]
            if bad:
                raise NonFiniteError(
                    f"non-finite {bad} for {atoms.get_chemical_formula()}: model output is NaN/inf"
                )
            results.append(r)
        return results


    def uncertainty(self, atoms: Atoms) -> Uncertainty | None:
        """Committee spread of one structure, or None for a model without a committee."""
        if len(self.members) > 1:
            r = self.calculate_batch([atoms])[0]
            return Uncertainty(r["energy_std"], r["forces_std"])
        model = self.members[0]
        if getattr(model, "num_heads", 1) < 2:
            return None
        graph = self._checked_graph([atoms])
        energy, forces = head_forces(model, graph)
        energy_std = float(energy[:, 0].double().std(correction=0))
        forces_std = forces.double().std(0, correction=0).cpu().numpy()
        u, w = self._domain_fractions(graph)
        return Uncertainty(self._energy_std(energy_std, len(atoms), u[0], w[0]),
                           self.uncertainty_scale * forces_std)

    def _domain_fractions(self, graph: Graph) -> tuple[np.ndarray, np.ndarray]:
        """(b,) fractions of each structure's edges whose element pair the training data lack,
        and of its atoms with more elements in their cutoff sphere than the data had (zeros
        without a recorded domain or prior)."""
        b = graph.num_structures
        unseen = self._unseen_edge_fraction(graph)
        domain = self.chemical_domain
        if domain is None or not domain.many_species_prior_ev_per_atom:
            return unseen, np.zeros(b)
        receivers, senders = graph.edge_index.cpu().numpy()
        return unseen, many_species_fractions(graph.species.cpu().numpy(), receivers, senders,
                                              graph.batch.cpu().numpy(), b,
                                              domain.max_species_per_environment)

    def _unseen_edge_fraction(self, graph: Graph) -> np.ndarray:
        """(b,) fraction of each structure's edges whose element pair the training data lack
        (zeros without a recorded domain or prior)."""
        b = graph.num_structures
        domain = self.chemical_domain
        if domain is None or not domain.pair_prior_ev_per_atom:
            return np.zeros(b)
        if self._unseen_pairs is None or self._unseen_pairs[0] is not domain:
            self._unseen_pairs = (domain, domain.unseen_pair_matrix(self.members[0].species))
        matrix = self._unseen_pairs[1]
        if not matrix.any():
            return np.zeros(b)
        receivers, senders = graph.edge_index.cpu().numpy()
        species = graph.species.cpu().numpy()  # indices into the model's species
        unseen = matrix[species[receivers], species[senders]]
        owner = graph.batch.cpu().numpy()[receivers]
        edges = np.bincount(owner, minlength=b)
        return np.bincount(owner, weights=unseen, minlength=b) / np.maximum(edges, 1)

    def _energy_std(self, committee_ev: float, n_atoms: int, unseen: float,
                    many: float) -> float:
        """Calibrated energy spread of a structure (eV) from its raw committee spread (eV)."""
        domain = self.chemical_domain
        prior = domain.pair_prior_ev_per_atom if domain else 0.0
        many_prior = domain.many_species_prior_ev_per_atom if domain else 0.0
        return n_atoms * float(energy_spread(committee_ev / n_atoms, unseen,
                                             self.uncertainty_scale, prior, many, many_prior))


@dataclass(frozen=True)
class Uncertainty:
    """Calibrated committee spread of one structure."""

    energy_std_ev: float  # eV, whole structure
    forces_std_ev_per_a: np.ndarray  # (n, 3) eV/Å


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', not {dtype!r}")
    return getattr(torch, dtype)


def load_calculator(
    potential: str | PathLike[str] | PotentialSpec | Potential | PotentialEnsemble = "default",
    *,
    dtype: str | torch.dtype = "float64",
    device: str = "cpu",
    lean: bool = True,
) -> Calculator:
    """Return an ASE calculator.

    Args:
        potential: a potential spec (:mod:`matdesign.potential_spec`: ``"default"``, a
            checkpoint path, ``"emt"``, ``"module:callable"``) or an in-memory
            :class:`Potential` / :class:`PotentialEnsemble` (copied, never changed).
        dtype: ``"float64"`` (properties) or ``"float32"`` (screening, training).
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        lean: evaluate a two-body model through :func:`matdesign.inference.lean_potential`
            (the default): ℓ ≤ 1 layers as :class:`~matdesign.inference.FusedInteraction`,
            the same numbers as the e3nn layers to 1e-15 in float64 and 1.4-1.9x faster for
            E+F+σ on 16-1,024-atom cells (benchmarks/README.md); False keeps e3nn's layers.

    Raises:
        ValueError: a bad ``dtype``, or a spec that does not resolve (the message names it).
        FileNotFoundError: a missing checkpoint file.
        TypeError: a factory that does not return an ASE calculator.
    """
    torch_dtype = _resolve_dtype(dtype)
    if isinstance(potential, (Potential, PotentialEnsemble)):
        # Module.to and .eval work in place: the calculator owns a copy, never the caller's model.
        return MatdesignCalculator(_maybe_lean(
            copy.deepcopy(potential).to(device=device, dtype=torch_dtype), lean))
    return parse_potential(potential).calculator(dtype=torch_dtype, device=device, lean=lean)


def _maybe_lean(model: Potential | PotentialEnsemble, lean: bool) -> Potential | PotentialEnsemble:
    if not lean or not isinstance(model, Potential):
        return model
    from matdesign.inference import lean_potential

    return lean_potential(model, tabulate=False)


def _identical(a: Atoms, b: Atoms, properties: Sequence[str]) -> bool:
    """Whether ``a`` and ``b`` agree exactly in ``properties`` (names from ASE's
    ``all_changes``: "cell", "pbc" or per-atom arrays, absent arrays counting as a difference
    only when one of the two has them)."""
    if len(a) != len(b):
        return False
    for key in properties:
        if key in ("cell", "pbc"):
            if not np.array_equal(getattr(a, key)[:], getattr(b, key)[:]):
                return False
        elif (key in a.arrays) != (key in b.arrays) or (
                key in a.arrays and not np.array_equal(a.arrays[key], b.arrays[key])):
            return False
    return True
