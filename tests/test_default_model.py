"""The shipped NbMoTaW model: loads, refuses unknown elements, gives physical bcc W.

References are independent of this code: the DFT (PBE) lattice constant of W implied by the
training data (3.17-3.19 Å) and energy conservation of velocity-Verlet MD.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from matdesign.calculator import DEFAULT_MODEL, load_calculator
from matdesign.checkpoint import load_potential
from matdesign.properties.relax import relax


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
