"""The typed record of one screening candidate, built stage by stage, and the row it becomes.

:mod:`matdesign.search.pipeline` fills a :class:`CandidateRecord` one stage at a time (relax,
single point, committee spread, stability, gates, property relax, elastic, phonon); every
stage returns a new record, so a failure keeps all the stages that finished. The record
derives the database row: :meth:`CandidateRecord.columns` (key-value pairs) and
:meth:`CandidateRecord.data`. Their names are the databases' schema, read by queries, reports
and campaigns: rename one and every existing database loses that column.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from matdesign.domain import DomainCheck
from matdesign.plain import to_plain
from matdesign.search.gates import ELASTIC_KEYS, PHONON_KEYS

if TYPE_CHECKING:
    from matdesign.properties.elastic import ElasticResult
    from matdesign.properties.phonon import PhononResult
    from matdesign.properties.relax import RelaxResult
    from matdesign.properties.stability import HullEntry


#: row column holding why a structure lies outside the training data's chemistry (absent inside)
OUTSIDE_DOMAIN_KEY = "outside_domain"


@dataclass(frozen=True)
class Uncertainty:
    """Committee spread, evaluated once on the relaxed structure.

    Attributes:
        energy_std_ev_per_atom: spread of the committee's energy per atom, eV/atom.
        forces_std_max_ev_per_a: largest spread of a force component, eV/Å; None when the
            calculator reports only an energy spread.
    """

    energy_std_ev_per_atom: float
    forces_std_max_ev_per_a: float | None = None


@dataclass(frozen=True)
class Stability:
    """Formation energy and energy above the convex hull of the reference phases.

    Attributes:
        formation_energy_ev_per_atom: E/N - Σ x_i μ_i, eV/atom.
        e_above_hull_ev_per_atom: over the elemental references and the competing phases
            only, eV/atom (``ResultsDB.update_hull`` later recomputes it over every row).
        reference_energies_ev_per_atom: μ_i of each element of the candidate, eV/atom.
        competing_phases: the user-supplied compounds (all of them, whatever their elements).
    """

    formation_energy_ev_per_atom: float
    e_above_hull_ev_per_atom: float
    reference_energies_ev_per_atom: dict[str, float]
    competing_phases: tuple[HullEntry, ...] = ()


@dataclass(frozen=True)
class CandidateRecord:
    """One candidate's evaluation so far; a stage's field stays None until it has run.

    Attributes:
        potential_id: identity of the potential (``search.hashing.potential_id``).
        settings: ``ScreenSettings.to_dict()`` of the run.
        atoms: the structure: the input until relaxed, then the relaxed one (after the single
            point with a ``SinglePointCalculator`` holding its energy, forces and stress).
        relax: the screening relaxation, converged or not.
        energy_per_atom_ev: single point on the converged relaxed structure, eV/atom.
        volume_per_atom_a3: of the relaxed structure, Å³/atom; None unless 3D periodic.
        uncertainty: committee spread; None for a potential without a committee.
        domain: the structure against the training data's chemistry (element pairs, species
            per neighbourhood; :mod:`matdesign.domain`); None when the potential records none.
        stability: formation energy and energy above the references' hull.
        skipped_expensive: a gate failed and the later steps were skipped; None before the
            gates on cheap results were checked.
        gates_failed: the failed gates, as ``"key op value"`` text.
        property_relax: the re-relaxation before elastic and phonon work (its ``atoms`` are
            what they use; the row keeps ``atoms``).
        elastic: elastic constants and moduli.
        phonon: phonon frequencies and stability.
    """

    potential_id: str
    settings: dict[str, Any]
    atoms: Atoms = field(repr=False)
    relax: RelaxResult | None = None
    energy_per_atom_ev: float | None = None
    volume_per_atom_a3: float | None = None
    uncertainty: Uncertainty | None = None
    domain: DomainCheck | None = None
    stability: Stability | None = None
    skipped_expensive: bool | None = None
    gates_failed: tuple[str, ...] = ()
    property_relax: RelaxResult | None = None
    elastic: ElasticResult | None = None
    phonon: PhononResult | None = None

    def columns(self) -> dict[str, float | int | str | bool]:
        """The row's key-value pairs of the stages that finished (no status or reason)."""
        out: dict[str, Any] = {"potential_id": self.potential_id}
        if self.energy_per_atom_ev is not None and self.relax is not None:
            out["energy_per_atom_ev"] = self.energy_per_atom_ev
            out["relax_steps"] = int(self.relax.steps)
            if self.volume_per_atom_a3 is not None:
                out["volume_per_atom_a3"] = self.volume_per_atom_a3
        if self.uncertainty is not None:
            out["energy_std_ev_per_atom"] = self.uncertainty.energy_std_ev_per_atom
            if self.uncertainty.forces_std_max_ev_per_a is not None:
                out["forces_std_max_ev_per_a"] = self.uncertainty.forces_std_max_ev_per_a
        if self.domain is not None and self.domain.outside:
            out[OUTSIDE_DOMAIN_KEY] = self.domain.reason
        if self.stability is not None:
            out["formation_energy_ev_per_atom"] = self.stability.formation_energy_ev_per_atom
            out["e_above_hull_ev_per_atom"] = self.stability.e_above_hull_ev_per_atom
        if self.skipped_expensive is not None:
            out["skipped_expensive"] = self.skipped_expensive
        for result, keys in ((self.elastic, ELASTIC_KEYS), (self.phonon, PHONON_KEYS)):
            if result is not None:
                out.update(_storable(result, keys))
        return out

    def data(self) -> dict[str, Any]:
        """The row's full results, JSON-able; failed gates follow the result they judged."""
        out: dict[str, Any] = {"settings": self.settings}
        if self.relax is not None:
            out["relax"] = to_plain(self.relax.to_dict())
        if self.stability is not None:
            out["references"] = {
                "elements": dict(self.stability.reference_energies_ev_per_atom),
                "competing": [dataclasses.asdict(p) for p in self.stability.competing_phases],
            }
        if self.gates_failed and self.elastic is None:
            out["gates_failed"] = list(self.gates_failed)
        if self.property_relax is not None:
            out["property_relax"] = to_plain(self.property_relax.to_dict())
        if self.elastic is not None:
            out["elastic"] = to_plain(self.elastic.to_dict())
            if self.gates_failed:
                out["gates_failed"] = list(self.gates_failed)
        if self.phonon is not None:
            out["phonon"] = to_plain(self.phonon.to_dict())
        return out

    def done(self, *, source: str, content_hash: str, settings_hash: str,
             elapsed_s: float) -> CandidateResult:
        """The ``done`` row of this record."""
        return CandidateResult(
            status="done", reason=None, source=source,
            formula=self.atoms.get_chemical_formula(), content_hash=content_hash,
            settings_hash=settings_hash, atoms=self.atoms,
            key_value_pairs={"status": "done", **self.columns()}, data=self.data(),
            elapsed_s=float(elapsed_s),
        )

    def failed(self, reason: str, failure_class: str, *, source: str, content_hash: str,
               settings_hash: str, elapsed_s: float = 0.0) -> CandidateResult:
        """The ``failed`` row of this record: what finished is kept, ``reason`` says why the
        rest is missing and ``failure_class`` sorts it in the summary."""
        kvp = {"status": "failed", "reason": reason[:500], **self.columns(),
               "failure_class": failure_class}
        return CandidateResult(
            status="failed", reason=reason, source=source,
            formula=self.atoms.get_chemical_formula(), content_hash=content_hash,
            settings_hash=settings_hash, atoms=self.atoms, key_value_pairs=kvp,
            data=self.data(), elapsed_s=float(elapsed_s),
        )


def _storable(result: Any, keys: tuple[str, ...]) -> dict[str, float | int | str | bool]:
    """The fields ``keys`` of ``result`` that a database can store (finite numbers, text)."""
    out = {}
    for key in keys:
        value = plain_value(getattr(result, key, None))
        if value is not None:
            out[key] = value
    return out


@dataclass(frozen=True)
class CandidateResult:
    """One candidate's row, as the coordinator writes it (``ResultsDB.write``).

    Attributes:
        status: "done" or "failed".
        reason: why it failed (None when done).
        source: input name (file, ``file@frame``, ``db@id``).
        formula: chemical formula of the structure.
        content_hash: ``content_hash`` of the INPUT structure (or of the unreadable file).
        settings_hash: ``ScreenSettings.settings_hash()``.
        atoms: relaxed structure (the input if it failed before relaxing).
        key_value_pairs: scalar results for database columns (str/int/float/bool only); a
            failed row also has ``reason`` and ``failure_class``.
        data: full results, JSON-able.
        elapsed_s: wall time, s.
    """

    status: str
    reason: str | None
    source: str
    formula: str
    content_hash: str
    settings_hash: str
    atoms: Atoms = field(repr=False)
    key_value_pairs: dict[str, float | int | str | bool]
    data: dict[str, Any]
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (without the structure)."""
        return {
            "status": self.status, "reason": self.reason, "source": self.source,
            "formula": self.formula, "content_hash": self.content_hash,
            "settings_hash": self.settings_hash, "key_value_pairs": dict(self.key_value_pairs),
            "data": self.data, "elapsed_s": float(self.elapsed_s),
        }


def plain_value(value: Any) -> float | int | str | bool | None:
    """Cast a scalar to a type ase.db accepts as a key-value pair; None if it cannot be stored."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str):
        return value
    return None
