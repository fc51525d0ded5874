"""The weighted loss over energy, force and stress errors, and the validation score."""

from __future__ import annotations

import math
from typing import Any

import torch

from matdesign.forces import energy_forces_stress
from matdesign.training.config import TrainConfig
from matdesign.training.data import Batch


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


def weighted_loss(terms: dict[str, torch.Tensor], cfg: TrainConfig,
                  w_energy: float) -> torch.Tensor:
    """w_E L_E + w_F L_F + w_σ L_σ (+ head_weight w_E L_heads for trained committees): the
    weights trade one error against another along a Pareto front."""
    loss = (w_energy * terms["energy"] + cfg.forces_weight * terms["forces"]
            + cfg.stress_weight * terms["stress"])
    if "heads" in terms:
        loss = loss + cfg.head_weight * w_energy * terms["heads"]
    return loss


def validation_score(metrics: dict[str, Any], cfg: TrainConfig) -> float:
    """Validation score with the loss's relative weights, in MAE units (lower is better)."""
    e = (metrics["energy_mae_mev_per_atom"] or 0.0) / 1000
    f = metrics["force_mae_ev_per_a"] or 0.0
    return math.sqrt(cfg.energy_weight) * e + math.sqrt(cfg.forces_weight) * f
