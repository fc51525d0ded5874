"""Physical limits of the product architecture and the committee, against independent references.

- ZBL: the Coulomb limit r φ(r) → k_e Z_i Z_j at r → 0 (the screening coefficients sum to 1),
  monotonic screening, and finite-difference forces of a dimer.
- Isolated atom: exactly its reference energy, whatever the weights.
- Compressed pair: steeply repulsive even for random weights.
- Committee: per-head forces of :meth:`uncertainty` match finite differences of each head.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from matdesign.calculator import MatdesignCalculator
from matdesign.repulsion import COULOMB_EV_A, ZBLRepulsion, cohesive_energies, zbl_pair_energy
from tests.helpers import make_calc, make_model, sheared_cell


def test_zbl_coulomb_limit_and_screening_value():
    z = torch.tensor([74]), torch.tensor([74])
    r = torch.tensor([1e-6], dtype=torch.float64)
    assert float(r * zbl_pair_energy(r, *z)) == pytest.approx(COULOMB_EV_A * 74 * 74, rel=1e-4)
    # Screened: far below the bare Coulomb energy at a bond length, and decreasing with r.
    r = torch.linspace(0.3, 2.0, 50, dtype=torch.float64)
    phi = zbl_pair_energy(r, torch.full((50,), 74), torch.full((50,), 74))
    assert torch.all(phi[1:] < phi[:-1])
    assert float(phi[-1]) < 0.01 * COULOMB_EV_A * 74 * 74 / 2.0


def test_zbl_switched_off_beyond_outer_radius():
    zbl = ZBLRepulsion(["Cu", "Au"])
    species = torch.tensor([0, 1])
    edges = torch.tensor([[0, 1], [1, 0]])
    far = zbl(species, edges, torch.tensor([2.5, 2.5], dtype=torch.float64))  # > 0.6 (1.32+1.36)
    assert torch.all(far == 0)
    near = zbl(species, edges, torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert torch.all(near > 1.0)  # eV: strongly repulsive at 1 Å


def _dimer(r: float) -> Atoms:
    return Atoms("CuAu", positions=[[0, 0, 0], [r, 0.1, 0.05]], pbc=False)


def test_isolated_atom_has_its_reference_energy():
    for seed in (0, 1):
        model = make_model(seed=seed)
        calc = MatdesignCalculator(model)
        for symbol, k in (("Cu", 0), ("Au", 1)):
            got = calc.calculate_batch([Atoms(symbol, positions=[[0, 0, 0]])])[0]
            assert got["energy"] == pytest.approx(float(model.isolated_energy[k]), abs=1e-12)
        # Two atoms far apart (beyond the cutoff): the sum of the two references.
        apart = calc.calculate_batch([_dimer(10.0)])[0]["energy"]
        assert apart == pytest.approx(float(model.isolated_energy.sum()), abs=1e-12)


@pytest.mark.parametrize("saturation", [0.5, 1.0])
def test_isolated_atom_baseline_is_the_written_formula(saturation):
    """Network switched off, no ZBL: a dimer's energy per atom is E_iso + (E_ref − E_iso) g(x),
    g(x) = 1 − (1 − x)² below x = 1 and 1 above, x = f_cut(r) / (avg_density · saturation),
    with f_cut the DimeNet envelope written out here (p = 6)."""
    import dataclasses

    from matdesign.model import Potential
    from tests.helpers import tiny_config

    config = dataclasses.replace(tiny_config("two_body"), isolated_reference=True,
                                 avg_density=0.7, baseline_saturation=saturation)
    model = Potential(config, species=["Cu", "Au"]).double().eval()
    with torch.no_grad():
        model.energy_shift.copy_(torch.tensor([-3.5, -3.0]))
        model.isolated_energy.copy_(torch.tensor([-0.5, -0.2]))
        model.network_gate.zero_()
    calc = MatdesignCalculator(model)
    saturated = 0
    for r in np.linspace(1.5, 3.7, 28):
        u = r / config.cutoff
        f = 1 - 28 * u**6 + 48 * u**7 - 21 * u**8
        x = f / (config.avg_density * saturation)
        g = 1.0 if x >= 1 else 1 - (1 - x) ** 2
        saturated += x >= 1
        expected = sum(iso + (ref - iso) * g for iso, ref in ((-0.5, -3.5), (-0.2, -3.0)))
        dimer = Atoms("CuAu", positions=[[0, 0, 0], [r, 0, 0]], pbc=False)
        got = calc.calculate_batch([dimer])[0]["energy"]
        assert got == pytest.approx(expected, abs=1e-8), r
    assert 0 < saturated < 28  # both branches were visited


def test_compressed_pair_is_repulsive_and_fd_forces():
    calc = make_calc()
    # The overlap check refuses Cu-Au below 0.5 (1.32 + 1.36) = 1.34 Å; ZBL switches off
    # between 0.45 and 0.6 of that sum (1.21-1.61 Å).
    energies = [calc.calculate_batch([_dimer(r)])[0]["energy"] for r in (1.35, 1.40, 1.45)]
    assert energies[0] > energies[1] > energies[2]
    assert energies[0] - calc.calculate_batch([_dimer(2.6)])[0]["energy"] > 5.0  # eV
    atoms = _dimer(1.42)
    atoms.calc = calc
    forces = atoms.get_forces()
    assert forces[0, 0] < 0 < forces[1, 0]  # pushed apart
    h = 1e-5
    for i in range(2):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, c] += h
            minus.positions[i, c] -= h
            fd = -(calc.calculate_batch([plus])[0]["energy"]
                   - calc.calculate_batch([minus])[0]["energy"]) / (2 * h)
            assert forces[i, c] == pytest.approx(fd, abs=1e-5 * max(1.0, abs(fd)))


def test_committee_spread_matches_per_head_finite_differences():
    model = make_model()
    calc = MatdesignCalculator(model)
    atoms = sheared_cell()
    spread = calc.uncertainty(atoms)
    assert spread is not None and spread.forces_std_ev_per_a.shape == (len(atoms), 3)
    from matdesign.forces import edge_vectors
    from matdesign.graph import atoms_to_graph

    def head_energy(a: Atoms) -> np.ndarray:
        g = atoms_to_graph(a, model.config.cutoff, model.species_index).to("cpu", model.dtype)
        with torch.no_grad():
            return model.head_energies(g, edge_vectors(g, g.positions, g.cell)).sum(1).numpy()

    e0 = head_energy(atoms)
    assert spread.energy_std_ev == pytest.approx(float(np.std(e0)), rel=1e-10)
    assert spread.energy_std_ev > 1e-4  # heads really differ
    results = calc.calculate_batch([atoms])[0]
    assert results["energy_std"] == pytest.approx(spread.energy_std_ev, rel=1e-10)
    h = 1e-5
    fd = np.zeros((len(e0), len(atoms), 3))
    for i in range(len(atoms)):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, c] += h
            minus.positions[i, c] -= h
            fd[:, i, c] = -(head_energy(plus) - head_energy(minus)) / (2 * h)
    np.testing.assert_allclose(spread.forces_std_ev_per_a, fd.std(0), atol=1e-6)
    np.testing.assert_allclose(results["forces"], fd.mean(0), atol=1e-6)


def test_single_head_model_has_no_spread():
    calc = make_calc(arch="two_body")
    assert calc.uncertainty(sheared_cell()) is None
    assert "energy_std" not in calc.calculate_batch([sheared_cell()])[0]


def test_cohesive_energy_table_and_unknown_element():
    assert cohesive_energies(["W", "Nb"]) == [8.90, 7.57]
    assert cohesive_energies(["W"], {"W": 8.5}) == [8.5]
    with pytest.raises(ValueError, match="cohesive_energies_ev"):
        cohesive_energies(["Xe"])


def _frames_and_model():
    import dataclasses

    from ase.calculators.singlepoint import SinglePointCalculator

    from matdesign.model import Potential
    from matdesign.training.data import to_frame
    from tests.helpers import tiny_config

    config = dataclasses.replace(tiny_config("two_body"), isolated_reference=True, zbl=True)
    torch.manual_seed(3)
    model = Potential(config, species=["Cu", "Au"]).double()
    with torch.no_grad():
        model.energy_scale.fill_(2.0)
        model.isolated_energy.copy_(torch.tensor([0.5, 0.7]))
    frames = []
    for k in range(12):
        atoms = sheared_cell(seed=k, rattle=0.1)
        atoms.calc = SinglePointCalculator(atoms, energy=0.0)
        frames.append(to_frame(atoms, config.cutoff, model.species_index, f"frame {k}"))
    return model, frames


def test_last_layer_committee_is_the_laplace_posterior():
    """Committee mean = the trained model; its spread = sqrt(f̃ᵀ (F̃ᵀF̃ + λI)⁻¹ f̃), f̃ = f − mean
    of the training f, with f the gradient of E/N with respect to the last-layer weights taken
    by finite differences."""
    from matdesign.training.committee import attach_committee

    model, frames = _frames_and_model()
    committee = attach_committee(model, frames[:10], regularisation=1e-3)
    assert committee.num_heads == 2 * model.config.readout_hidden
    test = sheared_cell(seed=40, rattle=0.1)
    base = MatdesignCalculator(model).calculate_batch([test])[0]
    got = MatdesignCalculator(committee).calculate_batch([test])[0]
    assert got["energy"] == pytest.approx(base["energy"], abs=1e-9)
    np.testing.assert_allclose(got["forces"], base["forces"], atol=1e-9)

    weight = model.heads[0][2].weight  # (1, H): the last layer

    def energy_per_atom(atoms):
        return MatdesignCalculator(model).calculate_batch([atoms])[0]["energy"] / len(atoms)

    def gradient(atoms):
        g = np.zeros(weight.shape[1])
        for j in range(weight.shape[1]):
            with torch.no_grad():
                weight[0, j] += 1e-4
            plus = energy_per_atom(atoms)
            with torch.no_grad():
                weight[0, j] -= 2e-4
            minus = energy_per_atom(atoms)
            with torch.no_grad():
                weight[0, j] += 1e-4
            g[j] = (plus - minus) / 2e-4
        return g

    train_atoms = [sheared_cell(seed=k, rattle=0.1) for k in range(10)]
    feats = np.array([gradient(a) for a in train_atoms])
    center = feats.mean(0)  # the intercept is marginalised
    feats -= center
    gram = feats.T @ feats
    cov = np.linalg.inv(gram + 1e-3 * np.mean(np.diag(gram)) * np.eye(len(gram)))
    f = gradient(test) - center
    assert got["energy_std"] / len(test) == pytest.approx(np.sqrt(f @ cov @ f), rel=1e-4)


def test_lone_atom_term_follows_weight_changes_in_eval_mode():
    """The eval-mode cache of the lone-atom network pass (``Potential._lone_eps``) must follow
    every way the weights change: an in-place update, ``load_state_dict`` and a dtype change.
    Reference: a fresh deep copy, which has no cache, and the training-mode value."""
    import copy

    from matdesign.forces import edge_vectors
    from matdesign.graph import atoms_to_graph

    model = make_model(dtype=torch.float64).eval()
    graph = atoms_to_graph(sheared_cell(), model.config.cutoff, model.species_index)

    def energy(m: torch.nn.Module) -> float:
        g = graph.to("cpu", m.dtype)
        return float(m(g, edge_vectors(g, g.positions, g.cell)).sum().detach())

    first = energy(model)
    assert energy(model) == first  # second call uses the cache
    with torch.no_grad():
        model.heads[0][0].weight.mul_(1.5)  # in place, as an optimiser step or EMA does
    changed = energy(model)
    assert changed != pytest.approx(first, abs=1e-6)
    assert changed == pytest.approx(energy(copy.deepcopy(model)), abs=1e-12)
    assert changed == pytest.approx(energy(copy.deepcopy(model).train()), abs=1e-12)
    model.load_state_dict(make_model(dtype=torch.float64, seed=3).state_dict())
    assert energy(model) == pytest.approx(energy(make_model(dtype=torch.float64, seed=3).eval()),
                                          abs=1e-12)
    as32 = energy(model.float())
    assert as32 == pytest.approx(energy(model.double()), rel=1e-5)
