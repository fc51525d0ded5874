"""Symmetries of the potential: E(3) equivariance, translation and permutation invariance.

References are the exact symmetry transformations of the outputs: for an orthogonal R
acting on row vectors (positions, cell rows) as r -> r Rᵀ, E is invariant, F -> F Rᵀ and
σ -> R σ Rᵀ. Improper rotations (det R = -1) are included: the model keeps only
natural-parity features, so its energy must be inversion invariant too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.stress import voigt_6_to_full_3x3_stress

from tests.helpers import ARCHS, make_calc, molecule, sheared_cell

# (relative energy tol, absolute force tol eV/Å, absolute stress tol eV/Å³) per dtype
TOL = {torch.float64: (1e-11, 1e-10, 1e-11), torch.float32: (2e-6, 2e-5, 2e-6)}


def _evaluate(calc, atoms):
    return calc.calculate_batch([atoms])[0]


def _rotate(atoms, rot: np.ndarray):
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    out.positions = atoms.positions @ rot.T
    return out


def _rotations(seed: int) -> list[np.ndarray]:
    from e3nn import o3

    torch.manual_seed(seed)
    proper = o3.rand_matrix(dtype=torch.float64).numpy()
    return [proper, -proper]  # -R: a rotation combined with inversion


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lmax", [1, 2])
@pytest.mark.parametrize("arch", ARCHS)
def test_rotation_equivariance_periodic(dtype, lmax, arch):
    calc = make_calc(dtype=dtype, lmax=lmax, arch=arch)
    atoms = sheared_cell()
    ref = _evaluate(calc, atoms)
    e_tol, f_tol, s_tol = TOL[dtype]
    assert np.abs(ref["forces"]).max() > 0.05  # a non-trivial test: forces are not ~0
    for rot in _rotations(seed=lmax):
        assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        got = _evaluate(calc, _rotate(atoms, rot))
        assert got["energy"] == pytest.approx(ref["energy"], rel=e_tol)
        np.testing.assert_allclose(got["forces"], ref["forces"] @ rot.T, atol=f_tol)
        sigma = voigt_6_to_full_3x3_stress(ref["stress"])
        np.testing.assert_allclose(
            voigt_6_to_full_3x3_stress(got["stress"]), rot @ sigma @ rot.T, atol=s_tol
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rotation_equivariance_molecule(dtype):
    calc = make_calc(dtype=dtype, lmax=2)
    atoms = molecule()
    ref = _evaluate(calc, atoms)
    e_tol, f_tol, _ = TOL[dtype]
    for rot in _rotations(seed=7):
        got = _evaluate(calc, _rotate(atoms, rot))
        assert "stress" not in got
        assert got["energy"] == pytest.approx(ref["energy"], rel=e_tol)
        np.testing.assert_allclose(got["forces"], ref["forces"] @ rot.T, atol=f_tol)


def test_rotation_changes_forces_control():
    """Negative control: without rotating the reference, the comparison above would fail."""
    calc = make_calc(lmax=1)
    atoms = sheared_cell()
    ref = _evaluate(calc, atoms)
    rot = _rotations(seed=3)[0]
    got = _evaluate(calc, _rotate(atoms, rot))
    assert np.abs(got["forces"] - ref["forces"]).max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_translation_invariance(dtype):
    calc = make_calc(dtype=dtype)
    e_tol, f_tol, s_tol = TOL[dtype]
    for atoms in (sheared_cell(), molecule()):
        ref = _evaluate(calc, atoms)
        moved = atoms.copy()
        moved.positions += np.array([1.37, -2.21, 0.58])
        if moved.pbc.all():
            moved.wrap()  # wrapping changes the cell shifts of the edges, not the physics
            assert not np.allclose(moved.positions - atoms.positions, [1.37, -2.21, 0.58])
        got = _evaluate(calc, moved)
        assert got["energy"] == pytest.approx(ref["energy"], rel=e_tol)
        np.testing.assert_allclose(got["forces"], ref["forces"], atol=f_tol)
        if "stress" in ref:
            np.testing.assert_allclose(got["stress"], ref["stress"], atol=s_tol)


def test_swap_two_identical_atoms():
    calc = make_calc()
    atoms = sheared_cell()
    cu = [k for k, s in enumerate(atoms.get_chemical_symbols()) if s == "Cu"]
    a, b = cu[:2]
    order = np.arange(len(atoms))
    order[[a, b]] = order[[b, a]]
    ref = _evaluate(calc, atoms)
    got = _evaluate(calc, atoms[order])
    assert got["energy"] == pytest.approx(ref["energy"], rel=1e-12)
    np.testing.assert_allclose(got["forces"], ref["forces"][order], atol=1e-11)
    np.testing.assert_allclose(got["stress"], ref["stress"], atol=1e-12)


@pytest.mark.parametrize("make_atoms", [sheared_cell, molecule])
def test_permute_all_atoms(make_atoms):
    calc = make_calc(lmax=2)
    atoms = make_atoms()
    order = np.random.default_rng(0).permutation(len(atoms))
    ref = _evaluate(calc, atoms)
    got = _evaluate(calc, atoms[order])
    assert got["energy"] == pytest.approx(ref["energy"], rel=1e-12)
    np.testing.assert_allclose(got["forces"], ref["forces"][order], atol=1e-11)
    np.testing.assert_allclose(got["energies"], ref["energies"][order], atol=1e-11)
