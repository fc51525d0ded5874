"""The contract of every property calculator (relax, EOS, elastic, phonon, MD) and its result.

A property calculator is built as ``SomeCalculator(calculator, *, settings)`` around any ASE
calculator and answers ``calc(atoms)`` with a frozen result dataclass; ``calc_many`` runs a
list of structures. Results are :class:`PropertyResult` dataclasses: units in the field names,
``to_dict`` gives plain JSON. Fields that screening may gate on (``search/gates.py``) are
declared with :func:`gate_field`, so the gate keys are the field names themselves.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import field, fields, is_dataclass
from typing import Any, Generic, TypeVar

from ase import Atoms

_GATE = "gate"  # field metadata: screening may compare this result (search/gates.py)
_JSON = "json"  # field metadata: False keeps the field out of to_dict (e.g. a structure)


def gate_field() -> Any:
    """A result field that screening gates may compare, by its name (``search/gates.py``)."""
    return field(metadata={_GATE: True})


def structure_field() -> Any:
    """A result field holding an ``Atoms``: kept out of ``to_dict``, equality and the repr."""
    return field(metadata={_JSON: False}, compare=False, repr=False)


def gate_keys(result_class: type, *, booleans_only: bool = False) -> tuple[str, ...]:
    """Names of the :func:`gate_field` fields of a result dataclass, in field order.

    Args:
        result_class: a :class:`PropertyResult` dataclass.
        booleans_only: only the fields annotated ``bool`` (gated by ``== 1.0`` / ``== 0.0``).
    """
    if not is_dataclass(result_class):
        raise TypeError(f"{result_class!r} is not a dataclass")
    return tuple(f.name for f in fields(result_class) if f.metadata.get(_GATE)
                 and (not booleans_only or f.type in ("bool", bool)))


class PropertyResult:
    """Base of the frozen result dataclasses: plain-JSON ``to_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the fields (copies; structure fields left out)."""
        return {f.name: copy.deepcopy(getattr(self, f.name))
                for f in fields(self) if f.metadata.get(_JSON, True)}


ResultT = TypeVar("ResultT", bound=PropertyResult)


class PropertyCalculator(ABC, Generic[ResultT]):
    """One property of a structure with any ASE calculator (matcalc's one class per property).

    Subclasses take ``(calculator, *, settings)``, validate the settings in ``__init__`` and
    implement :meth:`calc`. The calculator is shared, never copied; the structures passed in
    are never modified.
    """

    def __init__(self, calculator: Any) -> None:
        """Keep ``calculator`` (any ASE calculator) as ``self.calculator``."""
        self.calculator = calculator

    @abstractmethod
    def calc(self, atoms: Atoms) -> ResultT:
        """The property of ``atoms`` (not modified)."""

    def calc_many(self, structures: Iterable[Atoms], *,
                  allow_errors: bool = False) -> list[ResultT | None]:
        """:meth:`calc` of each structure in turn.

        Args:
            structures: the structures; none is modified.
            allow_errors: a structure whose calculation raises gives ``None`` instead of
                stopping the run.

        Returns:
            One result per structure, in order (``None`` for failures with ``allow_errors``).
        """
        results: list[ResultT | None] = []
        for atoms in structures:
            try:
                results.append(self.calc(atoms))
            except Exception:  # any failure of one structure, when allowed
                if not allow_errors:
                    raise
                results.append(None)
        return results
