"""Training configuration: frozen dataclasses loaded from YAML, unknown keys rejected by name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matdesign.config_utils import load_yaml, typed_config
from matdesign.model import PotentialConfig
from matdesign.training.compression import EXPANSION_MIN_FRACTION, MIN_FRACTION
from matdesign.training.elastic import (
    ElasticTarget,
    parse_elastic_targets,
    targets_to_config,
)
from matdesign.training.lattice_energies import load_lattice_targets
from matdesign.training.mixing_energies import load_mixing_targets


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Loss = w_E·MSE(E/N) + w_F·MSE(F) + w_S·MSE(σ).

    Units inside the loss: eV/atom, eV/Å, eV/Å³.
    """

    energy_weight: float = 30.0
    forces_weight: float = 1.0
    stress_weight: float = 30.0
    stress_config_type_weights: dict[str, float] = field(default_factory=dict)  # {type: w}
    head_weight: float = 1.0  # committee heads' own bootstrapped energy loss, × energy_weight
    late_fraction: float = 0.2  # last part of the budget trains with a higher energy weight
    # first part of the budget fits only the model's terms outside the network (element_pairs,
    # chemical_pairs, embedded_atom) with the network switched off; the network then learns
    # the residual
    pair_first_fraction: float = 0.0
    # learning rate of the pair terms (element_pairs, chemical_pairs; not embedded_atom), × the
    # network's, once the network trains (0 keeps them as the pair-first stage left them; 1
    # trains everything alike)
    pair_lr_factor: float = 1.0
    late_energy_factor: float = 4.0  # energy_weight × this in that late stage (MACE-like)
    batch_size: int = 4
    lr: float = 5e-3
    lr_min_fraction: float = 0.02  # cosine decays to lr * this
    plateau_patience: int = 10  # epochs without improvement before lr × plateau_factor
    plateau_factor: float = 0.5
    weight_decay: float = 1e-6
    max_epochs: int = 1000
    max_time_min: float | None = 30.0  # wall clock; cosine follows max(epoch, time); null: none
    ema_decay: float = 0.99
    grad_clip: float = 10.0
    patience: int = 40  # epochs without validation improvement before stopping
    keep: str = "best"  # checkpoint written: "best" validation score, or "last" epoch (for
    # fine-tunes whose target, e.g. a shear constant, the validation score does not measure)
    valid_fraction: float = 0.1
    seed: int = 0
    dtype: str = "float32"
    threads: int = 2
    cohesive_energies_ev: dict[str, float] = field(default_factory=dict)  # isolated-atom refs
    committee: bool = True  # attach a last-layer Laplace committee to a single-head model
    # cubic elastic constants as a fitting target (matdesign.training.elastic); YAML:
    # {El: {lattice: bcc|fcc, a: Å, C11: GPa, C12: GPa, C44: GPa}}
    elastic_targets: tuple[ElasticTarget, ...] = ()
    elastic_weight: float = 1.0  # w_C on MSE(dσ/dε) [eV²/Å⁶], the stress term's units
    elastic_strain: float = 0.005  # ± strain of the central difference
    # evaluated on every n-th batch with weight n·w_C (same mean pull, 1/n of the cost:
    # the 4·(targets) tiny cells cost about a third of a batch of 8 NbMoTaW frames)
    elastic_every: int = 4
    # compressed bcc/fcc/sc cells at V/V0 = MIN_FRACTION (0.40) ... compression_max_fraction
    # must be under positive pressure (matdesign.training.compression); weight 0: off
    compression_weight: float = 0.0  # w_P on mean max(0, P_min - P)² [eV²/Å⁶]
    compression_max_fraction: float = 0.85
    # lowest V/V0 of that grid; 0.30 reaches the calculator's overlap threshold (nearest
    # neighbours about 1.8 Å), where v21 opened a hole below the default 0.40
    compression_min_fraction: float = MIN_FRACTION
    compression_every: int = 4
    # stretched bcc/fcc/sc cells at V/V0 = 1.25 ... expansion_max_fraction must be under
    # tension, P ≤ -P_min (same module; evaluated on every compression_every-th batch too)
    expansion_weight: float = 0.0  # w_T on mean max(0, P_min + P)² [eV²/Å⁶]; 0: off
    expansion_max_fraction: float = 2.5
    # bcc ground state: fcc and sc cells at 0.85-1.3 V0 at least ordering_margin_ev above bcc
    # at V0 (same module and schedule); for bcc metals only
    ordering_weight: float = 0.0  # w_O on mean max(0, margin - (E - E_bcc))² [eV²]; 0: off
    ordering_margin_ev: float = 0.1
    # reference energies of one-atom bcc/fcc/sc cells (JSON, matdesign.training.
    # lattice_energies; benchmarks/gpaw_lattices.py writes one): E - E_bcc(V0) as a target,
    # evaluated on the compression_every schedule; empty: off
    lattice_energies: str = ""
    lattice_energies_weight: float = 1.0  # w_L on mean max(0, |ΔE error| - tolerance)² [eV²]
    lattice_energies_tolerance_ev: float = 0.02
    # reference mixing energies of multi-element cells (JSON, matdesign.training.
    # mixing_energies; benchmarks/gpaw_alloys.py writes one), evaluated on the
    # compression_every schedule; empty: off
    mixing_energies: str = ""
    mixing_energies_weight: float = 1.0  # w_M on mean max(0, |ΔE_mix error| - tolerance)² [eV²]
    mixing_energies_tolerance_ev: float = 0.003
    # frames of these config types are fitted but left out of the checkpoint's chemical
    # domain (pairs, elements per neighbourhood, shortest contacts, σ_pair): labels from
    # another code added to the data (benchmarks/gpaw_hot_frames.py) widen what the model
    # was fitted to, not the chemistry its own data vouch for
    domain_exclude_config_types: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        targets = ()
        if isinstance(data, dict):  # nested records: parsed apart from the flat keys
            data = dict(data)
            targets = parse_elastic_targets(data.pop("elastic_targets", None))
        cfg = dataclasses.replace(typed_config(cls, data, "train"), elastic_targets=targets)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The settings as the YAML section would write them (checkpoint metadata)."""
        data = dataclasses.asdict(self)
        data["elastic_targets"] = targets_to_config(self.elastic_targets)
        data["domain_exclude_config_types"] = list(self.domain_exclude_config_types)
        return data

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first out-of-range setting."""
        checks = {
            "energy_weight": self.energy_weight >= 0, "forces_weight": self.forces_weight >= 0,
            "stress_weight": self.stress_weight >= 0, "head_weight": self.head_weight >= 0,
            "late_fraction": 0 <= self.late_fraction < 1,
            "late_energy_factor": self.late_energy_factor > 0,
            "pair_first_fraction": 0 <= self.pair_first_fraction < 1,
            # 0 without a pair stage would leave the pair terms at their zero start
            "pair_lr_factor": self.pair_lr_factor > 0 or (
                self.pair_lr_factor == 0 and self.pair_first_fraction > 0),
            "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
            "lr_min_fraction": 0 <= self.lr_min_fraction <= 1,
            "plateau_patience": self.plateau_patience >= 1,
            "plateau_factor": 0 < self.plateau_factor <= 1, "max_epochs": self.max_epochs >= 1,
            "max_time_min": self.max_time_min is None or self.max_time_min > 0,
            "ema_decay": 0 <= self.ema_decay < 1, "patience": self.patience >= 1,
            "valid_fraction": 0 < self.valid_fraction < 1, "threads": self.threads >= 1,
            "dtype": self.dtype in ("float32", "float64"), "keep": self.keep in ("best", "last"),
            "elastic_weight": self.elastic_weight >= 0,
            "elastic_strain": 0 < self.elastic_strain <= 0.05,
            "elastic_every": self.elastic_every >= 1,
            "compression_weight": self.compression_weight >= 0,
            "compression_max_fraction": self.compression_min_fraction
            < self.compression_max_fraction < 1,
            "compression_min_fraction": 0.25 <= self.compression_min_fraction <= MIN_FRACTION,
            "compression_every": self.compression_every >= 1,
            "expansion_weight": self.expansion_weight >= 0,
            "expansion_max_fraction": EXPANSION_MIN_FRACTION < self.expansion_max_fraction < 4,
            "ordering_weight": self.ordering_weight >= 0,
            "ordering_margin_ev": self.ordering_margin_ev >= 0,
            "lattice_energies_weight": self.lattice_energies_weight >= 0,
            "lattice_energies_tolerance_ev": self.lattice_energies_tolerance_ev >= 0,
            "mixing_energies_weight": self.mixing_energies_weight >= 0,
            "mixing_energies_tolerance_ev": self.mixing_energies_tolerance_ev >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"train.{bad[0]} out of range: {getattr(self, bad[0])!r}")
        if self.lattice_energies:
            load_lattice_targets(self.lattice_energies)  # names the file before any training
        if self.mixing_energies:
            load_mixing_targets(self.mixing_energies)


def load_config(path: str | Path | None) -> tuple[PotentialConfig, TrainConfig]:
    """Read a YAML file with optional top-level sections ``model`` and ``train``."""
    if path is None:
        return PotentialConfig(), TrainConfig()
    import yaml

    path = Path(path)
    try:
        data = load_yaml(path) or {}  # names the file; refuses a repeated key
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
