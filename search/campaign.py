"""Design campaigns: propose candidates in batches, evaluate them, persist each result at once.

Every finished evaluation becomes one row of the campaign's ase.db (via :class:`CampaignStore`)
with its design vector, so :meth:`Campaign.run` resumes after a crash by re-telling all rows
to a FRESH scikit-optimize ``Optimizer`` and excluding their candidate keys: nothing finished is
lost or repeated. The evaluator is pluggable: any picklable ``evaluator(atoms, source)``
returning an object with ``status`` ("done"/"failed"), ``key_value_pairs``, ``atoms`` and
``data`` (the screen pipeline's ``CandidateResult`` or :class:`Evaluation`).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from matdesign.search.config import CampaignConfig
from matdesign.search.evaluation import (
    Evaluation,
    EvaluationPool,
    Evaluator,
    evaluate_structures,
    pipeline_evaluator,
)
from matdesign.search.executor import is_worker_crash
from matdesign.search.features import featurize
from matdesign.search.space import Candidate
from matdesign.search.surrogate import chebyshev_scalarise, select_batch
from matdesign.search.symmetry import equivalence_classes


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

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


_RESERVED = {"id", "unique_id", "ctime", "mtime", "user", "calculator", "energy", "forces",
             "stress", "magmom", "magmoms", "charge", "charges", "natoms", "formula", "age",
             "pbc", "cell", "numbers", "positions", "key", "x"}


@dataclass(frozen=True)
class Record:
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
    """The campaign's ase.db: one row per finished candidate, written the moment it finishes.

    Row key_value_pairs: the evaluation's properties plus ``candidate_key``, ``kind``,
    ``prototype``, ``family``, ``status``, ``strategy``, ``round``, ``feasible``, ``uncertain``;
    row data: ``x`` (the design vector), ``error`` and the evaluation's own data. The
    objectives and constraints are kept in the database metadata for ``matdesign report``,
    with the screen settings, potential identity and space (:mod:`matdesign.search.resume`):
    a database with rows refuses a config that changes them unless ``allow_config_change``.
    """

    def __init__(self, path: str, config: CampaignConfig, *, potential: str | None = None,
                 allow_config_change: bool = False) -> None:
        from matdesign.search.database import WRITER_KEY, check_writer, open_database
        from matdesign.search.resume import campaign_metadata, check_resume

        self.path = str(path)
        self.config = config
        self.db = open_database(self.path, "campaign")  # clear errors before any work
        check_writer(self.db, "design", self.path)  # a screen's rows would break resuming
        meta = {**campaign_metadata(config, potential), WRITER_KEY: "design"}
        # refuse BEFORE overwriting: a changed objective or fmax must not relabel stored rows
        check_resume(self.path, self.db.metadata, meta, self.db.count(), allow_config_change)
        if self.db.metadata != meta:
            self.db.metadata = meta

    def _judge(self, status: str, props: dict[str, Any]) -> tuple[bool, bool]:
        feasible = status == "done" and all(c.satisfied(props)
                                            for c in self.config.constraints)
        std = props.get("energy_std_ev_per_atom")
        uncertain = std is not None and std > self.config.uncertainty_energy_std_ev_per_atom
        return bool(feasible), bool(uncertain)

    def write(self, c: Candidate, x: list[Any], ev: Any, strategy: str, round_id: int) -> Record:
        """Persist one evaluation now; returns its :class:`Record`."""
        props = {k: (v.item() if hasattr(v, "item") else v)
                 for k, v in (ev.key_value_pairs or {}).items()
                 if k.isidentifier() and k not in _RESERVED}
        props = {k: v for k, v in props.items() if isinstance(v, (bool, int, float, str))
                 and not (isinstance(v, float) and not np.isfinite(v))}
        feasible, uncertain = self._judge(ev.status, props)
        kvp = {**props, "candidate_key": c.key, "kind": c.kind, "prototype": c.prototype,
               "family": c.group, "status": ev.status, "strategy": strategy,
               "round": int(round_id), "feasible": feasible, "uncertain": uncertain}
        atoms = ev.atoms if ev.atoms is not None else self.config.space.structures(c)[0]
        data = {"x": list(x), "error": str(getattr(ev, "error", "") or "")}
        try:
            row_id = self.db.write(atoms, key_value_pairs=kvp,
                                   data={**data, **(getattr(ev, "data", None) or {})})
        except Exception:  # noqa: BLE001 - unserialisable extra data must not lose the result
            row_id = self.db.write(atoms, key_value_pairs=kvp, data=data)
        return Record(row_id, c.key, list(x), ev.status, props, feasible, uncertain, strategy,
                      int(round_id))

    def update_hull(self) -> int:
        """Recompute ``e_above_hull_ev_per_atom`` (and ``feasible``) of every done row over
        the elemental references and competing phases stored in the rows plus every done
        candidate so far; returns the number of rows updated.

        Rows with an element that has no stored elemental reference keep their values (e.g. a
        custom evaluator without ``data["references"]``).
        """
        from ase.formula import Formula

        from matdesign.properties.stability import HullEntry, hull_energies

        rows = [r for r in self.db.select(status="done") if "energy_per_atom_ev" in r]
        refs: dict[str, HullEntry] = {}
        for row in rows:
            stored = (row.data or {}).get("references") or {}
            for el, e in (stored.get("elements") or {}).items():
                refs[f"ref:{el}"] = HullEntry(f"ref:{el}", el, float(e))
            for p in stored.get("competing") or []:
                refs[f"phase:{p['name']}"] = HullEntry(f"phase:{p['name']}", p["formula"],
                                                       float(p["energy_per_atom_ev"]))
        known = {name[4:] for name in refs if name.startswith("ref:")}
        entries = [e for e in refs.values() if set(Formula(e.formula).count()) <= known]
        rows = [r for r in rows if set(Formula(r.formula).count()) <= known]
        if not rows:
            return 0
        hull = hull_energies(entries + [HullEntry(f"row:{r.id}", r.formula,
                                                  float(r.energy_per_atom_ev)) for r in rows])
        with self.db:
            for r in rows:
                props = {**r.key_value_pairs, "e_above_hull_ev_per_atom": hull[f"row:{r.id}"]}
                feasible, _ = self._judge(r.status, props)
                self.db.update(r.id, e_above_hull_ev_per_atom=hull[f"row:{r.id}"],
                               feasible=feasible)
        return len(rows)

    def records(self) -> list[Record]:
        """All finished evaluations in write order.

        Raises:
            ValueError: when a row's design vector does not belong to this campaign's space.
        """
        groups = set(self.config.space.groups)
        out = []
        for row in self.db.select(sort="id"):
            x = list(row.data.get("x", []))
            if not x or x[0] not in groups:
                raise ValueError(f"{self.path}: row {row.id} ({row.get('candidate_key')}) has "
                                 f"design family {x[:1]} not in this campaign's space {groups}")
            skip = {"candidate_key", "kind", "prototype", "family", "status", "strategy",
                    "round", "feasible", "uncertain"}
            props = {k: v for k, v in row.key_value_pairs.items() if k not in skip}
            feasible, uncertain = self._judge(row.status, props)
            out.append(Record(row.id, row.candidate_key, x, row.status, props, feasible,
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
        self._crashes: Counter = Counter()  # candidate key -> worker crashes while in flight
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
    def objective_matrix(self, records: list[Record]) -> tuple[np.ndarray, np.ndarray]:
        """(n, m) minimisation objectives (sign applied) and mask of rows with all values."""
        y = np.full((len(records), len(self.config.objectives)), np.nan)
        for i, r in enumerate(records):
            for j, o in enumerate(self.config.objectives):
                v = r.properties.get(o.property)
                if isinstance(v, (int, float)) and np.isfinite(v):
                    y[i, j] = o.sign() * float(v)
        return y, ~np.isnan(y).any(1)

    def _optimizer(self, records: list[Record], strategy: str) -> Any:
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
    def _random_batch(self, opt: Any, n: int, exclude: set[str]) -> list[tuple[list, Candidate]]:
        out: list[tuple[list, Candidate]] = []
        xs = opt.ask(n_points=n) if n > 1 else [opt.ask()]
        rng = np.random.default_rng([self.config.optimizer.seed, len(exclude), 1])
        for _attempt in range(200):
            for x in xs:
                x = [v.item() if hasattr(v, "item") else v for v in x]
                c = self.space.decode(x)
                if self.canonical(c.key) not in exclude and len(out) < n:
                    out.append((x, c))
                    exclude.add(self.canonical(c.key))
            if len(out) >= n:
                break
            xs = opt.space.rvs(n_samples=4 * n, random_state=int(rng.integers(2**31)))
        return out

    def _bo_batch(self, opt: Any, records: list[Record], n: int,
                  exclude: set[str]) -> list[tuple[list, Candidate]]:
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
            c = self.space.decode(x)
            if self.canonical(c.key) not in seen:
                seen.add(self.canonical(c.key))
                pool.append((x, c))
        if not pool:
            return []
        weights = rng.dirichlet(np.ones(y.shape[1])) if y.shape[1] > 1 else np.ones(1)
        train_y = chebyshev_scalarise(y[ok], weights)
        feats = featurize([self.space.decode(r.x) for r in records], self.space)
        picks = select_batch(featurize([c for _, c in pool], self.space), feats[ok], train_y,
                             feats, np.array([r.feasible for r in records]), n,
                             self.config.optimizer.xi, seed,
                             uncertain=np.array([r.uncertain for r in records], bool)[ok])
        for k in picks:
            exclude.add(self.canonical(pool[k][1].key))
        return [pool[k] for k in picks]

    # ---- the loop --------------------------------------------------------------------------
    def run(self, budget: int | None = None, strategy: str = "bo", workers: int = 1,
            scheduler: str | None = None,
            on_result: Callable[[Record], None] | None = None) -> CampaignSummary:
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

        if strategy not in ("bo", "random"):
            raise ValueError(f"strategy must be 'bo' or 'random', not '{strategy}'")
        typed_int(workers, "workers", 1)
        budget = self.config.budget if budget is None else typed_int(budget, "budget", 1)
        records = self.store.records()
        n_start = len(records)
        with EvaluationPool(workers, scheduler) as pool:
            while len(records) < budget:
                opt = self._optimizer(records, strategy)
                exclude = {self.canonical(r.key) for r in records}
                n = min(self.config.optimizer.batch_size, budget - len(records))
                batch = (self._random_batch(opt, n, exclude) if strategy == "random"
                         else self._bo_batch(opt, records, n, exclude))
                if not batch:
                    break  # the whole space has been evaluated
                for rec in self._evaluate(pool, batch, strategy, len(records)):
                    records.append(rec)
                    if on_result:
                        on_result(rec)
                # the hull over everything evaluated so far decides feasibility for the
                # next proposals
                self.store.update_hull()
                records = self.store.records()
        return self.summary(records, strategy, len(records) - n_start)

    def _evaluate(self, pool: EvaluationPool, batch: list[tuple[list, Candidate]], strategy: str,
                  n_done: int) -> Iterator[Record]:
        """Evaluate a batch, writing each result as it arrives.

        A broken process pool (a worker died, e.g. killed for memory) records nothing for the
        candidates in flight: they run again in a fresh pool, each alone, and one that crashes
        a worker a second time is recorded as failed ("worker crashed twice").
        """
        round_id = n_done
        if pool.ex is None:
            for x, c in batch:
                ev = evaluate_structures(self.evaluator, self.space.structures(c), c.key)
                yield self.store.write(c, x, ev, strategy, round_id)
            return
        queue = list(batch)
        while queue:
            suspects = [i for i, (_, c) in enumerate(queue) if self._crashes[c.key]]
            take = suspects[:1] if suspects else list(range(len(queue)))
            group = [queue[i] for i in take]
            queue = [b for i, b in enumerate(queue) if i not in take]
            futures, broken = {}, False
            for k, (x, c) in enumerate(group):
                try:
                    fut = pool.ex.submit(evaluate_structures, self.evaluator,
                                         self.space.structures(c), c.key)
                except BrokenProcessPool:  # a worker already in flight died: not c's fault
                    queue = group[k:] + queue
                    broken = True
                    break
                futures[fut] = (x, c)
            crashed = []
            for fut in cf.as_completed(futures):
                x, c = futures[fut]
                exc = fut.exception()
                if is_worker_crash(exc):  # a dead pool process, or Dask's KilledWorker
                    crashed.append((x, c, exc))
                    continue
                ev = fut.result() if exc is None else Evaluation(
                    "failed", {}, self.space.structures(c)[0], {}, f"{type(exc).__name__}: {exc}")
                yield self.store.write(c, x, ev, strategy, round_id)
            for x, c, exc in crashed:
                self._crashes[c.key] += 1
                if self._crashes[c.key] < 2:
                    queue.insert(0, (x, c))
                    continue
                ev = Evaluation("failed", {}, self.space.structures(c)[0], {},
                                f"worker crashed twice: {type(exc).__name__}: {exc}")
                yield self.store.write(c, x, ev, strategy, round_id)
            if crashed or broken:
                pool.restart()

    def summary(self, records: list[Record], strategy: str, n_new: int) -> CampaignSummary:
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
                               sum(r.uncertain for r in records), best_key, best)
