"""Hostile campaign YAML and command lines: a clear error naming the file or key, raised
before any evaluation, a non-zero exit status, and nothing already computed lost (issue 13).

Every refusal here must come before the first evaluation, so each test takes well under a
second (the default-model ones pay for importing torch once).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ase.db import connect

from matdesign.cli import main

BASE = """\
name: hostile
potential: emt
budget: 1
space:
  elements: [Cu, Au]
  ordered: [{prototype: B2}]
objectives: [{property: formation_energy_ev_per_atom, goal: min}]
screen: {properties: [], fmax: 0.05, max_steps: 50}
optimizer: {batch_size: 1, n_initial: 1}
"""


def _design(tmp_path: Path, text: str | bytes, *extra: str) -> tuple[int, str, Path]:
    """Run ``matdesign design`` on ``text``; returns (exit status, stderr, db path)."""
    import contextlib
    import io

    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    db = tmp_path / "c.db"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["design", str(path), "--db", str(db), *extra])
    return rc, err.getvalue(), db


def _refused_before_work(tmp_path: Path, text: str | bytes, *names: str,
                         extra: tuple[str, ...] = ()) -> str:
    """Assert ``design`` exits 1 naming every one of ``names`` and evaluated nothing."""
    rc, err, db = _design(tmp_path, text, *extra)
    assert rc == 1, err
    for name in names:
        assert name in err, (name, err)
    assert not db.exists() or connect(str(db)).count() == 0
    return err


# ---- case 1: the potential and the design space's elements, checked before any work ----------
@pytest.mark.parametrize(("old", "new", "names"), [
    ("potential: emt", "potential: default", ["potential", "'Au'", "'Cu'", "Nb"]),
    ("potential: emt", "potential: /nonexistent/model.pt", ["potential", "model.pt", "not found"]),
    ("potential: emt", "potential: 'no_such_module_xyz:make'", ["potential", "no_such_module_xyz"]),
    ("potential: emt", "potential: 'ase.calculators.emt:no_such_factory'",
     ["potential", "no_such_factory"]),
    ("potential: emt", "potential: 'ase.calculators.emt:parameters'", ["potential", "callable"]),
    ("[Cu, Au]", "[Nb, Mo, Ta, W]", ["potential", "'emt'", "'Mo'", "'W'"]),
    ("max_steps: 50}", "max_steps: 50, phonon_min_length: -10}", ["screen.phonon_min_length"]),
    ("fmax: 0.05", "fmax: .nan", ["screen.fmax"]),
    ("max_steps: 50", "max_steps: 0", ["screen.max_steps"]),
])
def test_design_refuses_unusable_potential_or_setting(tmp_path, old, new, names) -> None:
    """Old: the campaign started, every evaluation failed (or ran), and design exited 0."""
    assert old in BASE
    _refused_before_work(tmp_path, BASE.replace(old, new), *names)


@pytest.mark.parametrize("elements", ["[Cu, Nb]", "[Cu, Ag]"])
def test_design_refuses_elements_the_default_model_does_not_know(tmp_path, elements) -> None:
    text = BASE.replace("potential: emt", "potential: default").replace("[Cu, Au]", elements)
    err = _refused_before_work(tmp_path, text, "potential", "'Cu'", "design space")
    assert "'Nb'" not in err.split("does not know")[1].split(";")[0]  # Nb is known


def test_design_potential_override_is_checked(tmp_path) -> None:
    _refused_before_work(tmp_path, BASE, "--potential", "nowhere.pt",
                         extra=("--potential", str(tmp_path / "nowhere.pt")))


def test_check_potential_api() -> None:
    from matdesign.search.potentials import check_potential

    assert check_potential("emt", ["Cu", "Au"]).kind == "emt"
    assert check_potential("default", ["Nb", "W"]).elements == {"Nb", "Mo", "Ta", "W"}
    assert check_potential("ase.calculators.emt:EMT", ["Nb"]).elements is None  # unknown
    with pytest.raises(ValueError, match=r"key\.x: .*'Al'"):
        check_potential("default", ["Al"], key="key.x")
    with pytest.raises(ValueError, match="potential: expected"):
        check_potential(3)


# ---- case 1 for screen: refuse a bad --potential before reading any input ---------------------
@pytest.mark.parametrize("potential", ["/nonexistent/model.pt", "no_such_module_xyz:make",
                                       "ase.calculators.emt:nothing"])
def test_screen_refuses_bad_potential_before_reading_inputs(tmp_path, capsys,
                                                            potential) -> None:
    """Old: exit 0 with one failed row per input (the missing input file was not noticed)."""
    db = tmp_path / "s.db"
    rc = main(["screen", str(tmp_path / "missing.cif"), "--db", str(db), "--potential",
               potential, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "--potential" in err and potential in err, err
    assert not db.exists()


# ---- case 2: numbers are typed and ranged; booleans are not integers --------------------------
@pytest.mark.parametrize(("old", "new", "key"), [
    ("budget: 1", "budget: 2.5", "budget"),
    ("budget: 1", "budget: true", "budget"),
    ("budget: 1", "budget: 0", "budget"),
    ("batch_size: 1", "batch_size: 0", "optimizer.batch_size"),
    ("batch_size: 1", "batch_size: true", "optimizer.batch_size"),
    ("n_initial: 1", "n_initial: -1", "optimizer.n_initial"),
    ("n_initial: 1}", "n_initial: 1, pool_size: 0}", "optimizer.pool_size"),
    ("n_initial: 1}", "n_initial: 1, seed: -3}", "optimizer.seed"),
    ("n_initial: 1}", "n_initial: 1, xi: -1}", "optimizer.xi"),
    ("[Cu, Au]", "[Cu, Cu]", "space.elements"),
    ("[Cu, Au]", "[Cu, X]", "space.elements"),
    ("[Cu, Au]", "[Cu, 29]", "space.elements"),
    ("goal: min}]", "goal: min}, {property: formation_energy_ev_per_atom}]", "objectives[1]"),
])
def test_design_refuses_mistyped_numbers(tmp_path, old, new, key) -> None:
    """Old: 2.5 ran as 2, true as 1, batch_size 0 was a silent no-op; all exited 0."""
    assert old in BASE
    _refused_before_work(tmp_path, BASE.replace(old, new), key)


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_design_refuses_bad_workers(tmp_path, workers) -> None:
    _refused_before_work(tmp_path, BASE, "--workers", extra=("--workers", workers))


def test_campaign_run_refuses_bad_workers(tmp_path) -> None:
    import yaml

    from matdesign.search.campaign import Campaign
    from matdesign.search.config import parse_campaign

    camp = Campaign(parse_campaign(yaml.safe_load(BASE)), str(tmp_path / "c.db"),
                    evaluator=lambda atoms, source: None)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="workers"):
            camp.run(workers=bad)
    assert camp.store.db.count() == 0


def test_screen_refuses_bad_workers_before_reading_inputs(tmp_path, capsys) -> None:
    """Old: refused only after reading the inputs and creating the database."""
    db = tmp_path / "s.db"
    for argv in (["--workers", "0"], ["--phonon-min-length", "-10"], ["--timeout", "0"]):
        rc = main(["screen", str(tmp_path / "missing.cif"), "--db", str(db), "--potential", "emt",
                   "--no-progress", *argv])
        assert rc == 1 and argv[0] in capsys.readouterr().err
    assert not db.exists()


# ---- case 3: errors name the file and the key --------------------------------------------------
DISORDERED = BASE.replace("ordered: [{prototype: B2}]", "disordered: [{lattice: A2}]")


@pytest.mark.parametrize(("text", "key"), [
    (BASE.replace("budget: 1", "budget: six"), "budget"),
    (DISORDERED.replace("{lattice: A2}", "{lattice: A2, realisations: two}"),
     "space.disordered[0].realisations"),
    (DISORDERED.replace("{lattice: A2}", "{lattice: A2, supercell: [a, 2, 2]}"),
     "space.disordered[0].supercell[0]"),
    (DISORDERED.replace("{lattice: A2}", "{lattice: A2, seed: 1.5}"), "space.disordered[0].seed"),
    (DISORDERED.replace("{lattice: A2}", "{lattice: A2, bounds: {Cu: [a, 1]}}"),
     "space.disordered[0].bounds.Cu"),
    (BASE + "uncertainty_energy_std_ev_per_atom: x\n", "uncertainty_energy_std_ev_per_atom"),
    (BASE.replace("potential: emt", "potential: 5"), "potential"),
    (BASE.replace("objectives: [", "constraints: [3]\nobjectives: ["), "constraints"),
])
def test_design_errors_name_the_file_and_key(tmp_path, text, key) -> None:
    """Old: 'invalid literal for int() with base 10: ...' without the key."""
    err = _refused_before_work(tmp_path, text, key, "c.yaml")
    assert "invalid literal" not in err


def test_non_utf8_yaml_names_the_file(tmp_path) -> None:
    """Old: "'utf-8' codec can't decode byte 0xff" without the file."""
    text = BASE.encode().replace(b"name: hostile", b"name: hostile\xff")
    _refused_before_work(tmp_path, text, "c.yaml", "UTF-8", "line 1")


@pytest.mark.parametrize(("text", "key"), [
    (BASE + "budget: 5\n", "'budget'"),
    (BASE.replace("fmax: 0.05", "fmax: 0.05, fmax: 0.01"), "'fmax'"),
])
def test_duplicate_yaml_key_is_refused(tmp_path, text, key) -> None:
    """Old: the last value silently won (budget: 5 ran five evaluations)."""
    _refused_before_work(tmp_path, text, "c.yaml", "duplicate key", key, "line")


def test_yaml_loader_refuses_duplicates_but_allows_merge_keys(tmp_path) -> None:
    from matdesign.config_utils import load_yaml
    from matdesign.training.config import load_config

    p = tmp_path / "a.yaml"
    p.write_text("base: &b {x: 1}\nd:\n  <<: *b\n  x: 2\n")
    assert load_yaml(p) == {"base": {"x": 1}, "d": {"x": 2}}
    p.write_text("train:\n  lr: 0.1\n  lr: 0.01\n")  # the training configs use the same loader
    with pytest.raises(ValueError, match=r"a\.yaml.*duplicate key 'lr'"):
        load_config(p)


# ---- case 4: screen exits non-zero when every candidate failed ---------------------------------
def test_screen_all_failed_exits_nonzero_and_keeps_rows(tmp_path, capsys) -> None:
    """Old: exit 0 although the only candidate failed."""
    from ase.build import bulk
    from ase.io import write

    write(tmp_path / "nb.cif", bulk("Nb", "bcc", a=3.3))  # EMT knows no Nb: fails
    db = tmp_path / "s.db"
    argv = ["screen", str(tmp_path / "nb.cif"), "--db", str(db), "--potential", "emt",
            "--no-progress"]
    assert main(argv) == 1
    assert "all 1 candidate(s)" in capsys.readouterr().err
    assert [r.status for r in connect(str(db)).select()] == ["failed"]
    assert main(argv) == 0  # a re-run with nothing new to do is not a failure


# ---- case 5: module:callable imports code; the help and the examples say so ------------------
@pytest.mark.parametrize("verb", ["design", "screen"])
def test_potential_help_warns_that_module_callable_runs_code(verb, capsys) -> None:
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "module:callable" in text and "IMPORTS" in text


def test_example_campaigns_warn_and_still_load() -> None:
    from matdesign.search.config import load_campaign

    root = Path(__file__).resolve().parents[1] / "examples"
    for name in ("refractory_hea.yaml", "refractory_hea_demo.yaml"):
        text = (root / name).read_text()
        assert "module:callable" in text and "IMPORTS" in text, name
        assert load_campaign(root / name).potential == "default"


# ---- case 6: resuming with a changed configuration ---------------------------------------------
@pytest.mark.parametrize(("old", "new", "named"), [
    ("goal: min", "goal: max", "objectives"),
    ("fmax: 0.05", "fmax: 0.02", "screen.fmax"),
    ("[Cu, Au]", "[Au, Cu]", "space"),
    ("potential: emt", "potential: 'ase.calculators.emt:EMT'", "potential"),
])
def test_resume_with_changed_config_is_refused(tmp_path, old, new, named) -> None:
    """Old: the stored objectives were silently overwritten; rows judged by new rules."""
    rc, err, db = _design(tmp_path, BASE)
    assert rc == 0, err
    before = connect(str(db)).metadata
    rows = [r.candidate_key for r in connect(str(db)).select()]
    rc, err, _ = _design(tmp_path, BASE.replace(old, new).replace("budget: 1", "budget: 2"))
    assert rc == 1 and named in err and "--allow-config-change" in err, err
    assert connect(str(db)).metadata == before  # nothing overwritten...
    assert [r.candidate_key for r in connect(str(db)).select()] == rows  # ...nor evaluated
    rc, err, _ = _design(tmp_path, BASE.replace(old, new), "--allow-config-change")
    assert rc == 0, err
    assert connect(str(db)).metadata != before


def test_resume_with_same_config_and_larger_budget_is_allowed(tmp_path) -> None:
    assert _design(tmp_path, BASE)[0] == 0
    rc, err, db = _design(tmp_path, BASE, "--budget", "2")
    assert rc == 0, err
    assert connect(str(db)).count() == 2
