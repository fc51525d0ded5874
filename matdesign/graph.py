"""Atomic graphs: neighbour lists and the typed ``Graph`` batch the model consumes.

Conventions (see docs/CONVENTIONS.md): cell rows are lattice vectors; an edge (i, j, S)
has vector r_ij = r_j - r_i + S @ cell and carries a message from j (sender) to i (receiver).
Edge lists come in *mirrored* order where they can (:func:`mirror_order`): with m edges, edge
m/2 + k is the reverse (j, i, −S) of edge k, so a function of the edge length alone (the
radial networks) needs evaluating on the first half only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from ase import Atoms

from matdesign.errors import UnknownElementError
from matdesign.structure_io import pair_thresholds, raise_if_close


@dataclass(frozen=True)
class Graph:
    """A batch of one or more structures as a single disconnected graph.

    Fields are tensors; ``n`` atoms, ``m`` edges, ``b`` structures.
    """

    positions: torch.Tensor  # (n, 3) float, Å, Cartesian
    species: torch.Tensor  # (n,) int64, index into the model's species list
    edge_index: torch.Tensor  # (2, m) int64, rows (receiver i, sender j)
    cell_shifts: torch.Tensor  # (m, 3) float, integer lattice translations S of sender j
    cell: torch.Tensor  # (b, 3, 3) float, Å, rows are lattice vectors (zeros if non-periodic)
    pbc: torch.Tensor  # (b, 3) bool, periodic directions
    batch: torch.Tensor  # (n,) int64, structure index of every atom
    n_atoms: torch.Tensor  # (b,) int64, atoms per structure
    mirrored: bool = False  # edge m/2 + k is the reverse of edge k (checked where it is set)

    @property
    def num_structures(self) -> int:
        return int(self.cell.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Graph:
        """Move to ``device``; float fields take ``dtype``, integer fields stay int64."""
        return Graph(
            positions=self.positions.to(device=device, dtype=dtype),
            species=self.species.to(device),
            edge_index=self.edge_index.to(device),
            cell_shifts=self.cell_shifts.to(device=device, dtype=dtype),
            cell=self.cell.to(device=device, dtype=dtype),
            pbc=self.pbc.to(device),
            batch=self.batch.to(device),
            n_atoms=self.n_atoms.to(device),
            mirrored=self.mirrored,
        )


def edge_vectors(graph: Graph, positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """r_ij = r_j - r_i + S_ij @ cell_b, shape (m, 3), Å."""
    receiver, sender = graph.edge_index
    if cell.shape[0] == 1:  # one structure: one matrix product, no per-edge copy of the cell
        shift = graph.cell_shifts @ cell[0]
    else:
        shift = torch.einsum("mk,mkl->ml", graph.cell_shifts, cell[graph.batch[receiver]])
    return positions.index_select(0, sender) - positions.index_select(0, receiver) + shift


def neighbour_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs closer than ``cutoff`` (Å), including an atom's own periodic images.

    Uses vesin when the structure is fully periodic or fully open; ASE's neighbour list for
    mixed boundary conditions (vesin treats periodicity as all-or-nothing).

    Returns:
        ``(i, j, S)``: receiver and sender indices (int64, shape (m,)) and integer cell shifts
        (int64, shape (m, 3)) with r_ij = r_j - r_i + S @ cell.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    positions = np.asarray(atoms.positions, dtype=np.float64)
    if pbc.all() or not pbc.any():
        from vesin import NeighborList

        periodic = bool(pbc.all())
        box = np.asarray(atoms.cell.array, dtype=np.float64) if periodic else np.zeros((3, 3))
        i, j, s = NeighborList(cutoff=cutoff, full_list=True).compute(
            points=positions, box=box, periodic=periodic, quantities="ijS"
        )
    else:
        from ase.neighborlist import neighbor_list as ase_neighbor_list

        i, j, s = ase_neighbor_list("ijS", atoms, cutoff)
    # vesin returns uint64 indices and int32 shifts; torch indexing needs int64.
    i, j, s = i.astype(np.int64), j.astype(np.int64), s.astype(np.int64)
    order = mirror_order(i, j, s)
    if order is None:  # pragma: no cover - a full list always holds every reverse
        return i, j, s
    return i.take(order), j.take(order), s.take(order, axis=0)


def mirror_order(i: np.ndarray, j: np.ndarray, s: np.ndarray) -> np.ndarray | None:
    """A permutation of the edges (i, j, S) after which edge m/2 + k is the reverse
    (j, i, −S) of edge k; None if some edge has no reverse. The first half holds the edges
    with (i, j, S) before (j, i, −S) (i < j, or i = j and S > 0 lexicographically)."""
    m = i.shape[0]
    if m % 2:
        return None
    first = (i < j) | ((i == j) & ((s[:, 0] > 0) | ((s[:, 0] == 0) & (
        (s[:, 1] > 0) | ((s[:, 1] == 0) & (s[:, 2] > 0))))))
    fwd, rev = np.flatnonzero(first), np.flatnonzero(~first)
    if fwd.shape[0] != rev.shape[0]:
        return None
    fwd = fwd[np.lexsort((s[fwd, 2], s[fwd, 1], s[fwd, 0], j[fwd], i[fwd]))]
    rev = rev[np.lexsort((-s[rev, 2], -s[rev, 1], -s[rev, 0], i[rev], j[rev]))]
    if not (np.array_equal(i[fwd], j[rev]) and np.array_equal(j[fwd], i[rev])
            and np.array_equal(s[fwd], -s[rev])):
        return None
    return np.concatenate([fwd, rev])


def is_mirrored(i: np.ndarray, j: np.ndarray, s: np.ndarray) -> bool:
    """Whether edge m/2 + k is the reverse (j, i, −S) of edge k for every k."""
    h = i.shape[0] // 2
    return bool(i.shape[0] % 2 == 0 and np.array_equal(i[:h], j[h:])
                and np.array_equal(j[:h], i[h:]) and np.array_equal(s[:h], -s[h:]))


def check_min_distance(graph: Graph, numbers: np.ndarray, min_distance: float = 0.5) -> None:
    """Overlap check on an already built graph (its cutoff must exceed the thresholds).

    Same criterion and error as :func:`matdesign.structure_io.check_geometry`, without a
    second neighbour search.

    Args:
        graph: a graph of one or more structures.
        numbers: (n,) atomic numbers of the graph's atoms.
        min_distance: absolute floor of the overlap distance, Å.
    """
    if graph.mirrored:  # an edge and its reverse have one length: check the first half
        half = graph.edge_index.shape[1] // 2
        graph = replace(graph, edge_index=graph.edge_index[:, :half],
                        cell_shifts=graph.cell_shifts[:half], mirrored=False)
    receiver, sender = graph.edge_index
    if receiver.numel() == 0:
        return
    d = torch.linalg.norm(edge_vectors(graph, graph.positions, graph.cell), dim=1)
    d = d.detach().cpu().numpy()
    z = np.asarray(numbers)
    # per-pair thresholds only for pairs closer than the largest one any pair here can have
    species = np.unique(z)
    bound = pair_thresholds(species, species, min_distance).max()
    near = np.flatnonzero(d < bound)
    if near.size == 0:
        return
    i, j = receiver.cpu().numpy()[near], sender.cpu().numpy()[near]
    raise_if_close(i, j, d[near], pair_thresholds(z[i], z[j], min_distance))


class NeighbourCache:
    """One neighbour list reused across calls (relaxation and MD steps) with a skin.

    The list is built for ``cutoff + skin`` and filtered to ``cutoff`` at every call, so each
    call sees exactly the pairs closer than the cutoff. It is rebuilt when the atoms, their
    periodicity or species change, or when a pair outside the list could have come within the
    cutoff: 2 max|δ| + (cutoff + skin) ‖ε‖ ≥ skin, with ε the cell strain since the build
    (cell_new = cell_old (1 + ε)) and δ the displacements beyond that homogeneous strain.

    Args:
        cutoff: neighbour cutoff, Å.
        skin: extra search distance, Å (0 rebuilds at every call).
    """

    def __init__(self, cutoff: float, skin: float = 0.5) -> None:
        if skin < 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.builds = 0
        self._ref: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._float_shifts = np.zeros((0, 3))  # S of the list as float64
        self._mirrored = False  # whether the list is in mirrored order (module docstring)

    def _still_valid(self, atoms: Atoms) -> bool:
        if self._ref is None or self.skin == 0:
            return False
        numbers, pbc, positions, cell = self._ref
        if (len(atoms) != len(numbers) or not np.array_equal(atoms.numbers, numbers)
                or not np.array_equal(atoms.pbc, pbc)):
            return False
        now = atoms.cell.array
        strain = None  # unchanged cell: no strain to solve for (ionic relaxation, MD)
        if pbc.all():
            if not np.array_equal(now, cell):
                strain = np.linalg.solve(cell, now) - np.eye(3)
        elif pbc.any() and not np.array_equal(now, cell):
            return False  # mixed periodicity: any cell change rebuilds
        bound = 0.0
        if strain is None:
            moved = np.asarray(atoms.positions) - positions
        else:
            moved = np.asarray(atoms.positions) - positions @ (np.eye(3) + strain)
            bound = (self.cutoff + self.skin) * np.linalg.norm(strain, 2)
        bound += 2 * np.sqrt(np.einsum("ij,ij->i", moved, moved).max(initial=0.0))
        return bool(bound < self.skin)

    def pairs(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(i, j, S)`` of the pairs closer than the cutoff, as :func:`neighbour_list`."""
        if not self._still_valid(atoms):
            self._pairs = neighbour_list(atoms, self.cutoff + self.skin)
            self._float_shifts = self._pairs[2].astype(np.float64)
            self._mirrored = is_mirrored(*self._pairs)
            self._ref = (atoms.numbers.copy(), np.asarray(atoms.pbc, dtype=bool).copy(),
                         np.asarray(atoms.positions).copy(), atoms.cell.array.copy())
            self.builds += 1
        i, j, s = self._pairs
        pos = np.asarray(atoms.positions)
        # np.take, not pos[j] or boolean masks: numpy's fancy indexing is several times slower
        h = i.shape[0] // 2 if self._mirrored else i.shape[0]
        vec = (pos.take(j[:h], axis=0) - pos.take(i[:h], axis=0)
               + self._float_shifts[:h] @ atoms.cell.array)
        keep = np.flatnonzero(np.einsum("ij,ij->i", vec, vec) < self.cutoff ** 2)
        if self._mirrored:  # an edge and its reverse are kept together: the order stays
            keep = np.concatenate([keep, keep + h])
        return i.take(keep), j.take(keep), s.take(keep, axis=0)


def atoms_to_graph(atoms: Atoms, cutoff: float, species_index: dict[int, int],
                   neighbours: NeighbourCache | None = None) -> Graph:
    """Build the graph of one structure (float64, CPU).

    Args:
        atoms: the structure; not modified.
        cutoff: neighbour cutoff, Å.
        species_index: atomic number -> model species index.
        neighbours: a cache to reuse across calls (its cutoff must equal ``cutoff``).

    Raises:
        KeyError: an element the model does not know (the message names it).
    """
    numbers = atoms.numbers
    present, inverse = np.unique(numbers, return_inverse=True)  # no Python loop over atoms
    unknown = [int(z) for z in present if int(z) not in species_index]
    if unknown:
        from ase.data import chemical_symbols

        known = [chemical_symbols[z] for z in species_index]
        raise UnknownElementError(
            f"element(s) {[chemical_symbols[z] for z in unknown]} not known to the potential; "
            f"it knows {known}"
        )
    if neighbours is not None and neighbours.cutoff != cutoff:
        raise ValueError(f"neighbour cache cutoff {neighbours.cutoff} Å != {cutoff} Å")
    i, j, s = neighbour_list(atoms, cutoff) if neighbours is None else neighbours.pairs(atoms)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = atoms.cell.array if pbc.any() else np.zeros((3, 3))
    return Graph(
        positions=torch.tensor(np.asarray(atoms.positions), dtype=torch.float64),
        species=torch.from_numpy(np.array([species_index[int(z)] for z in present],
                                          dtype=np.int64)[inverse.reshape(-1)]),
        edge_index=torch.from_numpy(np.stack([i, j])),
        cell_shifts=torch.from_numpy(s).to(torch.float64),
        cell=torch.tensor(np.asarray(cell), dtype=torch.float64).unsqueeze(0),
        pbc=torch.from_numpy(pbc).unsqueeze(0),
        batch=torch.zeros(len(atoms), dtype=torch.int64),
        n_atoms=torch.tensor([len(atoms)], dtype=torch.int64),
        mirrored=is_mirrored(i, j, s),
    )


def batch_graphs(graphs: Sequence[Graph]) -> Graph:
    """Concatenate graphs into one batch, offsetting edge and structure indices."""
    if len(graphs) == 1:
        return graphs[0]
    atom_offsets = np.cumsum([0] + [int(g.positions.shape[0]) for g in graphs[:-1]])
    struct_offsets = np.cumsum([0] + [g.num_structures for g in graphs[:-1]])
    edges = [g.edge_index + int(o) for g, o in zip(graphs, atom_offsets, strict=True)]
    shifts = [g.cell_shifts for g in graphs]
    mirrored = all(g.mirrored for g in graphs)
    if mirrored:  # every first half, then every second half: the batch is mirrored too
        halves = [g.edge_index.shape[1] // 2 for g in graphs]
        edges = ([e[:, :h] for e, h in zip(edges, halves, strict=True)]
                 + [e[:, h:] for e, h in zip(edges, halves, strict=True)])
        shifts = ([x[:h] for x, h in zip(shifts, halves, strict=True)]
                  + [x[h:] for x, h in zip(shifts, halves, strict=True)])
    return Graph(
        positions=torch.cat([g.positions for g in graphs]),
        species=torch.cat([g.species for g in graphs]),
        edge_index=torch.cat(edges, 1),
        cell_shifts=torch.cat(shifts),
        cell=torch.cat([g.cell for g in graphs]),
        pbc=torch.cat([g.pbc for g in graphs]),
        batch=torch.cat([g.batch + int(o) for g, o in zip(graphs, struct_offsets, strict=True)]),
        n_atoms=torch.cat([g.n_atoms for g in graphs]),
        mirrored=mirrored,
    )
