"""Materials properties from any ASE calculator: relaxation, EOS, elastic, phonons, MD.

Each property is one module with a :class:`PropertyCalculator` subclass, built as
``XCalculator(calculator, *, settings)``, whose ``calc(atoms)`` returns a frozen,
JSON-serialisable :class:`PropertyResult` (``properties/base.py``). Importing this package
imports ASE and numpy only (no torch).
"""

from matdesign.properties.base import PropertyCalculator, PropertyResult
from matdesign.properties.batch import evaluate_many
from matdesign.properties.elastic import ElasticCalculator, ElasticResult, elastic_moduli
from matdesign.properties.eos import EOSCalculator, EOSResult
from matdesign.properties.md import MDCalculator, MDResult, run_md
from matdesign.properties.phonon import (
    PhononCalculator,
    PhononInstabilityError,
    PhononResult,
    plot_band_dos,
)
from matdesign.properties.relax import NotConvergedError, RelaxCalculator, RelaxResult, relax

__all__ = [
    "EOSCalculator", "EOSResult", "ElasticCalculator", "ElasticResult", "MDCalculator",
    "MDResult", "NotConvergedError", "PhononCalculator", "PhononInstabilityError",
    "PhononResult", "PropertyCalculator", "PropertyResult", "RelaxCalculator", "RelaxResult",
    "elastic_moduli", "evaluate_many", "plot_band_dos", "relax", "run_md",
]
