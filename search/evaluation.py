"""Evaluating campaign design points: the outcome type, realisation averaging and the default
screen-pipeline evaluator. A campaign runs its batches through
:class:`~matdesign.search.runner.CrashTolerantRunner`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from matdesign.search.config import CampaignConfig

Evaluator = Callable[[Atoms, str], Any]


@dataclass(frozen=True)
class Evaluation:
    """Outcome of evaluating one candidate (fields as the pipeline's ``CandidateResult``)."""

    status: str
    key_value_pairs: dict[str, Any]
    atoms: Atoms | None = None
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def aggregate(results: list[Any]) -> Evaluation:
    """Average the realisations of one candidate: numbers by mean, booleans by ``all``."""
    failed = [r for r in results if r.status != "done"]
    if failed:
        err = (getattr(failed[0], "error", "") or getattr(failed[0], "reason", "")
               or failed[0].key_value_pairs.get("reason", ""))
        return Evaluation("failed", dict(failed[0].key_value_pairs), failed[0].atoms,
                          dict(getattr(failed[0], "data", {}) or {}), str(err))
    pairs: dict[str, Any] = {}
    for key in results[0].key_value_pairs:
        vals = [r.key_value_pairs.get(key) for r in results]
        if any(v is None for v in vals):
            continue
        if all(isinstance(v, (bool, np.bool_)) for v in vals):
            pairs[key] = bool(all(vals))
        elif all(isinstance(v, (int, float, np.number)) for v in vals):
            pairs[key] = float(np.mean(vals))
        else:
            pairs[key] = vals[0]
    pairs["n_realisations"] = len(results)
    return Evaluation("done", pairs, results[0].atoms, dict(getattr(results[0], "data", {}) or {}))


def evaluate_structures(evaluator: Evaluator, structures: list[Atoms], key: str) -> Evaluation:
    """Run ``evaluator`` on every realisation (in the worker) and aggregate; never raises
    for an ordinary exception, which becomes a failed evaluation naming the error."""
    try:
        results = [evaluator(a, f"{key}#r{i}") for i, a in enumerate(structures)]
    except Exception as exc:  # noqa: BLE001 - a failed candidate must not stop the campaign
        return Evaluation("failed", {}, structures[0], {}, f"{type(exc).__name__}: {exc}")
    return aggregate(results)


def pipeline_evaluator(config: CampaignConfig, potential: str,
                       timeout_s: float | None = None) -> Evaluator:
    """``evaluator(atoms, source)`` running the screen pipeline with the campaign's settings
    (``config.screen``) on ``potential``, gated by ``config.gates()`` (cheap properties first:
    a failed gate skips the later steps, e.g. a Born-unstable candidate gets no phonons and is
    infeasible)."""
    import dataclasses
    import functools

    from matdesign.search.pipeline import evaluate_candidate

    settings = dataclasses.replace(config.screen, potential=potential, gates=config.gates())
    return functools.partial(_call_pipeline, evaluate_candidate, settings, timeout_s)


def _call_pipeline(fn: Callable, settings: Any, timeout_s: float | None, atoms: Atoms,
                   source: str) -> Any:
    return fn(atoms, settings, source, timeout_s=timeout_s)
