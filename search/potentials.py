"""Check a potential before any work: does it resolve, and does it know every element needed?

``screen`` and ``design`` call :func:`check_potential` before reading inputs or evaluating
anything, so a missing checkpoint, a factory that does not import, or an element the
potential was never fitted to is one clear error instead of a database of failed rows.

The spec forms and how they resolve are :mod:`matdesign.potential_spec`'s. A
``module:callable`` spec IMPORTS ``module`` (running its top-level code); the factory itself
is not called here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from matdesign.potential_spec import PotentialInfo, parse_potential


def check_potential(spec: Any, elements: Iterable[str] = (), *, key: str = "potential",
                    elements_from: str = "the inputs") -> PotentialInfo:
    """Refuse a potential that does not resolve or does not know every element needed.

    Args:
        spec: the potential spec (a string; anything else is refused).
        elements: element symbols that will be evaluated (e.g. a design space's).
        key: the config key or CLI option that gave ``spec``, named in every error.
        elements_from: where ``elements`` come from, named in the unknown-element error.

    Returns:
        The resolved :class:`~matdesign.potential_spec.PotentialInfo`.

    Raises:
        ValueError: naming ``key``, the spec and, for unknown elements, those elements and
            the ones the potential knows.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"{key}: expected 'default', 'emt', a checkpoint path or "
                         f"'module:callable', got {spec!r}")
    try:
        info = parse_potential(spec).info()
    except (ValueError, OSError) as exc:
        raise ValueError(f"{key}: '{spec}' cannot be used: {exc}") from exc
    if info.elements is not None:
        unknown = sorted(set(elements) - info.elements)
        if unknown:
            raise ValueError(f"{key}: '{spec}' does not know element(s) {unknown} "
                             f"of {elements_from}; it knows {sorted(info.elements)}")
    return info
