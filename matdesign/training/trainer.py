"""Fitting a potential: weighted E/F/σ loss, AdamW, cosine schedule, EMA, early stopping, resume."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from matdesign.checkpoint import save_potential
from matdesign.forces import energy_forces_stress
from matdesign.model import Potential, PotentialConfig
from matdesign.training.config import TrainConfig
from matdesign.training.data import Batch, Frame, batch_to, fit_reference_energies, iterate_batches
from matdesign.training.metrics import error_metrics


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


def loss_terms(model: torch.nn.Module, batch: Batch,
               head_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Mean-squared errors: energy/atom (eV²/atom²), force components (eV²/Å²), stress (eV²/Å⁶).

    With a committee model, ``heads`` is the mean over heads of each head's own energy error,
    weighted per frame by ``head_weights`` (heads, b): an online bootstrap (Poisson(1) weights
    per head and frame) that makes the heads disagree where the data do not constrain them.
    """
    out = energy_forces_stress(model, batch.graph, stress=True, training=True)
    e = ((out.energy - batch.energy) / batch.n_atoms).pow(2).mean()
    fm = batch.forces_mask
    f = ((out.forces - batch.forces).pow(2).sum(-1) * fm).sum() / (3 * fm.sum()).clamp(min=1)
    if out.stress is None:
        s = torch.zeros((), dtype=e.dtype, device=e.device)
    else:
        sw = batch.stress_weight
        s = ((out.stress - batch.stress).pow(2).sum((1, 2)) * sw).sum() / (
            9 * (sw > 0).sum()).clamp(min=1)
    terms = {"energy": e, "forces": f, "stress": s}
    if out.head_energy is not None:
        err = ((out.head_energy - batch.energy) / batch.n_atoms).pow(2)  # (heads, b)
        w = head_weights if head_weights is not None else torch.ones_like(err)
        terms["heads"] = (err * w).sum() / w.sum().clamp(min=1)
    return terms


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
    architecture and species come from the checkpoint.

    Raises:
        ValueError: an ensemble checkpoint, or species that differ from the data's.
    """
    model = init if isinstance(init, Potential) else load_init(init)
    if list(model.species) != list(species):
        raise ValueError(f"--init model has species {model.species}, the data/--species "
                         f"give {list(species)}")
    return copy.deepcopy(model).float().train()


def _progress(step: int, total: int, cfg: TrainConfig, elapsed: float) -> float:
    p = step / max(total, 1)
    if cfg.max_time_min:
        p = max(p, elapsed / (60 * cfg.max_time_min))
    return min(p, 1.0)


def _lr(cfg: TrainConfig, progress: float, plateau_factor: float = 1.0) -> float:
    """Cosine decay over the budget (epochs or wall clock), times the plateau factor."""
    floor = cfg.lr_min_fraction
    cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * cosine * plateau_factor


def _score(metrics: dict[str, Any], cfg: TrainConfig) -> float:
    """Validation score with the loss's relative weights, in MAE units (lower is better)."""
    e = (metrics["energy_mae_mev_per_atom"] or 0.0) / 1000
    f = metrics["force_mae_ev_per_a"] or 0.0
    return math.sqrt(cfg.energy_weight) * e + math.sqrt(cfg.forces_weight) * f


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
) -> TrainSummary:
    """Train one potential; the best EMA model (by validation score) is saved to ``out``.

    A training state (weights, EMA, optimiser, epoch, RNG) is saved to ``out + '.state'`` after
    every epoch; ``resume`` continues from such a file. ``init`` fine-tunes: it starts from the
    weights (and architecture) of a saved model with a fresh optimiser, schedule and best score.
    """
    from tqdm import tqdm

    if cfg.keep not in ("best", "last"):
        raise ValueError(f"train.keep must be 'best' or 'last', not {cfg.keep!r}")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dtype = getattr(torch, cfg.dtype)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state_path = out.with_name(out.name + ".state")
    model = (model_from_checkpoint(init, species) if init is not None
             else build_model(model_config, species, train, cfg.cohesive_energies_ev)).to(dtype)
    heads = getattr(model, "num_heads", 1)
    plateau_factor, since_improved = 1.0, 0
    ema = copy.deepcopy(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=cfg.lr, weight_decay=cfg.weight_decay)
    epoch, best, best_epoch, elapsed_before = 0, math.inf, -1, 0.0
    if resume:
        st = torch.load(resume, map_location="cpu", weights_only=True)
        from matdesign.checkpoint import _is_derived

        model.load_state_dict({k: v for k, v in st["model"].items() if not _is_derived(k)})
        ema.load_state_dict({k: v for k, v in st["ema"].items() if not _is_derived(k)})
        opt.load_state_dict(st["optimizer"])
        epoch, best, best_epoch = st["epoch"], st["best"], st["best_epoch"]
        elapsed_before = st["elapsed_s"]
        plateau_factor = float(st.get("plateau_factor", 1.0))
        rng = np.random.default_rng(cfg.seed + epoch)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.max_epochs
    log = open(log_path, "a") if log_path else None  # closed in finally
    t0 = time.time() - elapsed_before
    stopped = "max_epochs"
    meta = {"species": list(species), "train_config": dataclasses.asdict(cfg),
            "n_train": len(train), "n_valid": len(valid), **(metadata or {})}
    if isinstance(init, (str, Path)):
        meta["init_from"] = str(init)
    try:
        while epoch < cfg.max_epochs:
            model.train()
            sums = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
            bar = tqdm(iterate_batches(train, cfg.batch_size, shuffle=True, rng=rng,
                                       stress_weights=cfg.stress_config_type_weights),
                       total=steps_per_epoch, leave=False,
                       disable=not progress or not sys.stderr.isatty(),  # no bars in log files
                       desc=f"epoch {epoch + 1}")
            for k, batch in enumerate(bar):
                lr = _lr(cfg, _progress(epoch * steps_per_epoch + k, total_steps, cfg,
                                        time.time() - t0), plateau_factor)
                for g in opt.param_groups:
                    g["lr"] = lr
                prog = _progress(epoch * steps_per_epoch + k, total_steps, cfg,
                                 time.time() - t0)
                w_energy = cfg.energy_weight * (cfg.late_energy_factor
                                                if prog >= 1 - cfg.late_fraction else 1.0)
                b = batch.graph.num_structures
                boot = (torch.from_numpy(rng.poisson(1.0, size=(heads, b))).to(dtype)
                        if heads > 1 else None)
                terms = loss_terms(model, batch_to(batch, "cpu", dtype), boot)
                loss = (w_energy * terms["energy"] + cfg.forces_weight * terms["forces"]
                        + cfg.stress_weight * terms["stress"])
                if "heads" in terms:
                    loss = loss + cfg.head_weight * w_energy * terms["heads"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at epoch {epoch + 1}, step {k}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                with torch.no_grad():
                    for pe, p in zip(ema.parameters(), model.parameters()):
                        pe.lerp_(p, 1 - cfg.ema_decay)
                for key in sums:
                    sums[key] += float(terms[key].detach())
            epoch += 1
            metrics, _ = error_metrics(ema, valid)
            score = _score(metrics, cfg)
            elapsed = time.time() - t0
            record = {"epoch": epoch, "time_s": round(elapsed, 1), "lr": lr, "score": score,
                      **{f"train_mse_{k}": v / steps_per_epoch for k, v in sums.items()},
                      **{f"valid_{k}": v for k, v in metrics.items() if k != "by_config_type"}}
            if log:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if progress:
                done = _progress(epoch * steps_per_epoch, total_steps, cfg, elapsed)
                left = elapsed / max(done, 1e-9) * (1 - done) / 60
                bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
                print(f"[{bar}] {100 * done:3.0f}% epoch {epoch}, {elapsed / 60:.1f} min, "
                      f"~{left:.0f} min left | valid E "
                      f"{metrics['energy_mae_mev_per_atom']:.2f} meV/atom, "
                      f"F {metrics['force_mae_ev_per_a']:.4f} eV/Å, "
                      f"S {metrics['stress_mae_gpa'] or float('nan'):.3f} GPa | lr {lr:.2e}",
                      flush=True)
            improved = score < best
            if improved:
                best, best_epoch, since_improved = score, epoch, 0
            else:
                since_improved += 1
                if since_improved >= cfg.plateau_patience:  # reduce on plateau, on top of cosine
                    plateau_factor, since_improved = plateau_factor * cfg.plateau_factor, 0
            if improved or cfg.keep == "last":
                save_potential(ema, out, metadata={**meta, "valid": metrics, "epoch": epoch,
                                                   "train_time_s": elapsed})
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(),
                        "optimizer": opt.state_dict(), "epoch": epoch, "best": best,
                        "best_epoch": best_epoch, "elapsed_s": elapsed,
                        "plateau_factor": plateau_factor}, state_path)
            if epoch - best_epoch >= cfg.patience and cfg.keep == "best":
                stopped = "early_stopping"
                break
            if cfg.max_time_min and elapsed >= 60 * cfg.max_time_min:
                stopped = "time_budget"
                break
    finally:
        if log:
            log.close()
    from matdesign.checkpoint import load_potential

    best_model = load_potential(out, dtype=dtype)
    if cfg.committee and isinstance(best_model, Potential) and best_model.num_heads == 1:
        from matdesign.training.committee import attach_committee

        best_model = attach_committee(best_model, train)
        save_potential(best_model, out)
    return TrainSummary(checkpoint=str(out), epochs=epoch, wall_time_s=time.time() - t0,
                        best_epoch=best_epoch, valid=best_model.metadata.get("valid", {}),
                        stopped_because=stopped)
