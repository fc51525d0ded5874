"""One screening candidate, start to finish, as stages that each add a typed result.

validate → relax → single point → committee spread → stability → gates on cheap results →
property re-relaxation → elastic → gates on elastic results → phonon. Each stage takes the
candidate's :class:`~matdesign.search.record.CandidateRecord` and returns a new one with its
result (``RelaxResult``, ``Uncertainty``, ``Stability``, ``ElasticResult``, ``PhononResult``);
the record is the database row (:mod:`matdesign.search.record`).

``evaluate_candidate`` is a top-level, picklable function run in worker processes. It never
raises: a stage that fails ends the record there, every finished stage kept, as a ``failed``
``CandidateResult`` with the reason. The potential and the reference energies are loaded once
per process (module-level caches).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from matdesign.config_utils import typed_float, typed_int
from matdesign.errors import CandidateTimeout, NotBulkError, NotConvergedError, failure_label
from matdesign.properties.relax import RelaxCalculator, RelaxResult
from matdesign.properties.stability import (
    HullEntry,
    check_known_elements,
    elemental_reference_energies,
    formation_energy_per_atom,
    formula_elements,
    hull_energies,
    user_references,
)
from matdesign.search.gates import gate_passes, gate_stage, validate_gate
from matdesign.search.hashing import content_hash, file_sha256, payload_hash, potential_id
from matdesign.search.record import CandidateRecord, CandidateResult, Stability, Uncertainty
from matdesign.structure_io import vacuum_reason

PROPERTIES = ("elastic", "phonon")

# Screening default: a residual force of 5e-3 eV/Å changes the energy by about F²/(2k) ≈ 1e-5
# eV/atom for typical stiffnesses k ~ 1 eV/Å², far below hull tolerances, and saves a large
# share of the FIRE steps that 1e-3 costs. Elastic constants are fitted from stress-strain
# slopes, which a small residual stress offsets but does not tilt.
SCREEN_FMAX = 5e-3
#: elastic constants and phonons need a tight minimum: the structure is re-relaxed to
#: ``min(fmax, PROPERTY_FMAX)`` eV/Å before them
PROPERTY_FMAX = 1e-3
#: screening precision: float32 gives the same relaxed volumes (3e-8 relative), elastic
#: tensors (2e-3 GPa) and phonon frequencies (1e-4 THz) as float64 on 16-atom NbMoTaW cells,
#: 1.6x faster (docs/CONVENTIONS.md, "Precision"); float64 stays available
SCREEN_DTYPE = "float32"


@dataclass(frozen=True)
class ScreenSettings:
    """Everything that decides a candidate's results (hashed to skip finished work).

    The one definition of the screening settings: ``matdesign screen`` builds it from its
    options, a design campaign from its ``screen:`` section (``search.config.parse_screen``).

    Attributes:
        potential: ``load_calculator`` spec ("default", "emt", checkpoint path, "module:fn").
        dtype: "float32" (default, :data:`SCREEN_DTYPE`) or "float64".
        properties: subset of ``("elastic", "phonon")`` computed after relaxation, after a
            re-relaxation to ``min(fmax, PROPERTY_FMAX)``.
        fmax: relaxation force threshold, eV/Å.
        max_steps: relaxation step limit; not converged -> failed.
        fix_symmetry: keep the input's space group during relaxation.
        phonon_min_length: minimum supercell length for phonons, Å.
        gates: ``(key, op, value)`` checks evaluated in stages (see :func:`gate_stage`):
            gates on cheap results (e.g. ``("e_above_hull_ev_per_atom", "<=", 0.1)``) after
            relax/formation/hull, failing one skips elastic and phonon; gates on elastic
            results (``ELASTIC_KEYS``, e.g. ``("born_stable", "==", 1.0)``) after the elastic
            step, failing one skips the phonons. Values are stored as floats: a boolean
            result is gated by ``==`` against 1.0 (True) or 0.0 (False); ``True``/``False``
            given here are converted to those. Gates on phonon results are refused (nothing
            runs after the phonons).
        references: extra reference / competing-phase structure files (absolute paths).

    Raises:
        ValueError: naming the field (``"fmax: ..."``), for a value out of range, an unknown
            property, or a malformed gate.
        FileNotFoundError: a reference file does not exist.
    """

    potential: str = "default"
    dtype: str = SCREEN_DTYPE
    properties: tuple[str, ...] = ()
    fmax: float = SCREEN_FMAX
    max_steps: int = 500
    fix_symmetry: bool = False
    phonon_min_length: float = 15.0
    gates: tuple[tuple[str, str, float], ...] = ()
    references: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bad = [p for p in self.properties if p not in PROPERTIES]
        if bad:
            raise ValueError(f"properties: unknown {bad}; choose from {list(PROPERTIES)}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype: must be 'float32' or 'float64', not {self.dtype!r}")
        typed_float(self.fmax, "fmax", 0.0, strict=True)
        typed_int(self.max_steps, "max_steps", 1)
        typed_float(self.phonon_min_length, "phonon_min_length", 0.0, strict=True)
        object.__setattr__(self, "gates", tuple(validate_gate(g, self.properties)
                                                for g in self.gates))
        for ref in self.references:
            if not Path(ref).is_file():
                raise FileNotFoundError(f"reference structure file not found: {ref}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def settings_hash(self) -> str:
        """16-hex hash of the settings, the potential's identity and the reference files
        (file contents only: moving a checkpoint or reference file keeps the hash)."""
        payload = self.to_dict()
        payload["potential"] = potential_id(self.potential)  # content, not the path
        payload["references"] = [file_sha256(str(Path(r).resolve())) for r in self.references]
        return payload_hash(payload)


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``CandidateTimeout`` after ``seconds`` (SIGALRM; only in a main thread on POSIX).

    Elsewhere (Dask worker threads) it does nothing and the coordinator's bookkeeping applies.
    """
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise CandidateTimeout(f"timeout: exceeded the per-candidate limit of {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, old)


_CALCULATORS: dict[tuple[str, str], Any] = {}


def get_calculator(settings: ScreenSettings) -> Any:
    """The process-wide calculator for ``(potential, dtype)``, loaded on first use (EMT and
    factories without importing the model stack)."""
    from matdesign.potential_spec import parse_potential

    key = (settings.potential, settings.dtype)
    if key not in _CALCULATORS:
        _CALCULATORS[key] = parse_potential(settings.potential).calculator(dtype=settings.dtype)
    return _CALCULATORS[key]


def start_record(atoms: Atoms, settings: ScreenSettings) -> CandidateRecord:
    """The record before any stage: what produced the row (the potential's identity and the
    settings) and the input structure, used as given."""
    return CandidateRecord(potential_id=potential_id(settings.potential),
                           settings=settings.to_dict(), atoms=atoms)


def evaluate_candidate(atoms: Atoms, settings: ScreenSettings, source: str, *,
                       timeout_s: float | None = None) -> CandidateResult:
    """Screen one structure; never raises.

    Args:
        atoms: input structure (not modified).
        settings: screening settings.
        source: input name recorded in the result.
        timeout_s: wall limit enforced inside the worker where possible (see ``_time_limit``).

    Returns:
        ``CandidateResult``; on failure ``status="failed"``, ``reason`` names the cause and
        whatever finished (e.g. the relaxation) is kept in ``atoms`` and ``data``.
    """
    start = time.perf_counter()
    atoms = atoms.copy()
    atoms.calc = None
    row = {"source": source, "content_hash": content_hash(atoms),
           "settings_hash": settings.settings_hash()}
    record = start_record(atoms, settings)
    try:
        with _time_limit(timeout_s):
            calc = validated_calculator(atoms, settings)
            for stage in screening_stages(settings):
                record = stage(record, calc, settings)  # a failure keeps the last record
                if record.skipped_expensive:
                    break
    except Exception as exc:  # noqa: BLE001 - every failure becomes a failed row, never a crash
        reason = str(exc) if isinstance(exc, CandidateTimeout) else f"{type(exc).__name__}: {exc}"
        return record.failed(reason, failure_label(exc), elapsed_s=time.perf_counter() - start,
                             **row)
    return record.done(elapsed_s=time.perf_counter() - start, **row)


Stage = Callable[[CandidateRecord, Any, ScreenSettings], CandidateRecord]


def screening_stages(settings: ScreenSettings) -> list[Stage]:
    """The stages after validation, in order; the property stages only when asked for."""
    stages: list[Stage] = [relax_stage, single_point_stage, uncertainty_stage, stability_stage,
                           functools.partial(gates_stage, stage="cheap")]
    if settings.properties:
        stages.append(property_relax_stage)
    if "elastic" in settings.properties:
        stages += [elastic_stage, functools.partial(gates_stage, stage="elastic")]
    if "phonon" in settings.properties:
        stages.append(phonon_stage)
    return stages


def validated_calculator(atoms: Atoms, settings: ScreenSettings) -> Any:
    """Refuse a structure the pipeline cannot screen, and return the calculator.

    A slab, molecule or isolated atom is refused first (before the potential loads): its energy
    on the bulk convex hull and its "bulk" properties would be meaningless numbers in a
    ``done`` row. Then an empty structure, elements the potential does not know, and
    overlapping atoms or a degenerate cell.
    """
    from matdesign.structure_io import check_geometry

    not_bulk = vacuum_reason(atoms)
    if not_bulk is not None:
        raise NotBulkError(f"vacuum / not bulk: {not_bulk}")
    calc = get_calculator(settings)
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    check_known_elements(atoms, calc)
    check_geometry(atoms, 0.5, min_distance=0.5)
    return calc


def _relax(atoms: Atoms, calc: Any, settings: ScreenSettings,
           fmax: float | None = None) -> RelaxResult:
    return RelaxCalculator(calc, fmax=fmax or settings.fmax, max_steps=settings.max_steps,
                           relax_cell=bool(np.all(atoms.pbc)),
                           fix_symmetry=settings.fix_symmetry).calc(atoms)


def _require_converged(result: RelaxResult, what: str) -> None:
    if not result.converged:
        raise NotConvergedError(f"{what} not converged in {result.steps} steps "
                                f"(fmax {result.fmax_ev_per_a:g} eV/Å)")


def relax_stage(record: CandidateRecord, calc: Any, settings: ScreenSettings) -> CandidateRecord:
    """Relax to ``settings.fmax`` (the cell too when 3D periodic), converged or not."""
    result = _relax(record.atoms, calc, settings)
    return dataclasses.replace(record, relax=result, atoms=result.atoms)


def single_point_stage(record: CandidateRecord, calc: Any,
                       settings: ScreenSettings) -> CandidateRecord:
    """Energy per atom (eV) and volume per atom (Å³) of the relaxed structure, which keeps its
    energy, forces and stress in a ``SinglePointCalculator``.

    Raises:
        NotConvergedError: the relaxation did not converge.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    _require_converged(record.relax, "relaxation")
    relaxed = record.atoms.copy()
    relaxed.calc = calc
    periodic = bool(np.all(relaxed.pbc))
    results = {"energy": float(relaxed.get_potential_energy()), "forces": relaxed.get_forces()}
    if periodic:
        results["stress"] = relaxed.get_stress(voigt=True)
    relaxed.calc = SinglePointCalculator(relaxed, **results)
    n = len(relaxed)
    return dataclasses.replace(
        record, atoms=relaxed, energy_per_atom_ev=results["energy"] / n,
        volume_per_atom_a3=float(relaxed.get_volume() / n) if periodic else None)


def uncertainty_stage(record: CandidateRecord, calc: Any,
                      settings: ScreenSettings) -> CandidateRecord:
    """The committee spread, once, on the relaxed structure (not at every optimiser step):
    the calculator's ``uncertainty(atoms)``, else an ``energy_std`` it reported with the
    single point just before; None for a potential without a committee. Also the structure
    against the training data's chemistry, where the calculator knows it (``domain``)."""
    reported = dict(getattr(calc, "results", {}) or {})  # of the single point, the last call
    spread = calc.uncertainty(record.atoms) if hasattr(calc, "uncertainty") else None
    n = len(record.atoms)
    if spread is not None:
        found = Uncertainty(spread.energy_std_ev / n, float(np.max(spread.forces_std_ev_per_a)))
    elif "energy_std" in reported:
        found = Uncertainty(float(reported["energy_std"]) / n)
    else:
        found = None
    domain = calc.domain(record.atoms) if hasattr(calc, "domain") else None
    return dataclasses.replace(record, uncertainty=found, domain=domain)


# settings_hash -> {"elements": {symbol: eV/atom}, "user": (overrides, competing phases)}
_REFERENCES: dict[str, dict[str, Any]] = {}


def _reference_relax_fn(calc: Any,
                        settings: ScreenSettings) -> Callable[[Atoms], tuple[Atoms, float]]:
    def fn(ref: Atoms) -> tuple[Atoms, float]:
        check_known_elements(ref, calc)
        result = _relax(ref, calc, settings)
        if not result.converged:
            raise NotConvergedError(f"relaxation not converged in {result.steps} steps")
        relaxed = result.atoms
        relaxed.calc = calc
        return relaxed, float(relaxed.get_potential_energy()) / len(relaxed)

    return fn


def stability_stage(record: CandidateRecord, calc: Any,
                    settings: ScreenSettings) -> CandidateRecord:
    """Formation energy and energy above the hull of references + competing phases (eV/atom).

    The hull here spans the references only; ``ResultsDB.update_hull`` later recomputes it
    over everything screened.
    """
    atoms = record.atoms
    symbols = set(atoms.get_chemical_symbols())
    store = _REFERENCES.setdefault(settings.settings_hash(), {"elements": {}})
    relax_fn = _reference_relax_fn(calc, settings)
    if "user" not in store:
        store["user"] = user_references(settings.references, relax_fn)
    overrides, phases = store["user"]
    mu = elemental_reference_energies(symbols, relax_fn, overrides=overrides,
                                      cache=store["elements"])
    e_pa = record.energy_per_atom_ev
    formula = atoms.get_chemical_formula()
    entries = [HullEntry(f"ref:{el}", el, e) for el, e in mu.items()]
    entries += [p for p in phases if formula_elements(p.formula) <= symbols]
    entries.append(HullEntry("__candidate__", formula, e_pa))
    return dataclasses.replace(record, stability=Stability(
        formation_energy_ev_per_atom=formation_energy_per_atom(formula, e_pa, mu),
        e_above_hull_ev_per_atom=hull_energies(entries)["__candidate__"],
        reference_energies_ev_per_atom=dict(mu), competing_phases=tuple(phases)))


def gates_stage(record: CandidateRecord, calc: Any, settings: ScreenSettings, *,
                stage: str) -> CandidateRecord:
    """Check the gates of ``stage`` (``"cheap"``: relax, spread and stability results, before
    any elastic or phonon work; ``"elastic"``: before the phonons) on the record's columns so
    far; a failed one sets ``skipped_expensive`` (the later stages are skipped) and is listed.

    Raises:
        ValueError: a gate names a result that this stage does not have.
    """
    columns = record.columns()
    failed = tuple(f"{k} {op} {v:g}" for k, op, v in settings.gates
                   if gate_stage(k) == stage and not gate_passes(columns, k, op, v))
    return dataclasses.replace(record, skipped_expensive=bool(failed), gates_failed=failed)


def property_relax_stage(record: CandidateRecord, calc: Any,
                         settings: ScreenSettings) -> CandidateRecord:
    """Re-relax the screened structure to ``min(settings.fmax, PROPERTY_FMAX)`` eV/Å (cell
    too) before elastic/phonon work; cheap, it starts nearly relaxed. The energies of the row
    stay those of the screening relaxation; ``data["property_relax"]`` records this one."""
    fmax = min(settings.fmax, PROPERTY_FMAX)
    result = _relax(record.atoms, calc, settings, fmax=fmax)
    return dataclasses.replace(record, property_relax=result)


def _property_structure(record: CandidateRecord) -> Atoms:
    """The re-relaxed structure for elastic and phonon work.

    Raises:
        NotConvergedError: the property relaxation did not converge.
    """
    _require_converged(record.property_relax, "property relaxation")
    return record.property_relax.atoms


def elastic_stage(record: CandidateRecord, calc: Any,
                  settings: ScreenSettings) -> CandidateRecord:
    """Relaxed-ion elastic constants and moduli of the re-relaxed structure."""
    from matdesign.properties.elastic import ElasticCalculator

    result = ElasticCalculator(calc, relax_ions=True).calc(_property_structure(record))
    return dataclasses.replace(record, elastic=result)


def phonon_stage(record: CandidateRecord, calc: Any, settings: ScreenSettings) -> CandidateRecord:
    """Phonons of the re-relaxed structure in a supercell at least
    ``settings.phonon_min_length`` Å wide."""
    from matdesign.properties.phonon import PhononCalculator

    phonons = PhononCalculator(calc, min_length=settings.phonon_min_length)
    return dataclasses.replace(record, phonon=phonons.calc(_property_structure(record)))
