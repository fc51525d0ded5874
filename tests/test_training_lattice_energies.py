"""Reference lattice energies as a fitting target (matdesign.training.lattice_energies).

The term's energy differences are checked against ASE's Lennard-Jones energies of cells built
here, the training hook by a fit whose only loss is this term with targets from ASE's EMT, and
bad target files by the message they raise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from matdesign.model import PotentialConfig
from matdesign.training.config import TrainConfig
from matdesign.training.data import load_frames
from matdesign.training.extra import build_extra_terms
from matdesign.training.lattice_energies import LatticeEnergyTerm, load_lattice_targets
from matdesign.training.trainer import train_potential
from tests.test_training_compression import labelled, lj_cell
from tests.test_training_elastic import RC, TorchLJ

CELLS = [(lattice, f) for lattice in ("bcc", "fcc", "sc") for f in (0.9, 1.0, 1.3, 2.0)]


def targets_file(path, points) -> str:
    path.write_text(json.dumps({"source": "test", "points": points}))
    return str(path)


def point(lattice: str, f: float, de: float, element: str = "Cu") -> dict:
    return {"element": element, "lattice": lattice, "volume_fraction": f,
            "energy_above_bcc_ev": de}


def test_errors_loss_and_report_match_ase_lennard_jones(tmp_path):
    """ΔE = E(lattice, f·V0) − E(bcc, V0) of each cell equals ASE's Lennard-Jones energies of
    the same cells built here, minus the target; the loss is the mean squared excess over the
    tolerance, and the report names the worst cell."""
    v0 = 12.0
    rng = np.random.default_rng(1)
    wanted = rng.uniform(-0.05, 0.05, len(CELLS))
    path = targets_file(tmp_path / "t.json",
                        [point(lat, f, float(w)) for (lat, f), w in zip(CELLS, wanted)])
    term = LatticeEnergyTerm.build(load_lattice_targets(path), {"Cu": v0}, ["Cu"], RC,
                                   tolerance_ev=0.01)
    ase = np.array([lj_cell(lat, f * v0).get_potential_energy()
                    - lj_cell("bcc", v0).get_potential_energy() for lat, f in CELLS])
    assert np.ptp(ase) > 0.02  # the cells differ by more than the tolerance
    errors = term.errors(TorchLJ(), training=False).detach().numpy()
    np.testing.assert_allclose(errors, ase - wanted, rtol=1e-9, atol=1e-12)
    expected = np.mean(np.maximum(np.abs(ase - wanted) - 0.01, 0) ** 2)
    assert float(term.loss(TorchLJ()).detach()) == pytest.approx(expected, rel=1e-9)
    report, line = term.report(TorchLJ())
    k = int(np.argmax(np.abs(ase - wanted)))
    assert report["lattice_worst_error_ev"]["cell"] == f"Cu {CELLS[k][0]} {CELLS[k][1]:.3f}"
    assert report["lattice_mae_ev"] == pytest.approx(np.abs(ase - wanted).mean(), abs=1e-4)
    assert "worst" in line


def emt_targets(v0: float) -> list[dict]:
    """EMT's Cu energies above bcc at V0, for cells built here."""
    def energy(lattice: str, volume: float) -> float:
        atoms = bulk("Cu", lattice, a=1.0)
        atoms.set_cell(atoms.cell * (volume / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
        atoms.calc = EMT()
        return atoms.get_potential_energy()

    e0 = energy("bcc", v0)
    return [point(lat, f, energy(lat, f * v0) - e0) for lat, f in CELLS if (lat, f) != ("bcc", 1.0)]


@pytest.mark.filterwarnings("ignore:train.lattice_energies")  # Ni has no elemental frame
def test_training_on_the_term_alone_reaches_emt_energies(tmp_path):
    """Only the lattice term trains, with EMT's Cu energies as targets. The control (weight
    ~0) stays far from them; with the term the mean error falls below a third of the control's
    (a trainer that ignored the term would leave the control's value)."""
    from tests.test_training import emt_frames

    data = tmp_path / "emt.extxyz"
    write(data, emt_frames(8) + [labelled(bulk("Cu", "fcc", a=3.6))])
    model = PotentialConfig(cutoff=4.0, channels=8, lmax=1, lmax_edge=1, num_layers=1,
                            radial_hidden=8, readout_hidden=8, zbl=False)
    frames = load_frames(data, model.cutoff, {29: 0, 28: 1})
    v0 = 3.6**3 / 4  # the lowest-energy elemental frame: fcc at a = 3.6 Å
    path = targets_file(tmp_path / "emt.json", emt_targets(v0))
    mae = {}
    for weight in (1e-12, 100.0):
        cfg = TrainConfig.from_dict({
            "max_epochs": 8, "batch_size": 2, "lr": 2e-2, "ema_decay": 0.0, "patience": 100,
            "threads": 1, "energy_weight": 0.0, "forces_weight": 0.0, "stress_weight": 0.0,
            "lattice_energies": path, "lattice_energies_weight": weight,
            "lattice_energies_tolerance_ev": 0.0, "compression_every": 1, "committee": False,
            "max_time_min": None})
        log_path = tmp_path / f"log{weight}.jsonl"
        train_potential(frames[:7], frames[7:], ["Cu", "Ni"], model, cfg, tmp_path / "m.pt",
                        progress=False, log_path=log_path)
        log = [json.loads(line) for line in log_path.read_text().splitlines()]
        mae[weight] = log[-1]["lattice_mae_ev"]
    assert mae[1e-12] > 0.05, mae  # the term has work to do
    assert mae[100.0] < mae[1e-12] / 3, mae


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "cannot read"),
    ('{"pts": []}', "cannot read"),
    ('{"points": []}', "no points"),
    (json.dumps({"points": [{"element": "Cu", "lattice": "fcc"}]}), "point 0"),
    (json.dumps({"points": [point("fcc", 1.0, 0.1), point("fcc", 1.0, 0.1, "Xx")]}),
     "point 1: unknown element 'Xx'"),
    (json.dumps({"points": [point("hcp", 1.0, 0.1)]}), "point 0: lattice 'hcp'"),
    (json.dumps({"points": [point("sc", 10.0, 0.1)]}), "point 0: volume_fraction"),
    (json.dumps({"points": [point("sc", 1.0, float("nan"))]}), "point 0: energy_above_bcc_ev"),
])
def test_bad_target_files_are_named_before_training(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="train.lattice_energies") as info:
        TrainConfig.from_dict({"lattice_energies": str(path)})
    assert message in str(info.value) and "bad.json" in str(info.value)


def test_missing_file_and_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="lattice_energies.*nowhere.json"):
        TrainConfig.from_dict({"lattice_energies": str(tmp_path / "nowhere.json")})
    for key in ("lattice_energies_weight", "lattice_energies_tolerance_ev"):
        with pytest.raises(ValueError, match=key):
            TrainConfig.from_dict({key: -1.0})


def test_wiring_skips_elements_without_reference_and_fails_when_none_is_left(tmp_path):
    """build_extra_terms adds the term on the compression_every schedule; an element without
    an elemental frame is skipped with a warning; targets of no usable element fail."""
    data = tmp_path / "cu.extxyz"
    write(data, [labelled(bulk("Cu", "fcc", a=3.6))])
    frames = load_frames(data, 4.0, {29: 0, 28: 1})
    path = targets_file(tmp_path / "t.json", [point("fcc", 1.0, 0.1),
                                              point("fcc", 1.0, 0.1, "Ni")])
    cfg = TrainConfig.from_dict({"lattice_energies": path, "lattice_energies_weight": 2.0,
                                 "compression_every": 3})
    with pytest.warns(UserWarning, match=r"lattice_energies: \['Ni'\]"):
        terms = build_extra_terms(cfg, ["Cu", "Ni"], 4.0, frames)
    assert [(t.name, t.weight, t.every) for t in terms] == [("lattice", 2.0, 3)]
    assert terms[0].term.cells.labels == ("Cu fcc 1.000",)
    only_ni = targets_file(tmp_path / "ni.json", [point("fcc", 1.0, 0.1, "Ni")])
    with pytest.raises(ValueError, match="no target element"), pytest.warns(UserWarning):
        build_extra_terms(TrainConfig.from_dict({"lattice_energies": only_ni}),
                          ["Cu", "Ni"], 4.0, frames)
