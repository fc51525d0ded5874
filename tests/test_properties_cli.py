"""The five property verbs end to end with ASE's EMT on a tiny CIF."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write

from matdesign.cli import main


@pytest.fixture
def cif(tmp_path):
    path = tmp_path / "cu.cif"
    write(path, bulk("Cu", "fcc", a=3.66))  # slightly expanded: the relaxation has work to do
    return path


def run(args, tmp_path):
    out = tmp_path / "out.json"
    rc = main([*map(str, args), "--potential", "emt", "--json", str(out)])
    return rc, (json.loads(out.read_text()) if out.is_file() else None)


def test_relax_verb(cif, tmp_path):
    rc, data = run(["relax", cif, "-o", tmp_path / "relaxed.cif", "--fix-symmetry"], tmp_path)
    assert rc == 0 and data["converged"] and data["spacegroup_after"] == "Fm-3m (225)"
    relaxed = read(tmp_path / "relaxed.cif")
    assert relaxed.get_volume() == pytest.approx(data["volume_a3"], rel=1e-4)
    assert relaxed.get_volume() < 3.66**3 / 4


def test_relax_not_converged_keeps_outputs(cif, tmp_path, capsys):
    rc, data = run(["relax", cif, "--max-steps", "2", "-o", tmp_path / "r.cif"], tmp_path)
    assert rc == 1 and data["converged"] is False and (tmp_path / "r.cif").is_file()
    assert "did not converge" in capsys.readouterr().err


def test_property_verb_stops_on_unconverged_relaxation(cif, tmp_path, capsys):
    rc, data = run(["elastic", cif, "--relax-steps", "2"], tmp_path)
    assert rc == 1 and data is None
    assert "did not converge" in capsys.readouterr().err


def test_eos_and_elastic_verbs(cif, tmp_path):
    rc, eos = run(["eos", cif, "--n-points", "5", "--max-strain", "0.01"], tmp_path)
    assert rc == 0 and eos["relaxation"]["converged"]
    rc, el = run(["elastic", cif, "--clamped-ion"], tmp_path)
    assert rc == 0
    for key in ("elastic_tensor_gpa", "bulk_modulus_vrh_gpa", "shear_modulus_vrh_gpa",
                "youngs_modulus_gpa", "poisson_ratio", "pugh_ratio", "born_stable"):
        assert key in el
    # the CIF reader puts the fcc primitive cell in a rotated frame, so compare the
    # frame-invariant Voigt bulk modulus (equal to Reuss and to (C11+2C12)/3 for cubic crystals)
    assert el["bulk_modulus_voigt_gpa"] == pytest.approx(el["bulk_modulus_reuss_gpa"], rel=1e-3)
    assert eos["b0_gpa"] == pytest.approx(el["bulk_modulus_vrh_gpa"], rel=0.01)
    assert np.array(el["elastic_tensor_gpa"]).shape == (6, 6)


def test_phonon_verb(cif, tmp_path):
    png = tmp_path / "plots" / "ph.png"
    rc, data = run(["phonon", cif, "--min-length", "6", "--mesh", "6", "6", "6",
                    "--plot", png, "--output-dir", tmp_path / "ph"], tmp_path)
    assert rc == 0 and data["dynamically_stable"] and png.stat().st_size > 10_000
    assert (tmp_path / "ph" / "phonopy.yaml").is_file()
    assert {p["label"] for p in data["high_symmetry_points"]} >= {"Γ", "X", "L"}


def test_md_verb(cif, tmp_path):
    rc, data = run(["md", cif, "--ensemble", "nve", "--temperature", "300", "--steps", "20",
                    "--repeat", "2", "2", "2", "--no-relax"], tmp_path)
    assert rc == 0 and data["n_atoms"] == 8 and data["relaxation"] is None
    assert data["energy_drift_ev_per_atom_per_ps"] is not None
    from ase.io import read as read_traj

    assert len(read_traj(tmp_path / "cu_md.traj", ":")) == 21  # default trajectory, every step


def test_phonon_verb_writes_files_by_default(cif, tmp_path):
    rc, _ = run(["phonon", cif, "--min-length", "5", "--mesh", "4", "4", "4"], tmp_path)
    assert rc == 0
    assert (tmp_path / "cu_phonon" / "phonopy.yaml").is_file()
    assert (tmp_path / "cu_phonon" / "band_dos.png").is_file()


def test_bad_structure_file(tmp_path, capsys):
    bad = tmp_path / "bad.cif"
    bad.write_text("not a cif\n")
    assert main(["eos", str(bad), "--potential", "emt"]) == 1
    assert "bad.cif" in capsys.readouterr().err
