"""Design campaigns: propose design points in batches, evaluate them, persist each result at once.

Every finished evaluation becomes one row of the campaign's database (via :class:`CampaignStore`,
through :class:`~matdesign.search.database.ResultsDB`) with its design vector, so
:meth:`Campaign.run` resumes after a crash by re-telling all rows to a FRESH scikit-optimize
``Optimizer`` and excluding their design-point keys: nothing finished is lost or repeated.
Worker crashes follow the screen's policy (:mod:`matdesign.search.runner`). The evaluator is
pluggable: any picklable ``evaluator(atoms, source)`` returning an object with ``status``
("done"/"failed"), ``key_value_pairs``, ``atoms`` and ``data`` (the screen pipeline's
``CandidateResult`` or :class:`Evaluation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from matdesign.search.config import CampaignConfig
from matdesign.search.database import ResultsDB, storable_pairs
from matdesign.search.evaluation import (
    Evaluation,
    Evaluator,
    evaluate_structures,
    pipeline_evaluator,
)
from matdesign.search.features import featurize
from matdesign.search.record import OUTSIDE_DOMAIN_KEY
from matdesign.search.runner import CrashTolerantRunner, Job, WorkerFailure
from matdesign.search.space import DesignPoint
from matdesign.search.surrogate import chebyshev_scalarise, select_batch
from matdesign.search.symmetry import equivalence_classes

#: a proposal: the design vector and the design point it decodes to
Proposal = tuple[list[Any], DesignPoint]

@dataclass(frozen=True)
class CampaignSummary:
    """What a :meth:`Campaign.run` call did and the best feasible candidate so far."""

    strategy: str
    n_evaluations: int
    n_new: int
    n_feasible: int
    n_failed: int
    n_uncertain: int
    best_key: str | None
    best_objectives: dict[str, float]
    n_outside_domain: int = 0  # structures outside the training data's chemistry

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class CampaignRow:
    """One finished evaluation as stored (``feasible``/``uncertain`` from the campaign rules)."""

    row_id: int
    key: str
    x: list[Any]
    status: str
    properties: dict[str, Any]
    feasible: bool
    uncertain: bool
    strategy: str
    round: int


class CampaignStore:
    """The campaign's database: one row per finished design point, written the moment it
    finishes.

    Row key_value_pairs: the evaluation's properties plus ``candidate_key``, ``kind``,
    ``prototype``, ``family``, ``status``, ``strategy``, ``round``, ``feasible``, ``uncertain``;
    row data: ``x`` (the design vector), ``error`` and the evaluation's own data. The
    objectives and constraints are kept in the database metadata for ``matdesign report``,
    with the screen settings, potential identity and space (:mod:`matdesign.search.resume`):
    a database with rows refuses a config that changes them unless ``allow_config_change``.
    """

    #: row keys the store adds to an evaluation's properties
    OWN_KEYS = ("candidate_key", "kind", "prototype", "family", "status", "strategy", "round",
                "feasible", "uncertain")

    def __init__(self, path: str, config: CampaignConfig, *, potential: str | None = None,
                 allow_config_change: bool = False) -> None:
        from matdesign.search.resume import campaign_metadata, check_resume

        self.path = str(path)
        self.config = config
        self.db = ResultsDB(self.path, writer="design")  # clear errors before any work
        meta = campaign_metadata(config, potential)
        # refuse BEFORE overwriting: a changed objective or fmax must not relabel stored rows
        check_resume(self.path, self.db.metadata, meta, self.db.count(), allow_config_change)
        self.db.set_metadata(meta)

    def _judge(self, status: str, props: dict[str, Any]) -> tuple[bool, bool]:
        feasible = status == "done" and all(c.satisfied(props)
                                            for c in self.config.constraints)
        std = props.get("energy_std_ev_per_atom")
        uncertain = std is not None and std > self.config.uncertainty_energy_std_ev_per_atom
        return bool(feasible), bool(uncertain)

    def write(self, point: DesignPoint, x: list[Any], ev: Any, strategy: str,
              round_id: int) -> CampaignRow:
        """Persist one evaluation now; returns its :class:`CampaignRow`."""
        props = storable_pairs(ev.key_value_pairs or {})
        feasible, uncertain = self._judge(ev.status, props)
        pairs = {**props, "candidate_key": point.key, "kind": point.kind,
                 "prototype": point.prototype, "family": point.group, "status": ev.status,
                 "strategy": strategy, "round": int(round_id), "feasible": feasible,
                 "uncertain": uncertain}
        atoms = ev.atoms if ev.atoms is not None else self.config.space.structures(point)[0]
        data = {"x": list(x), "error": str(getattr(ev, "error", "") or "")}
        try:
            row_id = self.db.add(atoms, pairs, {**data, **(getattr(ev, "data", None) or {})})
        except Exception:  # noqa: BLE001 - unserialisable extra data must not lose the result
            row_id = self.db.add(atoms, pairs, data)
        return CampaignRow(row_id, point.key, list(x), ev.status, props, feasible, uncertain,
                      strategy, int(round_id))

    def update_hull(self) -> int:
        """Recompute ``e_above_hull_ev_per_atom`` (and ``feasible``) of every done row over
        the references stored in the rows plus every done row
        (:meth:`ResultsDB.update_hull`); returns the number of rows updated."""
        def feasible(row: Any, e_above_hull: float) -> dict[str, Any]:
            props = {**row.key_value_pairs, "e_above_hull_ev_per_atom": e_above_hull}
            return {"feasible": self._judge(row.status, props)[0]}

        return self.db.update_hull(also=feasible)

    def records(self) -> list[CampaignRow]:
        """All finished evaluations in write order.

        Raises:
            ValueError: when a row's design vector does not belong to this campaign's space.
        """
        groups = set(self.config.space.groups)
        out = []
        for row in self.db.rows(sort="id"):
            x = list(row.data.get("x", []))
            if not x or x[0] not in groups:
                raise ValueError(f"{self.path}: row {row.id} ({row.get('candidate_key')}) has "
                                 f"design family {x[:1]} not in this campaign's space {groups}")
            props = {k: v for k, v in row.key_value_pairs.items() if k not in self.OWN_KEYS}
            feasible, uncertain = self._judge(row.status, props)
            out.append(CampaignRow(row.id, row.candidate_key, x, row.status, props, feasible,
                              uncertain, row.strategy, int(row.round)))
        return out


class Campaign:
    """Batch Bayesian optimisation (or random search) over a :class:`DesignSpace`.

    Args:
        config: the validated campaign.
        db_path: the campaign's ase.db file (created if absent, resumed if present).
        evaluator: ``evaluator(atoms, source)``; default: the screen pipeline with
            ``config.screen`` settings (:func:`pipeline_evaluator`).
        potential: overrides ``config.potential`` for the default evaluator.
        timeout_s: per-structure wall limit of the default evaluator, s (as ``screen
            --timeout``: enforced inside the worker; the structure becomes failed with a
            ``timeout`` reason). None: no limit.
        allow_config_change: resume a database whose stored objectives, constraints, screen
            settings, potential or space differ from ``config`` (refused by default).

    Raises:
        ValueError: before anything is evaluated or written: the default evaluator's
            potential does not load or lacks an element of the space, or the database was
            made with a different configuration.
    """

    def __init__(self, config: CampaignConfig, db_path: str, evaluator: Evaluator | None = None,
                 potential: str | None = None, timeout_s: float | None = None, *,
                 allow_config_change: bool = False) -> None:
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout must be positive, got {timeout_s}")
        if evaluator is None:
            from matdesign.search.potentials import check_potential

            config.check_pipeline_properties()
            check_potential(potential or config.potential, config.space.elements,
                            key="--potential" if potential else "potential",
                            elements_from="the design space")
        if config.uncertainty_energy_std_ev_per_atom is None:
            from matdesign.search.config import calibrated_threshold

            threshold = calibrated_threshold(str(potential or config.potential))
            config = dataclasses.replace(config, uncertainty_energy_std_ev_per_atom=threshold)
        self.config = config
        self.space = config.space
        self.store = CampaignStore(
            db_path, config, potential=None if evaluator else (potential or config.potential),
            allow_config_change=allow_config_change)
        self.evaluator = evaluator or pipeline_evaluator(config, potential or config.potential,
                                                         timeout_s=timeout_s)
        self._classes: dict[str, str] | None = None  # ordered key -> symmetry representative

    def canonical(self, key: str) -> str:
        """The key of the crystal a candidate key denotes: symmetry-equivalent decorations
        (e.g. B2 Nb-Mo and Mo-Nb) share one, so only one of them is ever evaluated."""
        if self._classes is None:
            self._classes = equivalence_classes(self.space) if self.space.ordered else {}
        return self._classes.get(key, key)

    def _round_seed(self, n_done: int) -> int:
        """Seed of the round after ``n_done`` evaluations: a function of (campaign seed,
        n_done), so resuming repeats it, while campaigns with different seeds draw independent
        streams (``seed + n_done`` would make seed s at round k replay seed s+1 at round k-1)."""
        return int(np.random.SeedSequence([self.config.optimizer.seed, n_done])
                   .generate_state(1)[0])

    # ---- objective bookkeeping -------------------------------------------------------------
    def objective_matrix(self, records: list[CampaignRow]) -> tuple[np.ndarray, np.ndarray]:
        """(n, m) minimisation objectives (sign applied) and mask of rows with all values."""
        y = np.full((len(records), len(self.config.objectives)), np.nan)
        for i, r in enumerate(records):
            for j, o in enumerate(self.config.objectives):
                v = r.properties.get(o.property)
                if isinstance(v, (int, float)) and np.isfinite(v):
                    y[i, j] = o.sign() * float(v)
        return y, ~np.isnan(y).any(1)

    def _optimizer(self, records: list[CampaignRow], strategy: str) -> Any:
        """A fresh skopt Optimizer told every finished evaluation (failures get y = 1, the
        worst value of the [0, 1]-scaled objective)."""
        from skopt import Optimizer

        # skopt keeps the space, the random draws and the ask/tell history; its own GP on the
        # encoded vector is never fitted (n_initial_points is never reached), because the BO
        # surrogate works on physical features over a candidate pool (see surrogate.py).
        opt = Optimizer(self.space.dimensions(), base_estimator="GP", n_initial_points=10**9,
                        initial_point_generator="random",
                        random_state=self._round_seed(len(records)))
        if records:
            y, ok = self.objective_matrix(records)
            scal = np.full(len(records), 1.0)
            if ok.any():
                scal[ok] = chebyshev_scalarise(y[ok], np.ones(y.shape[1]) / y.shape[1])
            opt.tell([r.x for r in records], [float(v) for v in scal])
        return opt

    # ---- proposals -------------------------------------------------------------------------
    def _random_batch(self, opt: Any, n: int, exclude: set[str]) -> list[Proposal]:
        out: list[Proposal] = []
        xs = opt.ask(n_points=n) if n > 1 else [opt.ask()]
        rng = np.random.default_rng([self.config.optimizer.seed, len(exclude), 1])
        for _attempt in range(200):
            for x in xs:
                x = [v.item() if hasattr(v, "item") else v for v in x]
                point = self.space.decode(x)
                if self.canonical(point.key) not in exclude and len(out) < n:
                    out.append((x, point))
                    exclude.add(self.canonical(point.key))
            if len(out) >= n:
                break
            xs = opt.space.rvs(n_samples=4 * n, random_state=int(rng.integers(2**31)))
        return out

    def _bo_batch(self, opt: Any, records: list[CampaignRow], n: int,
                  exclude: set[str]) -> list[Proposal]:
        y, ok = self.objective_matrix(records)
        if ok.sum() < max(2, self.config.optimizer.n_initial):
            return self._random_batch(opt, n, exclude)
        seed = self._round_seed(len(records))
        rng = np.random.default_rng(seed)
        pool_x = self.space.enumerate_ordered()
        if len(pool_x) > self.config.optimizer.pool_size:
            keep = rng.choice(len(pool_x), self.config.optimizer.pool_size, replace=False)
            pool_x = [pool_x[i] for i in keep]
        if self.space.disordered:  # every composition of small families, samples of large
            listed, complete = self.space.enumerate_disordered(self.config.optimizer.pool_size)
            pool_x += listed
            pool_x += [list(x) for x in opt.space.rvs(self.config.optimizer.pool_size,
                                                      random_state=seed)
                       if str(x[0]).startswith("disordered:") and str(x[0]) not in complete]
        pool, seen = [], set(exclude)
        for x in pool_x:
            x = [v.item() if hasattr(v, "item") else v for v in x]
            point = self.space.decode(x)
            if self.canonical(point.key) not in seen:
                seen.add(self.canonical(point.key))
                pool.append((x, point))
        if not pool:
            return []
        weights = rng.dirichlet(np.ones(y.shape[1])) if y.shape[1] > 1 else np.ones(1)
        train_y = chebyshev_scalarise(y[ok], weights)
        feats = featurize([self.space.decode(r.x) for r in records], self.space)
        picks = select_batch(featurize([p for _, p in pool], self.space), feats[ok], train_y,
                             feats, np.array([r.feasible for r in records]), n,
                             self.config.optimizer.xi, seed,
                             uncertain=np.array([r.uncertain for r in records], bool)[ok])
        for k in picks:
            exclude.add(self.canonical(pool[k][1].key))
        return [pool[k] for k in picks]

    # ---- the loop --------------------------------------------------------------------------
    def run(self, budget: int | None = None, strategy: str = "bo", workers: int = 1,
            scheduler: str | None = None,
            on_result: Callable[[CampaignRow], None] | None = None) -> CampaignSummary:
        """Evaluate candidates until ``budget`` evaluations exist in the database.

        Args:
            budget: total evaluations wanted (default ``config.budget``); finished rows count,
                so a larger value extends a finished campaign.
            strategy: ``"bo"`` or ``"random"``.
            workers: parallel evaluations (1 = in this process).
            scheduler: dask scheduler address (through the screen executors).
            on_result: called with every new record (progress output).
        """
        from matdesign.config_utils import typed_int
        from matdesign.search.executor import get_executor

        if strategy not in ("bo", "random"):
            raise ValueError(f"strategy must be 'bo' or 'random', not '{strategy}'")
        typed_int(workers, "workers", 1)
        budget = self.config.budget if budget is None else typed_int(budget, "budget", 1)
        records = self.store.records()
        n_start = len(records)
        with CrashTolerantRunner(partial(get_executor, workers, scheduler), workers) as runner:
            while len(records) < budget:
                opt = self._optimizer(records, strategy)
                exclude = {self.canonical(r.key) for r in records}
                n = min(self.config.optimizer.batch_size, budget - len(records))
                batch = (self._random_batch(opt, n, exclude) if strategy == "random"
                         else self._bo_batch(opt, records, n, exclude))
                if not batch:
                    break  # the whole space has been evaluated
                runner.run(batch, self._job(strategy, len(records), on_result))
                # the hull over everything evaluated so far decides feasibility for the
                # next proposals
                self.store.update_hull()
                records = self.store.records()
        return self.summary(records, strategy, len(records) - n_start)

    def _job(self, strategy: str, round_id: int,
             on_result: Callable[[CampaignRow], None] | None) -> Job[Proposal]:
        """The runner's callbacks for one batch: evaluate every realisation in a worker, write
        each result (or the coordinator's failure) as it arrives."""
        def submit(ex: Executor, proposal: Proposal) -> Future:
            point = proposal[1]
            return ex.submit(evaluate_structures, self.evaluator, self.space.structures(point),
                             point.key)

        def write(proposal: Proposal, ev: Any) -> None:
            x, point = proposal
            record = self.store.write(point, x, ev, strategy, round_id)
            if on_result:
                on_result(record)

        def fail(proposal: Proposal, failure: WorkerFailure) -> None:
            structure = self.space.structures(proposal[1])[0]
            write(proposal, Evaluation("failed", {}, structure, {}, failure.reason))

        return Job(submit=submit, on_result=write, on_failure=fail,
                   key=lambda proposal: proposal[1].key)

    def summary(self, records: list[CampaignRow], strategy: str, n_new: int) -> CampaignSummary:
        """Counts and the best feasible candidate (first objective, or ParEGO-equal weights)."""
        y, ok = self.objective_matrix(records)
        feas = np.array([r.feasible for r in records], bool) & ok
        best_key, best = None, {}
        if feas.any():
            idx = np.flatnonzero(feas)
            score = chebyshev_scalarise(y[idx], np.ones(y.shape[1]) / y.shape[1])
            r = records[int(idx[np.argmin(score)])]
            best_key = r.key
            best = {o.property: float(r.properties[o.property]) for o in self.config.objectives}
        return CampaignSummary(strategy, len(records), n_new, int(feas.sum()),
                               sum(r.status != "done" for r in records),
                               sum(r.uncertain for r in records), best_key, best,
                               sum(bool(r.properties.get(OUTSIDE_DOMAIN_KEY)) for r in records))
