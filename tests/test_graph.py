"""Neighbour lists, graphs and geometry checks, against ASE's own neighbour list."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111
from ase.neighborlist import neighbor_list as ase_neighbor_list

from matdesign.graph import (
    NeighbourCache,
    atoms_to_graph,
    batch_graphs,
    check_min_distance,
    is_mirrored,
    mirror_order,
    neighbour_list,
)
from matdesign.structure_io import check_geometry
from tests.helpers import make_calc, molecule, sheared_cell

SPECIES_INDEX = {29: 0, 79: 1}  # Cu, Au


def _slab(zero_open_vector: bool) -> Atoms:
    slab = fcc111("Cu", size=(2, 2, 3), a=3.7, vacuum=5.0, periodic=False)
    slab.pbc = (True, True, False)
    if zero_open_vector:
        slab.cell[2] = 0.0
    return slab


def _tiny_cell() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.set_cell(atoms.cell.array @ [[1, 0.1, 0], [0, 1, 0.05], [0.03, 0, 1]], scale_atoms=True)
    return atoms


@pytest.mark.parametrize("make", [sheared_cell, molecule, _tiny_cell, lambda: _slab(False),
                                  lambda: _slab(True)])
def test_neighbour_list_matches_ase(make):
    atoms = make()
    cutoff = 3.8
    i, j, s = neighbour_list(atoms, cutoff)
    assert i.dtype == j.dtype == s.dtype == np.int64
    ours = set(zip(i.tolist(), j.tolist(), map(tuple, s.tolist()), strict=True))
    ai, aj, a_s = ase_neighbor_list("ijS", atoms, cutoff)
    theirs = set(zip(ai.tolist(), aj.tolist(), map(tuple, a_s.tolist()), strict=True))
    assert ours == theirs and len(ours) == len(i) > 0
    d = np.linalg.norm(atoms.positions[j] - atoms.positions[i] + s @ atoms.cell.array, axis=1)
    assert d.max() < cutoff and d.min() > 0.5
    # mirrored order: edge m/2 + k is the reverse of edge k (checked here by hand)
    h = len(i) // 2
    assert len(i) == 2 * h
    for k in range(h):
        assert (i[h + k], j[h + k], tuple(-s[h + k])) == (j[k], i[k], tuple(s[k]))
    assert is_mirrored(i, j, s)


def test_graph_fields_and_edge_convention():
    atoms = sheared_cell()
    positions0 = atoms.positions.copy()
    graph = atoms_to_graph(atoms, 3.8, SPECIES_INDEX)
    np.testing.assert_array_equal(atoms.positions, positions0)  # caller's arrays untouched
    assert graph.species.tolist() == [0, 1, 1, 0]
    assert graph.cell.shape == (1, 3, 3) and graph.batch.tolist() == [0, 0, 0, 0]
    recv, send = graph.edge_index
    vec = graph.positions[send] - graph.positions[recv] + graph.cell_shifts @ graph.cell[0]
    _, _, dist = ase_neighbor_list("ijd", atoms, 3.8)
    assert np.allclose(np.sort(vec.norm(dim=1).numpy()), np.sort(dist))
    g32 = graph.to("cpu", torch.float32)
    assert g32.positions.dtype == torch.float32 and g32.edge_index.dtype == torch.int64
    assert graph.positions.dtype == torch.float64  # .to returns a new graph


def test_batch_graphs_offsets():
    graphs = [atoms_to_graph(a, 3.8, SPECIES_INDEX) for a in (sheared_cell(), molecule())]
    batch = batch_graphs(graphs)
    n0 = graphs[0].positions.shape[0]
    h0, h1 = (g.edge_index.shape[1] // 2 for g in graphs)
    assert batch.num_structures == 2 and batch.n_atoms.tolist() == [4, 5]
    assert all(g.mirrored for g in graphs) and batch.mirrored
    # mirrored graphs: every first half, then every second half
    e0, e1 = graphs[0].edge_index, graphs[1].edge_index + n0
    assert torch.equal(batch.edge_index, torch.cat([e0[:, :h0], e1[:, :h1], e0[:, h0:],
                                                    e1[:, h1:]], dim=1))
    i, j = batch.edge_index.numpy()
    assert is_mirrored(i, j, batch.cell_shifts.numpy().astype(np.int64))
    # a graph without that order: plain concatenation, and the batch is not mirrored
    from dataclasses import replace
    plain = batch_graphs([replace(graphs[0], mirrored=False), graphs[1]])
    assert not plain.mirrored
    assert torch.equal(plain.edge_index[:, 2 * h0:], e1)
    assert batch.batch.tolist() == [0] * 4 + [1] * 5
    assert batch.pbc.tolist() == [[True] * 3, [False] * 3]


def test_unknown_element_is_named():
    atoms = bulk("Fe", "bcc", a=2.87)
    with pytest.raises(KeyError, match=r"Fe.*Cu.*Au"):
        atoms_to_graph(atoms, 3.8, SPECIES_INDEX)
    calc = make_calc()
    atoms.calc = calc
    with pytest.raises(ValueError, match=r"\['Fe'\].*\['Cu', 'Au'\]"):
        atoms.get_potential_energy()


def test_check_geometry_overlaps_and_bad_cells():
    check_geometry(sheared_cell(), 3.8)
    check_geometry(_slab(zero_open_vector=True), 3.8)  # open direction may have no cell vector
    pair = Atoms("Cu2", positions=[[0, 0, 0], [0.3, 0, 0]])
    with pytest.raises(ValueError, match=r"atoms 0 and 1 are 0.300 Å apart"):
        check_geometry(pair, 3.8)
    # An overlap through the periodic boundary only.
    image = Atoms("Cu2", positions=[[0.1, 1, 1], [3.9, 1, 1]], cell=[4, 4, 4], pbc=True)
    with pytest.raises(ValueError, match="overlapping"):
        check_geometry(image, 3.8)
    nan = sheared_cell()
    nan.positions[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        check_geometry(nan, 3.8)
    flat = sheared_cell()
    flat.cell[2] = flat.cell[0] + flat.cell[1]
    with pytest.raises(ValueError, match="degenerate"):
        check_geometry(flat, 3.8)


def test_graph_overlap_check_agrees_with_check_geometry():
    image = Atoms("Cu2", positions=[[0.1, 1, 1], [3.85, 1, 1]], cell=[4, 4, 4], pbc=True)
    messages = []
    for check in (lambda: check_geometry(image, 3.8),
                  lambda: check_min_distance(atoms_to_graph(image, 3.8, SPECIES_INDEX),
                                             image.numbers)):
        with pytest.raises(ValueError, match="0.250 Å apart") as info:
            check()
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    cell = sheared_cell()
    check_min_distance(atoms_to_graph(cell, 3.8, SPECIES_INDEX), cell.numbers)


def test_overlap_threshold_follows_covalent_radii():
    """Cu-Cu at 1.0 Å is far below any physical bond (r_cov = 1.32 Å): rejected, although it
    is above the absolute 0.5 Å floor; H-H at 0.74 Å (the H2 bond) is accepted."""
    with pytest.raises(ValueError, match=r"1.000 Å apart.*1.32 Å"):
        check_geometry(Atoms("Cu2", positions=[[0, 0, 0], [1.0, 0, 0]]), 3.8)
    check_geometry(Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]]), 3.8)


def test_calculator_refuses_overlapping_atoms_and_nan():
    atoms = sheared_cell()
    atoms.positions[1] = atoms.positions[0] + [0.2, 0.1, 0.0]
    atoms.calc = make_calc()
    with pytest.raises(ValueError, match="overlapping"):
        atoms.get_potential_energy()
    atoms = sheared_cell()
    atoms.positions[0, 0] = np.inf
    atoms.calc = make_calc()
    with pytest.raises(ValueError, match="NaN or infinity"):
        atoms.get_potential_energy()


def _fresh_pairs(atoms, cutoff):
    from matdesign.graph import neighbour_list

    i, j, s = neighbour_list(atoms, cutoff)
    return sorted(zip(i.tolist(), j.tolist(), map(tuple, s.tolist())))


def test_neighbour_cache_matches_a_fresh_list_through_moves_and_strain():
    """Reused lists must equal a fresh search at every step (ASE-independent vesin search),
    rebuilding only when the skin bound says a new pair may have entered."""
    from ase.build import bulk

    from matdesign.graph import NeighbourCache

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=1)
    cache = NeighbourCache(cutoff=3.0, skin=0.5)
    rng = np.random.default_rng(0)
    for step in range(12):
        i, j, s = cache.pairs(atoms)
        assert sorted(zip(i.tolist(), j.tolist(), map(tuple, s.tolist()))) == \
            _fresh_pairs(atoms, 3.0), f"step {step}"
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        if step == 5:  # a homogeneous 1 % strain of the cell
            atoms.set_cell(atoms.cell.array * 1.01, scale_atoms=True)
    assert 1 <= cache.builds < 12  # reused, yet rebuilt when the bound required
    builds = cache.builds
    atoms.positions[0] += [0.3, 0.0, 0.0]  # more than skin / 2: must rebuild
    i, j, s = cache.pairs(atoms)
    assert cache.builds == builds + 1
    assert sorted(zip(i.tolist(), j.tolist(), map(tuple, s.tolist()))) == _fresh_pairs(atoms, 3.0)


def test_neighbour_cache_without_the_bound_would_miss_pairs():
    """Negative control: a list built with a 0.5 Å skin and then trusted after a 0.6 Å move
    misses a pair that a fresh search finds, so the rebuild rule above is what keeps it exact."""
    from ase import Atoms

    from matdesign.graph import NeighbourCache

    atoms = Atoms("Cu2", positions=[[0, 0, 0], [3.7, 0, 0]], pbc=False)
    cache = NeighbourCache(cutoff=3.0, skin=0.5)
    cache.pairs(atoms)
    atoms.positions[1, 0] = 3.1 - 0.2  # now 2.9 Å: inside the cutoff, outside the old list
    stale_i, _, _ = cache._pairs
    assert len(stale_i) == 0 and len(_fresh_pairs(atoms, 3.0)) == 2
    assert len(cache.pairs(atoms)[0]) == 2  # the cache itself rebuilt


def test_mirror_order_refuses_an_edge_without_its_reverse():
    i, j = np.array([0, 1, 0]), np.array([1, 0, 1])
    s = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0]])
    assert mirror_order(i, j, s) is None  # odd count
    i, j = np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])
    s = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]])  # (0,1,+x) has no (1,0,-x)
    assert mirror_order(i, j, s) is None
    s[3] = [-1, 0, 0]
    order = mirror_order(i, j, s)
    assert order is not None and is_mirrored(i[order], j[order], s[order])


def test_neighbour_cache_keeps_edges_and_their_reverses_together():
    """Filtered to the cutoff at each call, the cached list stays mirrored; the pairs are
    those of a fresh list."""
    atoms = bulk("Cu", "fcc", a=3.6).repeat(2)
    atoms.rattle(0.05, seed=0)
    cache = NeighbourCache(3.0, skin=0.6)
    cache.pairs(atoms)
    atoms.positions += np.random.default_rng(1).normal(0, 0.08, atoms.positions.shape)
    i, j, s = cache.pairs(atoms)
    assert cache.builds == 1 and is_mirrored(i, j, s)
    fresh = neighbour_list(atoms, 3.0)
    ours = set(zip(i.tolist(), j.tolist(), map(tuple, s.tolist()), strict=True))
    assert ours == set(zip(fresh[0].tolist(), fresh[1].tolist(), map(tuple, fresh[2].tolist()),
                           strict=True))
