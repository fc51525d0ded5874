"""The training schedule: budget fraction, cosine learning rate with plateau cuts, and the late
energy-weighted stage. Pure functions of the config and the clock (no torch state)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from matdesign.training.config import TrainConfig


def budget_fraction(step: int, total_steps: int, cfg: TrainConfig, elapsed_s: float) -> float:
    """How much of the budget is spent, 0..1: steps of ``max_epochs``, or the wall clock of
    ``max_time_min`` if that runs out first."""
    fraction = step / max(total_steps, 1)
    if cfg.max_time_min:
        fraction = max(fraction, elapsed_s / (60 * cfg.max_time_min))
    return min(fraction, 1.0)


def learning_rate(cfg: TrainConfig, fraction: float, plateau_factor: float = 1.0) -> float:
    """Cosine decay from ``lr`` to ``lr * lr_min_fraction`` over the budget, times the plateau
    factor."""
    floor = cfg.lr_min_fraction
    cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * fraction))
    return cfg.lr * cosine * plateau_factor


def energy_weight(cfg: TrainConfig, fraction: float) -> float:
    """The energy loss weight; ``late_energy_factor`` times larger in the last
    ``late_fraction`` of the budget."""
    late = fraction >= 1 - cfg.late_fraction
    return cfg.energy_weight * (cfg.late_energy_factor if late else 1.0)


@dataclass
class Plateau:
    """Reduce-on-plateau on top of the cosine: the factor shrinks after ``plateau_patience``
    epochs without a better validation score."""

    factor: float = 1.0
    since_improved: int = 0

    def update(self, improved: bool, cfg: TrainConfig) -> None:
        if improved:
            self.since_improved = 0
            return
        self.since_improved += 1
        if self.since_improved >= cfg.plateau_patience:
            self.factor *= cfg.plateau_factor
            self.since_improved = 0
