"""Locality (receptive field) and smoothness as an atom crosses the cutoff r_c.

References: with L message-passing layers an atomic energy ε_i depends only on atoms reachable
in L hops of length < r_c; the polynomial envelope makes f, f', f'' vanish at r_c, so for
r = r_c - δ the pair energy is O(δ³) and the force O(δ²), and both are exactly zero beyond.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from tests.helpers import make_calc


def _chain() -> Atoms:
    """Five atoms along x, 3 Å apart (only nearest neighbours inside r_c = 3.8 Å)."""
    pos = np.array([[3.0 * k, 0.2 * (-1) ** k, 0.1 * k] for k in range(5)])
    return Atoms("CuAuCuCuAu", positions=pos, pbc=False)


def _atomic(calc, atoms) -> np.ndarray:
    return calc.calculate_batch([atoms])[0]["energies"]


def _moved(atoms: Atoms, k: int, delta) -> Atoms:
    out = atoms.copy()
    out.positions[k] += delta
    return out


@pytest.mark.parametrize("num_layers", [1, 2])
def test_receptive_field(num_layers):
    calc = make_calc(num_layers=num_layers, lmax=2)
    chain = _chain()
    dists = chain.get_distances(0, range(5))
    assert dists[1] < calc.cutoff < dists[2] and dists[3] > 2 * calc.cutoff
    ref = _atomic(calc, chain)
    step = np.array([0.0, 0.3, -0.2])
    # An atom num_layers + 1 hops away: ε_0 is unchanged.
    far = _atomic(calc, _moved(chain, num_layers + 1, step))
    assert far[0] == pytest.approx(ref[0], abs=1e-12)
    assert abs(far[num_layers] - ref[num_layers]) > 1e-8  # ...but its neighbour does feel it
    # An atom num_layers hops away (beyond r_c when num_layers = 2) changes ε_0.
    near = _atomic(calc, _moved(chain, num_layers, step))
    assert abs(near[0] - ref[0]) > 1e-8  # 4 orders above the 'unchanged' tolerance


def test_atom_outside_cutoff_changes_nothing():
    """1-layer model: moving atom 2 around outside r_c of atom 0 leaves ε_0 fixed."""
    calc = make_calc(num_layers=1)
    chain = _chain()
    ref = _atomic(calc, chain)
    for delta in ([0.0, 1.0, 0.0], [-2.0, 0.0, 1.5], [5.0, 5.0, 5.0]):
        moved = _moved(chain, 2, np.array(delta))
        assert moved.get_distance(0, 2) > calc.cutoff
        assert _atomic(calc, moved)[0] == pytest.approx(ref[0], abs=1e-12)


def _dimer(r: float) -> Atoms:
    direction = np.array([0.6, 0.0, 0.8])
    return Atoms("CuAu", positions=[[0.0, 0.0, 0.0], r * direction], pbc=False)


def test_smooth_across_cutoff():
    calc = make_calc(lmax=2)
    rc = calc.cutoff
    r = np.linspace(rc - 0.5, rc + 0.05, 1101)  # 5e-4 Å steps
    results = calc.calculate_batch([_dimer(x) for x in r])
    energy = np.array([res["energy"] for res in results])
    force = np.array([res["forces"][1] @ np.array([0.6, 0.0, 0.8]) for res in results])
    e_inf = calc.calculate_batch([_dimer(10.0)])[0]["energy"]
    outside = r >= rc
    np.testing.assert_allclose(energy[outside], e_inf, atol=1e-12)
    np.testing.assert_allclose(force[outside], 0.0, atol=1e-12)
    # Continuity: no jump larger than the force allows over one step.
    assert np.abs(np.diff(energy)).max() <= np.abs(force).max() * 5e-4 * 1.01
    assert np.abs(np.diff(force)).max() < 1e-2 * np.abs(force).max()  # no jump in F
    # Scaling at r_c - δ: the envelope guarantees energy = O(δ³) and force = O(δ²). (With the
    # untrained Bessel frequencies sin(nπr/r_c) also vanishes at r_c, giving δ⁴ and δ³.)
    de = [calc.calculate_batch([_dimer(rc - d)])[0] for d in (0.02, 0.01)]
    e_ratio = (de[0]["energy"] - e_inf) / (de[1]["energy"] - e_inf)
    f_ratio = np.linalg.norm(de[0]["forces"][1]) / np.linalg.norm(de[1]["forces"][1])
    assert e_ratio > 0.9 * 2**3
    assert f_ratio > 0.9 * 2**2
    assert np.abs(force).max() > 1e-3  # a non-trivial pair force inside the window
