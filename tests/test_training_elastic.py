"""Elastic constants as a fitting target (matdesign.training.elastic).

The central differences of the term are checked against ASE's Lennard-Jones calculator (its
own stress code) on cells strained here, independently of the module's strains; the
training hook is checked by a fit whose only loss is this term.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.io import write

from matdesign.model import PotentialConfig
from matdesign.training.config import TrainConfig
from matdesign.training.data import load_frames
from matdesign.training.elastic import ElasticTerm, parse_elastic_targets, rms_gpa
from matdesign.training.trainer import train_potential

GPA = 160.21766208  # eV/Å³ -> GPa
SIGMA, EPSILON, RC = 2.1667, 0.01, 6.5  # fcc a = 3.6: shells at 6.24 and 6.74 Å straddle rc


class TorchLJ(torch.nn.Module):
    """Shifted Lennard-Jones as atomic energies (half of each directed edge's pair energy)."""

    def __init__(self) -> None:
        super().__init__()
        self.epsilon = torch.nn.Parameter(torch.tensor(EPSILON, dtype=torch.float64))

    def forward(self, graph, vectors: torch.Tensor) -> torch.Tensor:
        r = torch.linalg.norm(vectors, dim=1)
        sr6 = (SIGMA / r) ** 6
        shift = (SIGMA / RC) ** 12 - (SIGMA / RC) ** 6
        pair = 4 * self.epsilon * (sr6 * sr6 - sr6 - shift)
        n = graph.positions.shape[0]
        return torch.zeros(n, dtype=r.dtype).index_add(0, graph.edge_index[0], 0.5 * pair)


def ase_constants(h: float) -> tuple[float, float, float]:
    """C11, C12, C44 (GPa) of LJ fcc Cu-like cells from ASE's stresses, strained here."""
    def stress(deformation: np.ndarray) -> np.ndarray:
        atoms = bulk("Cu", "fcc", a=3.6)
        atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
        atoms.calc = LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=RC)
        return atoms.get_stress(voigt=True) * GPA  # xx yy zz yz xz xy

    uni = [stress(np.diag([1 + s * h, 1, 1])) for s in (1, -1)]
    shear = []
    for s in (1, -1):
        f = np.eye(3)
        f[1, 2] = f[2, 1] = s * h / 2  # engineering shear γ_yz = h
        shear.append(stress(f))
    c11 = (uni[0][0] - uni[1][0]) / (2 * h)
    c12 = (uni[0][1] - uni[1][1]) / (2 * h)
    c44 = (shear[0][3] - shear[1][3]) / (2 * h)
    return c11, c12, c44


def test_elastic_term_matches_ase_lennard_jones():
    targets = parse_elastic_targets({"Cu": {"lattice": "fcc", "a": 3.6, "C11": 100.0,
                                            "C12": 50.0, "C44": 40.0}})
    term = ElasticTerm.build(targets, ["Cu"], RC, strain=0.004)
    errors = term.errors_gpa(TorchLJ())
    c11, c12, c44 = ase_constants(0.004)
    assert abs(c44) > 1.0 and abs(c11 - c12) > 1.0  # a non-trivial check
    np.testing.assert_allclose(
        [errors["Cu_C11"] + 100, errors["Cu_C12"] + 50, errors["Cu_C44"] + 40],
        [c11, c12, c44], atol=0.011)  # errors_gpa rounds to 0.01 GPa
    # the loss is the mean square of the same differences (in eV/Å³), off-diagonals included
    d = term.derivatives(TorchLJ(), training=False)
    assert float(term.loss(TorchLJ()).detach()) == pytest.approx(
        float((d - term.target).pow(2).mean()), rel=1e-12)


@pytest.mark.parametrize(("entry", "message"), [
    ({"lattice": "hcp", "a": 3.0, "C11": 1, "C12": 0.5, "C44": 1}, "lattice"),
    ({"lattice": "bcc", "a": 3.0, "C11": 1, "C12": 0.5}, "missing"),
    ({"lattice": "bcc", "a": 3.0, "C11": 1, "C12": 0.5, "C44": 1, "C66": 1}, "unknown"),
    ({"lattice": "bcc", "a": 3.0, "C11": 1, "C12": 2.0, "C44": 1}, "Born-stable"),
    ({"lattice": "bcc", "a": "x", "C11": 1, "C12": 0.5, "C44": 1}, "W.a"),
])
def test_bad_elastic_targets_are_named(entry, message):
    with pytest.raises(ValueError, match=message) as info:
        TrainConfig.from_dict({"elastic_targets": {"W": entry}})
    assert "elastic_targets.W" in str(info.value)


def test_elastic_target_of_an_unknown_element_fails_before_training():
    targets = parse_elastic_targets({"W": {"lattice": "bcc", "a": 3.19, "C11": 526,
                                           "C12": 195, "C44": 141}})
    with pytest.raises(ValueError, match="elastic_targets.W.*species"):
        ElasticTerm.build(targets, ["Cu", "Ni"], 4.0, 0.005)


def test_training_on_the_elastic_term_alone_moves_the_constants(tmp_path):
    """With every data weight at zero, only this term trains: the constants must approach
    the targets (a trainer that ignored the term would leave them where they started)."""
    from tests.test_training import emt_frames

    path = tmp_path / "emt.extxyz"
    write(path, emt_frames(8))
    model = PotentialConfig(cutoff=4.0, channels=8, lmax=1, lmax_edge=1, num_layers=1,
                            radial_hidden=8, readout_hidden=8)
    frames = load_frames(path, model.cutoff, {29: 0, 28: 1})
    targets = {"Cu": {"lattice": "fcc", "a": 3.6, "C11": 170.0, "C12": 120.0, "C44": 75.0}}
    cfg = TrainConfig.from_dict({
        "max_epochs": 15, "batch_size": 2, "lr": 2e-2, "ema_decay": 0.0, "patience": 100,
        "threads": 1, "energy_weight": 0.0, "forces_weight": 0.0, "stress_weight": 0.0,
        "elastic_targets": targets, "elastic_weight": 100.0, "elastic_every": 1,
        "committee": False, "max_time_min": None})
    out = tmp_path / "m.pt"
    train_potential(frames[:6], frames[6:], ["Cu", "Ni"], model, cfg, out, progress=False,
                    log_path=tmp_path / "log.jsonl")
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    first, last = rms_gpa(log[0]["elastic_error_gpa"]), rms_gpa(log[-1]["elastic_error_gpa"])
    assert last < 0.5 * first, (first, last)
    assert log[-1]["train_mse_elastic"] < log[0]["train_mse_elastic"]
