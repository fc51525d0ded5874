"""Frozen-dataclass configs from YAML mappings: unknown keys and wrong types named in errors."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Cast ``value`` to the type of the field's ``default`` (YAML reads ``1e-3`` as a string)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float) or default is None:
        if value is None and default is None:
            return None
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, 0.0, f"{where}.{k}") for k, v in value.items()}
    return value


def typed_config(cls: type[T], data: dict[str, Any] | None, section: str) -> T:
    """Build ``cls`` from ``data``; unknown keys and ill-typed values raise ``ValueError``."""
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError(f"'{section}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) in '{section}': {unknown}; allowed: {sorted(fields)}")
    values = {}
    for name, value in data.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        values[name] = _coerce(value, default, f"{section}.{name}")
    return cls(**values)
