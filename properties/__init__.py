"""Materials properties from any ASE calculator: relaxation, EOS, elastic, phonons, MD.

Each property is one module with a small calculator returning a frozen, JSON-serialisable
result dataclass. Importing this package imports ASE and numpy only (no torch).
"""

from matdesign.properties.batch import evaluate_many
from matdesign.properties.elastic import ElasticCalculator, ElasticResult, elastic_moduli
from matdesign.properties.eos import EOSCalculator, EOSResult
from matdesign.properties.md import MDResult, run_md
from matdesign.properties.phonon import (
    PhononCalculator,
    PhononInstabilityError,
    PhononResult,
    plot_band_dos,
)
from matdesign.properties.relax import NotConvergedError, RelaxResult, relax

__all__ = [
    "EOSCalculator", "EOSResult", "ElasticCalculator", "ElasticResult", "MDResult",
    "NotConvergedError", "PhononCalculator", "PhononInstabilityError", "PhononResult",
    "RelaxResult", "elastic_moduli", "evaluate_many", "plot_band_dos", "relax", "run_md",
]
