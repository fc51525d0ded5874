"""One screening candidate, start to finish: validate, relax, formation energy, hull, properties.

``evaluate_candidate`` is a top-level, picklable function run in worker processes. It never
raises: every failure becomes a ``CandidateResult`` with ``status="failed"`` and a reason.
The potential and the reference energies are loaded once per process (module-level caches).
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from matdesign.errors import CandidateTimeout, NotBulkError, NotConvergedError, failure_label
from matdesign.plain import to_plain
from matdesign.properties.stability import (
    HullEntry,
    check_known_elements,
    elemental_reference_energies,
    formation_energy_per_atom,
    hull_energies,
    user_references,
)
from matdesign.search.gates import (
    ELASTIC_KEYS,
    PHONON_KEYS,
    check_gates,
    validate_gate,
)
from matdesign.search.hashing import (
    content_hash,
    file_sha256,
    payload_hash,
    potential_id,
)
from matdesign.structure_io import vacuum_reason

PROPERTIES = ("elastic", "phonon")

# Screening default: a residual force of 5e-3 eV/Å changes the energy by about F²/(2k) ≈ 1e-5
# eV/atom for typical stiffnesses k ~ 1 eV/Å², far below hull tolerances, and saves a large
# share of the FIRE steps that 1e-3 costs. Elastic constants are fitted from stress-strain
# slopes, which a small residual stress offsets but does not tilt.
SCREEN_FMAX = 5e-3
#: elastic constants and phonons need a tight minimum: the structure is re-relaxed to
#: ``min(fmax, PROPERTY_FMAX)`` eV/Å before them (float64 only, see docs/CONVENTIONS.md)
PROPERTY_FMAX = 1e-3


@dataclass(frozen=True)
class ScreenSettings:
    """Everything that decides a candidate's results (hashed to skip finished work).

    Attributes:
        potential: ``load_calculator`` spec ("default", "emt", checkpoint path, "module:fn").
        dtype: "float32" or "float64".
        properties: subset of ``("elastic", "phonon")`` computed after relaxation, after a
            re-relaxation to ``min(fmax, PROPERTY_FMAX)``; needs ``dtype="float64"``.
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
    """

    potential: str = "default"
    dtype: str = "float64"
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
            raise ValueError(f"dtype must be 'float32' or 'float64', not {self.dtype!r}")
        if self.dtype == "float32" and self.properties:
            raise ValueError(f"dtype float32 cannot be used with properties "
                             f"{list(self.properties)}: elastic and phonon work needs float64 "
                             "(docs/CONVENTIONS.md); use dtype float64")
        if not (self.fmax > 0 and self.max_steps > 0):
            raise ValueError("fmax and max_steps must be positive")
        object.__setattr__(self, "gates", tuple(validate_gate(g, self.properties)
                                                for g in self.gates))
        for ref in self.references:
            if not Path(ref).is_file():
                raise FileNotFoundError(f"reference structure file not found: {ref}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def settings_hash(self) -> str:
        """16-hex hash of the settings, the potential's identity and the reference files
        (file contents only: moving a checkpoint or reference file keeps the hash)."""
        payload = self.to_dict()
        payload["potential"] = potential_id(self.potential)  # content, not the path
        payload["references"] = [file_sha256(str(Path(r).resolve())) for r in self.references]
        return payload_hash(payload)


@dataclass(frozen=True)
class CandidateResult:
    """Outcome of one candidate.

    Attributes:
        status: "done" or "failed".
        reason: why it failed (None when done).
        source: input name (file, ``file@frame``, ``db@id``).
        formula: chemical formula of the input.
        content_hash: ``content_hash`` of the INPUT structure (or of the unreadable file).
        settings_hash: ``ScreenSettings.settings_hash()``.
        atoms: relaxed structure (the input if it failed before relaxing).
        key_value_pairs: scalar results for database columns (str/int/float/bool only).
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


@contextmanager
def _time_limit(seconds: float | None):  # noqa: ANN202 - context manager
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
    """The process-wide calculator for ``(potential, dtype)``, loaded on first use."""
    key = (settings.potential, settings.dtype)
    if key not in _CALCULATORS:
        if settings.potential == "emt":  # as load_calculator, without importing the model stack
            from ase.calculators.emt import EMT

            _CALCULATORS[key] = EMT()
        else:
            from matdesign.calculator import load_calculator

            _CALCULATORS[key] = load_calculator(settings.potential, dtype=settings.dtype)
    return _CALCULATORS[key]


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


def failed_result(atoms: Atoms, settings_hash: str, source: str, reason: str, *,
                  chash: str | None = None, elapsed_s: float = 0.0,
                  data: dict[str, Any] | None = None) -> CandidateResult:
    """A ``failed`` result (used by workers and by the coordinator for unreadable files)."""
    return CandidateResult(
        status="failed", reason=reason, source=source, formula=atoms.get_chemical_formula(),
        content_hash=chash or content_hash(atoms), settings_hash=settings_hash, atoms=atoms,
        key_value_pairs={"status": "failed", "reason": reason[:500]}, data=data or {},
        elapsed_s=float(elapsed_s),
    )


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
    chash = content_hash(atoms)
    shash = settings.settings_hash()
    state: dict[str, Any] = {"atoms": atoms, "kvp": {}, "data": {}}
    identify(settings, state)
    try:
        with _time_limit(timeout_s):
            _evaluate(atoms, settings, state)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a failed row, never a crash
        reason = str(exc) if isinstance(exc, CandidateTimeout) else f"{type(exc).__name__}: {exc}"
        data = dict(state["data"])
        kvp_partial = {k: v for k, v in state["kvp"].items() if k not in ("status", "reason")}
        res = failed_result(state["atoms"], shash, source, reason, chash=chash,
                            elapsed_s=time.perf_counter() - start, data=data)
        res.key_value_pairs.update(kvp_partial)
        res.key_value_pairs["failure_class"] = failure_label(exc)
        return res
    kvp = {"status": "done", **state["kvp"]}
    return CandidateResult(
        status="done", reason=None, source=source, formula=atoms.get_chemical_formula(),
        content_hash=chash, settings_hash=shash, atoms=state["atoms"], key_value_pairs=kvp,
        data=state["data"], elapsed_s=time.perf_counter() - start,
    )


def identify(settings: ScreenSettings, state: dict[str, Any]) -> None:
    """Record what produced the row: ``data["settings"]`` and the ``potential_id`` column."""
    state["data"]["settings"] = settings.to_dict()
    state["kvp"]["potential_id"] = potential_id(settings.potential)


def _evaluate(atoms: Atoms, settings: ScreenSettings, state: dict[str, Any]) -> None:
    """The steps, each adding to ``state`` so a later failure keeps earlier results.

    A slab, molecule or isolated atom is refused first: its energy on the bulk convex hull and
    its "bulk" properties would be meaningless numbers in a ``done`` row.
    """
    not_bulk = vacuum_reason(atoms)
    if not_bulk is not None:
        raise NotBulkError(f"vacuum / not bulk: {not_bulk}")
    calc = get_calculator(settings)
    relax_candidate(atoms, calc, settings, state)
    stability_step(calc, settings, state)
    if not check_gates(settings, state, "cheap"):
        return
    state["kvp"]["skipped_expensive"] = False
    compute_properties(calc, settings, state)


# settings_hash -> {"elements": {symbol: eV/atom}, "user": (overrides, competing phases)}
_REFERENCES: dict[str, dict[str, Any]] = {}


def _relax(atoms: Atoms, calc: Any, settings: ScreenSettings,
           fmax: float | None = None) -> tuple[Atoms, Any]:
    from matdesign.properties.relax import relax

    return relax(atoms, calc, fmax=fmax or settings.fmax, max_steps=settings.max_steps,
                 relax_cell=bool(np.all(atoms.pbc)), fix_symmetry=settings.fix_symmetry)


def relax_candidate(atoms: Atoms, calc: Any, settings: ScreenSettings,
                    state: dict[str, Any]) -> None:
    """Validate and relax; fill energies (eV) and the relaxed structure into ``state``."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from matdesign.structure_io import check_geometry

    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    check_known_elements(atoms, calc)
    check_geometry(atoms, 0.5, min_distance=0.5)
    relaxed, info = _relax(atoms, calc, settings)
    state["atoms"] = relaxed
    state["data"]["relax"] = to_plain(info.to_dict())
    if not info.converged:
        raise NotConvergedError(f"relaxation not converged in {info.steps} steps "
                         f"(fmax {settings.fmax:g} eV/Å)")
    relaxed.calc = calc
    n = len(relaxed)
    results = {"energy": float(relaxed.get_potential_energy()), "forces": relaxed.get_forces()}
    if np.all(relaxed.pbc):
        results["stress"] = relaxed.get_stress(voigt=True)
    extra = dict(getattr(calc, "results", {}) or {})
    relaxed.calc = SinglePointCalculator(relaxed, **results)
    kvp = state["kvp"]
    kvp["energy_per_atom_ev"] = results["energy"] / n
    kvp["relax_steps"] = int(info.steps)
    if np.all(relaxed.pbc):
        kvp["volume_per_atom_a3"] = float(relaxed.get_volume() / n)
    # The committee is evaluated once, on the relaxed structure, not at every optimiser step.
    spread = calc.uncertainty(relaxed) if hasattr(calc, "uncertainty") else None
    if spread is not None:
        kvp["energy_std_ev_per_atom"] = spread.energy_std_ev / n
        kvp["forces_std_max_ev_per_a"] = float(np.max(spread.forces_std_ev_per_a))
    elif "energy_std" in extra:
        kvp["energy_std_ev_per_atom"] = float(extra["energy_std"]) / n


def _reference_relax_fn(calc: Any, settings: ScreenSettings):  # noqa: ANN202 - a callable
    def fn(ref: Atoms) -> tuple[Atoms, float]:
        check_known_elements(ref, calc)
        relaxed, info = _relax(ref, calc, settings)
        if not info.converged:
            raise NotConvergedError(f"relaxation not converged in {info.steps} steps")
        relaxed.calc = calc
        return relaxed, float(relaxed.get_potential_energy()) / len(relaxed)

    return fn


def stability_step(calc: Any, settings: ScreenSettings, state: dict[str, Any]) -> None:
    """Formation energy and energy above the hull of references + competing phases (eV/atom).

    The hull here spans the references only; ``ResultsDB.update_hull`` later recomputes it
    over everything screened.
    """
    atoms = state["atoms"]
    symbols = set(atoms.get_chemical_symbols())
    store = _REFERENCES.setdefault(settings.settings_hash(), {"elements": {}})
    relax_fn = _reference_relax_fn(calc, settings)
    if "user" not in store:
        store["user"] = user_references(settings.references, relax_fn)
    overrides, phases = store["user"]
    mu = elemental_reference_energies(symbols, relax_fn, overrides=overrides,
                                      cache=store["elements"])
    e_pa = state["kvp"]["energy_per_atom_ev"]
    formula = atoms.get_chemical_formula()
    entries = [HullEntry(f"ref:{el}", el, e) for el, e in mu.items()]
    entries += [p for p in phases if _elements(p.formula) <= symbols]
    entries.append(HullEntry("__candidate__", formula, e_pa))
    state["kvp"]["formation_energy_ev_per_atom"] = formation_energy_per_atom(formula, e_pa, mu)
    state["kvp"]["e_above_hull_ev_per_atom"] = hull_energies(entries)["__candidate__"]
    state["data"]["references"] = {
        "elements": dict(mu), "competing": [dataclasses.asdict(p) for p in phases],
    }


def _elements(formula: str) -> set[str]:
    from pymatgen.core import Composition

    return {str(el) for el in Composition(formula).elements}


def compute_properties(calc: Any, settings: ScreenSettings, state: dict[str, Any]) -> None:
    """Elastic and/or phonon properties of the relaxed structure (see ``ScreenSettings``).

    Gates on elastic results are checked between the two steps; a failed one skips the
    phonons (``skipped_expensive=True``).
    """
    if not settings.properties:
        return
    atoms = property_relax(calc, settings, state)
    if "elastic" in settings.properties:
        from matdesign.properties.elastic import ElasticCalculator

        result = ElasticCalculator(calc, relax_ions=True).calc(atoms)
        _store(state, "elastic", result.to_dict(), ELASTIC_KEYS)
        if not check_gates(settings, state, "elastic"):
            return
    if "phonon" in settings.properties:
        from matdesign.properties.phonon import PhononCalculator

        result = PhononCalculator(calc, min_length=settings.phonon_min_length).calc(atoms)
        _store(state, "phonon", result.to_dict(), PHONON_KEYS)


def property_relax(calc: Any, settings: ScreenSettings, state: dict[str, Any]) -> Atoms:
    """Re-relax the screened structure to ``min(settings.fmax, PROPERTY_FMAX)`` eV/Å (cell
    too) before elastic/phonon work; cheap, it starts nearly relaxed. The energies of the row
    stay those of the screening relaxation; ``data["property_relax"]`` records this one.

    Raises:
        ValueError: the relaxation did not converge.
    """
    fmax = min(settings.fmax, PROPERTY_FMAX)
    relaxed, info = _relax(state["atoms"].copy(), calc, settings, fmax=fmax)
    state["data"]["property_relax"] = to_plain(info.to_dict())
    if not info.converged:
        raise NotConvergedError(f"property relaxation not converged in {info.steps} steps "
                         f"(fmax {fmax:g} eV/Å)")
    relaxed.calc = None
    return relaxed


def _store(state: dict[str, Any], name: str, result: dict[str, Any], keys: tuple[str, ...]) -> None:
    state["data"][name] = to_plain(result)
    for key in keys:
        value = plain_value(result.get(key))
        if value is not None:
            state["kvp"][key] = value

