"""Loss terms beyond the data: elastic-constant targets, reference lattice and mixing energies
and the compression, expansion and ordering priors.

Each is evaluated on every ``every``-th batch with ``every × weight`` (the same mean pull at
1/every of the cost), and reports one line of the training log per epoch. All terms offer
the same two calls (:class:`LossTerm`), so nothing here depends on which one it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from matdesign.training.compression import CompressionTerm, OrderingTerm, equilibrium_volumes
from matdesign.training.config import TrainConfig
from matdesign.training.data import Frame
from matdesign.training.elastic import ElasticTerm
from matdesign.training.lattice_energies import LatticeEnergyTerm, load_lattice_targets
from matdesign.training.mixing_energies import MixingEnergyTerm, load_mixing_targets


class LossTerm(Protocol):
    """What the trainer asks of an extra term."""

    def loss(self, model: torch.nn.Module, call: int) -> torch.Tensor:
        """The term's mean square (eV²/Å⁶) on its ``call``-th evaluation."""
        ...

    def report(self, model: torch.nn.Module) -> tuple[dict[str, Any], str]:
        """Log entries and a progress-line fragment for the (averaged) model."""
        ...


@dataclass(frozen=True)
class ExtraTerm:
    """One extra loss term and its schedule."""

    name: str  # "elastic", "compression", "expansion", "ordering", "lattice", "mixing": the log's
    # train_mse_<name>
    term: LossTerm
    weight: float  # w on the term's mean square, (eV/Å³)⁻²
    every: int  # evaluated on every n-th batch with weight n·w

    def due(self, batch_index: int) -> bool:
        return batch_index % self.every == 0

    def loss(self, model: torch.nn.Module, batch_index: int) -> torch.Tensor:
        """The term's loss on batch ``batch_index`` (a due one): its ``batch_index // every``-th
        call, which the compression prior uses to cycle through its shifted grids."""
        return self.term.loss(model, batch_index // self.every)


def build_extra_terms(cfg: TrainConfig, species: Sequence[str], cutoff: float,
                      train: Sequence[Frame]) -> tuple[ExtraTerm, ...]:
    """The terms ``cfg`` switches on (elastic targets or lattice energies given; compression,
    expansion or ordering weight > 0).

    Raises:
        ValueError: a target element outside ``species``, or no reference volume for the
            compression prior (messages name the key).
    """
    terms = []
    if cfg.elastic_targets:
        terms.append(ExtraTerm("elastic", ElasticTerm.build(
            cfg.elastic_targets, species, cutoff, cfg.elastic_strain),
            cfg.elastic_weight, cfg.elastic_every))
    priors = (cfg.compression_weight, cfg.expansion_weight, cfg.ordering_weight)
    need_v0 = max(priors) > 0 or bool(cfg.lattice_energies) or bool(cfg.mixing_energies)
    volumes = equilibrium_volumes(train) if need_v0 else {}  # V0, read once
    if cfg.compression_weight > 0:
        terms.append(ExtraTerm("compression", CompressionTerm.build(
            volumes, species, cutoff, cfg.compression_max_fraction,
            min_fraction=cfg.compression_min_fraction),
            cfg.compression_weight, cfg.compression_every))
    if cfg.expansion_weight > 0:
        terms.append(ExtraTerm("expansion", CompressionTerm.build(
            volumes, species, cutoff, cfg.expansion_max_fraction, expanded=True),
            cfg.expansion_weight, cfg.compression_every))
    if cfg.ordering_weight > 0:
        terms.append(ExtraTerm("ordering", OrderingTerm.build(
            volumes, species, cutoff, cfg.ordering_margin_ev),
            cfg.ordering_weight, cfg.compression_every))
    if cfg.lattice_energies:
        terms.append(ExtraTerm("lattice", LatticeEnergyTerm.build(
            load_lattice_targets(cfg.lattice_energies), volumes, species, cutoff,
            cfg.lattice_energies_tolerance_ev),
            cfg.lattice_energies_weight, cfg.compression_every))
    if cfg.mixing_energies:
        terms.append(ExtraTerm("mixing", MixingEnergyTerm.build(
            load_mixing_targets(cfg.mixing_energies), volumes, species, cutoff,
            cfg.mixing_energies_tolerance_ev),
            cfg.mixing_energies_weight, cfg.compression_every))
    return tuple(terms)


def epoch_report(terms: Sequence[ExtraTerm], model: torch.nn.Module,
                 ) -> tuple[dict[str, Any], str]:
    """The averaged model's log entries and progress-line suffix for the extra terms:
    C_ij − target (GPa), the lowest pressure of the compressed cells and the highest of the
    stretched ones (GPa)."""
    record: dict[str, Any] = {}
    line = ""
    for t in terms:
        entries, text = t.term.report(model)
        record.update(entries)
        line += f" | {text}"
    return record, line
