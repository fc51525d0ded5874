"""One contract for every property calculator, and gate keys tied to the names results use.

Every property is ``XCalculator(calculator, *, settings).calc(atoms)`` returning a frozen
``PropertyResult``; the screening gates name fields of those results (or the keys the
pipeline stores), so renaming a field must rename or break the gate, never silently skip it.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT

from matdesign.checkpoint import save_potential
from matdesign.errors import NotBulkError
from matdesign.properties import (
    ElasticCalculator,
    ElasticResult,
    EOSCalculator,
    EOSResult,
    MDCalculator,
    MDResult,
    PhononCalculator,
    PhononResult,
    PropertyCalculator,
    PropertyResult,
    RelaxCalculator,
    RelaxResult,
    relax,
)
from matdesign.properties.base import gate_field, gate_keys
from matdesign.search import gates

FAST = {  # settings that keep each property to about a second with EMT
    RelaxCalculator: {"fmax": 1e-3},
    EOSCalculator: {"relax_ions": False},
    ElasticCalculator: {"relax_ions": False},
    PhononCalculator: {"min_length": 5.0, "mesh": (4, 4, 4), "imaginary_policy": "ignore"},
    MDCalculator: {"steps": 5, "timestep_fs": 1.0},
}
RESULTS = {RelaxCalculator: RelaxResult, EOSCalculator: EOSResult,
           ElasticCalculator: ElasticResult, PhononCalculator: PhononResult,
           MDCalculator: MDResult}


def cu() -> object:
    return bulk("Cu", "fcc", a=3.61, cubic=True)


@pytest.mark.parametrize("cls", list(RESULTS), ids=lambda c: c.__name__)
def test_constructor_is_calculator_then_keywords(cls) -> None:
    assert issubclass(cls, PropertyCalculator)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert params[0].name == "calculator"
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])
    assert all(p.default is not inspect.Parameter.empty for p in params[1:])


@pytest.mark.parametrize("cls", list(RESULTS), ids=lambda c: c.__name__)
def test_calc_returns_a_frozen_json_result(cls) -> None:
    atoms = cu()
    before = atoms.positions.copy()
    prop = cls(EMT(), **FAST[cls])
    assert prop.calculator is not None
    result = prop.calc(atoms)
    assert type(result) is RESULTS[cls] and isinstance(result, PropertyResult)
    assert dataclasses.is_dataclass(result)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.n_atoms = 0  # type: ignore[misc]
    plain = result.to_dict()
    assert json.loads(json.dumps(plain)) == plain
    assert (atoms.positions == before).all() and atoms.calc is None


def test_relax_calculator_equals_the_relax_function() -> None:
    start = bulk("Cu", "fcc", a=3.7)
    start.rattle(0.02, seed=3)
    result = RelaxCalculator(EMT(), fmax=1e-4, optimizer="bfgs").calc(start)
    relaxed, same = relax(start, EMT(), fmax=1e-4, optimizer="bfgs")
    assert result.to_dict() == same.to_dict() and result == same
    assert "atoms" not in result.to_dict() and result.optimizer == "BFGS"
    assert np.allclose(result.atoms.cell, relaxed.cell) and result.atoms.calc is None
    assert result.atoms.get_volume() == pytest.approx(result.volume_a3)
    assert start.get_volume() != pytest.approx(result.volume_a3)


def test_calc_many_keeps_order_and_reports_errors_only_when_allowed() -> None:
    slab = fcc111("Cu", size=(1, 1, 3), vacuum=8.0)
    elastic = ElasticCalculator(EMT(), relax_ions=False)
    bulk_cu = cu()
    results = elastic.calc_many([bulk_cu, slab, bulk_cu], allow_errors=True)
    assert results[1] is None
    assert results[0] == results[2] and results[0].bulk_modulus_vrh_gpa > 100
    with pytest.raises(NotBulkError):
        elastic.calc_many([bulk_cu, slab])


def test_bad_settings_are_refused_when_built() -> None:
    for cls, bad in ((RelaxCalculator, {"optimizer": "SGD"}), (RelaxCalculator, {"fmax": 0}),
                     (EOSCalculator, {"n_points": 3}), (ElasticCalculator, {"strains": (0.01,)}),
                     (PhononCalculator, {"displacement": 0}), (MDCalculator, {"steps": 0})):
        with pytest.raises(ValueError):
            cls(EMT(), **bad)


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_gate_keys_are_fields_of_their_result_classes() -> None:
    assert gates.ELASTIC_KEYS and set(gates.ELASTIC_KEYS) <= _field_names(ElasticResult)
    assert gates.PHONON_KEYS and set(gates.PHONON_KEYS) <= _field_names(PhononResult)
    annotations = {**ElasticResult.__annotations__, **PhononResult.__annotations__}
    assert set(gates.BOOLEAN_KEYS) == {k for k in gates.ELASTIC_KEYS + gates.PHONON_KEYS
                                       if annotations[k] == "bool"}
    assert {"bulk_modulus_vrh_gpa", "pugh_ratio", "born_stable"} <= set(gates.ELASTIC_KEYS)
    assert {"dynamically_stable", "min_frequency_thz"} == set(gates.PHONON_KEYS)


def test_gate_keys_follow_a_renamed_field() -> None:
    """Negative control: the gate key is the field's name, whatever it is called."""

    @dataclasses.dataclass(frozen=True)
    class Renamed(PropertyResult):
        bulk_modulus_hill_gpa: float = gate_field()
        stable: bool = gate_field()
        note: str = ""

    assert gate_keys(Renamed) == ("bulk_modulus_hill_gpa", "stable")
    assert gate_keys(Renamed, booleans_only=True) == ("stable",)
    with pytest.raises(TypeError):
        gate_keys(dict)


def test_every_gate_key_is_stored_by_the_pipeline() -> None:
    """A done row carries every cheap, elastic and phonon gate key, with the result's value."""
    from matdesign.search.pipeline import ScreenSettings, evaluate_candidate

    settings = ScreenSettings(potential="emt", properties=("elastic", "phonon"),
                              phonon_min_length=5.0)
    res = evaluate_candidate(bulk("Cu", "fcc", a=3.6), settings, "cu")
    assert res.status == "done", res.reason
    kvp = res.key_value_pairs
    missing = [k for k in gates.CHEAP_KEYS + gates.ELASTIC_KEYS + gates.PHONON_KEYS
               if k not in kvp]
    assert not missing
    for name, keys in (("elastic", gates.ELASTIC_KEYS), ("phonon", gates.PHONON_KEYS)):
        assert all(kvp[k] == res.data[name][k] for k in keys)
    assert kvp["relax_steps"] == res.data["relax"]["steps"]


def test_ensemble_gate_keys_are_stored_with_a_committee(tmp_path: Path) -> None:
    from matdesign.search.pipeline import ScreenSettings, evaluate_candidate
    from tests.helpers import make_model

    path = tmp_path / "committee.pt"
    save_potential(make_model(scale=2.0), path)
    settings = ScreenSettings(potential=str(path), fmax=0.02, max_steps=400)
    res = evaluate_candidate(bulk("Cu", "fcc", a=3.9), settings, "cu")
    assert res.status == "done", res.reason
    assert set(gates.ENSEMBLE_KEYS) <= set(res.key_value_pairs)
