"""Mixing energies of multi-element cells the data never show, from a reference calculation.

The NbMoTaW data hold elements and binaries only, while design campaigns search ternaries
and quaternaries, and there the shipped models' held-out error is a systematic offset of the
size of the mixing energies themselves. This term takes, for a few ternary and quaternary
cells labelled with the data's functional (``benchmarks/gpaw_alloys.py``: GPAW PBE),

    ΔE_mix = E(cell)/N − Σ_i x_i E_i(bcc, V₀,i)        (eV/atom)

against each element's one-atom bcc cell at the reference code's own V₀, the cell at
``volume_fraction`` × Vegard's volume Σ_i x_i V₀,i, and asks the model for the same difference
with the same cell shape and fractional positions at the same fraction of *its* Vegard
volume (V₀ read from the training data, as for the other priors). Neither code's absolute
energies nor its V₀ enter, only what two PBE codes should agree on:

    L = mean over cells of max(0, |ΔE_model − ΔE_ref| − tolerance)²        (eV²)

The targets file is JSON: ``{"source": "...", "points": [{"name": "NbMoTaW_q0", "symbols":
["Nb", ...], "cell_shape": [[...], [...], [...]] (unit volume), "scaled_positions": [[...],
...], "volume_fraction": 1.0, "mixing_energy_ev": -0.1}, ...]}``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers

from matdesign.forces import energy_forces_stress
from matdesign.graph import Graph, atoms_to_graph, batch_graphs
from matdesign.training.compression import lattice_cell
from matdesign.training.lattice_energies import read_points

KEY = "train.mixing_energies"


@dataclass(frozen=True)
class MixingEnergyTarget:
    """One reference mixing energy of a periodic cell."""

    name: str
    symbols: tuple[str, ...]  # (N,)
    cell_shape: tuple[tuple[float, ...], ...]  # (3, 3) rows are lattice vectors, unit volume
    scaled_positions: tuple[tuple[float, ...], ...]  # (N, 3) fractional
    volume_fraction: float  # V / Σ_i V₀,i of the reference code
    mixing_energy_ev: float  # eV/atom, against the elements' bcc at V₀

    def cell(self, volumes: dict[str, float]) -> Atoms:
        """The cell at ``volume_fraction`` × Vegard's volume of ``volumes`` (Å³/atom)."""
        total = self.volume_fraction * sum(volumes[s] for s in self.symbols)
        shape = np.array(self.cell_shape)
        return Atoms(symbols=list(self.symbols), scaled_positions=self.scaled_positions,
                     cell=shape * (total / abs(np.linalg.det(shape))) ** (1 / 3), pbc=True)


def _parse(p: dict[str, Any]) -> MixingEnergyTarget:
    return MixingEnergyTarget(
        str(p["name"]), tuple(str(s) for s in p["symbols"]),
        tuple(tuple(float(x) for x in row) for row in p["cell_shape"]),
        tuple(tuple(float(x) for x in row) for row in p["scaled_positions"]),
        float(p["volume_fraction"]), float(p["mixing_energy_ev"]))


def _problem(t: MixingEnergyTarget) -> str:
    unknown = sorted(set(t.symbols) - set(atomic_numbers))
    shape = np.array(t.cell_shape)
    if unknown:
        return f"unknown element(s) {unknown}"
    if shape.shape != (3, 3) or not np.all(np.isfinite(shape)) or abs(np.linalg.det(shape)) < 1e-6:
        return "cell_shape is not a finite, non-singular 3x3 matrix"
    if np.array(t.scaled_positions).shape != (len(t.symbols), 3):
        return f"scaled_positions is not {len(t.symbols)} x 3 (one row per symbol)"
    if not 0.5 < t.volume_fraction < 2:
        return f"volume_fraction {t.volume_fraction} outside (0.5, 2)"
    if not math.isfinite(t.mixing_energy_ev):
        return "mixing_energy_ev is not finite"
    return ""


def load_mixing_targets(path: str | Path) -> tuple[MixingEnergyTarget, ...]:
    """Read and check a targets file.

    Raises:
        ValueError: unreadable file, no points, or a bad record (the message names the file
            and the record's index).
    """
    path = Path(path)
    targets = []
    for k, p in enumerate(read_points(path, KEY)):
        try:
            target = _parse(p)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{KEY}: {path}, point {k}: {exc!r}") from exc
        problem = _problem(target)
        if problem:
            raise ValueError(f"{KEY}: {path}, point {k} ({target.name}): {problem}")
        targets.append(target)
    return tuple(targets)


@dataclass(frozen=True)
class MixingEnergyTerm:
    """Reference mixing energies of multi-element cells as a fitting target (module
    docstring)."""

    labels: tuple[str, ...]  # target names
    graph: Graph  # one bcc cell per element at V₀ first, then the target cells; float64, CPU
    fractions: torch.Tensor  # (cells, elements) x_i of each cell over the reference elements
    n_atoms: torch.Tensor  # (cells,)
    targets_ev: torch.Tensor  # (cells,) eV/atom
    tolerance_ev: float

    @classmethod
    def build(cls, targets: Sequence[MixingEnergyTarget], volumes: dict[str, float],
              species: Sequence[str], cutoff: float, tolerance_ev: float) -> MixingEnergyTerm:
        """Targets with an element outside ``species`` or without a reference volume are
        skipped with a warning.

        Raises:
            ValueError: no target left.
        """
        usable = set(species) & set(volumes)
        kept = [t for t in targets if set(t.symbols) <= usable]
        if len(kept) < len(targets):
            missing = sorted({s for t in targets for s in t.symbols} - usable)
            warnings.warn(f"{KEY}: {len(targets) - len(kept)} target(s) hold {missing}, not "
                          "in the model's species or without a periodic single-element frame "
                          "(for V0); skipped", stacklevel=2)
        if not kept:
            raise ValueError(f"{KEY}: no target has all its elements in the model's species "
                             "with a periodic single-element frame in the training data (V0)")
        index = {atomic_numbers[s]: k for k, s in enumerate(species)}
        elements = sorted({s for t in kept for s in t.symbols}, key=list(species).index)
        graphs = [atoms_to_graph(lattice_cell(el, "bcc", volumes[el]), cutoff, index)
                  for el in elements]
        graphs += [atoms_to_graph(t.cell(volumes), cutoff, index) for t in kept]
        fractions = torch.tensor([[t.symbols.count(el) / len(t.symbols) for el in elements]
                                  for t in kept], dtype=torch.float64)
        return cls(tuple(t.name for t in kept), batch_graphs(graphs), fractions,
                   torch.tensor([len(t.symbols) for t in kept], dtype=torch.float64),
                   torch.tensor([t.mixing_energy_ev for t in kept], dtype=torch.float64),
                   float(tolerance_ev))

    def mixing_energies(self, model: torch.nn.Module, *, training: bool) -> torch.Tensor:
        """ΔE_mix of every cell by the model, eV/atom."""
        p = next(model.parameters())
        energy = energy_forces_stress(model, self.graph.to(p.device, p.dtype), stress=False,
                                      training=training).energy
        n_ref = self.fractions.shape[1]
        x = self.fractions.to(energy.device, energy.dtype)
        return energy[n_ref:] / self.n_atoms.to(x) - x @ energy[:n_ref]

    def errors(self, model: torch.nn.Module, *, training: bool) -> torch.Tensor:
        """ΔE_model − ΔE_ref of every cell, eV/atom."""
        mix = self.mixing_energies(model, training=training)
        return mix - self.targets_ev.to(mix)

    def loss(self, model: torch.nn.Module, call: int = 0) -> torch.Tensor:
        """Mean over the cells of max(0, |error| − tolerance)², eV²."""
        return torch.relu(self.errors(model, training=True).abs() - self.tolerance_ev
                          ).pow(2).mean()

    def report(self, model: torch.nn.Module) -> tuple[dict[str, Any], str]:
        """The log's ``mixing_worst_error_ev`` (cell, error) and ``mixing_mae_ev``, and the
        progress-line suffix."""
        err = self.errors(model, training=False).detach().double().cpu()
        k = int(torch.argmax(err.abs()))
        worst = round(float(err[k]), 4)
        mae = round(float(err.abs().mean()), 4)
        return ({"mixing_worst_error_ev": {"cell": self.labels[k], "error": worst},
                 "mixing_mae_ev": mae},
                f"ΔE_mix MAE {1e3 * mae:.1f}, worst {1e3 * worst:+.1f} meV ({self.labels[k]})")
