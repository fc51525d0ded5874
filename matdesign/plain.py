"""Plain Python values for JSON output and checkpoint metadata (``torch.load(weights_only=True)``
refuses numpy scalars)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any


def to_plain(obj: Any) -> Any:
    """numpy scalars/arrays, dataclasses and paths -> plain JSON types; NaN and ±inf -> None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return to_plain(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
