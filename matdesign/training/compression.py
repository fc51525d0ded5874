"""A compressed lattice pushes back: a data-free prior on the potential's short range.

The training data of a metal hold nearest-neighbour distances down to roughly 0.85-0.9 of
the equilibrium one (hot AIMD, small-strain cells). Below that a network has no data, and a
fit can open a spurious deep minimum: a retrain of the NbMoTaW model put simple-cubic W at
a = 2.0 Å 2.3 eV/atom *below* bcc W (fourteenth session), while the ZBL core repulsion only
starts below 0.6 × (sum of covalent radii), 1.94 Å for W-W.

Physics says more than "no data": any lattice squeezed well below the element's equilibrium
atomic volume V₀ is under positive pressure, P = −tr(σ)/3 > 0 (ASE sign: compressive stress
is negative). This term asks exactly that of one-atom bcc, fcc and simple-cubic cells of every
element at volumes f·V₀, f = 0.40 … ``max_fraction``, with a hinge:

    L = mean over cells of max(0, P_min − P)²        (eV²/Å⁶, the stress term's units)

so it is zero wherever the model already behaves and never pulls on the data. With positive
pressure at every grid volume, E(V) of each lattice rises monotonically under compression, so
no compressed lattice can fall below its own near-equilibrium energy.

V₀ per element is read from the training data: the atomic volume of the element's lowest
energy-per-atom periodic single-element frame. Elements without such a frame are skipped.
The prior holds for close-packed and bcc metals; for an element whose ground state is open
(diamond Si, Ge) a high-pressure phase can be denser than f·V₀ for f near 0.85, so lower
``max_fraction`` there (or leave the term off: it is off by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers
from ase.units import GPa

from matdesign.forces import energy_forces_stress
from matdesign.graph import Graph, atoms_to_graph, batch_graphs
from matdesign.training.data import Frame

LATTICES = ("bcc", "fcc", "sc")
MIN_FRACTION = 0.40  # smallest V/V₀ of the grid (W sc: a = 1.85 Å)
POINTS = 6  # grid volumes per lattice and element
MIN_PRESSURE_GPA = 1.0  # P_min of the hinge


def equilibrium_volumes(frames: Sequence[Frame]) -> dict[str, float]:
    """Atomic volume (Å³/atom) of each element's lowest energy-per-atom periodic elemental
    frame."""
    best: dict[str, tuple[float, float]] = {}
    for f in frames:
        if len(set(f.symbols)) != 1 or f.stress is None:  # stress: a 3D-periodic cell
            continue
        n = len(f.symbols)
        volume = abs(float(torch.linalg.det(f.graph.cell[0].double())))
        e = f.energy / n
        el = f.symbols[0]
        if el not in best or e < best[el][0]:
            best[el] = (e, volume / n)
    return {el: v for el, (_, v) in sorted(best.items())}


def volume_fractions(max_fraction: float) -> np.ndarray:
    """The grid of V/V₀ from :data:`MIN_FRACTION` to ``max_fraction``."""
    return np.linspace(MIN_FRACTION, max_fraction, POINTS)


def lattice_cell(element: str, lattice: str, volume: float) -> Atoms:
    """A one-atom cell of ``lattice`` with ``volume`` Å³ (the ASE primitive cell, rescaled)."""
    atoms = bulk(element, lattice, a=3.0)
    atoms.set_cell(atoms.cell.array * (volume / atoms.get_volume()) ** (1 / 3),
                   scale_atoms=True)
    return atoms


@dataclass(frozen=True)
class CompressionTerm:
    """The compressed cells of every element, batched once."""

    labels: tuple[str, ...]  # "W sc 0.40" per cell
    graph: Graph  # float64, CPU

    @classmethod
    def build(cls, volumes: dict[str, float], species: Sequence[str], cutoff: float,
              max_fraction: float) -> CompressionTerm:
        """Raises ``ValueError`` when ``max_fraction`` is outside (0.4, 1) or no element has
        a reference volume."""
        if not MIN_FRACTION < max_fraction < 1:
            raise ValueError(f"train.compression_max_fraction must be in ({MIN_FRACTION}, 1), "
                             f"got {max_fraction}")
        if not volumes:
            raise ValueError("train.compression_weight > 0 needs periodic single-element "
                             "frames with stress in the training data (for V0); none found")
        index = {atomic_numbers[s]: k for k, s in enumerate(species)}
        labels, graphs = [], []
        for el, v0 in volumes.items():
            for lattice in LATTICES:
                for f in volume_fractions(max_fraction):
                    labels.append(f"{el} {lattice} {f:.2f}")
                    graphs.append(atoms_to_graph(lattice_cell(el, lattice, f * v0), cutoff,
                                                 index))
        return cls(tuple(labels), batch_graphs(graphs))

    def pressures(self, model: torch.nn.Module, *, training: bool) -> torch.Tensor:
        """P = −tr(σ)/3 of every cell, eV/Å³."""
        p = next(model.parameters())
        out = energy_forces_stress(model, self.graph.to(p.device, p.dtype), stress=True,
                                   training=training)
        return -out.stress.diagonal(dim1=1, dim2=2).sum(-1) / 3

    def loss(self, model: torch.nn.Module) -> torch.Tensor:
        """Mean over cells of max(0, P_min − P)², eV²/Å⁶."""
        return torch.relu(MIN_PRESSURE_GPA * GPa - self.pressures(model, training=True)
                          ).pow(2).mean()

    def lowest_pressure(self, model: torch.nn.Module) -> tuple[str, float]:
        """The cell with the lowest pressure and that pressure, GPa (for the training log)."""
        p = self.pressures(model, training=False).detach().double().cpu() / GPa
        k = int(torch.argmin(p))
        return self.labels[k], round(float(p[k]), 2)
