"""matdesign: an equivariant GNN interatomic potential, materials properties and design search.

Heavy modules (torch, e3nn) are imported lazily so that ``matdesign --help`` stays instant.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "PotentialConfig": "matdesign.model",
    "Potential": "matdesign.model",
    "PotentialEnsemble": "matdesign.checkpoint",
    "load_potential": "matdesign.checkpoint",
    "load_calculator": "matdesign.calculator",
    "MatdesignCalculator": "matdesign.calculator",
    "Graph": "matdesign.graph",
    "atoms_to_graph": "matdesign.graph",
    "batch_graphs": "matdesign.graph",
    "energy_forces_stress": "matdesign.forces",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'matdesign' has no attribute {name!r}")
