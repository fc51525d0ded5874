"""Phonons (phonopy path) vs ASE's independent ase.phonons.Phonons, sum rules, policies."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.phonons import Phonons
from ase.units import _e, _hplanck

from matdesign.properties.phonon import (
    MAX_SUPERCELL_ATOMS,
    PhononCalculator,
    PhononInstabilityError,
    band_structure_data,
    choose_supercell,
)
from matdesign.properties.relax import relax

EV_TO_THZ = _e / _hplanck / 1e12
R_GAS = 8.314462618  # J/(K mol)


def ase_frequencies(atoms, supercell, labels, tmp_path):
    """Frequencies (THz) at ASE's special points from ASE's own finite-difference phonons."""
    ph = Phonons(atoms, EMT(), supercell=supercell, delta=0.01, name=str(tmp_path / "ase_ph"))
    ph.run()
    ph.read(acoustic=True)
    special = atoms.cell.bandpath(npoints=0).special_points
    energies = ph.band_structure([special[k] for k in labels])
    return {k: np.sort(e * EV_TO_THZ) for k, e in zip(labels, energies, strict=True)}


def by_label(result):
    return {p["label"]: np.sort(p["frequencies_thz"]) for p in result.high_symmetry_points}


@pytest.fixture(scope="module")
def cu_result(tmp_path_factory):
    atoms, res = relax(bulk("Cu", "fcc", a=3.6), EMT(), fmax=1e-5)
    assert res.converged
    out = tmp_path_factory.mktemp("cu_phonon")
    return atoms, PhononCalculator(EMT(), min_length=8.0).calc(atoms, output_dir=out), out


def test_fcc_matches_ase_phonons(cu_result, tmp_path):
    atoms, result, _ = cu_result
    assert result.supercell_matrix == [[4, 0, 0], [0, 4, 0], [0, 0, 4]]
    ours = by_label(result)
    # Γ, X, L, W are commensurate with a 4x4x4 supercell, where both methods are exact
    ref = ase_frequencies(atoms, (4, 4, 4), ["X", "L", "W"], tmp_path)
    for label in ("X", "L", "W"):
        assert np.allclose(ours[label], ref[label], atol=0.02), label
    assert ours["X"][2] > 1.0  # not a trivially zero spectrum
    assert result.dynamically_stable and result.min_frequency_thz > -1e-3


def test_acoustic_sum_rule_and_dulong_petit(cu_result):
    _, result, _ = cu_result
    gamma = by_label(result)["Γ"]
    assert np.abs(gamma).max() < 1e-3  # three zero modes at Γ (1-atom cell)
    t = np.array(result.thermal["temperature_k"])
    cv = np.array(result.thermal["heat_capacity_j_per_k_mol"])
    assert t[0] == 0 and t[-1] == pytest.approx(1000.0)
    assert cv[-1] == pytest.approx(3 * R_GAS, rel=0.01)  # classical limit, T >> Θ_D
    assert cv[0] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(cv) >= -1e-9)


def test_outputs_written(cu_result):
    import phonopy

    _, result, out = cu_result
    assert (out / "band_dos.png").stat().st_size > 10_000
    ph = phonopy.load(out / "phonopy.yaml", is_compact_fc=False, produce_fc=False)
    assert ph.force_constants.shape == (64, 64, 3, 3)
    assert result.to_dict()["n_atoms_supercell"] == 64


def test_band_data_matches_high_symmetry_points_and_dos_sum_rule(cu_result):
    _, result, _ = cu_result
    band = json.loads(json.dumps(result.to_dict()))["band_structure"]  # as stored in a db
    freqs = np.array(band["frequencies_thz"])
    assert freqs.shape == (len(band["distances"]), 3)
    high = by_label(result)
    for seg in band["segments"]:  # end points of every segment are high-symmetry points
        assert np.allclose(np.sort(freqs[seg["start"]]), high[seg["from"]], atol=1e-4)
        assert np.allclose(np.sort(freqs[seg["stop"] - 1]), high[seg["to"]], atol=1e-4)
        assert np.all(np.diff(band["distances"][seg["start"]:seg["stop"]]) > 0)
    assert {s["from"] for s in band["segments"]} >= {"Γ", "X", "L"}
    assert band["labels"][0] == "Γ" and len(band["labels"]) == len(band["label_distances"])
    assert np.isclose(band["label_distances"][-1], band["distances"][-1])
    assert freqs.min() >= result.min_frequency_thz - 1e-4
    dos = result.dos  # states/THz per primitive cell integrate to 3 N
    integral = np.trapezoid(dos["total_dos_per_thz"], dos["frequencies_thz"])
    assert integral == pytest.approx(3 * result.n_atoms_primitive, rel=0.02)
    assert len(json.dumps(result.to_dict())) < 40_000


def test_band_data_thinning_keeps_segment_ends(cu_result):
    import phonopy

    _, result, out = cu_result
    ph = phonopy.load(out / "phonopy.yaml")
    ph.run_band_structure([np.linspace([0, 0, 0], [0.5, 0, 0.5], 51),
                           np.linspace([0.5, 0, 0.5], [0.5, 0.25, 0.75], 51)],
                          labels=["Γ", "X", "W"], path_connections=[True, False])
    thin = band_structure_data(ph, max_values=60)
    assert [s["stop"] - s["start"] for s in thin["segments"]] == [10, 10]
    assert thin["labels"] == ["Γ", "X", "W"]
    high = by_label(result)
    for seg in thin["segments"]:
        assert np.allclose(np.sort(thin["frequencies_thz"][seg["stop"] - 1]), high[seg["to"]],
                           atol=1e-4)


def test_hcp_two_atom_basis_matches_ase(tmp_path):
    atoms, res = relax(bulk("Cu", "hcp", a=2.55, c=4.16), EMT(), fmax=1e-5)
    assert res.converged
    result = PhononCalculator(EMT(), min_length=7.0, mesh=(8, 8, 6)).calc(atoms)
    assert result.supercell_matrix == [[4, 0, 0], [0, 4, 0], [0, 0, 2]]
    ours = by_label(result)
    assert np.sum(np.abs(ours["Γ"]) < 1e-3) == 3 and np.all(ours["Γ"][3:] > 1.0)
    ref = ase_frequencies(atoms, (4, 4, 2), ["G", "M", "A", "L"], tmp_path)
    for ours_label, ref_label in [("Γ", "G"), ("M", "M"), ("A", "A"), ("L", "L")]:
        assert np.allclose(ours[ours_label], ref[ref_label], atol=0.03), ours_label


def test_unstable_bcc_copper_policies(tmp_path):
    atoms, _ = relax(bulk("Cu", "bcc", a=2.87), EMT(), fmax=1e-5)
    kwargs = {"min_length": 6.0, "mesh": (8, 8, 8)}
    with pytest.warns(UserWarning, match="imaginary"):
        result = PhononCalculator(EMT(), **kwargs).calc(atoms)
    assert not result.dynamically_stable and result.min_frequency_thz < -0.5
    assert len(json.dumps(result.band_structure)) < 20_000  # bcc primitive: compact
    assert np.min(result.band_structure["frequencies_thz"]) < -0.5  # the soft N-point mode
    assert result.thermal_imaginary_modes_dropped
    with pytest.raises(PhononInstabilityError):
        PhononCalculator(EMT(), imaginary_policy="error", **kwargs).calc(atoms, output_dir=tmp_path)
    assert (tmp_path / "phonopy.yaml").is_file()  # finished work is kept


def test_supercell_choice_respects_cap():
    lattice = bulk("Cu", "fcc", a=3.6).cell.array
    n, width = choose_supercell(lattice, 1, 15.0, 200)
    assert np.prod(n) <= 200 and n == [5, 5, 5] and width < 15.0
    n, width = choose_supercell(lattice, 1, 15.0, 1000)
    assert width >= 15.0 and np.prod(n) == 8**3
    with pytest.raises(ValueError):
        choose_supercell(lattice, 300, 10.0, 200)
    with pytest.raises(ValueError, match="imaginary_policy"):
        PhononCalculator(EMT(), imaginary_policy="maybe")


@pytest.mark.parametrize(("lattice", "a"), [("bcc", 3.323), ("fcc", 4.05)])
def test_default_cap_reaches_the_default_width_for_one_atom_cubic_cells(lattice, a):
    """A one-atom bcc or fcc primitive cell gets its 15 Å supercell under the default cap (the
    earlier 200 stopped at 5×5×5, 11.7 Å for bcc Nb, below a two-layer 5 Å model's reach)."""
    cell = bulk("Nb" if lattice == "bcc" else "Al", lattice, a=a).cell.array
    n, width = choose_supercell(cell, 1, PhononCalculator(EMT()).min_length,
                                PhononCalculator(EMT()).max_atoms)
    assert PhononCalculator(EMT()).max_atoms == MAX_SUPERCELL_ATOMS
    assert width >= 15.0 and np.prod(n) <= MAX_SUPERCELL_ATOMS, (n, width)
