"""Typed errors for what can go wrong with an input or a calculation, and their labels.

Every class keeps a built-in base (``ValueError``, ``RuntimeError``, ...) so callers that catch
those still work, and carries the one ``label`` under which a screen counts its failures
(:func:`failure_label`). Numpy/stdlib only: importable without torch.
"""

from __future__ import annotations


class MatdesignError(Exception):
    """Base class; ``label`` names the failure class in screening summaries."""

    label = "error"


class StructureFileError(MatdesignError, ValueError):
    """A structure file that cannot be read, or whose content is inconsistent."""

    label = "unreadable input"


class UnknownElementError(MatdesignError, KeyError, ValueError):
    """An element the potential was not trained on (a ``KeyError`` and a ``ValueError``)."""

    label = "unknown element"
    __str__ = Exception.__str__  # KeyError would quote the message


class OverlappingAtomsError(MatdesignError, ValueError):
    """Two atoms closer than the overlap floor: any number computed would be meaningless."""

    label = "overlapping atoms"


class NonFiniteError(MatdesignError, FloatingPointError, ValueError):
    """NaN or infinity in an input (positions, cell) or in a calculator's output."""

    label = "non-finite numbers"


class NotBulkError(MatdesignError, ValueError):
    """A structure with vacuum (or without 3D periodicity) given to a bulk-only property."""

    label = "vacuum / not bulk"


class NotConvergedError(MatdesignError, RuntimeError):
    """A relaxation that a result depends on did not converge."""

    label = "not converged"


class CandidateTimeout(MatdesignError, TimeoutError):
    """The per-candidate wall-time limit elapsed."""

    label = "timeout"


def failure_label(exc: BaseException) -> str:
    """The failure class of ``exc``: its ``label`` for matdesign errors, else "error: <type>"."""
    if isinstance(exc, MatdesignError):
        return exc.label
    return f"error: {type(exc).__name__}"
