"""Elastic constants and EOS vs independent energy-curvature and analytic relations."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.units import GPa

from matdesign.properties.elastic import ElasticCalculator, elastic_moduli
from matdesign.properties.eos import EOSCalculator
from matdesign.properties.relax import relax

TETRAGONAL = np.diag([1.0, -1.0, 0.0])  # d2E/dd2 = 2 V (C11 - C12)
SHEAR_XY = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # = 4 V C66


class FlippedStressEMT(EMT):
    """EMT with the stress sign flipped: a deliberately wrong convention."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if "stress" in self.results:
            self.results["stress"] = -self.results["stress"]


def energy_curvature_gpa(atoms, calc, direction, h=0.004, relax_ions=False):
    """d2E/dd2 / V (GPa) for F = I + d * direction, by central differences of energies."""
    energies = []
    for d in (-h, 0.0, h):
        a = atoms.copy()
        a.set_cell(atoms.cell.array @ (np.eye(3) + d * direction).T, scale_atoms=True)
        if relax_ions and d != 0.0:
            a, res = relax(a, calc, relax_cell=False, fmax=1e-5)
            assert res.converged
        a.calc = calc
        energies.append(a.get_potential_energy())
    return (energies[0] - 2 * energies[1] + energies[2]) / h**2 / atoms.get_volume() / GPa


def assert_matches_energy(c, atoms, calc):
    c = np.asarray(c)
    c11_c12 = energy_curvature_gpa(atoms, calc, TETRAGONAL) / 2
    c66 = energy_curvature_gpa(atoms, calc, SHEAR_XY) / 4
    assert c[0, 0] - c[0, 1] == pytest.approx(c11_c12, rel=0.01)
    assert c[5, 5] == pytest.approx(c66, rel=0.01)


@pytest.fixture(scope="module")
def cu_fcc():
    atoms, res = relax(bulk("Cu", "fcc", a=3.6), EMT(), fmax=1e-5)
    assert res.converged
    return atoms


@pytest.fixture(scope="module")
def cu_elastic(cu_fcc):
    return ElasticCalculator(EMT(), relax_ions=False).calc(cu_fcc)


def test_cubic_constants_match_energy_curvature(cu_fcc, cu_elastic):
    c = np.array(cu_elastic.elastic_tensor_gpa)
    assert_matches_energy(c, cu_fcc, EMT())
    # cubic symmetry, no spurious couplings
    assert c[0, 0] == pytest.approx(c[2, 2], rel=1e-6) and c[3, 3] == pytest.approx(c[5, 5])
    assert np.abs(c[:3, 3:]).max() < 1e-6
    assert cu_elastic.born_stable and cu_elastic.asymmetry_gpa < 1e-3


def test_flipped_stress_sign_is_caught(cu_fcc):
    """Negative control: the energy comparison must reject a stress-sign error."""
    wrong = ElasticCalculator(FlippedStressEMT(), relax_ions=False).calc(cu_fcc)
    with pytest.raises(AssertionError):
        assert_matches_energy(wrong.elastic_tensor_gpa, cu_fcc, EMT())
    assert not wrong.born_stable


def test_eos_bulk_modulus_equals_elastic_bulk_modulus(cu_fcc, cu_elastic):
    c = np.array(cu_elastic.elastic_tensor_gpa)
    eos = EOSCalculator(EMT(), max_strain=0.01, relax_ions=False).calc(cu_fcc)
    assert eos.b0_gpa == pytest.approx((c[0, 0] + 2 * c[0, 1]) / 3, rel=0.005)
    assert eos.v0_a3 == pytest.approx(cu_fcc.get_volume(), rel=1e-4)
    assert 3 < eos.b0_prime < 7 and len(eos.volumes_a3) == 7


def test_lennard_jones_obeys_cauchy_relation():
    lj = LennardJones(sigma=2.3, epsilon=0.4, rc=6.0, smooth=True)
    atoms, res = relax(bulk("Ar", "fcc", a=3.6), lj, fmax=1e-5)
    assert res.converged
    r = ElasticCalculator(lj, relax_ions=False).calc(atoms)
    c = np.array(r.elastic_tensor_gpa)
    assert c[0, 1] == pytest.approx(c[3, 3], rel=0.01)
    assert abs(r.cauchy_pressure_gpa) < 0.01 * c[3, 3]


def test_emt_is_not_a_pair_potential(cu_elastic):
    """Contrast for the Cauchy test: many-body EMT has a clearly non-zero Cauchy pressure."""
    c = np.array(cu_elastic.elastic_tensor_gpa)
    assert cu_elastic.cauchy_pressure_gpa > 0.1 * c[3, 3]


def test_relaxed_ion_hcp_matches_relaxed_energy_curvature():
    atoms, res = relax(bulk("Cu", "hcp", a=2.55, c=4.16), EMT(), fmax=1e-5)
    assert res.converged
    relaxed = ElasticCalculator(EMT(), relax_ions=True, fmax=1e-5).calc(atoms)
    clamped = ElasticCalculator(EMT(), relax_ions=False).calc(atoms)
    cr, cc = np.array(relaxed.elastic_tensor_gpa), np.array(clamped.elastic_tensor_gpa)
    c66_energy = energy_curvature_gpa(atoms, EMT(), SHEAR_XY, relax_ions=True) / 4
    assert cr[5, 5] == pytest.approx(c66_energy, rel=0.01)
    assert cr[5, 5] == pytest.approx((cr[0, 0] - cr[0, 1]) / 2, rel=0.01)  # hexagonal symmetry
    assert cc[5, 5] - cr[5, 5] > 5.0  # internal relaxation softens the hcp basal shear


def test_bcc_copper_is_mechanically_unstable_under_emt():
    atoms, res = relax(bulk("Cu", "bcc", a=2.87), EMT(), fmax=1e-5)
    assert res.converged
    r = ElasticCalculator(EMT(), relax_ions=False).calc(atoms)
    c = np.array(r.elastic_tensor_gpa)
    c11_c12 = energy_curvature_gpa(atoms, EMT(), TETRAGONAL) / 2
    assert c11_c12 < 0 and c[0, 0] - c[0, 1] == pytest.approx(c11_c12, rel=0.02)
    assert not r.born_stable and min(r.eigenvalues_gpa) < 0


def test_moduli_match_pymatgen():
    from pymatgen.analysis.elasticity import ElasticTensor

    rng = np.random.default_rng(0)
    c = np.diag([250.0, 230.0, 210.0, 60.0, 70.0, 80.0])
    c[:3, :3] += 100.0 * (1 - np.eye(3))
    noise = rng.normal(scale=5.0, size=(6, 6))
    c = c + 0.5 * (noise + noise.T)
    ours = elastic_moduli(c)
    ref = ElasticTensor.from_voigt(c)
    assert ours["bulk_modulus_voigt_gpa"] == pytest.approx(ref.k_voigt)
    assert ours["bulk_modulus_reuss_gpa"] == pytest.approx(ref.k_reuss)
    assert ours["shear_modulus_voigt_gpa"] == pytest.approx(ref.g_voigt)
    assert ours["shear_modulus_reuss_gpa"] == pytest.approx(ref.g_reuss)
    assert ours["universal_anisotropy"] == pytest.approx(ref.universal_anisotropy)
    assert ours["poisson_ratio"] == pytest.approx(ref.homogeneous_poisson)
    assert ours["youngs_modulus_gpa"] == pytest.approx(ref.y_mod / 1e9)


def test_hand_made_unstable_tensor():
    c = np.diag([100.0, 100.0, 100.0, 40.0, 40.0, -5.0])
    c[:3, :3] += 60.0 * (1 - np.eye(3))
    assert elastic_moduli(c)["born_stable"] is False
    c[5, 5] = 5.0
    assert elastic_moduli(c)["born_stable"] is True
    with pytest.raises(ValueError):
        elastic_moduli(np.full((6, 6), np.nan))
