"""Evaluating campaign candidates: the outcome type, realisation averaging, the default
screen-pipeline evaluator and the executor a campaign runs its batches on."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
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
    kvp: dict[str, Any] = {}
    for key in results[0].key_value_pairs:
        vals = [r.key_value_pairs.get(key) for r in results]
        if any(v is None for v in vals):
            continue
        if all(isinstance(v, (bool, np.bool_)) for v in vals):
            kvp[key] = bool(all(vals))
        elif all(isinstance(v, (int, float, np.number)) for v in vals):
            kvp[key] = float(np.mean(vals))
        else:
            kvp[key] = vals[0]
    kvp["n_realisations"] = len(results)
    return Evaluation("done", kvp, results[0].atoms, dict(getattr(results[0], "data", {}) or {}))


def evaluate_structures(evaluator: Evaluator, structures: list[Atoms], key: str) -> Evaluation:
    """Run ``evaluator`` on every realisation (in the worker) and aggregate; never raises
    for an ordinary exception, which becomes a failed evaluation naming the error."""
    try:
        results = [evaluator(a, f"{key}#r{i}") for i, a in enumerate(structures)]
    except Exception as exc:  # noqa: BLE001 - a failed candidate must not stop the campaign
        return Evaluation("failed", {}, structures[0], {}, f"{type(exc).__name__}: {exc}")
    return aggregate(results)


class EvaluationPool:
    """The campaign's executor: none (in-process) for one worker and no scheduler (an
    interrupt stops at once, finished rows are already stored), otherwise the screen
    executors (process pool or dask); ``restart`` replaces a broken pool."""

    def __init__(self, workers: int, scheduler: str | None) -> None:
        self.workers, self.scheduler = workers, scheduler
        self.ex: Any = None
        self._stack: ExitStack | None = None

    def _start(self) -> None:
        from matdesign.search.executor import get_executor

        self._stack = ExitStack()
        self.ex = self._stack.enter_context(get_executor(self.workers, self.scheduler))

    def restart(self) -> None:
        self.close()
        self._start()

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack, self.ex = None, None

    def __enter__(self) -> EvaluationPool:
        if self.workers > 1 or self.scheduler:
            self._start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def pipeline_evaluator(config: CampaignConfig, potential: str,
                       timeout_s: float | None = None) -> Evaluator:
    """``evaluator(atoms, source)`` running the screen pipeline with the campaign's settings
    and ``config.gates()`` (cheap properties first: a failed gate skips the later steps, e.g.
    a Born-unstable candidate gets no phonons and is infeasible)."""
    import functools

    from matdesign.search.pipeline import ScreenSettings, evaluate_candidate

    s = config.screen
    settings = ScreenSettings(potential=potential, dtype=s.dtype, properties=s.properties,
                              fmax=s.fmax, max_steps=s.max_steps,
                              phonon_min_length=s.phonon_min_length, gates=config.gates())
    return functools.partial(_call_pipeline, evaluate_candidate, settings, timeout_s)


def _call_pipeline(fn: Callable, settings: Any, timeout_s: float | None, atoms: Atoms,
                   source: str) -> Any:
    return fn(atoms, settings, source, timeout_s=timeout_s)
