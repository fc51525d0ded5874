"""Exponential moving average of a model's weights (the model that is validated and saved)."""

from __future__ import annotations

import copy

import torch


class ExponentialMovingAverage:
    """w_ema <- decay w_ema + (1 - decay) w after every optimiser step.

    Args:
        model: the model being trained; the average starts as a copy of it.
        decay: weight of the old average, 0 <= decay < 1.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.model = copy.deepcopy(model)
        self.decay = float(decay)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for averaged, current in zip(self.model.parameters(), model.parameters(), strict=True):
            averaged.lerp_(current, 1 - self.decay)
