"""The training data's chemical domain (matdesign/domain.py) and where it reaches a screen row.

Checked against structures whose neighbour chemistry is known by construction.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from matdesign.domain import ChemicalDomain, environment
from tests.helpers import make_calc

BINARIES = ChemicalDomain(("Mo-Mo", "Mo-Nb", "Nb-Nb", "Nb-Ta", "Ta-Ta"), 2, 5.0)


def _bcc(symbols: list[str], a: float = 3.25):
    atoms = bulk("Nb", "bcc", a=a, cubic=True) * (2, 2, 2)  # 16 atoms
    atoms.set_chemical_symbols(symbols)
    return atoms


def test_environment_counts_pairs_and_species_per_neighbourhood():
    symbols = np.array(["Nb", "Mo", "Ta", "Nb"])
    # atom 0 sees 1 and 2 (three species with itself); atom 3 sees only 0
    receivers, senders = np.array([0, 0, 1, 2, 3, 0]), np.array([1, 2, 0, 0, 0, 3])
    pairs, most = environment(symbols, receivers, senders)
    assert pairs == {"Mo-Nb", "Nb-Ta", "Nb-Nb"}
    assert most == 3
    assert environment(symbols, np.array([], int), np.array([], int)) == (set(), 1)


def test_binary_inside_ternary_outside_with_reasons():
    inside = BINARIES.check(_bcc(["Nb", "Mo"] * 8))
    assert not inside.outside and inside.species_per_environment == 2
    ternary = BINARIES.check(_bcc(["Nb", "Mo", "Ta", "Nb"] * 4))
    assert ternary.outside
    assert ternary.unseen_pairs == ("Mo-Ta",)
    assert ternary.species_per_environment == 3
    assert "Mo-Ta" in ternary.reason and "3 elements in one neighbourhood" in ternary.reason
    # an unseen pair alone (two species) is still outside
    assert BINARIES.check(_bcc(["Mo", "Ta"] * 8)).unseen_pairs == ("Mo-Ta",)
    # round trip through the checkpoint metadata form
    assert ChemicalDomain.from_dict(BINARIES.to_dict()) == BINARIES


def test_calculator_and_screen_row_report_the_domain():
    from matdesign.search.pipeline import ScreenSettings, start_record, uncertainty_stage

    calc = make_calc(arch="two_body")
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.symbols[[1, 2]] = "Au"
    assert calc.domain(atoms) is None  # a checkpoint without the record: no claim either way
    calc.chemical_domain = ChemicalDomain(("Au-Au", "Cu-Cu"), 1, 3.8)
    settings = ScreenSettings(potential="emt")
    record = uncertainty_stage(start_record(atoms, settings), calc, settings)
    assert "Au-Cu" in record.columns()["outside_domain"]
    calc.chemical_domain = ChemicalDomain(("Au-Au", "Au-Cu", "Cu-Cu"), 2, 3.8)
    record = uncertainty_stage(start_record(atoms, settings), calc, settings)
    assert "outside_domain" not in record.columns()


@pytest.mark.parametrize("reps", [1, 2])
def test_supercell_does_not_change_the_verdict(reps):
    atoms = _bcc(["Nb", "Mo", "Ta", "Nb"] * 4) * (reps, 1, 1)
    check = BINARIES.check(atoms)
    assert check.unseen_pairs == ("Mo-Ta",) and check.species_per_environment == 3


def test_contacts_closer_than_the_data_are_flagged():
    from matdesign.domain import structure_environment

    cold = [_bcc(["Nb", "Mo"] * 8) for _ in range(3)]
    for k, atoms in enumerate(cold):
        atoms.rattle(0.01, seed=k)
    domain = ChemicalDomain.from_environments(
        [({"Mo-Mo", "Mo-Nb", "Nb-Nb"}, 2)] * 3, 5.0,
        [structure_environment(a, 5.0)[2] for a in cold])
    nn = 3.25 * np.sqrt(3) / 2  # bcc nearest-neighbour distance, Å
    assert dict(domain.shortest_a)["Mo-Nb"] == pytest.approx(nn, abs=0.05)
    assert not domain.check(_bcc(["Nb", "Mo"] * 8)).outside
    hot = _bcc(["Nb", "Mo"] * 8)
    hot.positions[1] = hot.positions[0] + [1.3, 1.3, 0.9]  # a Mo atom pushed to 2.05 Å of Nb
    check = domain.check(hot)
    assert check.outside and not check.unseen_pairs
    assert "closer than the training data" in check.reason and "Mo-Nb 2.05 Å" in check.reason
    # metadata round trip keeps the contacts; a record without them never judges distances
    assert ChemicalDomain.from_dict(domain.to_dict()) == domain
    old = ChemicalDomain.from_dict({k: v for k, v in domain.to_dict().items()
                                    if k != "shortest_a"})
    assert not old.check(hot).outside


def test_training_domain_contacts_match_an_ase_neighbour_list(tmp_path):
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from matdesign.domain import structure_environment
    from matdesign.training.data import load_frames
    from matdesign.training.trainer import training_domain

    frames = []
    for k in range(3):
        atoms = _bcc(["Nb", "Mo", "Ta", "Nb"] * 4, a=3.2 + 0.05 * k)
        atoms.rattle(0.1, seed=k)
        atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((16, 3)))
        frames.append(atoms)
    write(tmp_path / "d.extxyz", frames)
    loaded = load_frames(tmp_path / "d.extxyz", 4.0, {41: 0, 42: 1, 73: 2})
    expected = {}
    for atoms in frames:
        for key, d in structure_environment(atoms, 4.0)[2].items():
            expected[key] = min(d, expected.get(key, np.inf))
    got = dict(training_domain(loaded, 4.0).shortest_a)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-4)


def _edge_pairs(atoms, cutoff: float) -> list[str]:
    """Element pair of every directed edge within ``cutoff`` (ASE's neighbour list)."""
    from ase.neighborlist import neighbor_list

    from matdesign.domain import pair_name

    i, j = neighbor_list("ij", atoms, cutoff)
    s = atoms.get_chemical_symbols()
    return [pair_name(s[a], s[b]) for a, b in zip(i, j, strict=True)]


def test_pair_prior_recovers_known_mixing_coefficients():
    """Energies built as Σ x_s e_s + Σ ε_AB u_AB (per atom) give back RMS(ε) exactly."""
    from ase.neighborlist import neighbor_list

    from matdesign.domain import pair_prior

    element = {"Nb": -10.1, "Mo": -10.9, "Ta": -11.8}  # eV/atom
    mixing = {"Mo-Nb": -0.09, "Nb-Ta": 0.02, "Mo-Ta": -0.15}  # eV/atom at u = 1
    rng = np.random.default_rng(0)
    samples = []
    for k in range(12):
        atoms = _bcc(list(rng.choice(["Nb", "Mo", "Ta"], 16)), a=3.2 + 0.01 * k)
        atoms.rattle(0.05, seed=k)
        pairs = _edge_pairs(atoms, 4.0)
        per_atom = (np.mean([element[s] for s in atoms.get_chemical_symbols()])
                    + sum(mixing.get(p, 0.0) for p in pairs) / len(pairs))
        i, j = neighbor_list("ij", atoms, 4.0)
        samples.append((np.array(atoms.get_chemical_symbols()), i, j, per_atom * len(atoms)))
    rms = np.sqrt(np.mean(np.square(list(mixing.values()))))
    assert pair_prior(samples) == pytest.approx(rms, rel=1e-6)
    # elements alone say nothing about mixing
    nb = [(np.array(["Nb"] * 2), np.array([0, 1]), np.array([1, 0]), -20.2)]
    assert pair_prior(nb) == 0.0


def _mixing_samples(element: dict[str, float], mixing: dict[str, float], n: int = 24,
                    seed: int = 0) -> list:
    """Random binary 16-atom bcc cells of the four refractory elements with energies
    Σ x_s e_s + Σ ε_AB u_AB (per atom), plus each element alone at e_s and, strained, above
    it."""
    from ase.neighborlist import neighbor_list

    rng = np.random.default_rng(seed)
    samples = []
    for el, e in element.items():
        for a, excess in ((3.25, 0.0), (3.05, 0.3)):  # ground state, then a compressed cell
            atoms = _bcc([el] * 16, a=a)
            i, j = neighbor_list("ij", atoms, 4.0)
            samples.append((np.array(atoms.get_chemical_symbols()), i, j, (e + excess) * 16))
    names = sorted(element)
    for k in range(n):
        pair = [names[t] for t in rng.choice(len(names), 2, replace=False)]
        atoms = _bcc(list(rng.choice(pair, 16)), a=3.2 + 0.01 * (k % 5))
        pairs = _edge_pairs(atoms, 4.0)
        per_atom = (np.mean([element[s] for s in atoms.get_chemical_symbols()])
                    + sum(mixing.get(p, 0.0) for p in pairs) / len(pairs))
        i, j = neighbor_list("ij", atoms, 4.0)
        samples.append((np.array(atoms.get_chemical_symbols()), i, j, per_atom * 16))
    return samples


def _quadratic_mixing(w_pp: float, w_gg: float, w_pg: float) -> dict[str, float]:
    """ε_AB = q(Δperiod, Δgroup)·w for the six Nb-Mo-Ta-W pairs (Nb 5/5, Mo 5/6, Ta 6/5,
    W 6/6 as period/group), eV/atom."""
    table = {"Nb": (5, 5), "Mo": (5, 6), "Ta": (6, 5), "W": (6, 6)}
    out = {}
    for a, b in (("Mo", "Nb"), ("Mo", "Ta"), ("Mo", "W"), ("Nb", "Ta"), ("Nb", "W"),
                 ("Ta", "W")):
        dp, dg = table[a][0] - table[b][0], table[a][1] - table[b][1]
        out[f"{a}-{b}"] = w_pp * dp * dp + w_gg * dg * dg + w_pg * dp * dg
    return out


def test_pair_coefficients_measure_mixing_against_each_elements_ground_state():
    """With the elements' own cells present, ε comes back exactly; a strained element cell
    above the ground state does not shift the reference."""
    from matdesign.domain import pair_coefficients

    element = {"Nb": -10.1, "Mo": -10.9, "Ta": -11.8, "W": -13.0}
    mixing = _quadratic_mixing(-0.01, -0.1, 0.05)
    got = pair_coefficients(_mixing_samples(element, mixing))
    assert got == pytest.approx(mixing, abs=1e-9)


def test_chemical_prior_is_the_quadratic_forms_leave_one_pair_out_error():
    """An exactly quadratic ε_AB(Δperiod, Δgroup) is predicted for every left-out pair
    (σ_pair = 0 with the chemical term, RMS ε without); one pair off the form by δ makes
    σ_pair positive and below δ."""
    from matdesign.domain import descriptor_loo_residuals, pair_prior

    element = {"Nb": -10.1, "Mo": -10.9, "Ta": -11.8, "W": -13.0}
    mixing = _quadratic_mixing(-0.01, -0.1, 0.05)
    samples = _mixing_samples(element, mixing)
    assert pair_prior(samples, chemical=True) == pytest.approx(0.0, abs=1e-8)
    rms = np.sqrt(np.mean(np.square(list(mixing.values()))))
    assert pair_prior(samples) == pytest.approx(rms, rel=1e-6)
    # Nb-Mo off by +0.04. Left out, it misses by 0.04 (the other five are exact). Ta-W left
    # out: w_gg is -0.06 from Nb-Mo and -0.10 from Nb-W + Mo-Ta (with w_pp from Nb-Ta, Mo-W);
    # least squares splits the difference, so Ta-W (Δgroup² only) misses by -0.02.
    off = {**mixing, "Mo-Nb": mixing["Mo-Nb"] + 0.04}
    residuals = descriptor_loo_residuals(off)
    assert residuals[sorted(off).index("Mo-Nb")] == pytest.approx(0.04, abs=1e-9)
    assert residuals[sorted(off).index("Ta-W")] == pytest.approx(-0.02, abs=1e-9)
    assert 0.0 < pair_prior(_mixing_samples(element, off), chemical=True) < 0.04
    # three pairs cannot test a three-weight form: the plain RMS instead
    three = {k: off[k] for k in ("Mo-Nb", "Nb-Ta", "Nb-W")}
    assert descriptor_loo_residuals(three) is None


def test_unseen_pairs_add_the_prior_to_the_calculators_spread():
    """σ = √(committee² + (σ_pair·u·N)²) with u counted on ASE's neighbour list."""
    calc = make_calc(arch="product")  # a 3-head committee (Cu, Au), cutoff 3.8 Å
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
    atoms.symbols[[1, 2, 5]] = "Au"
    atoms.rattle(0.05, seed=1)
    calc.chemical_domain = ChemicalDomain(("Au-Au", "Au-Cu", "Cu-Cu"), 2, 3.8,
                                          pair_prior_ev_per_atom=0.07)
    inside = calc.calculate_batch([atoms])[0]["energy_std"]
    calc.chemical_domain = ChemicalDomain(("Au-Au", "Cu-Cu"), 2, 3.8, pair_prior_ev_per_atom=0.07)
    pairs = _edge_pairs(atoms, 3.8)
    u = pairs.count("Au-Cu") / len(pairs)
    assert 0.2 < u < 0.9
    expected = np.hypot(inside, 0.07 * u * len(atoms))
    assert calc.calculate_batch([atoms])[0]["energy_std"] == pytest.approx(expected, rel=1e-9)
    assert calc.uncertainty(atoms).energy_std_ev == pytest.approx(expected, rel=1e-6)
    # a record without the prior (older checkpoints) leaves the committee alone
    calc.chemical_domain = ChemicalDomain(("Au-Au", "Cu-Cu"), 2, 3.8)
    assert calc.calculate_batch([atoms])[0]["energy_std"] == pytest.approx(inside, rel=1e-12)
    prior = ChemicalDomain(("Au-Au",), 1, 3.8, pair_prior_ev_per_atom=0.07)
    assert ChemicalDomain.from_dict(prior.to_dict()) == prior


def test_many_species_neighbourhoods_add_their_prior_to_the_calculators_spread():
    """σ = √(committee² + (σ_many·w·N)²), w the fraction of atoms whose cutoff sphere holds
    more elements than the data's most, counted here on ASE's neighbour list; a record
    without σ_many (older checkpoints) or a structure inside the count leaves σ alone."""
    from ase.neighborlist import neighbor_list

    calc = make_calc(arch="product")  # a 3-head committee (Cu, Au), cutoff 3.8 Å
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 2)  # 32 atoms, 7.4 Å box
    atoms.symbols[0] = "Au"
    atoms.rattle(0.03, seed=2)
    pairs = ("Au-Au", "Au-Cu", "Cu-Cu")
    calc.chemical_domain = ChemicalDomain(pairs, 1, 3.8)
    plain = calc.calculate_batch([atoms])[0]["energy_std"]
    i, j = neighbor_list("ij", atoms, 3.8)
    numbers = atoms.numbers
    kinds = [{numbers[a]} | set(numbers[j[i == a]]) for a in range(len(atoms))]
    w = sum(len(k) > 1 for k in kinds) / len(atoms)
    assert 0.3 < w < 0.9  # the Au atom's neighbours only
    calc.chemical_domain = ChemicalDomain(pairs, 1, 3.8, many_species_prior_ev_per_atom=0.02)
    expected = np.hypot(plain, 0.02 * w * len(atoms))
    assert calc.calculate_batch([atoms])[0]["energy_std"] == pytest.approx(expected, rel=1e-9)
    assert calc.uncertainty(atoms).energy_std_ev == pytest.approx(expected, rel=1e-6)
    # data that had two elements per neighbourhood: nothing is added
    calc.chemical_domain = ChemicalDomain(pairs, 2, 3.8, many_species_prior_ev_per_atom=0.02)
    assert calc.calculate_batch([atoms])[0]["energy_std"] == pytest.approx(plain, rel=1e-12)
    record = ChemicalDomain(pairs, 2, 3.8, many_species_prior_ev_per_atom=0.02)
    assert ChemicalDomain.from_dict(record.to_dict()) == record
    assert "many_species_prior_ev_per_atom" not in ChemicalDomain(pairs, 2, 3.8).to_dict()
