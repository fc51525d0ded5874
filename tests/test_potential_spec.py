"""One resolver for potential specs: kinds, identities stored in databases, elements, refusals."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from matdesign.checkpoint import save_potential
from matdesign.potential_spec import DEFAULT_MODEL, PotentialSpec, parse_potential
from matdesign.search.hashing import potential_id


def test_kinds(tmp_path: Path) -> None:
    colon = tmp_path / "run:3.pt"
    colon.write_bytes(b"x")
    assert parse_potential("emt") == PotentialSpec("emt", "emt")
    assert parse_potential("default") == PotentialSpec("default", "checkpoint", DEFAULT_MODEL)
    assert parse_potential("my.module:build") == PotentialSpec("my.module:build", "factory")
    assert parse_potential(str(colon)).kind == "checkpoint"  # an existing file wins over ':'
    missing = tmp_path / "gone:1.pt"
    assert parse_potential(str(missing)).kind == "factory"  # as load_calculator always did
    assert parse_potential(tmp_path / "m.pt") == PotentialSpec(
        str(tmp_path / "m.pt"), "checkpoint", tmp_path / "m.pt")
    spec = parse_potential("emt")
    assert parse_potential(spec) is spec
    with pytest.raises(TypeError, match="got 3"):
        parse_potential(3)  # type: ignore[arg-type]


def test_potential_id_values_are_pinned(tmp_path: Path) -> None:
    """These strings are stored in existing databases: they must never change."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"not really a checkpoint\n")
    assert potential_id(str(path)) == "sha256:0af7f9ba9d8401dc"
    assert potential_id(parse_potential(path)) == "sha256:0af7f9ba9d8401dc"
    assert potential_id("emt") == "emt"
    assert potential_id("some.module:build") == "some.module:build"
    assert potential_id(":odd") == ":odd"
    assert potential_id(str(tmp_path / "nowhere.pt")) == "sha256:missing"
    digest = hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()[:16]
    assert potential_id("default") == f"sha256:{digest}"


def test_info_elements_and_metadata(tmp_path: Path) -> None:
    import torch

    from tests.helpers import SPECIES, make_model

    assert {"Cu", "Au", "Ni"} <= parse_potential("emt").info().elements
    assert parse_potential("ase.calculators.emt:EMT").info().elements is None
    model = make_model()
    save_potential(model, tmp_path / "tiny.pt", metadata={"note": "pinned"})
    info = parse_potential(str(tmp_path / "tiny.pt")).info()
    assert info.kind == "checkpoint" and info.elements == frozenset(SPECIES)
    assert info.metadata["note"] == "pinned"
    calc = parse_potential(str(tmp_path / "tiny.pt")).calculator(dtype="float32")
    assert calc.species == list(model.species) and calc.members[0].dtype == torch.float32


@pytest.mark.parametrize(("spec", "match"), [
    ("ase.calculators.emt:nothing", "cannot import calculator factory "
                                    "'ase.calculators.emt:nothing': AttributeError"),
    ("no_such_module_xyz:make", "cannot import .*'no_such_module_xyz:make': ModuleNotFound"),
    (":make", "':make' is neither an existing checkpoint file nor 'module:callable'"),
    ("math:pi", "'math:pi' is a float, not a callable factory"),
])
def test_bad_factories_are_named(spec: str, match: str) -> None:
    for resolve in (lambda s: s.info(), lambda s: s.calculator()):
        with pytest.raises(ValueError, match=match):
            resolve(parse_potential(spec))


def test_missing_or_wrong_checkpoints_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint file not found: .*nowhere.pt"):
        parse_potential(str(tmp_path / "nowhere.pt")).info()
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        parse_potential(str(tmp_path / "nowhere.pt")).calculator()
    with pytest.raises(ValueError, match="'emt' is not a checkpoint"):
        parse_potential("emt").checkpoint_file()
    with pytest.raises(TypeError, match="'builtins:dict' returned dict, not an ASE calculator"):
        parse_potential("builtins:dict").calculator()


def test_shipped_default_missing_is_said(tmp_path: Path) -> None:
    spec = PotentialSpec("default", "checkpoint", tmp_path / "default.pt")
    with pytest.raises(FileNotFoundError, match="the shipped default model is missing"):
        spec.info()


def test_emt_and_factories_never_import_torch() -> None:
    code = ("import sys; from matdesign.potential_spec import parse_potential; "
            "from matdesign.search.potentials import check_potential; "
            "from matdesign.search.hashing import potential_id; "
            "parse_potential('emt').calculator(); parse_potential('emt').info(); "
            "parse_potential('ase.calculators.emt:EMT').calculator(); "
            "check_potential('emt', ['Cu']); potential_id('emt'); potential_id('default'); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_evaluate_refuses_a_non_checkpoint() -> None:
    from matdesign.training.evaluate import evaluate_file

    with pytest.raises(ValueError, match="'emt' is not a checkpoint"):
        evaluate_file("emt", "unused.xyz")
