"""Gates and hashing modules: one operator table shared by the pipeline, campaign
constraints and the ``--gate`` parser."""

from __future__ import annotations

import operator

import pytest
import torch

from matdesign.search import gates, hashing
from matdesign.search.config import Constraint


@pytest.mark.parametrize("op, ref", [("<=", operator.le), (">=", operator.ge),
                                     ("==", operator.eq), ("<", operator.lt), (">", operator.gt)])
def test_one_operator_table_everywhere(op: str, ref, monkeypatch) -> None:
    from matdesign.cli.screen import parse_gate

    assert parse_gate(f"pugh_ratio{op}1.75") == ("pugh_ratio", op, 1.75)
    assert parse_gate(f" pugh_ratio {op} true ") == ("pugh_ratio", op, 1.0)
    c = Constraint.parse(f"pugh_ratio {op} 1.75")
    for have in (1.0, 1.75, 2.5):
        assert c.satisfied({"pugh_ratio": have}) == ref(have, 1.75)
        assert gates.gate_passes({"pugh_ratio": have}, "pugh_ratio", op, 1.75) == ref(have, 1.75)
    # the constraint evaluates through the shared table: replacing an entry changes it
    monkeypatch.setitem(gates.GATE_OPS, op, lambda a, b: "sentinel")
    assert c.satisfied({"pugh_ratio": 1.0}) is True


def test_bad_gate_text_names_it() -> None:
    for text in ("pugh_ratio ~ 1", "pugh_ratio <= abc", "<= 1", "pugh_ratio"):
        with pytest.raises(ValueError, match="--gate"):
            gates.parse_gate(text)


def test_potential_identity_is_content_not_path(tmp_path) -> None:
    from matdesign.search.pipeline import ScreenSettings

    a, b, c = tmp_path / "a" / "model.pt", tmp_path / "b" / "moved.pt", tmp_path / "c.pt"
    for path, content in ((a, b"weights-1"), (b, b"weights-1"), (c, b"weights-2")):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
    ids = [hashing.potential_id(str(p)) for p in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].startswith("sha256:") and str(tmp_path) not in ids[0]
    assert ScreenSettings(potential=str(a)).settings_hash() == ScreenSettings(
        potential=str(b)).settings_hash() != ScreenSettings(potential=str(c)).settings_hash()
    assert hashing.potential_id("emt") == "emt"
    assert hashing.potential_id("some.module:build") == "some.module:build"


def test_properties_get_a_tight_relaxation(monkeypatch) -> None:
    """The screening relax stops at 5e-3 eV/Å; elastic work must start from <= 1e-3 eV/Å
    (EMT forces on the structure the elastic step receives)."""
    import numpy as np
    from ase import Atoms
    from ase.calculators.emt import EMT

    from matdesign.properties import elastic
    from matdesign.search.pipeline import SCREEN_FMAX, ScreenSettings, evaluate_candidate

    seen = []

    def capture(self, atoms):
        seen.append(atoms.copy())
        raise RuntimeError("captured")

    monkeypatch.setattr(elastic.ElasticCalculator, "calc", capture)
    atoms = Atoms("Cu3Au", scaled_positions=[[0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                                             [0, 0, 0]], cell=[3.8, 3.7, 3.75], pbc=True)
    atoms.rattle(0.08, seed=1)
    settings = ScreenSettings(potential="emt", fmax=SCREEN_FMAX, properties=("elastic",))
    res = evaluate_candidate(atoms, settings, "x")
    assert res.reason == "RuntimeError: captured" and len(seen) == 1
    assert res.data["relax"]["max_force_ev_per_a"] > 2e-3  # the loose screening relax
    (tight,) = seen
    tight.calc = EMT()
    assert np.linalg.norm(tight.get_forces(), axis=1).max() <= 1e-3
    assert res.data["property_relax"]["fmax_ev_per_a"] == 1e-3


def test_float32_is_the_screen_default_and_allowed_with_properties() -> None:
    from matdesign.search.config import parse_campaign
    from matdesign.search.pipeline import ScreenSettings

    assert ScreenSettings().dtype == "float32"
    ScreenSettings(potential="emt", dtype="float32", properties=("elastic", "phonon"))
    campaign = parse_campaign({"space": {"elements": ["Cu", "Au"],
                                         "ordered": [{"prototype": "B2"}]},
                               "objectives": [{"property": "pugh_ratio"}],
                               "screen": {"dtype": "float32", "properties": ["elastic"]}})
    assert campaign.screen.dtype == "float32"
    with pytest.raises(ValueError, match="dtype"):
        ScreenSettings(dtype="float16")


def test_float32_property_work_matches_float64() -> None:
    """The precision behind the float32 default: elastic constants and phonon frequencies of
    the same weights in float32 and float64 agree far inside any physical tolerance. The cell
    is rattled and sheared (no symmetry, residual forces), where cancellation is worst."""
    import numpy as np

    from matdesign.properties.elastic import ElasticCalculator
    from matdesign.properties.phonon import PhononCalculator
    from tests.helpers import make_calc, sheared_cell

    atoms = sheared_cell()
    out = {}
    for dtype in (torch.float32, torch.float64):
        calc = make_calc(dtype=dtype)
        elastic = ElasticCalculator(calc, relax_ions=False).calc(atoms)
        phonon = PhononCalculator(calc, min_length=6.0, mesh=(4, 4, 4),
                                  imaginary_policy="ignore").calc(atoms)
        freqs = np.concatenate([p["frequencies_thz"] for p in phonon.high_symmetry_points])
        out[dtype] = np.array(elastic.elastic_tensor_gpa), freqs
    (c32, f32), (c64, f64) = out[torch.float32], out[torch.float64]
    # a real test, not zeros (the tiny model's constants are a few GPa since format 3's baseline)
    assert np.abs(c64).max() > 3.0 and np.abs(f64).max() > 1.0
    assert np.abs(c32 - c64).max() < 0.05  # GPa
    assert np.abs(f32 - f64).max() < 5e-3  # THz
    assert np.abs(c32 - c64).max() > 0.0  # float32 really ran in float32


def test_failed_rows_carry_their_failure_class(tmp_path):
    """Typed errors, not message text, sort failures: an unknown element, overlapping atoms and
    vacuum each get their class even though none of their messages is parsed."""
    from ase import Atoms
    from ase.build import bulk

    from matdesign.search.pipeline import ScreenSettings, evaluate_candidate

    settings = ScreenSettings(potential="emt", fmax=0.05)
    overlapping = bulk("Cu", "fcc", a=3.6, cubic=True)
    overlapping.positions[1] = overlapping.positions[0] + [0.3, 0.0, 0.0]
    cases = {
        "unknown element": bulk("W", "bcc", a=3.16),
        "overlapping atoms": overlapping,
        "vacuum / not bulk": Atoms("Cu", cell=[20, 20, 20], pbc=True),
    }
    for label, atoms in cases.items():
        result = evaluate_candidate(atoms, settings, label)
        assert result.status == "failed"
        assert result.key_value_pairs["failure_class"] == label, result.reason
