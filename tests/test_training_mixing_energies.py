"""Reference mixing energies of multi-element cells as a fitting target
(matdesign.training.mixing_energies).

The term's mixing energies are checked against ASE's Lennard-Jones energies of cells built
here, the training hook by a fit whose only loss is this term with targets from ASE's EMT,
and bad target files by the message they raise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.io import write

from matdesign.model import PotentialConfig
from matdesign.training.compression import equilibrium_volumes
from matdesign.training.config import TrainConfig
from matdesign.training.data import load_frames
from matdesign.training.extra import build_extra_terms
from matdesign.training.mixing_energies import MixingEnergyTerm, load_mixing_targets
from matdesign.training.trainer import train_potential
from tests.test_training_compression import labelled
from tests.test_training_elastic import EPSILON, RC, SIGMA, TorchLJ

SPECIES = ["Cu", "Ni"]


def alloy(n_ni: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Symbols, a sheared unit-volume cell shape and rattled fractional positions of an
    8-atom fcc-based Cu-Ni cell."""
    rng = np.random.default_rng(seed)
    symbols = ["Ni"] * n_ni + ["Cu"] * (8 - n_ni)
    rng.shuffle(symbols)
    base = bulk("Cu", "fcc", a=1.0, cubic=True).repeat((2, 1, 1))
    shape = base.cell.array @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3)))
    shape /= abs(np.linalg.det(shape)) ** (1 / 3)
    frac = base.get_scaled_positions() + rng.normal(0, 0.01, (8, 3))
    return symbols, shape, frac


def point(name: str, symbols, shape, frac, f: float, de: float) -> dict:
    return {"name": name, "symbols": list(symbols), "cell_shape": np.asarray(shape).tolist(),
            "scaled_positions": np.asarray(frac).tolist(), "volume_fraction": f,
            "mixing_energy_ev": de}


def targets_file(path, points) -> str:
    path.write_text(json.dumps({"source": "test", "points": points}))
    return str(path)


def mixing_with(calc_factory, symbols, shape, frac, f, v0) -> float:
    """E(cell)/N − Σ x_i E_i(bcc at V₀,i) with an ASE calculator, cells built here."""
    volume = f * sum(v0[s] for s in symbols)
    atoms = Atoms(symbols, scaled_positions=frac, cell=np.asarray(shape) * volume ** (1 / 3),
                  pbc=True)
    atoms.calc = calc_factory()
    e = atoms.get_potential_energy() / len(atoms)
    for el in set(symbols):
        ref = bulk(el, "bcc", a=(2 * v0[el]) ** (1 / 3))  # one atom, V₀ = a³/2
        ref.calc = calc_factory()
        e -= symbols.count(el) / len(symbols) * ref.get_potential_energy()
    return e


def test_errors_loss_and_report_match_ase_lennard_jones(tmp_path):
    """The model's mixing energy of each cell (at the given fraction of *its* Vegard volume,
    against its bcc elements at their V₀) equals ASE's Lennard-Jones value on cells built
    here; the loss is the mean squared excess over the tolerance; the report names the worst
    cell. Elements get different V₀, so a wrong volume or composition weight shows."""
    v0 = {"Cu": 12.0, "Ni": 10.5}
    cases = [(alloy(n, seed), f) for n, seed, f in ((2, 0, 1.0), (4, 1, 0.95), (6, 2, 1.1))]
    wanted = [-0.02, 0.01, 0.0]
    path = targets_file(tmp_path / "t.json", [
        point(f"c{k}", *cell, f, w) for k, ((cell, f), w) in enumerate(zip(cases, wanted))])
    term = MixingEnergyTerm.build(load_mixing_targets(path), v0, SPECIES, RC,
                                  tolerance_ev=0.001)
    lj = lambda: LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=RC)  # noqa: E731
    ase = np.array([mixing_with(lj, *cell, f, v0) for cell, f in cases])
    assert np.ptp(ase) > 0.005  # the cells differ by more than the tolerance
    errors = term.errors(TorchLJ(), training=False).detach().numpy()
    np.testing.assert_allclose(errors, ase - wanted, rtol=1e-9, atol=1e-12)
    expected = np.mean(np.maximum(np.abs(ase - wanted) - 0.001, 0) ** 2)
    assert float(term.loss(TorchLJ()).detach()) == pytest.approx(expected, rel=1e-9)
    report, line = term.report(TorchLJ())
    assert report["mixing_worst_error_ev"]["cell"] == f"c{np.argmax(np.abs(ase - wanted))}"
    assert report["mixing_mae_ev"] == pytest.approx(np.abs(ase - wanted).mean(), abs=1e-4)
    assert "ΔE_mix" in line


def test_training_on_the_term_alone_reaches_emt_mixing_energies(tmp_path):
    """Only the mixing term trains, with EMT's Cu-Ni mixing energies as targets. The
    control (weight ~0) stays far from them; with the term the mean error falls below a
    third of the control's."""
    from tests.test_training import emt_frames

    data = tmp_path / "emt.extxyz"
    write(data, emt_frames(8) + [labelled(bulk("Cu", "fcc", a=3.6)),
                                 labelled(bulk("Ni", "fcc", a=3.52))])
    model = PotentialConfig(cutoff=4.0, channels=8, lmax=1, lmax_edge=1, num_layers=1,
                            radial_hidden=8, readout_hidden=8, zbl=False)
    frames = load_frames(data, model.cutoff, {29: 0, 28: 1})
    v0 = equilibrium_volumes(frames)
    assert set(v0) == {"Cu", "Ni"}
    cells = [(alloy(n, seed), f) for n, seed, f in ((2, 3, 0.92), (4, 4, 1.0), (6, 5, 1.08),
                                                     (4, 6, 0.95))]
    path = targets_file(tmp_path / "emt.json", [
        point(f"c{k}", *cell, f, mixing_with(EMT, *cell, f, v0))
        for k, (cell, f) in enumerate(cells)])
    mae = {}
    for weight in (1e-12, 100.0):
        cfg = TrainConfig.from_dict({
            "max_epochs": 24, "batch_size": 2, "lr": 2e-2, "ema_decay": 0.0, "patience": 100,
            "threads": 1, "energy_weight": 0.0, "forces_weight": 0.0, "stress_weight": 0.0,
            "mixing_energies": path, "mixing_energies_weight": weight,
            "mixing_energies_tolerance_ev": 0.0, "compression_every": 1, "committee": False,
            "max_time_min": None})
        log_path = tmp_path / f"log{weight}.jsonl"
        train_potential(frames[:6] + frames[8:], frames[6:8], SPECIES, model, cfg,
                        tmp_path / "m.pt", progress=False, log_path=log_path)
        log = [json.loads(line) for line in log_path.read_text().splitlines()]
        mae[weight] = log[-1]["mixing_mae_ev"]
    assert mae[1e-12] > 0.02, mae  # the term has work to do
    assert mae[100.0] < mae[1e-12] / 3, mae


GOOD = point("ok", *alloy(4, 0), 1.0, -0.05)


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "cannot read"),
    ('{"pts": []}', "cannot read"),
    ('{"points": []}', "no points"),
    (json.dumps({"points": [{"name": "x", "symbols": ["Cu"]}]}), "point 0"),
    (json.dumps({"points": [GOOD, {**GOOD, "symbols": ["Xx"] * 8}]}),
     "point 1 (ok): unknown element(s) ['Xx']"),
    (json.dumps({"points": [{**GOOD, "cell_shape": [[1, 0, 0], [0, 1, 0], [0, 0, 0]]}]}),
     "cell_shape"),
    (json.dumps({"points": [{**GOOD, "scaled_positions": [[0, 0, 0]]}]}), "scaled_positions"),
    (json.dumps({"points": [{**GOOD, "volume_fraction": 3.0}]}), "volume_fraction"),
    (json.dumps({"points": [{**GOOD, "mixing_energy_ev": float("nan")}]}), "mixing_energy_ev"),
])
def test_bad_target_files_are_named_before_training(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="train.mixing_energies") as info:
        TrainConfig.from_dict({"mixing_energies": str(path)})
    assert message in str(info.value) and "bad.json" in str(info.value)


def test_missing_file_and_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="mixing_energies.*nowhere.json"):
        TrainConfig.from_dict({"mixing_energies": str(tmp_path / "nowhere.json")})
    for key in ("mixing_energies_weight", "mixing_energies_tolerance_ev"):
        with pytest.raises(ValueError, match=key):
            TrainConfig.from_dict({key: -1.0})


def test_wiring_skips_cells_with_unusable_elements_and_fails_when_none_is_left(tmp_path):
    """build_extra_terms adds the term on the compression_every schedule; a cell holding an
    element without an elemental frame is skipped with a warning; no usable cell fails."""
    data = tmp_path / "cuni.extxyz"
    write(data, [labelled(bulk("Cu", "fcc", a=3.6)), labelled(bulk("Ni", "fcc", a=3.52))])
    frames = load_frames(data, 4.0, {29: 0, 28: 1, 46: 2})
    with_pd = {**GOOD, "name": "pd", "symbols": ["Pd"] + GOOD["symbols"][1:]}
    path = targets_file(tmp_path / "t.json", [GOOD, with_pd])
    cfg = TrainConfig.from_dict({"mixing_energies": path, "mixing_energies_weight": 2.0,
                                 "compression_every": 3})
    with pytest.warns(UserWarning, match=r"mixing_energies: 1 target\(s\) hold \['Pd'\]"):
        terms = build_extra_terms(cfg, ["Cu", "Ni", "Pd"], 4.0, frames)
    assert [(t.name, t.weight, t.every) for t in terms] == [("mixing", 2.0, 3)]
    assert terms[0].term.labels == ("ok",)
    only_pd = targets_file(tmp_path / "pd.json", [with_pd])
    with pytest.raises(ValueError, match="no target"), pytest.warns(UserWarning):
        build_extra_terms(TrainConfig.from_dict({"mixing_energies": only_pd}),
                          ["Cu", "Ni", "Pd"], 4.0, frames)
