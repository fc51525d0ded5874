"""Energies of lattices the data never show, taken from a reference calculation.

The NbMoTaW data hold bcc crystals, their surfaces, AIMD and binaries, but no fcc or
simple-cubic cell and nothing stretched far beyond equilibrium. There a network is free, and
the priors of :mod:`matdesign.training.compression` only fix a shape: the expansion prior
removed spurious stretched minima, and the network paid for it by lowering fcc and simple
cubic near V₀ (below bcc without the ordering prior, towards its margin with it; twentieth
session). A shape cannot say *where* an unseen phase lies; a few reference energies can.

This term takes E(lattice, f·V₀) − E(bcc, V₀) per atom from a reference calculation of
one-atom cells (``benchmarks/gpaw_lattices.py``: PBE, as the data) and asks the model for the
same difference at the same fraction of *its* V₀ (read from the training data, as for the
other priors), so that neither code's absolute energies nor its slightly different V₀ enter:

    L = mean over cells of max(0, |ΔE_model − ΔE_ref| − tolerance)²        (eV²)

The tolerance (20 meV/atom by default) leaves alone what two PBE codes with different
pseudopotentials do not agree on anyway.

The targets file is JSON: ``{"source": "...", "points": [{"element": "W", "lattice": "fcc",
"volume_fraction": 1.0, "energy_above_bcc_ev": 0.47}, ...]}`` with lattice one of bcc, fcc, sc.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ase.data import atomic_numbers

from matdesign.training.compression import LATTICES, BccReferencedCells


@dataclass(frozen=True)
class LatticeEnergyTarget:
    """One reference energy of a one-atom cell."""

    element: str
    lattice: str  # bcc, fcc or sc
    volume_fraction: float  # V/V₀, V₀ the reference method's own bcc equilibrium volume
    energy_above_bcc_ev: float  # E(lattice, f·V₀) − E(bcc, V₀), eV/atom


def read_points(path: Path, key: str) -> list[dict[str, Any]]:
    """The non-empty ``points`` list of a JSON targets file; ``key`` (the config key) opens
    every error message.

    Raises:
        ValueError: unreadable file, not JSON, no ``points`` list, or an empty one.
    """
    try:
        points = json.loads(path.read_text())["points"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc!r} (expected JSON with a "
                         "'points' list)") from exc
    if not isinstance(points, list) or not points:
        raise ValueError(f"{key}: {path} has no points")
    return points


def load_lattice_targets(path: str | Path) -> tuple[LatticeEnergyTarget, ...]:
    """Read and check a targets file.

    Raises:
        ValueError: unreadable file, no points, or a bad record (the message names the file
            and the record's index).
    """
    path = Path(path)
    targets = []
    for k, p in enumerate(read_points(path, "train.lattice_energies")):
        try:
            target = LatticeEnergyTarget(str(p["element"]), str(p["lattice"]),
                                         float(p["volume_fraction"]),
                                         float(p["energy_above_bcc_ev"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"train.lattice_energies: {path}, point {k}: {exc!r}") from exc
        problem = (f"unknown element {target.element!r}"
                   if target.element not in atomic_numbers else
                   f"lattice {target.lattice!r} not in {list(LATTICES)}"
                   if target.lattice not in LATTICES else
                   f"volume_fraction {target.volume_fraction} outside (0.3, 4)"
                   if not 0.3 < target.volume_fraction < 4 else
                   "energy_above_bcc_ev is not finite"
                   if not math.isfinite(target.energy_above_bcc_ev) else "")
        if problem:
            raise ValueError(f"train.lattice_energies: {path}, point {k}: {problem}")
        targets.append(target)
    return tuple(targets)


@dataclass(frozen=True)
class LatticeEnergyTerm:
    """Reference E − E_bcc(V₀) of one-atom cells as a fitting target (module docstring)."""

    cells: BccReferencedCells
    targets_ev: tuple[float, ...]  # per cell, eV/atom
    tolerance_ev: float

    @classmethod
    def build(cls, targets: Sequence[LatticeEnergyTarget], volumes: dict[str, float],
              species: Sequence[str], cutoff: float, tolerance_ev: float) -> LatticeEnergyTerm:
        """Targets of elements outside ``species`` or without a reference volume are skipped
        with a warning.

        Raises:
            ValueError: no target left.
        """
        kept = [t for t in targets if t.element in species and t.element in volumes]
        skipped = sorted({t.element for t in targets} - {t.element for t in kept})
        if skipped:
            warnings.warn(f"train.lattice_energies: {skipped} are not in the model's species "
                          "or have no periodic single-element frame (for V0); skipped",
                          stacklevel=2)
        if not kept:
            raise ValueError("train.lattice_energies: no target element has a periodic "
                             "single-element frame with stress in the training data (for V0)")
        cells = [(t.element, t.lattice, t.volume_fraction) for t in kept]
        return cls(BccReferencedCells.build(cells, volumes, species, cutoff),
                   tuple(t.energy_above_bcc_ev for t in kept), float(tolerance_ev))

    def errors(self, model: torch.nn.Module, *, training: bool) -> torch.Tensor:
        """ΔE_model − ΔE_ref of every cell, eV/atom."""
        diff = self.cells.energies_above_bcc(model, training=training)
        return diff - torch.tensor(self.targets_ev, dtype=diff.dtype, device=diff.device)

    def loss(self, model: torch.nn.Module, call: int = 0) -> torch.Tensor:
        """Mean over the cells of max(0, |error| − tolerance)², eV²."""
        err = self.errors(model, training=True)
        return torch.relu(err.abs() - self.tolerance_ev).pow(2).mean()

    def report(self, model: torch.nn.Module) -> tuple[dict[str, Any], str]:
        """The log's ``lattice_worst_error_ev`` (cell, error) and ``lattice_mae_ev``, and the
        progress-line suffix."""
        err = self.errors(model, training=False).detach().double().cpu()
        k = int(torch.argmax(err.abs()))
        worst = round(float(err[k]), 3)
        mae = round(float(err.abs().mean()), 4)
        cell = self.cells.labels[k]
        return ({"lattice_worst_error_ev": {"cell": cell, "error": worst},
                 "lattice_mae_ev": mae},
                f"ΔE_ref MAE {mae:.3f}, worst {worst:+.2f} eV ({cell})")
