"""Screening and design search: many candidates through the property pipeline, and Bayesian
optimisation over compositions and structures.

Public names (imported on first use, so ``import matdesign.search`` stays cheap):

* screening: :func:`run_screen`, :class:`ScreenSettings`, :func:`evaluate_candidate`,
  :class:`ResultsDB`, :func:`expand_inputs`, :func:`screen_status`;
* design: :class:`Campaign`, :func:`load_campaign`, :class:`CampaignConfig`,
  :class:`DesignSpace`;
* checks before work: :func:`check_potential`.

See ``docs/ARCHITECTURE.md`` for how the modules fit together.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "run_screen": "matdesign.search.screen",
    "expand_inputs": "matdesign.search.screen",
    "ScreenSettings": "matdesign.search.pipeline",
    "evaluate_candidate": "matdesign.search.pipeline",
    "ResultsDB": "matdesign.search.database",
    "Campaign": "matdesign.search.campaign",
    "load_campaign": "matdesign.search.config",
    "CampaignConfig": "matdesign.search.config",
    "DesignSpace": "matdesign.search.space",
    "check_potential": "matdesign.search.potentials",
    "screen_status": "matdesign.search.status",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'matdesign.search' has no attribute {name!r}")
