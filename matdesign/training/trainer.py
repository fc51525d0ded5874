"""Fitting a potential: the training state, one epoch, validate-and-checkpoint, and the loop.

The pieces: the weighted loss (:mod:`matdesign.training.loss`), the schedule
(:mod:`matdesign.training.schedule`), the weight average (:mod:`matdesign.training.ema`).
Threads are the caller's choice (the CLI sets them), not this module's.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from matdesign.checkpoint import _is_derived, save_potential
from matdesign.domain import METADATA_KEY as DOMAIN_KEY
from matdesign.domain import ChemicalDomain
from matdesign.forces import edge_vectors
from matdesign.memory import keep_freed_memory
from matdesign.model import Potential, PotentialConfig
from matdesign.training.committee import without_committee
from matdesign.training.config import TrainConfig
from matdesign.training.data import Frame, batch_to, fit_reference_energies, iterate_batches
from matdesign.training.ema import ExponentialMovingAverage
from matdesign.training.extra import ExtraTerm, build_extra_terms, epoch_report
from matdesign.training.fused import fuse_for_training
from matdesign.training.loss import loss_terms, validation_score, weighted_loss
from matdesign.training.metrics import error_metrics
from matdesign.training.schedule import Plateau, budget_fraction, energy_weight, learning_rate


@dataclass(frozen=True)
class TrainSummary:
    """Outcome of one training run."""

    checkpoint: str
    epochs: int
    wall_time_s: float
    best_epoch: int
    valid: dict[str, Any]  # metrics of the best (EMA) model on the validation frames
    stopped_because: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_model(
    config: PotentialConfig, species: Sequence[str], frames: Sequence[Frame],
    cohesive_overrides: dict[str, float] | None = None,
) -> Potential:
    """A fresh model with data-derived normalisation: mean neighbour count and coordination,
    per-species reference energies (least squares over compositions), a force-RMS energy
    scale and, for models with an isolated-atom reference, E_iso = lowest elemental energy
    per atom in the data (or the reference) + tabulated cohesive energy."""
    from matdesign.radial import polynomial_envelope
    from matdesign.repulsion import cohesive_energies

    edges = sum(int(f.graph.edge_index.shape[1]) for f in frames)
    atoms = sum(len(f.symbols) for f in frames)
    density = 0.0
    for f in frames:
        g = f.graph
        shift = torch.einsum("mk,kl->ml", g.cell_shifts, g.cell[0])
        vec = g.positions[g.edge_index[1]] - g.positions[g.edge_index[0]] + shift
        r = torch.linalg.norm(vec, dim=1)
        density += float(polynomial_envelope(r, config.cutoff, config.envelope_p).sum())
    config = dataclasses.replace(config, avg_num_neighbours=float(max(edges / max(atoms, 1), 1.0)),
                                 avg_density=float(max(density / max(atoms, 1), 1e-3)))
    model = Potential(config, species=list(species))
    refs = fit_reference_energies(frames, species)
    forces = [f.forces for f in frames if f.forces is not None]
    scale = float(np.sqrt(np.mean(np.concatenate(forces) ** 2))) if forces else 1.0
    with torch.no_grad():
        model.energy_shift.copy_(torch.tensor(refs, dtype=torch.float32))
        model.energy_scale.fill_(max(scale, 1e-3))
        if config.isolated_reference:
            coh = cohesive_energies(list(species), cohesive_overrides)
            lowest = []
            for k, s in enumerate(species):
                pure = [f.energy / len(f.symbols) for f in frames if set(f.symbols) == {s}]
                lowest.append(min(pure) if pure else float(refs[k]))
            iso = [e + c for e, c in zip(lowest, coh, strict=True)]
            model.isolated_energy.copy_(torch.tensor(iso, dtype=torch.float32))
    return model


def load_init(path: str | Path) -> Potential:
    """A saved single model to fine-tune from (``--init``).

    Raises:
        ValueError: an ensemble checkpoint (or any error of :func:`load_potential`).
    """
    from matdesign.checkpoint import load_potential

    model = load_potential(path)
    if not isinstance(model, Potential):
        raise ValueError(f"{path}: --init needs a single model, not an ensemble checkpoint")
    return model


def model_from_checkpoint(init: str | Path | Potential, species: Sequence[str]) -> Potential:
    """A trainable copy of the ``--init`` model (a path, or the model :func:`load_init` read);
    architecture and species come from the checkpoint (an attached committee is dropped: it
    describes the base's weights), metadata only as ``earlier_stages`` (the training settings
    of the base and of its own bases).

    Raises:
        ValueError: an ensemble checkpoint, or species that differ from the data's.
    """
    model = init if isinstance(init, Potential) else load_init(init)
    if list(model.species) != list(species):
        raise ValueError(f"--init model has species {model.species}, the data/--species "
                         f"give {list(species)}")
    trainable = copy.deepcopy(without_committee(model)).float().train()
    # The base's calibration, figures and domain describe the base: only its settings stay.
    base = model.metadata
    stages = [*base.get("earlier_stages", []), *([base["train_config"]]
                                                  if "train_config" in base else [])]
    trainable.metadata = {"earlier_stages": stages} if stages else {}
    return trainable


@dataclass
class TrainState:
    """Where a run stands: saved with the weights after every epoch, read back by ``resume``."""

    epoch: int = 0
    best_score: float = math.inf
    best_epoch: int = -1
    elapsed_s: float = 0.0
    plateau: Plateau = field(default_factory=Plateau)


@dataclass
class Fit:
    """The model being trained, its weight average, the optimiser and the state."""

    model: Potential
    ema: ExponentialMovingAverage
    optimizer: torch.optim.Optimizer
    state: TrainState

    @classmethod
    def start(cls, model: Potential, cfg: TrainConfig) -> Fit:
        trainable = [p for p in model.parameters() if p.requires_grad]
        if cfg.pair_lr_factor != 1.0:  # the pair terms in a group of their own
            pairs = {id(p) for p in pair_term_parameters(model)}
            if not pairs:
                raise ValueError("train.pair_lr_factor applies to pair terms, but the model has "
                                 "none: set model.element_pairs or model.chemical_pairs")
            trainable = [{"params": [p for p in trainable if id(p) not in pairs]},
                         {"params": [p for p in trainable if id(p) in pairs], "pair_terms": True}]
        opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return cls(model, ExponentialMovingAverage(model, cfg.ema_decay), opt, TrainState())

    def save(self, path: Path) -> None:
        """The resumable state (same keys as format-2 ``.state`` files)."""
        st = self.state
        torch.save({"model": self.model.state_dict(), "ema": self.ema.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "epoch": st.epoch,
                    "best": st.best_score, "best_epoch": st.best_epoch,
                    "elapsed_s": st.elapsed_s, "plateau_factor": st.plateau.factor,
                    "since_improved": st.plateau.since_improved}, path)

    def load(self, path: str | Path) -> None:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict({k: v for k, v in saved["model"].items()
                                    if not _is_derived(k)})
        self.ema.model.load_state_dict({k: v for k, v in saved["ema"].items()
                                        if not _is_derived(k)})
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = TrainState(
            epoch=int(saved["epoch"]), best_score=float(saved["best"]),
            best_epoch=int(saved["best_epoch"]), elapsed_s=float(saved["elapsed_s"]),
            plateau=Plateau(float(saved.get("plateau_factor", 1.0)),
                            int(saved.get("since_improved", 0))))


@dataclass(frozen=True)
class _Budget:
    """Steps and clock of a run, for the schedule."""

    steps_per_epoch: int
    total_steps: int
    t0: float  # time.time() at the (virtual) start, s

    def fraction(self, step: int, cfg: TrainConfig) -> float:
        return budget_fraction(step, self.total_steps, cfg, time.time() - self.t0)


def pair_term_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters of the model's pair terms (element_pairs, chemical_pairs), which
    ``pair_lr_factor`` slows once the network trains. The embedded-atom term, also fitted in
    the pair-first stage (it is outside the network), is not among them."""
    terms = (getattr(model, name, None) for name in ("element_pairs", "chemical_pairs"))
    return [p for term in terms if term is not None for p in term.parameters()]


def set_network_gate(fit: Fit, on: bool) -> None:
    """Switch the network's share of the energy on or off (pair-first stage) in the trained and
    the averaged model alike."""
    for model in (fit.model, fit.ema.model):
        if hasattr(model, "network_gate"):
            model.network_gate.fill_(1.0 if on else 0.0)


def train_one_epoch(fit: Fit, train: Sequence[Frame], cfg: TrainConfig, budget: _Budget,
                    rng: np.random.Generator, device: str | torch.device,
                    progress: bool, extra: Sequence[ExtraTerm] = (),
                    ) -> tuple[dict[str, float], float]:
    """One pass over ``train`` in shuffled batches (``extra``: terms beyond the data, each
    added on its every n-th batch).

    Returns:
        Mean training MSE per loss term, and the last learning rate.
    """
    from tqdm import tqdm

    model, dtype = fit.model, fit.model.dtype
    model.train()
    heads = getattr(model, "num_heads", 1)
    sums = {"energy": 0.0, "forces": 0.0, "stress": 0.0, **{t.name: 0.0 for t in extra}}
    batches = tqdm(iterate_batches(train, cfg.batch_size, shuffle=True, rng=rng,
                                   stress_weights=cfg.stress_config_type_weights),
                   total=budget.steps_per_epoch, leave=False,
                   disable=not progress or not sys.stderr.isatty(),  # no bars in log files
                   desc=f"epoch {fit.state.epoch + 1}")
    lr = cfg.lr
    for k, batch in enumerate(batches):
        fraction = budget.fraction(fit.state.epoch * budget.steps_per_epoch + k, cfg)
        network_on = fraction >= cfg.pair_first_fraction
        set_network_gate(fit, on=network_on)
        lr = learning_rate(cfg, fraction, fit.state.plateau.factor)
        for group in fit.optimizer.param_groups:
            pair_group = group.get("pair_terms", False) and network_on
            group["lr"] = lr * cfg.pair_lr_factor if pair_group else lr
        b = batch.graph.num_structures
        boot = (torch.from_numpy(rng.poisson(1.0, size=(heads, b))).to(device, dtype)
                if heads > 1 else None)
        terms = loss_terms(model, batch_to(batch, device, dtype), boot)
        loss = weighted_loss(terms, cfg, energy_weight(cfg, fraction))
        for t in extra:
            if t.due(k):
                terms[t.name] = t.loss(model, k)
                loss = loss + t.every * t.weight * terms[t.name]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at epoch {fit.state.epoch + 1}, step {k}")
        fit.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        fit.optimizer.step()
        fit.ema.update(model)
        for key in sums:
            sums[key] += float(terms[key].detach()) if key in terms else 0.0
    fit.state.epoch += 1
    counts = {t.name: math.ceil(budget.steps_per_epoch / t.every) for t in extra}
    return {k: v / counts.get(k, budget.steps_per_epoch) for k, v in sums.items()}, lr


def _progress_line(epoch: int, done: float, elapsed: float, metrics: dict[str, Any],
                   lr: float) -> str:
    left = elapsed / max(done, 1e-9) * (1 - done) / 60
    bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
    return (f"[{bar}] {100 * done:3.0f}% epoch {epoch}, {elapsed / 60:.1f} min, "
            f"~{left:.0f} min left | valid E {metrics['energy_mae_mev_per_atom']:.2f} meV/atom, "
            f"F {metrics['force_mae_ev_per_a']:.4f} eV/Å, "
            f"S {metrics['stress_mae_gpa'] or float('nan'):.3f} GPa | lr {lr:.2e}")


def validate_and_checkpoint(fit: Fit, valid: Sequence[Frame], cfg: TrainConfig, out: Path,
                            meta: dict[str, Any], budget: _Budget) -> tuple[float, dict]:
    """Validate the averaged model, update best score and plateau, save the checkpoint (when
    improved, or always with ``keep: last``) and the resumable state.

    Returns:
        The validation score and metrics.
    """
    metrics, _ = error_metrics(fit.ema.model, valid)
    st = fit.state
    st.elapsed_s = time.time() - budget.t0
    score = validation_score(metrics, cfg)
    # A model validated with its network off (pair-first stage) is not the model that loads,
    # and its score says nothing about the network's learning rate: the plateau rule starts
    # counting when the network does (before, the pair stage's epochs counted as "no
    # improvement" and halved the network's learning rate before it had trained once).
    network_on = bool(getattr(fit.ema.model, "network_gate", 1.0))
    improved = score < st.best_score and network_on
    if improved:
        st.best_score, st.best_epoch = score, st.epoch
    if network_on:
        st.plateau.update(improved, cfg)
    if improved or cfg.keep == "last":
        save_potential(fit.ema.model, out, metadata={**meta, "valid": metrics,
                                                     "epoch": st.epoch,
                                                     "train_time_s": st.elapsed_s})
    fit.save(out.with_name(out.name + ".state"))
    return score, metrics


def _stop_reason(fit: Fit, cfg: TrainConfig) -> str | None:
    st = fit.state
    if st.epoch - st.best_epoch >= cfg.patience and cfg.keep == "best":
        return "early_stopping"
    if cfg.max_time_min and st.elapsed_s >= 60 * cfg.max_time_min:
        return "time_budget"
    return None


def _write_log(log: TextIO | None, record: dict[str, Any], metrics: dict[str, Any]) -> None:
    if log:
        log.write(json.dumps({**record, **{f"valid_{k}": v for k, v in metrics.items()
                                           if k != "by_config_type"}}) + "\n")
        log.flush()


def _domain_frames(train: Sequence[Frame], cfg: TrainConfig) -> list[Frame]:
    """The training frames that define the chemical domain: all but
    ``train.domain_exclude_config_types``.

    Raises:
        ValueError: a listed type that no training frame has (a typo), or none left.
    """
    excluded = set(cfg.domain_exclude_config_types)
    found = {f.config_type for f in train}
    missing = sorted(excluded - found)
    if missing:
        raise ValueError(f"train.domain_exclude_config_types: {missing} match no training "
                         f"frame (their config types: {sorted(found)})")
    kept = [f for f in train if f.config_type not in excluded]
    if not kept:
        raise ValueError("train.domain_exclude_config_types leaves no frame for the domain")
    return kept


def training_domain(frames: Sequence[Frame], cutoff: float,
                    chemical: bool = False) -> ChemicalDomain:
    """:meth:`ChemicalDomain.from_edges` of the training frames (their graphs' edges, built
    with the model's cutoff, Å); ``chemical``: the model has the chemical pair term."""
    return ChemicalDomain.from_edges((_edges(f) for f in frames), cutoff, chemical)


def _edges(frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(symbols, receivers, senders, edge lengths in Å, energy in eV) of a frame's graph."""
    g = frame.graph
    vectors = edge_vectors(g, g.positions, g.cell).detach().cpu().numpy()
    return (np.array(frame.symbols), *g.edge_index.cpu().numpy(),
            np.linalg.norm(vectors, axis=1), frame.energy)


def train_potential(
    train: Sequence[Frame],
    valid: Sequence[Frame],
    species: Sequence[str],
    model_config: PotentialConfig,
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: str | Path | None = None,
    init: str | Path | Potential | None = None,
    log_path: str | Path | None = None,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> TrainSummary:
    """Train one potential; the best EMA model (by validation score) is saved to ``out``.

    A training state (weights, EMA, optimiser, epoch, best score, plateau) is saved to
    ``out + '.state'`` after every epoch; ``resume`` continues from such a file. ``init``
    fine-tunes: it starts from the weights (and architecture) of a saved model with a fresh
    optimiser, schedule and best score. ``device``: where the training steps run.
    """
    if cfg.keep not in ("best", "last"):
        raise ValueError(f"train.keep must be 'best' or 'last', not {cfg.keep!r}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dtype = getattr(torch, cfg.dtype)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = (model_from_checkpoint(init, species) if init is not None
             else build_model(model_config, species, train, cfg.cohesive_energies_ev))
    fuse_for_training(model)  # same loss and gradients, ~0.7x the time per step
    keep_freed_memory()  # reuse freed per-edge buffers instead of faulting in new pages
    fit = Fit.start(model.to(device=device, dtype=dtype), cfg)
    if resume:
        fit.load(resume)
        rng = np.random.default_rng(cfg.seed + fit.state.epoch)
    steps = math.ceil(len(train) / cfg.batch_size)
    budget = _Budget(steps, steps * cfg.max_epochs, time.time() - fit.state.elapsed_s)
    meta = {"species": list(species), "train_config": cfg.to_dict(),
            "n_train": len(train), "n_valid": len(valid),
            DOMAIN_KEY: training_domain(_domain_frames(train, cfg), model.config.cutoff,
                                         model.config.chemical_pairs).to_dict(),
            **(metadata or {})}
    if isinstance(init, (str, Path)):
        meta["init_from"] = str(init)
    meta.update(model.metadata)  # a fine-tuned model: the earlier stages' settings
    extra = build_extra_terms(cfg, species, model.config.cutoff, train)
    stopped = "max_epochs"
    with open(log_path, "a") if log_path else contextlib.nullcontext() as log:
        while fit.state.epoch < cfg.max_epochs:
            train_mse, lr = train_one_epoch(fit, train, cfg, budget, rng, device, progress,
                                            extra)
            score, metrics = validate_and_checkpoint(fit, valid, cfg, out, meta, budget)
            record = {"epoch": fit.state.epoch, "time_s": round(fit.state.elapsed_s, 1),
                      "lr": lr, "score": score,
                      **{f"train_mse_{k}": v for k, v in train_mse.items()}}
            extra_record, extra_line = epoch_report(extra, fit.ema.model)
            record.update(extra_record)
            _write_log(log, record, metrics)
            if progress:
                done = budget.fraction(fit.state.epoch * steps, cfg)
                print(_progress_line(fit.state.epoch, done, fit.state.elapsed_s, metrics, lr)
                      + extra_line, flush=True)
            reason = _stop_reason(fit, cfg)
            if reason:
                stopped = reason
                break
    return _finish(out, dtype, cfg, train, fit, budget, stopped)


def _finish(out: Path, dtype: torch.dtype, cfg: TrainConfig, train: Sequence[Frame], fit: Fit,
            budget: _Budget, stopped: str) -> TrainSummary:
    """Reload the best model, attach the committee if asked, and summarise."""
    from matdesign.checkpoint import load_potential

    best_model = load_potential(out, dtype=dtype)
    if cfg.committee and isinstance(best_model, Potential) and best_model.num_heads == 1:
        from matdesign.training.committee import attach_committee

        best_model = attach_committee(best_model, train)
        save_potential(best_model, out)
    return TrainSummary(checkpoint=str(out), epochs=fit.state.epoch,
                        wall_time_s=time.time() - budget.t0, best_epoch=fit.state.best_epoch,
                        valid=best_model.metadata.get("valid", {}), stopped_because=stopped)
