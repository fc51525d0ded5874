"""Comparisons on screening results: the one operator table and parser, and staged gates.

A gate ``(key, op, value)`` is checked on a candidate's key-value pairs. Gates on cheap results
(relax, formation energy, hull) run before the elastic and phonon steps; gates on elastic
results run between the two. The same operator table and text parser serve ``--gate`` on the
command line, campaign constraints (``search.config.Constraint``) and the pipeline.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from matdesign.properties.base import gate_keys
from matdesign.properties.elastic import ElasticResult
from matdesign.properties.phonon import PhononResult

#: the comparison operators, by their text; two-character ones are matched first
GATE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt, ">": operator.gt,
}
#: results of relaxation and the stability step (always present on a done row), stored under
#: these names by ``search/record.py`` (``CandidateRecord.columns``)
CHEAP_KEYS = ("energy_per_atom_ev", "formation_energy_ev_per_atom", "e_above_hull_ev_per_atom",
              "volume_per_atom_a3", "relax_steps")
#: present only with a model ensemble (``energy_std`` / ``forces_std`` in the calculator results)
ENSEMBLE_KEYS = ("energy_std_ev_per_atom", "forces_std_max_ev_per_a")
#: the gateable fields of the elastic and phonon results (declared there with ``gate_field``),
#: stored under their field names: renaming a field renames its gate key
ELASTIC_KEYS = gate_keys(ElasticResult)
PHONON_KEYS = gate_keys(PhononResult)
#: boolean results; a gate on one compares with 1.0 (True) or 0.0 (False) by ``==``
BOOLEAN_KEYS = (gate_keys(ElasticResult, booleans_only=True)
                + gate_keys(PhononResult, booleans_only=True))

_COMPARISON = re.compile(r"\s*([A-Za-z_]\w*)\s*(?:(<=|>=|==|<|>)\s*(\S+))?\s*")


def split_comparison(text: str) -> tuple[str, str | None, str | None] | None:
    """``"key <= 0.1"`` -> ``("key", "<=", "0.1")``; ``"key"`` -> ``("key", None, None)``.

    Returns None when ``text`` is neither form.
    """
    m = _COMPARISON.fullmatch(str(text))
    return None if m is None else (m.group(1), m.group(2), m.group(3))


def parse_value(raw: str) -> float | bool:
    """``"true"``/``"false"`` (any case) -> bool, else float; ValueError if neither."""
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return float(raw)


def parse_gate(text: str) -> tuple[str, str, float]:
    """``"key<=0.1"`` -> ``("key", "<=", 0.1)``; ``"born_stable==true"`` -> value 1.0.

    Raises:
        ValueError: naming the gate text and the allowed operators.
    """
    parts = split_comparison(text)
    if parts is not None and parts[1] is not None:
        try:
            return parts[0], parts[1], float(parse_value(parts[2]))
        except ValueError:
            pass
    raise ValueError(f"--gate {text!r}: expected KEY<op>NUMBER with op in {list(GATE_OPS)}")


def compare(have: Any, op: str, value: Any) -> bool:
    """``have op value`` by the shared operator table."""
    return bool(GATE_OPS[op](have, value))


def validate_gate(gate: Any, properties: Iterable[str]) -> tuple[str, str, float]:
    """Check one gate against the computed ``properties``; returns ``(key, op, float value)``.

    Raises:
        ValueError: malformed gate, non-finite value, a gate on phonon results (nothing runs
            after them), a non-``==`` or non-0/1 gate on a boolean, or an elastic key without
            ``"elastic"`` in ``properties``.
    """
    if (not isinstance(gate, (tuple, list)) or len(gate) != 3
            or not isinstance(gate[0], str) or not gate[0] or gate[1] not in GATE_OPS):
        raise ValueError(f"gate {gate!r}: expected (key, op, value) with op in {list(GATE_OPS)}")
    key, op, value = gate
    if not isinstance(value, (bool, int, float, np.bool_, np.number)) or not math.isfinite(
            float(value)):
        raise ValueError(f"gate {gate!r}: value must be a finite number or a boolean")
    value = float(value)
    if key in PHONON_KEYS:
        raise ValueError(f"gate {gate!r}: phonon results come last, there is nothing left "
                         "to skip; judge them afterwards (e.g. a campaign constraint)")
    if key in BOOLEAN_KEYS and (op != "==" or value not in (0.0, 1.0)):
        raise ValueError(f"gate {gate!r}: {key} is boolean; use ('{key}', '==', 1.0) "
                         "for True or 0.0 for False")
    if key in ELASTIC_KEYS and "elastic" not in tuple(properties):
        raise ValueError(f"gate {gate!r}: {key} comes from the elastic step; add 'elastic' "
                         "to properties")
    return (key, op, value)


def gate_stage(key: str) -> str:
    """``"elastic"`` for a result of the elastic step (checked before the phonons), else
    ``"cheap"`` (checked after relax/formation/hull, before elastic and phonon)."""
    return "elastic" if key in ELASTIC_KEYS else "cheap"


def gate_passes(kvp: dict[str, Any], key: str, op: str, value: float) -> bool:
    """One gate on a result mapping; ValueError if the result is missing or not a number."""
    if key not in kvp:
        raise ValueError(f"gate on {key!r}: no such result (have {sorted(kvp)})")
    have = kvp[key]
    if not isinstance(have, (bool, int, float, np.bool_, np.number)):
        raise ValueError(f"gate on {key!r}: result {have!r} is not a number or boolean")
    return compare(float(have), op, value)
