"""Checkpoints: round trips, ensembles, and refusal of unsafe or foreign files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from matdesign.calculator import MatdesignCalculator, load_calculator
from matdesign.checkpoint import FORMAT, PotentialEnsemble, load_potential, save_potential
from matdesign.model import Potential
from tests.helpers import make_model, sheared_cell


def test_round_trip_identical_outputs(tmp_path):
    model = make_model(lmax=2)
    path = tmp_path / "m.pt"
    save_potential(model, path,
                   metadata={"note": "tiny", "rmse": np.float64(0.25), "steps": np.int64(3)})
    loaded = load_potential(path, dtype="float64")
    assert isinstance(loaded, Potential) and loaded.config == model.config
    assert loaded.species == model.species and loaded.dtype == torch.float64
    assert loaded.metadata == {"note": "tiny", "rmse": 0.25, "steps": 3}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    atoms = sheared_cell()
    ref = MatdesignCalculator(model).calculate_batch([atoms])[0]
    got = load_calculator(path, dtype="float64").calculate_batch([atoms])[0]
    assert got["energy"] == ref["energy"]
    np.testing.assert_array_equal(got["forces"], ref["forces"])
    np.testing.assert_array_equal(got["stress"], ref["stress"])
    # float32 load of the same file: the same model to float32 precision.
    got32 = load_calculator(path, dtype="float32").calculate_batch([atoms])[0]
    assert got32["energy"] == pytest.approx(ref["energy"], rel=1e-5)
    assert not path.with_suffix(".pt.tmp").exists()


def test_ensemble_round_trip_and_committee_spread(tmp_path):
    members = [make_model(seed=s, arch="two_body") for s in (0, 1)]
    path = tmp_path / "ens.pt"
    save_potential(PotentialEnsemble(members), path)
    loaded = load_potential(path)
    assert isinstance(loaded, PotentialEnsemble) and len(loaded.members) == 2
    atoms = sheared_cell()
    got = load_calculator(path).calculate_batch([atoms])[0]
    singles = [MatdesignCalculator(m).calculate_batch([atoms])[0] for m in members]
    energies = np.array([s["energy"] for s in singles])
    forces = np.array([s["forces"] for s in singles])
    assert got["energy"] == pytest.approx(energies.mean(), abs=1e-10)
    assert got["energy_std"] == pytest.approx(energies.std(), abs=1e-10)
    assert got["energy_std"] > 1e-3  # different seeds really differ
    np.testing.assert_allclose(got["forces"], forces.mean(0), atol=1e-10)
    np.testing.assert_allclose(got["forces_std"], forces.std(0), atol=1e-10)
    assert got["forces_std"].shape == (len(atoms), 3)
    np.testing.assert_allclose(got["stress"], np.mean([s["stress"] for s in singles], 0),
                               atol=1e-10)
    assert "energy_std" not in singles[0]


def test_ensemble_members_must_match():
    other = Potential(make_model().config, species=["Au", "Cu"])
    with pytest.raises(ValueError, match="share config and species"):
        PotentialEnsemble([make_model(), other])


class _Evil:
    """Pickles to a call of os.system: loading it unsafely would create the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": FORMAT, "format_version": 1, "members": [_Evil(str(marker))]}
    torch.save(payload, path)
    assert not marker.exists()
    with pytest.raises(ValueError, match="evil.pt"):
        load_potential(path)
    assert not marker.exists()


def test_foreign_and_future_files(tmp_path):
    state = make_model().state_dict()
    wrong = tmp_path / "wrong.pt"
    torch.save({"format": "someone-else", "format_version": 1, "members": [state]}, wrong)
    with pytest.raises(ValueError, match="format tag"):
        load_potential(wrong)
    future = tmp_path / "future.pt"
    model = make_model()
    save_potential(model, future)
    payload = torch.load(future, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, future)
    with pytest.raises(ValueError, match="version 99"):
        load_potential(future)
    truncated = tmp_path / "truncated.pt"
    save_potential(model, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.pt"):
        load_potential(truncated)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_potential(tmp_path / "missing.pt")


def test_format1_checkpoint_migrates_to_the_two_body_architecture(tmp_path):
    """A file written before format 2 (no correlation/heads/zbl keys) loads as the model it was."""
    model = make_model(arch="two_body")
    path = tmp_path / "v1.pt"
    save_potential(model, path)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 1
    for key in ("lmax_edge", "correlation", "heads", "zbl", "isolated_reference", "avg_density"):
        payload["config"].pop(key)
    torch.save(payload, path)
    loaded = load_potential(path)
    assert loaded.config == model.config
    atoms = sheared_cell()
    ref = MatdesignCalculator(model).calculate_batch([atoms])[0]
    got = MatdesignCalculator(loaded).calculate_batch([atoms])[0]
    assert got["energy"] == pytest.approx(ref["energy"], abs=1e-12)
    # Without the migration the same keys would build the product architecture and fail.
    payload["format_version"] = 2
    torch.save(payload, path)
    with pytest.raises(ValueError, match="lmax must be 0|do not match"):
        load_potential(path)


def test_format2_checkpoint_keeps_its_baseline_saturation(tmp_path):
    """A format-2 file has no ``baseline_saturation``: it loads with 1 (its baseline then)."""
    import dataclasses

    model = make_model(arch="product")  # has the isolated-atom baseline
    old = dataclasses.replace(model.config, baseline_saturation=1.0)
    reference = type(model)(old, species=list(model.species)).double()
    reference.load_state_dict(model.state_dict())
    path = tmp_path / "v2.pt"
    save_potential(reference, path)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 2
    payload["config"].pop("baseline_saturation")
    torch.save(payload, path)
    loaded = load_potential(path)
    assert loaded.config.baseline_saturation == 1.0
    atoms = sheared_cell(rattle=0.3)
    want = MatdesignCalculator(reference.eval()).calculate_batch([atoms])[0]["energy"]
    got = MatdesignCalculator(loaded).calculate_batch([atoms])[0]["energy"]
    assert got == pytest.approx(want, abs=1e-10)
    # the new default would give another energy for the same weights
    other = MatdesignCalculator(model).calculate_batch([atoms])[0]["energy"]
    assert abs(other - want) > 1e-6
