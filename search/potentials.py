"""Resolve a potential spec before any work: does it load, and which elements does it know?

``screen`` and ``design`` call :func:`check_potential` before reading inputs or evaluating
anything, so a missing checkpoint, a factory that does not import, or an element the
potential was never fitted to is one clear error instead of a database of failed rows.

The spec forms are those of :func:`matdesign.calculator.load_calculator`: ``"default"``,
``"emt"``, a checkpoint path, or ``"module:callable"``. A ``module:callable`` spec IMPORTS
``module`` (running its top-level code); the factory itself is not called here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PotentialInfo:
    """What is known about a potential without evaluating anything.

    Attributes:
        kind: ``"emt"``, ``"checkpoint"`` (the shipped default or a path) or ``"factory"``.
        elements: element symbols it can evaluate; None when unknown (a factory).
        metadata: the checkpoint's metadata (empty for EMT and factories).
    """

    kind: str
    elements: frozenset[str] | None
    metadata: dict[str, Any] = field(default_factory=dict)


def spec_kind(spec: str) -> str:
    """``"emt"``, ``"checkpoint"`` or ``"factory"``, resolved as ``load_calculator`` does."""
    if spec == "emt":
        return "emt"
    if spec != "default" and ":" in spec and not Path(spec).exists():
        return "factory"
    return "checkpoint"


def _emt_elements() -> frozenset[str]:
    from ase.calculators.emt import parameters

    return frozenset(parameters)


@lru_cache(maxsize=16)
def _checkpoint_info(path: str, mtime_ns: int, size: int) -> PotentialInfo:
    """Species and metadata of a checkpoint, cached by (path, mtime, size)."""
    from matdesign.checkpoint import load_potential

    model = load_potential(path)
    return PotentialInfo("checkpoint", frozenset(model.species), dict(model.metadata))


def _factory(spec: str) -> None:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"'{spec}' is neither an existing checkpoint file nor "
                         "'module:callable'")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import calculator factory '{spec}': "
                         f"{type(exc).__name__}: {exc}") from exc
    if not callable(factory):
        raise ValueError(f"'{spec}' is a {type(factory).__name__}, not a callable factory")


def potential_info(spec: str) -> PotentialInfo:
    """Resolve ``spec`` (load a checkpoint, import a factory) without evaluating anything.

    Raises:
        ValueError: the spec does not resolve; the message says why (missing file, not a
            matdesign checkpoint, import error, not callable).
    """
    kind = spec_kind(spec)
    if kind == "emt":
        return PotentialInfo("emt", _emt_elements())
    if kind == "factory":
        _factory(spec)
        return PotentialInfo("factory", None)
    if spec == "default":
        from matdesign.calculator import DEFAULT_MODEL

        path = Path(DEFAULT_MODEL)
    else:
        path = Path(spec)
    if not path.is_file():
        what = "the shipped default model is missing" if spec == "default" else (
            "checkpoint file not found")
        raise ValueError(f"{what}: {path}")
    stat = path.stat()
    return _checkpoint_info(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def check_potential(spec: Any, elements: Iterable[str] = (), *, key: str = "potential",
                    elements_from: str = "the inputs") -> PotentialInfo:
    """Refuse a potential that does not resolve or does not know every element needed.

    Args:
        spec: the potential spec (a string; anything else is refused).
        elements: element symbols that will be evaluated (e.g. a design space's).
        key: the config key or CLI option that gave ``spec``, named in every error.
        elements_from: where ``elements`` come from, named in the unknown-element error.

    Returns:
        The resolved :class:`PotentialInfo`.

    Raises:
        ValueError: naming ``key``, the spec and, for unknown elements, those elements and
            the ones the potential knows.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"{key}: expected 'default', 'emt', a checkpoint path or "
                         f"'module:callable', got {spec!r}")
    try:
        info = potential_info(spec)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{key}: '{spec}' cannot be used: {exc}") from exc
    if info.elements is not None:
        unknown = sorted(set(elements) - info.elements)
        if unknown:
            raise ValueError(f"{key}: '{spec}' does not know element(s) {unknown} "
                             f"of {elements_from}; it knows {sorted(info.elements)}")
    return info
