"""Frozen-dataclass configs from YAML mappings: unknown keys and wrong types named in errors."""

from __future__ import annotations

import dataclasses
import math
import numbers
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (PyYAML keeps the last
    value silently); merge keys (``<<``) may still be overridden."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: SafeLoader reports it
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' (first given on line {first})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> Any:
    """Read a UTF-8 YAML file with :class:`UniqueKeyLoader`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: not UTF-8, not valid YAML, or a duplicated key (with
            its line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line "
                         f"{line}); save the file as UTF-8") from None
    try:
        # a SafeLoader subclass: no arbitrary Python objects
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc


def typed_int(value: Any, key: str, minimum: int | None = None) -> int:
    """``value`` as an integer of at least ``minimum``; booleans, floats and strings are
    refused, the error names ``key``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key}: must be >= {minimum}, got {value}")
    return int(value)


def typed_float(value: Any, key: str, minimum: float | None = None, *,
                strict: bool = False) -> float:
    """``value`` as a finite number ``>= minimum`` (``> minimum`` when ``strict``); booleans
    are refused, numeric strings such as ``"1e-3"`` accepted, the error names ``key``."""
    number = None if isinstance(value, bool) else _to_float(value)
    if number is None or not math.isfinite(number):
        raise ValueError(f"{key}: expected a finite number, got {value!r}")
    if minimum is not None and (number <= minimum if strict else number < minimum):
        raise ValueError(f"{key}: must be {'>' if strict else '>='} {minimum}, got {number}")
    return number


def _to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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
        if value is None and "None" in str(f.type):  # an optional field set to null
            values[name] = None
            continue
        values[name] = _coerce(value, default, f"{section}.{name}")
    return cls(**values)
