"""A compressed lattice pushes back: a data-free prior on the potential's short range.

The training data of a metal hold nearest-neighbour distances down to roughly 0.85-0.9 of
the equilibrium one (hot AIMD, small-strain cells). Below that a network has no data, and a
fit can open a spurious deep minimum: a retrain of the NbMoTaW model put simple-cubic W at
a = 2.0 Å 2.3 eV/atom *below* bcc W (fourteenth session), while the ZBL core repulsion only
starts below 0.6 × (sum of covalent radii), 1.94 Å for W-W.

Physics says more than "no data": any lattice squeezed well below the element's equilibrium
atomic volume V₀ is under positive pressure, P = −tr(σ)/3 > 0 (ASE sign: compressive stress
is negative). This term asks exactly that of one-atom bcc, fcc and simple-cubic cells of every
element at volumes f·V₀, f = 0.40 … ``max_fraction`` in steps of 0.05, with a hinge:

    L = mean over cells of max(0, P_min − P)²        (eV²/Å⁶, the stress term's units)

so it is zero wherever the model already behaves and never pulls on the data. The grid is
built four times, shifted by a quarter step each, and successive calls cycle through the four
(so the network cannot hide a dip between grid points at no extra cost per call). With
positive pressure at every volume, E(V) of each lattice rises monotonically under compression,
so no compressed lattice can fall below its own near-equilibrium energy.

The same holds on the other side (``expansion_weight``, twentieth session): a lattice
stretched well above V₀ is under tension, P < 0, at f = 1.25 … ``expansion_max_fraction``
(2.5 by default) in steps of 0.1,

    L = mean over cells of max(0, P_min + P)²

so E(V) of each lattice rises monotonically on expansion and no stretched lattice can hold a
spurious minimum. The shipped v15 model had one: simple-cubic W at a = 3.10 Å (1.84 V₀, a
nearest-neighbour distance 12 % *longer* than bcc W's) only 0.36 eV/atom above bcc, and
simple-cubic Nb at 1.63 V₀ 0.14 eV/atom above bcc, while a lower coordination shortens bonds
in every metal. The simple-cubic, bcc and fcc equilibrium volumes of these metals lie within
about ±10 % of bcc's, so 1.25 V₀ is past all of them; under the universal binding-energy
relation a bcc metal stretched to 2.5 V₀ is still under tens of GPa of tension.

V₀ per element is read from the training data: the atomic volume of the element's lowest
energy-per-atom periodic single-element frame. Elements without such a frame are skipped.
The prior holds for close-packed and bcc metals; for an element whose ground state is open
(diamond Si, Ge) a high-pressure phase can be denser than f·V₀ for f near 0.85, so lower
``max_fraction`` there (or leave the term off: it is off by default).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
MIN_FRACTION = 0.40  # smallest V/V₀ of the grid (sc: a ≈ 1.9 Å, where ZBL takes over)
STEP = 0.05  # spacing of the grid in V/V₀
SHIFTS = 4  # grids shifted by STEP/SHIFTS, used in turn
MIN_PRESSURE_GPA = 1.0  # P_min of the hinge (compressed cells: P ≥ P_min; stretched: P ≤ −P_min)
EXPANSION_MIN_FRACTION = 1.25  # smallest V/V₀ of the stretched grid
EXPANSION_STEP = 0.1  # spacing of the stretched grid in V/V₀


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


def volume_fractions(max_fraction: float, shift: int = 0, *, expanded: bool = False,
                     min_fraction: float = MIN_FRACTION) -> np.ndarray:
    """Grid number ``shift`` of V/V₀: min_fraction + (k + shift/SHIFTS)·STEP ≤ max_fraction, or
    for the stretched cells EXPANSION_MIN_FRACTION + (k + shift/SHIFTS)·EXPANSION_STEP."""
    first, step = (EXPANSION_MIN_FRACTION, EXPANSION_STEP) if expanded else (min_fraction, STEP)
    return np.arange(first + shift * step / SHIFTS, max_fraction + 1e-9, step)


def lattice_cell(element: str, lattice: str, volume: float) -> Atoms:
    """A one-atom cell of ``lattice`` with ``volume`` Å³ (the ASE primitive cell, rescaled)."""
    atoms = bulk(element, lattice, a=3.0)
    atoms.set_cell(atoms.cell.array * (volume / atoms.get_volume()) ** (1 / 3),
                   scale_atoms=True)
    return atoms


def energies_above_bcc(calc: Any, element: str, a_bcc: float,
                       fractions: np.ndarray) -> dict[str, np.ndarray]:
    """E(V) scan of the prior's lattices with an ASE calculator: per lattice, the energy
    (eV/atom) of its one-atom cell at each fraction of V₀ = a_bcc³/2, minus bcc at a_bcc (Å)."""
    reference = bulk(element, "bcc", a=a_bcc)
    reference.calc = calc
    e0 = reference.get_potential_energy()
    out = {}
    for lattice in LATTICES:
        energies = []
        for f in fractions:
            atoms = lattice_cell(element, lattice, f * a_bcc**3 / 2)
            atoms.calc = calc
            energies.append(atoms.get_potential_energy() - e0)
        out[lattice] = np.array(energies)
    return out


@dataclass(frozen=True)
class CompressionTerm:
    """The compressed (or, with ``expanded``, the stretched) cells of every element, batched
    once per shifted grid."""

    labels: tuple[tuple[str, ...], ...]  # per grid: "W sc 0.400" per cell
    graphs: tuple[Graph, ...]  # per grid, float64, CPU
    expanded: bool = False  # stretched cells: the hinge asks P ≤ −P_min instead of P ≥ P_min

    @classmethod
    def build(cls, volumes: dict[str, float], species: Sequence[str], cutoff: float,
              max_fraction: float, *, expanded: bool = False,
              min_fraction: float = MIN_FRACTION) -> CompressionTerm:
        """Raises ``ValueError`` when ``max_fraction`` is outside (min_fraction, 1) (stretched
        cells: outside (1.25, 4)) or no element has a reference volume."""
        key = "expansion" if expanded else "compression"
        low, high = (EXPANSION_MIN_FRACTION, 4.0) if expanded else (min_fraction, 1.0)
        if not low < max_fraction < high:
            raise ValueError(f"train.{key}_max_fraction must be in ({low}, {high:g}), "
                             f"got {max_fraction}")
        if not volumes:
            raise ValueError(f"train.{key}_weight > 0 needs periodic single-element "
                             "frames with stress in the training data (for V0); none found")
        missing = [s for s in species if s not in volumes]
        if missing:
            warnings.warn(f"train.{key}_weight: no periodic single-element frame of "
                          f"{missing} in the training data; the prior skips them", stacklevel=2)
        index = {atomic_numbers[s]: k for k, s in enumerate(species)}
        all_labels, all_graphs = [], []
        for shift in range(SHIFTS):
            labels, graphs = [], []
            for el, v0 in volumes.items():
                for lattice in LATTICES:
                    for f in volume_fractions(max_fraction, shift, expanded=expanded,
                                              min_fraction=min_fraction):
                        labels.append(f"{el} {lattice} {f:.3f}")
                        graphs.append(atoms_to_graph(lattice_cell(el, lattice, f * v0),
                                                     cutoff, index))
            all_labels.append(tuple(labels))
            all_graphs.append(batch_graphs(graphs))
        return cls(tuple(all_labels), tuple(all_graphs), expanded)

    @property
    def sign(self) -> float:
        """+1 for compressed cells (P must exceed P_min), −1 for stretched ones (−P must)."""
        return -1.0 if self.expanded else 1.0

    def pressures(self, model: torch.nn.Module, grid: int = 0, *,
                  training: bool) -> torch.Tensor:
        """P = −tr(σ)/3 of every cell of grid number ``grid``, eV/Å³."""
        p = next(model.parameters())
        graph = self.graphs[grid].to(p.device, p.dtype)
        out = energy_forces_stress(model, graph, stress=True, training=training)
        return -out.stress.diagonal(dim1=1, dim2=2).sum(-1) / 3

    def loss(self, model: torch.nn.Module, call: int = 0) -> torch.Tensor:
        """Mean over the cells of grid ``call mod SHIFTS`` of max(0, P_min − P)² (stretched
        cells: max(0, P_min + P)²), eV²/Å⁶."""
        pressure = self.pressures(model, call % len(self.graphs), training=True)
        return torch.relu(MIN_PRESSURE_GPA * GPa - self.sign * pressure).pow(2).mean()

    def weakest(self, model: torch.nn.Module) -> tuple[str, float]:
        """The cell (of every grid) farthest on the wrong side, and its pressure (GPa): the
        lowest pressure among compressed cells, the highest among stretched ones."""
        weakest, score = ("", math.inf), math.inf  # score: sign·P, the smaller the worse
        for grid, labels in enumerate(self.labels):
            p = self.pressures(model, grid, training=False).detach().double().cpu() / GPa
            k = int(torch.argmin(self.sign * p))
            if self.sign * float(p[k]) < score:
                score = self.sign * float(p[k])
                weakest = (labels[k], round(float(p[k]), 2))
        return weakest

    def report(self, model: torch.nn.Module) -> tuple[dict[str, Any], str]:
        """The training log's entry (``compression_lowest_pressure_gpa``, or for stretched
        cells ``expansion_highest_pressure_gpa``) and progress-line suffix."""
        cell, p = self.weakest(model)
        if self.expanded:
            return ({"expansion_highest_pressure_gpa": {"cell": cell, "pressure": p}},
                    f"P max {p:.1f} GPa ({cell})")
        return ({"compression_lowest_pressure_gpa": {"cell": cell, "pressure": p}},
                f"P min {p:.1f} GPa ({cell})")


@dataclass(frozen=True)
class BccReferencedCells:
    """One-atom cells of each element's lattices at fractions of V₀, batched with one bcc cell
    at V₀ per element, so that a single model call gives every cell's E − E_bcc(V₀)."""

    labels: tuple[str, ...]  # "Mo sc 1.050" per cell
    graph: Graph  # the bcc references first (one per element), then the cells; float64, CPU
    reference: tuple[int, ...]  # per cell: index of its element's bcc reference

    @classmethod
    def build(cls, cells: Sequence[tuple[str, str, float]], volumes: dict[str, float],
              species: Sequence[str], cutoff: float) -> BccReferencedCells:
        """``cells``: (element, lattice, V/V₀) each; every element must be in ``volumes``."""
        index = {atomic_numbers[s]: k for k, s in enumerate(species)}
        elements = list(dict.fromkeys(el for el, _, _ in cells))
        graphs = [atoms_to_graph(lattice_cell(el, "bcc", volumes[el]), cutoff, index)
                  for el in elements]
        labels, reference = [], []
        for el, lattice, f in cells:
            labels.append(f"{el} {lattice} {f:.3f}")
            reference.append(elements.index(el))
            graphs.append(atoms_to_graph(lattice_cell(el, lattice, f * volumes[el]),
                                         cutoff, index))
        return cls(tuple(labels), batch_graphs(graphs), tuple(reference))

    def energies_above_bcc(self, model: torch.nn.Module, *, training: bool) -> torch.Tensor:
        """E − E_bcc(V₀) of every cell, eV/atom (one-atom cells)."""
        p = next(model.parameters())
        out = energy_forces_stress(model, self.graph.to(p.device, p.dtype), stress=False,
                                   training=training)
        n_ref = out.energy.shape[0] - len(self.labels)
        ref = torch.tensor(self.reference, device=out.energy.device)
        return out.energy[n_ref:] - out.energy[:n_ref][ref]


#: V/V₀ of the ordering prior's fcc and simple-cubic cells: where their minima lie
ORDERING_FRACTIONS = tuple(np.round(np.arange(0.85, 1.301, 0.05), 3))


@dataclass(frozen=True)
class OrderingTerm:
    """bcc is the ground state: fcc and simple-cubic one-atom cells of each element, at
    :data:`ORDERING_FRACTIONS` of V₀, must lie at least ``margin`` (eV/atom) above bcc at V₀.

    A data-free prior for metals whose ground state is bcc (Nb, Mo, Ta, W; PBE puts fcc
    0.2-0.5 eV/atom higher). Without it, a stage that only asked stretched lattices to be under
    tension lowered them near V₀ instead, simple-cubic Mo to 0.93 eV/atom *below* bcc
    (twentieth session). Loss: mean over cells of max(0, margin − (E − E_bcc))², eV².
    """

    cells: BccReferencedCells
    margin: float  # eV/atom

    @classmethod
    def build(cls, volumes: dict[str, float], species: Sequence[str], cutoff: float,
              margin: float) -> OrderingTerm:
        """Raises ``ValueError`` when no element has a reference volume or margin < 0."""
        if not volumes:
            raise ValueError("train.ordering_weight > 0 needs periodic single-element "
                             "frames with stress in the training data (for V0); none found")
        if margin < 0:
            raise ValueError(f"train.ordering_margin_ev must be >= 0, got {margin}")
        cells = [(el, lattice, f) for el in volumes for lattice in ("fcc", "sc")
                 for f in ORDERING_FRACTIONS]
        return cls(BccReferencedCells.build(cells, volumes, species, cutoff), float(margin))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.cells.labels

    def gaps(self, model: torch.nn.Module, *, training: bool) -> torch.Tensor:
        """E − E_bcc(V₀) of every cell, eV/atom."""
        return self.cells.energies_above_bcc(model, training=training)

    def loss(self, model: torch.nn.Module, call: int = 0) -> torch.Tensor:
        """Mean over the cells of max(0, margin − (E − E_bcc))², eV²."""
        return torch.relu(self.margin - self.gaps(model, training=True)).pow(2).mean()

    def report(self, model: torch.nn.Module) -> tuple[dict[str, Any], str]:
        """The log's ``ordering_lowest_gap_ev`` (cell and E − E_bcc) and progress suffix."""
        gaps = self.gaps(model, training=False).detach().double().cpu()
        k = int(torch.argmin(gaps))
        gap = round(float(gaps[k]), 3)
        return ({"ordering_lowest_gap_ev": {"cell": self.labels[k], "gap": gap}},
                f"ΔE min {gap:+.2f} eV ({self.labels[k]})")
