"""The descriptor-space chemical pair term and the per-element pair term (matdesign/mixing.py).

Checked against independent facts: the algebra of a quadratic form (two unseen-pair dimers
from two seen ones), zero between like atoms, the cutoff, finite-difference forces and stress
of a whole model that carries the term, and a checkpoint round trip.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from matdesign.calculator import MatdesignCalculator
from matdesign.mixing import ChemicalPairTerm, ElementPairTerm, EmbeddedAtomTerm
from matdesign.model import Potential, PotentialConfig, species_attributes
from matdesign.radial import BesselBasis, radial_features
from tests.test_potential_derivatives import fd_forces, fd_stress

SPECIES = ["Nb", "Mo", "Ta", "W"]
CUTOFF = 4.0


def _term(seed: int = 0) -> ChemicalPairTerm:
    term = ChemicalPairTerm(species_attributes(SPECIES, descriptors=True)[:, 1:], 6)
    with torch.no_grad():
        term.weights.copy_(torch.randn(3, 6, generator=torch.Generator().manual_seed(seed)))
    return term.double()


def _dimer_energy(term: torch.nn.Module, a: str, b: str, r: float) -> float:
    """Total energy (eV) of an a-b pair at distance r, both edge directions."""
    basis = BesselBasis(CUTOFF, 6).double()
    _, radial = radial_features(basis, torch.tensor([r, r], dtype=torch.float64), 6)
    species = torch.tensor([SPECIES.index(a), SPECIES.index(b)])
    edges = torch.tensor([[0, 1], [1, 0]])
    with torch.no_grad():
        return float(term(species, edges, radial).sum())


@pytest.mark.parametrize("r", [2.4, 2.9, 3.5])
def test_unseen_pairs_follow_from_seen_ones(r):
    # (period, group) standardise to Nb(-1,-1) Mo(-1,1) Ta(1,-1) W(1,1); for any quadratic form
    # q(d): q(Nb-W) + q(Mo-Ta) = 2 [q(Nb-Mo) + q(Nb-Ta)], whatever the weights.
    term = _term()
    lhs = _dimer_energy(term, "Nb", "W", r) + _dimer_energy(term, "Mo", "Ta", r)
    rhs = 2 * (_dimer_energy(term, "Nb", "Mo", r) + _dimer_energy(term, "Nb", "Ta", r))
    assert abs(lhs) > 1e-3  # not trivially zero
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-12)
    # ... and the pair is symmetric
    assert _dimer_energy(term, "W", "Nb", r) == pytest.approx(_dimer_energy(term, "Nb", "W", r))


def test_like_atoms_and_the_cutoff_give_zero():
    term = _term()
    for s in SPECIES:
        assert _dimer_energy(term, s, s, 2.7) == 0.0
    assert abs(_dimer_energy(term, "Nb", "W", CUTOFF - 1e-4)) < 1e-8
    assert abs(_dimer_energy(term, "Nb", "W", 2.7)) > 1e-3


@pytest.mark.parametrize("r", [2.4, 2.9, 3.5])
def test_element_pairs_mix_by_the_arithmetic_mean(r):
    term = ElementPairTerm(len(SPECIES), 6).double()
    with torch.no_grad():
        term.weights.copy_(torch.randn(4, 6, generator=torch.Generator().manual_seed(1)))
    nb, w, nbw = (_dimer_energy(term, a, b, r) for a, b in (("Nb", "Nb"), ("W", "W"), ("Nb", "W")))
    assert abs(nb - w) > 1e-3  # the two elements differ
    assert nbw == pytest.approx(0.5 * (nb + w), rel=1e-10)
    assert _dimer_energy(term, "W", "Nb", r) == pytest.approx(nbw, rel=1e-12)
    assert abs(_dimer_energy(term, "Nb", "W", CUTOFF - 1e-4)) < 1e-8


def test_embedded_atom_dimer_matches_the_formula():
    term = EmbeddedAtomTerm(len(SPECIES), 6).double()
    with torch.no_grad():
        for p in term.parameters():
            p.copy_(torch.rand(p.shape, generator=torch.Generator().manual_seed(2), dtype=p.dtype))
    r = 2.8
    basis = BesselBasis(CUTOFF, 6).double()
    _, radial = radial_features(basis, torch.tensor([r], dtype=torch.float64), 6)
    i, j = SPECIES.index("Nb"), SPECIES.index("W")
    density = {k: float((radial[0] * term.density[k].detach()).sum() ** 2) for k in (i, j)}
    a, b = term.sqrt_weight.detach(), term.linear_weight.detach()
    expected = sum(float(a[t] * (np.sqrt(1 + density[s]) - 1) + b[t] * density[s])
                   for t, s in ((i, j), (j, i)))
    assert _dimer_energy(term, "Nb", "W", r) == pytest.approx(expected, rel=1e-10)
    assert abs(expected) > 1e-3
    lone = term(torch.tensor([i]), torch.zeros((2, 0), dtype=torch.long), radial[:0])
    assert float(lone[0]) == 0.0  # an atom without neighbours embeds nothing


def _binary_model(extra_terms: bool = False) -> Potential:
    cfg = PotentialConfig(cutoff=CUTOFF, channels=4, num_basis=6, radial_hidden=8,
                          readout_hidden=8, avg_num_neighbours=12.0, chemical_pairs=True,
                          element_pairs=extra_terms, embedded_atom=extra_terms)
    torch.manual_seed(3)
    model = Potential(cfg, SPECIES)
    with torch.no_grad():
        model.chemical_pairs.weights.normal_(std=0.05)
        if extra_terms:
            model.element_pairs.weights.normal_(std=0.05)
            model.embedded_atom.sqrt_weight.normal_(std=0.5)
            model.embedded_atom.linear_weight.normal_(std=0.05)
    return model.double()


def _binary_cell() -> Atoms:
    atoms = bulk("Nb", "bcc", a=3.3, cubic=True) * (2, 1, 1)
    atoms.symbols[[1, 2]] = "W"
    atoms.symbols[3] = "Mo"
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + [[0, 0.04, 0], [0, 0, 0.03], [0, 0, 0]]),
                   scale_atoms=True)
    atoms.rattle(0.05, seed=4)
    return atoms


@pytest.mark.parametrize("extra_terms", [False, True])
def test_forces_and_stress_match_finite_differences(extra_terms):
    atoms = _binary_cell()
    atoms.calc = MatdesignCalculator(_binary_model(extra_terms))
    forces, stress = atoms.get_forces(), atoms.get_stress()
    assert np.abs(forces).max() > 1e-3
    np.testing.assert_allclose(forces, fd_forces(atoms), atol=1e-6)
    np.testing.assert_allclose(stress, fd_stress(atoms), atol=1e-7)


def test_checkpoint_keeps_the_term(tmp_path):
    from matdesign.checkpoint import load_potential, save_potential

    model = _binary_model()
    save_potential(model, tmp_path / "m.pt")
    loaded = load_potential(tmp_path / "m.pt", dtype="float64")
    assert loaded.config.chemical_pairs
    atoms = _binary_cell()
    atoms.calc = MatdesignCalculator(model)
    e0 = atoms.get_potential_energy()
    atoms.calc = MatdesignCalculator(loaded)
    assert atoms.get_potential_energy() == pytest.approx(e0, abs=1e-10)
    # The term is part of the energy: zeroing its weights changes it.
    with torch.no_grad():
        loaded.chemical_pairs.weights.zero_()
    atoms.calc = MatdesignCalculator(loaded)
    assert abs(atoms.get_potential_energy() - e0) > 1e-4


def _dimer_chemical_energy(model: Potential, r: float) -> float:
    """Energy of an isolated Nb-W pair at distance ``r`` (Å) minus the pair far apart, with
    only the chemical term switched on (network, ZBL and baseline out of the difference)."""
    def energy(d: float) -> float:
        atoms = Atoms("NbW", positions=[[0, 0, 0], [d, 0, 0]], cell=[30.0] * 3, pbc=False)
        atoms.calc = MatdesignCalculator(model)
        return atoms.get_potential_energy()

    with torch.no_grad():
        saved = model.chemical_pairs.weights.clone()
        model.chemical_pairs.weights.zero_()
    without = energy(r)
    with torch.no_grad():
        model.chemical_pairs.weights.copy_(saved)
    return energy(r) - without


def test_chemical_term_is_flat_below_its_floor_and_unchanged_above():
    """With ``chemical_pairs_min_r`` the term holds its value below the floor (no force from
    it there) and equals the unfloored term 0.6 Å above it; forces stay exact (finite
    differences) across the floor."""
    import dataclasses

    plain = _binary_model()
    floored = Potential(dataclasses.replace(plain.config, chemical_pairs_min_r=2.6),
                        SPECIES).double()
    floored.load_state_dict(plain.state_dict())
    near, nearer = _dimer_chemical_energy(floored, 2.0), _dimer_chemical_energy(floored, 1.8)
    assert abs(_dimer_chemical_energy(plain, 2.0) - _dimer_chemical_energy(plain, 1.8)) > 1e-3
    assert near == pytest.approx(nearer, abs=1e-4)  # flat below 2.6 Å
    assert _dimer_chemical_energy(floored, 3.2) == pytest.approx(
        _dimer_chemical_energy(plain, 3.2), rel=1e-3)
    atoms = _binary_cell()
    atoms.set_cell(atoms.cell * 0.9, scale_atoms=True)  # nearest contacts ~2.57 Å, at the floor
    atoms.calc = MatdesignCalculator(floored)
    np.testing.assert_allclose(atoms.get_forces(), fd_forces(atoms), atol=1e-6)


def test_chemical_floor_is_validated():
    with pytest.raises(ValueError, match="chemical_pairs_min_r"):
        PotentialConfig(chemical_pairs=True, chemical_pairs_min_r=6.0).validate()
    with pytest.raises(ValueError, match="chemical_pairs_min_r needs"):
        PotentialConfig(chemical_pairs_min_r=2.5).validate()
