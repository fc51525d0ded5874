"""Periodic images and boundary conditions.

References: a crystal and any supercell of it are the same physical system (equal energy per
atom, tiled forces, equal stress); a slab periodic in x, y only is independent of the vacuum
length and equals the same slab fully periodic with a vacuum gap wider than the cutoff.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.calculator import PropertyNotImplementedError

from matdesign.graph import atoms_to_graph
from tests.helpers import make_calc


def _small_cell() -> Atoms:
    """A rattled, sheared 2-atom CuAu cell whose lattice vectors are shorter than the cutoff."""
    atoms = bulk("Cu", "fcc", a=3.7).repeat((2, 1, 1))
    atoms.symbols[1] = "Au"
    atoms.set_cell(atoms.cell.array @ [[1, 0.04, 0], [0.02, 1, -0.05], [0, 0.03, 1.02]],
                   scale_atoms=True)
    atoms.rattle(0.1, seed=4)
    return atoms


def _compare_supercell(calc, atoms, reps, f_tol, e_tol, s_tol):
    ref = calc.calculate_batch([atoms])[0]
    sup = atoms.repeat(reps)
    got = calc.calculate_batch([sup])[0]
    assert got["energy"] / len(sup) == pytest.approx(ref["energy"] / len(atoms), abs=e_tol)
    # ASE's repeat tiles the atoms block by block, so forces tile the same way.
    np.testing.assert_allclose(got["forces"], np.tile(ref["forces"], (np.prod(reps), 1)),
                               atol=f_tol)
    np.testing.assert_allclose(got["stress"], ref["stress"], atol=s_tol)
    return ref


@pytest.mark.parametrize("dtype,tols", [(torch.float64, (1e-10, 1e-11, 1e-11)),
                                        (torch.float32, (2e-5, 5e-5, 5e-6))])
def test_small_cell_equals_supercell(dtype, tols):
    calc = make_calc(dtype=dtype, lmax=2)
    atoms = _small_cell()
    assert np.linalg.norm(atoms.cell.array, axis=1).min() < calc.cutoff
    ref = _compare_supercell(calc, atoms, (2, 3, 2), *tols)
    assert np.abs(ref["forces"]).max() > 0.05 and np.abs(ref["stress"]).max() > 1e-3


def test_one_atom_cell_smaller_than_cutoff():
    calc = make_calc()
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.set_cell(atoms.cell.array @ [[1, 0.05, 0], [0, 1, 0.03], [0.02, 0, 1]], scale_atoms=True)
    graph = atoms_to_graph(atoms, calc.cutoff, calc.model.species_index)
    # With one atom every edge is to one of its own periodic images.
    assert graph.edge_index.shape[1] >= 12
    assert bool((graph.edge_index[0] == graph.edge_index[1]).all())
    assert bool((graph.cell_shifts.abs().sum(1) > 0).all())
    ref = _compare_supercell(calc, atoms, (3, 3, 3), 1e-10, 1e-10, 1e-11)
    np.testing.assert_allclose(ref["forces"], 0.0, atol=1e-10)  # inversion symmetric
    assert np.abs(ref["stress"]).max() > 1e-3


def _slab(vacuum: float) -> Atoms:
    slab = fcc111("Cu", size=(2, 2, 3), a=3.7, vacuum=vacuum, periodic=False)
    slab.symbols[[1, 6]] = "Au"
    rng = np.random.default_rng(5)
    slab.positions += rng.normal(scale=0.05, size=slab.positions.shape)
    slab.pbc = (True, True, False)
    return slab


def test_slab_mixed_boundary_conditions():
    calc = make_calc(lmax=2)
    small, big = _slab(4.0), _slab(9.0)
    shift = big.positions[0] - small.positions[0]  # fcc111 centres the slab in z
    np.testing.assert_allclose(big.positions - shift, small.positions, atol=1e-12)
    r_small, r_big = calc.calculate_batch([small])[0], calc.calculate_batch([big])[0]
    assert "stress" not in r_small
    assert r_big["energy"] == pytest.approx(r_small["energy"], abs=1e-10)
    np.testing.assert_allclose(r_big["forces"], r_small["forces"], atol=1e-10)
    # The same slab made periodic in z with a gap wider than the cutoff: the fully periodic
    # neighbour-list path must agree with the mixed-boundary path.
    full = big.copy()
    full.pbc = True
    assert 2 * 9.0 > calc.cutoff
    r_full = calc.calculate_batch([full])[0]
    assert r_full["energy"] == pytest.approx(r_small["energy"], abs=1e-10)
    np.testing.assert_allclose(r_full["forces"], r_small["forces"], atol=1e-10)
    assert np.abs(r_small["forces"][:, :2]).max() > 0.05
    # Periodicity in x and y matters: the same atoms as an open cluster differ.
    cluster = small.copy()
    cluster.pbc = False
    assert abs(calc.calculate_batch([cluster])[0]["energy"] - r_small["energy"]) > 1e-2
    small.calc = calc
    with pytest.raises(PropertyNotImplementedError):
        small.get_stress()
