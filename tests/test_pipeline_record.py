"""The screening record and the one definition of screen settings (issue 14).

The pinned hashes were computed on the code before the refactor: a changed ``settings_hash``
would make every existing database look unscreened and redo all its work.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from matdesign.search.config import parse_campaign
from matdesign.search.evaluation import pipeline_evaluator
from matdesign.search.pipeline import ScreenSettings
from matdesign.search.resume import campaign_metadata

STAGED = {"potential": "emt", "dtype": "float64", "fmax": 1e-3, "properties": ("elastic", "phonon"),
          "phonon_min_length": 6.0,
          "gates": (("born_stable", "==", True), ("e_above_hull_ev_per_atom", "<=", 0.1))}


@pytest.mark.parametrize(("kwargs", "expected"), [
    # dtype given: these pins predate the float32 screen default and must not move
    ({"potential": "emt", "dtype": "float64"}, "2c210a886ee432b7"),
    ({"potential": "emt", "dtype": "float64", "fmax": 1e-3, "max_steps": 300},
     "6a6ae21025254983"),
    ({"potential": "emt", "dtype": "float32", "fmax": 0.05, "max_steps": 10,
      "fix_symmetry": True}, "3c0bb0fde1b4797b"),
    (STAGED, "75db1eef6cb7db3c"),
    ({"potential": "emt", "dtype": "float64", "properties": ("elastic",), "fmax": 0.02,
      "max_steps": 200, "phonon_min_length": 10.0}, "8beb12f7e3401e0e"),
])
def test_settings_hash_is_pinned(kwargs: dict, expected: str) -> None:
    assert ScreenSettings(**kwargs).settings_hash() == expected


def test_default_precision_is_part_of_the_hash() -> None:
    """float32 became the screen default (eighth session): default settings hash as float32
    (a screen begun before resumes its rows with ``--dtype float64``), never as float64."""
    default = ScreenSettings(potential="emt").settings_hash()
    assert default == ScreenSettings(potential="emt", dtype="float32").settings_hash()
    assert default != ScreenSettings(potential="emt", dtype="float64").settings_hash()


def test_settings_hash_with_references_is_pinned(tmp_path: Path) -> None:
    ref = tmp_path / "ref.txt"
    ref.write_bytes(b"Cu 0 0 0\n")  # only the file's content enters the hash
    settings = ScreenSettings(potential="emt", dtype="float64", references=(str(ref),))
    assert settings.settings_hash() == "d4c92ab7ae0ad83e"


def _campaign(screen: dict | None) -> dict:
    d = {"name": "t", "potential": "emt",
         "space": {"elements": ["Cu", "Au"], "ordered": [{"prototype": "B2"}]},
         "objectives": [{"property": "formation_energy_ev_per_atom", "goal": "min"}],
         "constraints": ["e_above_hull_ev_per_atom <= 0.2"]}
    if screen is not None:
        d["screen"] = screen
    return d


@pytest.mark.parametrize(("screen", "expected", "stored"), [
    # a campaign without a screen section keeps its own values: elastic, looser relaxation
    (None, "bc1fa12355c192ea", {"properties": ["elastic"], "dtype": "float32", "fmax": 0.02,
                                "max_steps": 200, "phonon_min_length": 10.0}),
    ({}, "bc1fa12355c192ea", None),
    ({"properties": []}, "9063352e09cad408", None),
    ({"fmax": 1, "max_steps": 10}, "6260c9e560048666",  # an integer fmax is read as 1.0
     {"properties": ["elastic"], "dtype": "float32", "fmax": 1.0, "max_steps": 10,
      "phonon_min_length": 10.0}),
    ({"fmax": "1e-3"}, "1a97ae74ff99b876", None),
])
def test_campaign_screen_section_builds_the_same_settings(screen, expected, stored) -> None:
    config = parse_campaign(_campaign(screen))
    settings = pipeline_evaluator(config, "emt").args[1]
    assert isinstance(settings, ScreenSettings)
    assert settings.gates == (("e_above_hull_ev_per_atom", "<=", 0.2),)
    assert settings.settings_hash() == expected
    meta = campaign_metadata(config, "emt")["screen"]  # what a resumed campaign compares
    if stored is not None:
        assert meta == stored
        assert [type(v) for v in meta.values()] == [type(v) for v in stored.values()]


def test_example_campaigns_keep_their_settings() -> None:
    from matdesign.search.config import load_campaign

    root = Path(__file__).resolve().parents[1] / "examples"
    for name, expected in (("refractory_hea.yaml", "37a85adcfadf483d"),
                           ("refractory_hea_demo.yaml", "c177614ee6dd75c2")):
        settings = pipeline_evaluator(load_campaign(root / name), "emt").args[1]
        assert settings.settings_hash() == expected, name


def test_screen_section_errors_name_the_key() -> None:
    from matdesign.search.config import parse_screen

    for section, match in [({"fix_symmetry": True}, r"unknown key\(s\) in 'screen'"),
                           ({"fmax": 0}, r"screen\.fmax: must be > 0"),
                           ({"max_steps": 1.5}, r"screen\.max_steps: expected an integer"),
                           ({"phonon_min_length": "x"}, r"screen\.phonon_min_length"),
                           ({"properties": "elastic"}, r"screen\.properties: expected a list"),
                           ({"properties": ["magnetism"]}, r"screen\.properties: unknown"),
                           ({"dtype": "float16"}, r"screen\.dtype: must be")]:
        with pytest.raises(ValueError, match=match):
            parse_screen(section)
    # the campaign's own values where the section is silent, ScreenSettings' elsewhere
    assert parse_screen({"fmax": 0.01}, "emt") == ScreenSettings(
        potential="emt", properties=("elastic",), fmax=0.01, max_steps=200,
        phonon_min_length=10.0)


# ---- the record: built stage by stage, the row derived from it -------------------------------
def test_record_columns_and_data_follow_the_finished_stages() -> None:
    from ase.build import bulk

    from matdesign.search.record import CandidateRecord, Stability, Uncertainty

    record = CandidateRecord(potential_id="emt", settings={"fmax": 0.01}, atoms=bulk("Cu"))
    assert record.columns() == {"potential_id": "emt"}
    assert record.data() == {"settings": {"fmax": 0.01}}
    spread = CandidateRecord(potential_id="emt", settings={}, atoms=bulk("Cu"),
                             uncertainty=Uncertainty(0.02),
                             stability=Stability(-0.1, 0.05, {"Cu": -3.0}),
                             skipped_expensive=True, gates_failed=("x <= 1",))
    assert spread.columns() == {"potential_id": "emt", "energy_std_ev_per_atom": 0.02,
                                "formation_energy_ev_per_atom": -0.1,
                                "e_above_hull_ev_per_atom": 0.05, "skipped_expensive": True}
    assert spread.data()["gates_failed"] == ["x <= 1"]
    assert spread.data()["references"] == {"elements": {"Cu": -3.0}, "competing": []}
    row = spread.failed("E: boom", "error: E", source="s", content_hash="c", settings_hash="h")
    assert list(row.key_value_pairs)[:2] == ["status", "reason"]
    assert row.key_value_pairs["failure_class"] == "error: E" and row.status == "failed"


def test_stages_in_order() -> None:
    from matdesign.search.pipeline import screening_stages

    def names(settings: ScreenSettings) -> list[str]:
        return [getattr(s, "__name__", None) or f"gates:{s.keywords['stage']}"
                for s in screening_stages(settings)]

    cheap = ["relax_stage", "single_point_stage", "uncertainty_stage", "stability_stage",
             "gates:cheap"]
    assert names(ScreenSettings(potential="emt")) == cheap
    assert names(ScreenSettings(potential="emt", properties=("phonon", "elastic"))) == [
        *cheap, "property_relax_stage", "elastic_stage", "gates:elastic", "phonon_stage"]


def test_done_row_columns_are_the_schema() -> None:
    from ase.build import bulk

    from matdesign.search.pipeline import evaluate_candidate

    res = evaluate_candidate(bulk("Cu", a=3.6), ScreenSettings(potential="emt", fmax=1e-2), "cu")
    assert res.status == "done", res.reason
    assert list(res.key_value_pairs) == [
        "status", "potential_id", "energy_per_atom_ev", "relax_steps", "volume_per_atom_a3",
        "formation_energy_ev_per_atom", "e_above_hull_ev_per_atom", "skipped_expensive"]
    assert res.atoms.calc is not None and "stress" in res.atoms.calc.results
    assert res.key_value_pairs["energy_per_atom_ev"] == pytest.approx(
        res.atoms.get_potential_energy() / len(res.atoms), abs=1e-12)
    assert list(res.data) == ["settings", "relax", "references"]


def test_a_failing_stage_keeps_the_finished_ones() -> None:
    """A gate on a result EMT never gives fails the gate stage: relax and stability stay."""
    from ase.build import bulk

    from matdesign.search.pipeline import evaluate_candidate

    settings = ScreenSettings(potential="emt", fmax=1e-2,
                              gates=(("energy_std_ev_per_atom", "<=", 0.1),))
    res = evaluate_candidate(bulk("Cu", a=3.6), settings, "cu")
    assert res.status == "failed" and "no such result" in res.reason
    kvp = res.key_value_pairs
    assert kvp["failure_class"] == "error: ValueError"
    assert "e_above_hull_ev_per_atom" in kvp and "skipped_expensive" not in kvp
    assert set(res.data) == {"settings", "relax", "references"}
    stuck = evaluate_candidate(bulk("Cu", a=3.7), ScreenSettings(potential="emt", fmax=1e-6,
                                                                 max_steps=1), "s")
    assert stuck.status == "failed" and stuck.key_value_pairs["failure_class"] == "not converged"
    assert "energy_per_atom_ev" not in stuck.key_value_pairs  # unconverged: no energies
    assert stuck.data["relax"]["steps"] == 1 and stuck.atoms.cell[0, 1] != pytest.approx(1.85)
