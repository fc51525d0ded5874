"""MD: energy conservation (NVE), equipartition, thermostat, trajectory, input checks."""

from __future__ import annotations

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read

from matdesign.properties.md import MDCalculator


@pytest.fixture(scope="module")
def cu32():
    return bulk("Cu", "fcc", a=3.59, cubic=True) * (2, 2, 2)


def test_nve_conserves_energy_and_equipartitions(cu32, tmp_path):
    traj = tmp_path / "nve.traj"
    before = cu32.positions.copy()
    md = MDCalculator(EMT(), ensemble="nve", temperature_k=600, steps=300, timestep_fs=2.0)
    r = md.calc(cu32, trajectory=traj)
    assert abs(r.energy_drift_ev_per_atom_per_ps) < 1e-3
    assert r.max_energy_deviation_ev_per_atom < 5e-4
    # harmonic solid from a perfect lattice: kinetic energy halves on average (virial theorem)
    assert r.mean_temperature_k == pytest.approx(300, rel=0.2)
    assert len(read(traj, ":")) == 301
    assert (cu32.positions == before).all() and cu32.calc is None


def test_too_long_timestep_breaks_conservation(cu32):
    """Negative control: the drift measure must notice a bad integration."""
    good = MDCalculator(EMT(), temperature_k=600, steps=100, timestep_fs=1.0).calc(cu32)
    bad = MDCalculator(EMT(), temperature_k=600, steps=100, timestep_fs=12.0).calc(cu32)
    assert bad.max_energy_deviation_ev_per_atom > 20 * good.max_energy_deviation_ev_per_atom


def test_nvt_langevin_reaches_target_temperature(cu32):
    r = MDCalculator(EMT(), ensemble="nvt", temperature_k=300, steps=600, timestep_fs=2.0,
                     friction=0.02, seed=1).calc(cu32)
    assert r.energy_drift_ev_per_atom_per_ps is None
    assert r.mean_temperature_k == pytest.approx(300, rel=0.15)


def test_bad_arguments(cu32):
    with pytest.raises(ValueError, match="ensemble"):
        MDCalculator(EMT(), ensemble="npt")
    with pytest.raises(ValueError):
        MDCalculator(EMT(), steps=0)
    with pytest.raises(ValueError, match="at least 2 atoms"):
        MDCalculator(EMT(), steps=1).calc(cu32[:1])
