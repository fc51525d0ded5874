"""The shipped NbMoTaW model: loads, refuses unknown elements, gives physical bcc W.

References are independent of this code: the DFT (PBE) lattice constant of W implied by the
training data (3.17-3.19 Å), GPAW PBE energies of lattices the data lack, Kittel's cohesive
energy and energy conservation of velocity-Verlet MD.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from matdesign.calculator import load_calculator
from matdesign.checkpoint import load_potential
from matdesign.potential_spec import DEFAULT_MODEL
from matdesign.properties.relax import relax
from matdesign.training.compression import energies_above_bcc
from matdesign.training.lattice_energies import load_lattice_targets


@pytest.fixture(scope="module")
def calc():
    return load_calculator("default", dtype="float64")


def test_checkpoint_is_packaged_and_loads():
    assert DEFAULT_MODEL.is_file(), "matdesign/models/default.pt must ship with the package"
    model = load_potential(DEFAULT_MODEL)
    assert model.species == ["Nb", "Mo", "Ta", "W"]
    assert "valid" in model.metadata and model.metadata["valid"]["n_frames"] > 0


def test_unknown_element_is_refused(calc):
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.calc = calc
    with pytest.raises(ValueError, match=r"\['Cu'\].*\['Nb', 'Mo', 'Ta', 'W'\]"):
        atoms.get_potential_energy()


def test_bcc_w_lattice_constant_within_one_percent(calc):
    relaxed, result = relax(bulk("W", "bcc", a=3.30, cubic=True), calc, fmax=1e-4)
    assert result.converged
    a = relaxed.cell.lengths()[0]
    assert a == pytest.approx(3.17, rel=0.01)
    # a cubic crystal stays cubic
    np.testing.assert_allclose(relaxed.cell.lengths(), [a] * 3, rtol=1e-6)


def test_nve_conserves_energy_with_shipped_model(calc):
    from ase import units
    from ase.md import velocitydistribution as vd
    from ase.md.verlet import VelocityVerlet

    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(2)
    atoms.symbols[[0, 5, 9]] = ["Mo", "Ta", "Nb"]
    atoms.calc = calc
    thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=600, rng=np.random.default_rng(0))
    vd.Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=5)
    dyn.run(200)
    drift = (max(energies) - min(energies)) / len(atoms)
    kinetic = atoms.get_kinetic_energy() / len(atoms)
    assert kinetic > 0.01  # atoms really moved (about 300 K after equipartition)
    assert drift < 2e-4  # eV/atom over 200 fs; a non-conservative force would drift far more


def test_isolated_atom_sits_a_cohesive_energy_above_the_crystal(calc):
    """Kittel's cohesive energy of W is 8.90 eV/atom; the shipped model must not bind a lone
    atom (format 1 put it only 0.67 eV above bcc W)."""
    from ase import Atoms

    crystal = bulk("W", "bcc", a=3.17)
    crystal.calc = calc
    lone = Atoms("W", cell=[20, 20, 20], pbc=True)
    lone.calc = calc
    e_coh = lone.get_potential_energy() - crystal.get_potential_energy() / len(crystal)
    assert e_coh == pytest.approx(8.9, abs=0.5)


def _local_minima(values: np.ndarray) -> int:
    return int(np.sum((values[1:-1] < values[:-2]) & (values[1:-1] < values[2:])))


def test_no_spurious_minima_under_compression_and_in_simple_cubic_w(calc):
    """E(a) of simple-cubic W has one minimum (format 1 had two), and bcc W compressed to
    70 % of its volume rises monotonically."""
    sc = []
    for a in np.linspace(2.0, 3.6, 41):
        atoms = bulk("W", "sc", a=a)
        atoms.calc = calc
        sc.append(atoms.get_potential_energy())
    assert _local_minima(np.array(sc)) == 1
    bcc = []
    for a in np.linspace(3.17 * 0.7 ** (1 / 3), 3.17, 25):
        atoms = bulk("W", "bcc", a=a, cubic=True)
        atoms.calc = calc
        bcc.append(atoms.get_potential_energy())
    assert np.all(np.diff(bcc) < 0)  # energy falls as the lattice opens up to equilibrium
    # A W pair pushed to 1.7 Å (the overlap check refuses < 1.62 Å) costs far more than kT.
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(2)
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    bond = atoms.positions[0] - atoms.positions[1]
    atoms.positions[0] = atoms.positions[1] + 1.7 * bond / np.linalg.norm(bond)
    assert atoms.get_potential_energy() - e0 > 10.0  # eV


def test_shipped_committee_is_calibrated_and_flags_out_of_domain(calc):
    """The shipped model carries a calibrated committee: a relaxed bcc W cell is trusted, a
    vacancy-free but 15 %-strained, rattled cell is less so."""
    model = load_potential(DEFAULT_MODEL)
    assert model.num_heads > 1
    meta = model.metadata
    assert meta["uncertainty_scale"] > 0 and meta["uncertainty_threshold_ev_per_atom"] > 0
    ok = bulk("W", "bcc", a=3.17, cubic=True).repeat(2)
    far = ok.copy()
    far.set_cell(far.cell * 1.15, scale_atoms=True)
    far.rattle(0.2, seed=0)
    s_ok, s_far = calc.uncertainty(ok), calc.uncertainty(far)
    assert s_ok.energy_std_ev / len(ok) < meta["uncertainty_threshold_ev_per_atom"]
    assert s_far.energy_std_ev > s_ok.energy_std_ev


#: DFT (PBE) bcc lattice constants implied by the training data's elastic groups, Å
DFT_A = {"Nb": 3.323, "Mo": 3.169, "Ta": 3.322, "W": 3.190}


@pytest.mark.parametrize("element", list(DFT_A))
def test_compressed_lattices_of_every_element_rise_and_stay_above_bcc(calc, element):
    """bcc, fcc and simple-cubic cells squeezed from 0.8 to 0.35 of the DFT bcc volume V0:
    the energy rises at every step and stays above bcc at V0 (the fourteenth session's
    retrain put simple-cubic W at 2.0 Å 2.3 eV/atom below bcc; the shipped ninth-session
    model had a dip in simple-cubic cells near 0.47 V0)."""
    scan = energies_above_bcc(calc, element, DFT_A[element], np.linspace(0.35, 0.8, 31))
    assert set(scan) == {"bcc", "fcc", "sc"}
    for lattice, e in scan.items():
        assert np.all(np.diff(e) < 0), (lattice, np.round(e, 2))  # falls as V grows
        assert e.min() > 0.1, (lattice, np.round(e, 2))  # eV/atom above bcc at V0


@pytest.mark.parametrize("element", list(DFT_A))
def test_extremely_compressed_lattices_rise(calc, element):
    """bcc, fcc and simple-cubic cells from 0.40 down to 0.30 of V0 (nearest neighbours
    1.8-2.0 Å, above the calculator's overlap threshold) keep rising in energy as they are
    squeezed. v15 dipped by 0.1-0.3 eV/atom below 0.31 V0 in fcc Mo and W; v21 (a
    candidate of the twenty-first session) by up to 16 eV/atom in fcc Mo and W."""
    scan = energies_above_bcc(calc, element, DFT_A[element], np.linspace(0.30, 0.40, 11))
    for lattice, e in scan.items():
        assert np.all(np.diff(e) < 0), (lattice, np.round(e, 2))


@pytest.mark.parametrize("element", list(DFT_A))
def test_no_lattice_falls_below_bcc_near_equilibrium(calc, element):
    """bcc is the ground state of Nb, Mo, Ta and W: fcc and simple-cubic cells from 0.8 to 1.3
    of the DFT bcc volume V0 stay above bcc at V0 (PBE puts fcc 0.2-0.5 eV/atom higher). A
    fine-tune that only asked stretched lattices to be under tension (twentieth session, not
    shipped) put simple-cubic Mo 0.93 eV/atom and fcc Ta 0.42 eV/atom *below* bcc."""
    scan = energies_above_bcc(calc, element, DFT_A[element], np.linspace(0.8, 1.3, 21))
    for lattice in ("fcc", "sc"):
        assert scan[lattice].min() > 0.05, (lattice, np.round(scan[lattice], 3))


@pytest.mark.parametrize("element", list(DFT_A))
def test_stretched_lattices_rise_monotonically(calc, element):
    """bcc, fcc and simple-cubic cells stretched from 1.25 to 2.5 V0 rise in energy at every
    step (these metals' bcc, fcc and sc equilibrium volumes lie within about ±10 % of bcc's;
    GPAW PBE puts every sc minimum near 1.1 V0). v15, shipped until the twenty-first
    session, had a stretched minimum (1.4-2.0 V0) in some lattice of every element, simple-
    cubic W's only one at 1.84 V0."""
    scan = energies_above_bcc(calc, element, DFT_A[element], np.linspace(1.25, 2.5, 26))
    for lattice, e in scan.items():
        assert np.all(np.diff(e) > 0), (lattice, np.round(e, 3))


#: GPAW PBE energies of one-atom cells (benchmarks/gpaw_lattices.py; another DFT code than the
#: data's, the same functional): the reference for lattices the training data never show
PBE_LATTICES = (Path(__file__).resolve().parents[1]
                / "benchmarks/results/s21/lattice_energies_pbe.json")


@pytest.mark.parametrize("element", list(DFT_A))
def test_unseen_lattices_lie_where_pbe_puts_them(calc, element):
    """fcc and simple-cubic cells near equilibrium (0.92-1.1 V0) sit above bcc by what PBE
    gives (GPAW, within 0.1 eV/atom), and every lattice stretched to 1.25-2.5 V0 within
    0.25 eV/atom. The data hold no fcc, simple-cubic or far-stretched cell; v15, shipped until
    the twenty-first session, put simple-cubic Mo 0.9 eV/atom and stretched fcc Mo 3.5 eV/atom
    too low."""
    targets = [t for t in load_lattice_targets(PBE_LATTICES) if t.element == element]
    assert len(targets) == 26
    fractions = sorted({t.volume_fraction for t in targets})
    scan = energies_above_bcc(calc, element, DFT_A[element], np.array(fractions))
    for t in targets:
        model = scan[t.lattice][fractions.index(t.volume_fraction)]
        near = t.volume_fraction <= 1.1 and t.lattice != "bcc"
        tolerance = 0.1 if near else 0.25
        if near or t.volume_fraction >= 1.25:
            assert model == pytest.approx(t.energy_above_bcc_ev, abs=tolerance), t


#: GPAW PBE mixing energies of 16-atom ternary and quaternary cells the shipped model never
#: trained on (benchmarks/gpaw_alloys.py), less GPAW's pairwise offset from the data's VASP
#: (benchmarks/gpaw_pair_offsets.py): the data hold elements and binaries only
PBE_ALLOYS_HELD_OUT = (Path(__file__).resolve().parents[1] / "benchmarks/results/s25"
                       / "mixing_energies_pbe_hot_holdout_corrected.json")


def test_unseen_alloys_mix_where_pbe_puts_them_and_are_flagged(calc):
    """Cold ternary and quaternary cells never trained on lie within 15 meV/atom of GPAW's
    PBE mixing energy (against bcc elements at the data's lattice constants, the cell at
    Vegard's volume), and the calculator's σ/N for each is at least the checkpoint's σ_many.
    v21d, shipped until the twenty-second session, put W-rich and compressed quaternaries
    18-22 meV/atom too low with a σ/N of 2-3 meV/atom."""
    from matdesign.training.mixing_energies import load_mixing_targets

    volumes = {el: a**3 / 2 for el, a in DFT_A.items()}
    targets = load_mixing_targets(PBE_ALLOYS_HELD_OUT)
    cold = [t for t in targets if "hot" not in t.name]
    assert len(cold) >= 3
    refs = {}
    for el in DFT_A:
        ref = bulk(el, "bcc", a=DFT_A[el])
        ref.calc = calc
        refs[el] = ref.get_potential_energy()
    sigma_many = load_potential(DEFAULT_MODEL).metadata["chemical_domain"][
        "many_species_prior_ev_per_atom"]
    for t in cold:
        atoms = t.cell(volumes)
        atoms.calc = calc
        mix = (atoms.get_potential_energy()
               - sum(refs[s] for s in t.symbols)) / len(atoms)
        assert mix == pytest.approx(t.mixing_energy_ev, abs=0.015), t.name
        assert calc.results["energy_std"] / len(atoms) >= 0.9 * sigma_many, t.name


#: GPAW PBE frames of 16-atom cells the shipped model never trained on, equilibrated at
#: 800-2,500 K by the model's MD or displaced at random (benchmarks/gpaw_hot_frames.py,
#: benchmarks/gpaw_alloys.py): energies mapped to the data's VASP by the elements' chemical
#: potentials and GPAW's pairwise offset (benchmarks/gpaw_pair_offsets.py), forces as GPAW
#: gives them
PBE_HOT_FRAMES_HELD_OUT = (Path(__file__).resolve().parents[1]
                           / "benchmarks/results/s25/gpaw_frames_holdout.extxyz")


def test_unseen_hot_alloy_frames_get_pbe_energies_and_forces(calc):
    """Hot ternary and quaternary frames never trained on: energy within 8 meV/atom of the
    mapped PBE energy per frame (except one frame within 15) and force MAE at most 0.16 eV/Å
    over the frames, mean |error| at most 6. v25: 0.2-5.3 meV/atom and one 12.9, mean 4.8,
    0.14 eV/Å. v24, trained on
    the uncorrected labels, sits 9-29 meV/atom above these on the equiatomic frames; v23 put
    the first set 18-38 meV/atom too low with force MAE 0.205 eV/Å (the issue's held-out
    quaternary AIMD: 25.5 meV/atom, 0.198 eV/Å)."""
    from ase.io import read

    frames = [a for a in read(PBE_HOT_FRAMES_HELD_OUT, ":")
              if a.info["config_type"].startswith("GPAW_hot")]
    assert len(frames) >= 3
    force_errors, energy_errors = [], {}
    for atoms in frames:
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        atoms.calc = calc
        energy_errors[atoms.info["name"]] = (atoms.get_potential_energy() - energy) / len(atoms)
        force_errors.append(np.abs(atoms.get_forces() - forces).ravel())
    errors = np.abs(list(energy_errors.values()))
    assert errors.max() <= 0.015 and (errors > 0.008).sum() <= 1, energy_errors
    assert errors.mean() <= 0.006, energy_errors
    assert np.concatenate(force_errors).mean() <= 0.16
