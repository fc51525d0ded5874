"""The compression prior (matdesign.training.compression): compressed lattices must push back.

The reference volume is checked against EMT's own minimum, the pressures against ASE's
Lennard-Jones stresses on cells built here, and the training hook by a fit whose only loss is
this term.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from matdesign.model import PotentialConfig
from matdesign.training.compression import (
    LATTICES,
    MIN_PRESSURE_GPA,
    ORDERING_FRACTIONS,
    SHIFTS,
    CompressionTerm,
    OrderingTerm,
    equilibrium_volumes,
    volume_fractions,
)
from matdesign.training.config import TrainConfig
from matdesign.training.data import load_frames
from matdesign.training.trainer import train_potential
from tests.test_training_elastic import EPSILON, GPA, RC, SIGMA, TorchLJ


def labelled(atoms, pbc: bool = True):
    atoms.pbc = pbc
    atoms.calc = EMT()
    atoms.calc = SinglePointCalculator(
        atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
        stress=atoms.get_stress() if pbc else None)
    return atoms


def lj_cell(lattice: str, volume: float):
    """A one-atom Cu cell of ``lattice`` with ``volume`` Å³ on ASE's Lennard-Jones calculator
    (built here, independently of the prior's own cells)."""
    atoms = bulk("Cu", lattice, a=1.0)
    atoms.set_cell(atoms.cell * (volume / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
    atoms.calc = LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=RC)
    return atoms


def lj_pressure(lattice: str, volume: float) -> float:
    """P = −tr(σ)/3 of :func:`lj_cell` from ASE's stress, GPa."""
    return -lj_cell(lattice, volume).get_stress(voigt=True)[:3].mean() * GPA


def test_reference_volume_is_that_of_the_lowest_energy_elemental_frame(tmp_path):
    """Among Cu cells at a = 3.45 ... 3.75 Å, EMT's lowest one (a ≈ 3.59) sets V0; a mixed
    Cu-Ni cell and a non-periodic Cu cluster are not references (and Ni, with no elemental
    frame, gets none)."""
    lattice_constants = np.linspace(3.45, 3.75, 7)
    frames = [labelled(bulk("Cu", "fcc", a=a, cubic=True)) for a in lattice_constants]
    mixed = bulk("Cu", "fcc", a=3.55, cubic=True)
    mixed.numbers[:2] = 28  # Ni: lower EMT energy per atom than Cu
    cluster = bulk("Cu", "fcc", a=3.0, cubic=True)
    frames += [labelled(mixed), labelled(cluster, pbc=False)]
    path = tmp_path / "cu.extxyz"
    write(path, frames)
    loaded = load_frames(path, 4.0, {29: 0, 28: 1})
    emt = [f.get_potential_energy() / len(f) for f in frames[:7]]
    expected = lattice_constants[int(np.argmin(emt))] ** 3 / 4
    assert 3.55 < lattice_constants[int(np.argmin(emt))] < 3.65  # EMT Cu: a ≈ 3.59 Å
    assert equilibrium_volumes(loaded) == {"Cu": pytest.approx(expected)}  # Ni: no elemental


def test_pressures_and_hinge_match_ase_lennard_jones():
    """P = −tr(σ)/3 of every compressed cell of every shifted grid equals ASE's Lennard-Jones
    value on the same lattice and volume built here; the loss of a call is the mean squared
    shortfall below P_min over its grid, and the grids together cover 0.40 … 0.85 densely."""
    v0 = 3.6 ** 3 / 4
    term = CompressionTerm.build({"Cu": v0}, ["Cu"], RC, max_fraction=0.85)
    model = TorchLJ()
    fractions, lowest = [], np.inf
    for grid in range(SHIFTS):
        grid_fractions = volume_fractions(0.85, grid)
        assert len(term.labels[grid]) == len(LATTICES) * len(grid_fractions)
        fractions += list(grid_fractions)
        ours = term.pressures(model, grid, training=False).detach().numpy() * GPA
        ase = [lj_pressure(lattice, f * v0) for lattice in LATTICES for f in grid_fractions]
        np.testing.assert_allclose(ours, ase, rtol=1e-9, atol=1e-9)
        lowest = min(lowest, min(ase))
        assert max(ase) > 100 and min(ase) < MIN_PRESSURE_GPA  # both sides of the hinge
        shortfall = np.maximum(MIN_PRESSURE_GPA - np.array(ase), 0) / GPA
        for call in (grid, grid + SHIFTS):  # calls cycle through the grids
            assert float(term.loss(model, call).detach()) == pytest.approx(
                np.mean(shortfall ** 2), rel=1e-9)
    assert term.weakest(model)[1] == pytest.approx(lowest, abs=0.01)
    gaps = np.diff(np.sort(fractions))
    assert min(fractions) == pytest.approx(0.40) and max(fractions) <= 0.85
    assert gaps.max() <= 0.0126 and len(fractions) == len(set(np.round(fractions, 6)))


@pytest.mark.filterwarnings("ignore:train.compression_weight")  # Ni has no reference
def test_training_on_the_compression_term_alone_lifts_the_lowest_pressure(tmp_path):
    """With every data weight at zero, only the prior trains. The untrained network leaves a
    compressed cell below P_min (control: weight ~0); with the term, every cell ends above
    P_min (a trainer that ignored the term would leave the control's value)."""
    from tests.test_training import emt_frames

    path = tmp_path / "emt.extxyz"
    write(path, emt_frames(8) + [labelled(bulk("Cu", "fcc", a=3.6))])
    model = PotentialConfig(cutoff=4.0, channels=8, lmax=1, lmax_edge=1, num_layers=1,
                            radial_hidden=8, readout_hidden=8, zbl=False)
    frames = load_frames(path, model.cutoff, {29: 0, 28: 1})
    with pytest.warns(UserWarning, match=r"compression_weight.*\['Ni'\]"):
        CompressionTerm.build(equilibrium_volumes(frames), ["Cu", "Ni"], 4.0, 0.85)
    lowest = {}
    for weight in (1e-12, 100.0):
        cfg = TrainConfig.from_dict({
            "max_epochs": 6, "batch_size": 2, "lr": 2e-2, "ema_decay": 0.0, "patience": 100,
            "threads": 1, "energy_weight": 0.0, "forces_weight": 0.0, "stress_weight": 0.0,
            "compression_weight": weight, "compression_every": 1, "committee": False,
            "max_time_min": None})
        log_path = tmp_path / f"log{weight}.jsonl"
        train_potential(frames[:7], frames[7:], ["Cu", "Ni"], model, cfg, tmp_path / "m.pt",
                        progress=False, log_path=log_path)
        log = [json.loads(line) for line in log_path.read_text().splitlines()]
        lowest[weight] = log[-1]["compression_lowest_pressure_gpa"]["pressure"]
    assert lowest[1e-12] < MIN_PRESSURE_GPA - 0.5, lowest  # the term has work to do
    assert lowest[100.0] > MIN_PRESSURE_GPA + 0.5, lowest


@pytest.mark.parametrize(("key", "value"), [
    ("compression_max_fraction", 1.2), ("compression_max_fraction", 0.3),
    ("compression_weight", -1.0), ("compression_every", 0),
    ("compression_min_fraction", 0.2), ("compression_min_fraction", 0.5)])
def test_bad_compression_settings_are_named(key, value):
    with pytest.raises(ValueError, match=key):
        TrainConfig.from_dict({key: value})


def test_lower_grid_end_reaches_the_overlap_threshold_and_matches_lennard_jones(tmp_path):
    """compression_min_fraction 0.30 starts every grid there (v21's hole lay between 0.30 and
    0.35 V0); the extra cells' pressures equal ASE's Lennard-Jones values, and the wiring
    passes the setting through."""
    from matdesign.training.extra import build_extra_terms

    v0 = 3.6 ** 3 / 4
    term = CompressionTerm.build({"Cu": v0}, ["Cu"], RC, max_fraction=0.85, min_fraction=0.30)
    fractions = volume_fractions(0.85, 0, min_fraction=0.30)
    assert fractions[0] == pytest.approx(0.30) and len(term.labels[0]) == 3 * len(fractions)
    ours = term.pressures(TorchLJ(), 0, training=False).detach().numpy() * GPA
    ase = [lj_pressure(lattice, f * v0) for lattice in LATTICES for f in fractions]
    np.testing.assert_allclose(ours, ase, rtol=1e-9, atol=1e-9)
    path = tmp_path / "cu.extxyz"
    write(path, [labelled(bulk("Cu", "fcc", a=3.6))])
    cfg = TrainConfig.from_dict({"compression_weight": 1.0, "compression_min_fraction": 0.30})
    (wired,) = build_extra_terms(cfg, ["Cu"], 4.0, load_frames(path, 4.0, {29: 0}))
    assert wired.term.labels[0][0] == "Cu bcc 0.300"
    with pytest.raises(ValueError, match="compression_max_fraction"):
        TrainConfig.from_dict({"compression_min_fraction": 0.30, "compression_max_fraction": 0.3})


def test_compression_prior_without_an_elemental_reference_fails_before_training():
    with pytest.raises(ValueError, match="compression_weight.*single-element"):
        CompressionTerm.build({}, ["Cu"], 4.0, 0.85)


def test_stretched_cells_pressures_and_hinge_match_ase_lennard_jones():
    """The expansion prior: stretched cells (1.25 … 2.5 V0) carry ASE's Lennard-Jones pressure
    exactly, the hinge asks P ≤ −P_min (this weak LJ, ε = 0.01 eV, is under tension there, in
    some cells by less than P_min: those pay (P_min + P)²), and the grids cover 1.25 … 2.5."""
    v0 = (2 ** (1 / 6) * SIGMA) ** 3 / np.sqrt(2)  # fcc at the LJ pair minimum
    term = CompressionTerm.build({"Cu": v0}, ["Cu"], RC, max_fraction=2.5, expanded=True)
    model = TorchLJ()
    fractions, paid = [], []
    for grid in range(SHIFTS):
        grid_fractions = volume_fractions(2.5, grid, expanded=True)
        fractions += list(grid_fractions)
        ours = term.pressures(model, grid, training=False).detach().numpy() * GPA
        ase = [lj_pressure(lattice, f * v0) for lattice in LATTICES for f in grid_fractions]
        np.testing.assert_allclose(ours, ase, rtol=1e-9, atol=1e-9)
        assert max(ase) < 0  # stretched LJ is under tension ...
        excess = np.maximum(MIN_PRESSURE_GPA + np.array(ase), 0) / GPA
        paid += list(excess)
        assert float(term.loss(model, grid).detach()) == pytest.approx(
            np.mean(excess ** 2), rel=1e-9, abs=1e-30)
    assert max(paid) > 0 and min(paid) == 0  # ... on both sides of the hinge
    assert min(fractions) == pytest.approx(1.25) and max(fractions) <= 2.5 + 1e-9
    assert np.diff(np.sort(fractions)).max() <= 0.0251
    cell, p = term.weakest(model)
    assert cell.startswith("Cu ") and p < 0
    report, line = term.report(model)
    assert report["expansion_highest_pressure_gpa"]["pressure"] == pytest.approx(p)
    assert "P max" in line


def test_expansion_hinge_penalises_a_stretched_cell_under_compression():
    """A model whose stretched cells push outwards (a purely repulsive pair energy) gets a
    positive loss equal to the mean of (P_min + P)² over the cells, and its weakest cell is the
    one with the highest pressure."""

    class Repulsive(TorchLJ):
        def forward(self, graph, vectors):
            r = torch.linalg.norm(vectors, dim=1)
            pair = 0.5 * 10.0 * torch.exp(-r)  # eV, halved: each pair appears twice
            return torch.zeros(graph.positions.shape[0], dtype=r.dtype).index_add(
                0, graph.edge_index[0], pair)

    term = CompressionTerm.build({"Cu": 12.0}, ["Cu"], RC, max_fraction=2.0, expanded=True)
    model = Repulsive()
    p = term.pressures(model, 0, training=False).detach().numpy()
    assert (p > 0).all()  # pure repulsion: compressive stress everywhere
    expected = np.mean((MIN_PRESSURE_GPA / GPA + p) ** 2)
    assert float(term.loss(model, 0).detach()) == pytest.approx(expected, rel=1e-9)
    cell, highest = term.weakest(model)
    all_p = np.concatenate([term.pressures(model, g, training=False).detach().numpy()
                            for g in range(SHIFTS)]) * GPA
    assert highest == pytest.approx(all_p.max(), abs=0.01)


@pytest.mark.parametrize(("key", "value"), [
    ("expansion_max_fraction", 1.2), ("expansion_max_fraction", 5.0),
    ("expansion_weight", -1.0)])
def test_bad_expansion_settings_are_named(key, value):
    with pytest.raises(ValueError, match=key):
        TrainConfig.from_dict({key: value})


@pytest.mark.filterwarnings("ignore:train.expansion_weight")  # Ni has no reference
def test_training_on_the_expansion_term_alone_puts_stretched_cells_under_tension(tmp_path):
    """Only the expansion prior trains: the control (weight ~0) leaves a stretched cell short
    of the tension P_min asks; with the term every stretched cell ends under about that tension
    (the hinge stops pulling there)."""
    from tests.test_training import emt_frames

    path = tmp_path / "emt.extxyz"
    write(path, emt_frames(8) + [labelled(bulk("Cu", "fcc", a=3.6))])
    model = PotentialConfig(cutoff=4.0, channels=8, lmax=1, lmax_edge=1, num_layers=1,
                            radial_hidden=8, readout_hidden=8, zbl=False)
    frames = load_frames(path, model.cutoff, {29: 0, 28: 1})
    highest = {}
    for weight in (1e-12, 100.0):
        cfg = TrainConfig.from_dict({
            "max_epochs": 6, "batch_size": 2, "lr": 2e-2, "ema_decay": 0.0, "patience": 100,
            "threads": 1, "energy_weight": 0.0, "forces_weight": 0.0, "stress_weight": 0.0,
            "expansion_weight": weight, "expansion_max_fraction": 2.0, "compression_every": 1,
            "committee": False, "max_time_min": None})
        log_path = tmp_path / f"log{weight}.jsonl"
        train_potential(frames[:7], frames[7:], ["Cu", "Ni"], model, cfg, tmp_path / "m.pt",
                        progress=False, log_path=log_path)
        log = [json.loads(line) for line in log_path.read_text().splitlines()]
        highest[weight] = log[-1]["expansion_highest_pressure_gpa"]["pressure"]
    assert highest[1e-12] > -MIN_PRESSURE_GPA + 0.5, highest  # the term has work to do
    assert highest[100.0] < -MIN_PRESSURE_GPA + 0.1, highest  # the hinge stops near -P_min


def test_ordering_gaps_and_hinge_match_ase_lennard_jones():
    """The ordering prior: E − E_bcc(V0) of every fcc and simple-cubic cell equals ASE's
    Lennard-Jones energies of the same cells built here; the loss is the mean squared shortfall
    below the margin. LJ prefers close packing, so fcc sits below bcc (the hinge pays) and
    simple cubic above it."""
    v0 = 12.0
    term = OrderingTerm.build({"Cu": v0}, ["Cu"], RC, margin=0.01)
    model = TorchLJ()
    ours = term.gaps(model, training=False).detach().numpy()

    ase = np.array([lj_cell(lattice, f * v0).get_potential_energy()
                    - lj_cell("bcc", v0).get_potential_energy()
                    for lattice in ("fcc", "sc") for f in ORDERING_FRACTIONS])
    assert len(term.labels) == 2 * len(ORDERING_FRACTIONS)
    np.testing.assert_allclose(ours, ase, rtol=1e-9, atol=1e-12)
    assert ase[:len(ORDERING_FRACTIONS)].min() < 0 < ase[len(ORDERING_FRACTIONS):].min()
    expected = np.mean(np.maximum(0.01 - ase, 0) ** 2)
    assert float(term.loss(model).detach()) == pytest.approx(expected, rel=1e-9)
    report, line = term.report(model)
    assert report["ordering_lowest_gap_ev"]["gap"] == pytest.approx(ase.min(), abs=1e-3)
    assert report["ordering_lowest_gap_ev"]["cell"].startswith("Cu fcc") and "ΔE min" in line


@pytest.mark.parametrize(("key", "value"), [
    ("ordering_weight", -1.0), ("ordering_margin_ev", -0.1)])
def test_bad_ordering_settings_are_named(key, value):
    with pytest.raises(ValueError, match=key):
        TrainConfig.from_dict({key: value})


def test_ordering_prior_without_an_elemental_reference_fails_before_training():
    with pytest.raises(ValueError, match="ordering_weight.*single-element"):
        OrderingTerm.build({}, ["Cu"], 4.0, 0.1)


def test_extra_terms_wire_each_prior_by_name(tmp_path):
    """build_extra_terms switches on exactly the priors whose weight is positive, each on the
    compression_every schedule."""
    from matdesign.training.extra import build_extra_terms

    path = tmp_path / "cu.extxyz"
    write(path, [labelled(bulk("Cu", "fcc", a=3.6))])
    frames = load_frames(path, 4.0, {29: 0})
    cfg = TrainConfig.from_dict({"compression_weight": 1.0, "expansion_weight": 2.0,
                                 "ordering_weight": 3.0, "compression_every": 5})
    terms = build_extra_terms(cfg, ["Cu"], 4.0, frames)
    assert [(t.name, t.weight, t.every) for t in terms] == [
        ("compression", 1.0, 5), ("expansion", 2.0, 5), ("ordering", 3.0, 5)]
    assert build_extra_terms(TrainConfig.from_dict({}), ["Cu"], 4.0, frames) == ()
