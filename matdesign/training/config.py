"""Training configuration: frozen dataclasses loaded from YAML, unknown keys rejected by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matdesign.config_utils import typed_config
from matdesign.model import PotentialConfig


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Loss = w_E·MSE(E/N) + w_F·MSE(F) + w_S·MSE(σ).

    Units inside the loss: eV/atom, eV/Å, eV/Å³.
    """

    energy_weight: float = 30.0
    forces_weight: float = 1.0
    stress_weight: float = 30.0
    stress_config_type_weights: dict[str, float] = field(default_factory=dict)  # {type: w}
    batch_size: int = 8
    lr: float = 5e-3
    lr_min_fraction: float = 0.02  # cosine decays to lr * this
    weight_decay: float = 1e-6
    max_epochs: int = 200
    max_time_min: float | None = None  # wall clock; cosine follows max(epoch, time)
    ema_decay: float = 0.99
    grad_clip: float = 10.0
    patience: int = 30  # epochs without validation improvement before stopping
    keep: str = "best"  # checkpoint written: "best" validation score, or "last" epoch (for
    # fine-tunes whose target, e.g. a shear constant, the validation score does not measure)
    valid_fraction: float = 0.1
    seed: int = 0
    dtype: str = "float32"
    threads: int = 2

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return typed_config(cls, data, "train")


def load_config(path: str | Path | None) -> tuple[PotentialConfig, TrainConfig]:
    """Read a YAML file with optional top-level sections ``model`` and ``train``."""
    if path is None:
        return PotentialConfig(), TrainConfig()
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping with 'model' and/or 'train'")
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; allowed: ['model', 'train']")
    try:
        model = PotentialConfig.from_dict(data.get("model") or {})
        train = TrainConfig.from_dict(data.get("train") or {})
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return model, train
