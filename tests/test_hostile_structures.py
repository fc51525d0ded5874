"""Hostile structure input (issue 13): refused with the file's name before any model work.

Inconsistent POSCAR counts, multi-frame files without ``--index``, slabs/molecules/atoms in a
box given to bulk-only properties or the screen, and an unwritable ``relax -o`` name.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, graphene, molecule
from ase.calculators.emt import EMT
from ase.io import read, write
from ase.lattice.hexagonal import Graphite
from ase.spacegroup import crystal

from matdesign.cli import build_parser, main
from matdesign.search.database import ResultsDB
from matdesign.search.pipeline import ScreenSettings, evaluate_candidate
from matdesign.search.screen import run_screen
from matdesign.structure_io import (
    StructureFileError,
    largest_gap,
    read_one,
    read_structures,
    vacuum_reason,
)

SETTINGS = ScreenSettings(potential="emt", fmax=1e-3, max_steps=300)
CELL = "x\n1.0\n3.6 0 0\n0 3.6 0\n0 0 3.6\n"


def _poscar(folder: Path, name: str, species: str, counts: str, coords: list[str],
            extra: str = "") -> Path:
    path = folder / name
    path.write_text(CELL + f"{species}\n{counts}\n{extra}Direct\n" + "\n".join(coords) + "\n")
    return path


# --- case 1: POSCAR counts -------------------------------------------------------------------

def test_poscar_counts_must_match_species_and_coordinates(tmp_path: Path) -> None:
    two = ["0 0 0", "0.5 0.5 0.5"]
    short = _poscar(tmp_path, "POSCAR_short", "Cu Au", "1", two)  # ASE reads 1 Cu atom
    with pytest.raises(StructureFileError, match="POSCAR_short.*species line names 2"):
        read_structures(short)
    extra = _poscar(tmp_path, "x.vasp", "Cu Au", "1 1", [*two, "0.5 0 0.5"])
    with pytest.raises(StructureFileError, match=r"x\.vasp.*says 2 atom.*3 coordinate"):
        read_structures(extra)
    # selective dynamics flags and a CONTCAR velocity block are not extra atoms
    ok = _poscar(tmp_path, "CONTCAR", "Cu Au", "1 1", ["0 0 0 T T F", "0.5 0.5 0.5 T T T",
                                                       "", "0 0 0", "0 0 0"],
                 extra="Selective dynamics\n")
    assert read_structures(ok)[0].get_chemical_formula() == "AuCu"
    vasp4 = tmp_path / "POSCAR_v4"  # VASP 4: no species line (names from the comment)
    vasp4.write_text("Cu Au\n1.0\n3.6 0 0\n0 3.6 0\n0 0 3.6\n1 1\nDirect\n0 0 0\n0.5 0.5 0.5\n")
    assert len(read_structures(vasp4)[0]) == 2


def test_calc_refuses_poscar_with_wrong_counts(tmp_path: Path, capsys) -> None:
    bad = _poscar(tmp_path, "POSCAR", "Cu Au", "1", ["0 0 0", "0.5 0.5 0.5"])
    out = tmp_path / "out.json"
    assert main(["calc", str(bad), "--potential", "emt", "--json", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "counts line" in err
    assert not out.exists()


def test_screen_refuses_poscar_with_wrong_counts(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _poscar(folder, "POSCAR", "Cu Au", "1", ["0 0 0", "0.5 0.5 0.5"])
    db = tmp_path / "r.db"
    summary = run_screen([str(folder)], str(db), SETTINGS, progress=False)
    assert (summary.n_done, summary.n_failed) == (0, 1)
    (row,) = ResultsDB(str(db)).rows()
    assert row.status == "failed" and "POSCAR" in row.reason and "counts line" in row.reason
    assert row.failure_class == "unreadable input"


# --- case 2: multi-frame files -------------------------------------------------------------

@pytest.fixture
def two_frames(tmp_path: Path) -> Path:
    path = tmp_path / "frames.xyz"
    write(path, [bulk("Cu", a=3.6), bulk("Cu", a=3.7)], format="extxyz")
    return path


def test_multi_frame_needs_index(two_frames: Path, tmp_path: Path, capsys) -> None:
    assert main(["calc", str(two_frames), "--potential", "emt"]) == 1
    err = capsys.readouterr().err
    assert "frames.xyz holds 2 structures" in err and "--index" in err
    out = tmp_path / "out.json"
    assert main(["calc", str(two_frames), "--index", "0", "--potential", "emt",
                 "--json", str(out)]) == 0
    ref = bulk("Cu", a=3.6)
    ref.calc = EMT()
    assert json.loads(out.read_text())["energy_ev"] == pytest.approx(ref.get_potential_energy())
    assert main(["calc", str(two_frames), "--index", "2", "--potential", "emt"]) == 1
    assert "out of range" in capsys.readouterr().err
    assert len(read_one(two_frames, -1)) == 1


@pytest.mark.parametrize("verb", ["relax", "elastic", "phonon"])
def test_property_verbs_refuse_multi_frame_and_take_index(verb: str, two_frames: Path,
                                                          capsys) -> None:
    assert main([verb, str(two_frames), "--potential", "emt"]) == 1
    assert "holds 2 structures" in capsys.readouterr().err
    args = build_parser().parse_args([verb, str(two_frames), "--index", "1"])
    assert args.index == 1


def test_relax_index_picks_the_frame(two_frames: Path, tmp_path: Path) -> None:
    out = tmp_path / "relaxed.cif"
    assert main(["relax", str(two_frames), "--index", "-1", "--potential", "emt",
                 "--fmax", "0.01", "-o", str(out), "--json", str(tmp_path / "r.json")]) == 0
    assert len(read(out)) == 1


# --- case 3: vacuum ------------------------------------------------------------------------

def _bulk_negatives() -> dict[str, Atoms]:
    mos2 = Atoms("MoS2MoS2", scaled_positions=[
        (1 / 3, 2 / 3, 0.25), (2 / 3, 1 / 3, 0.371), (2 / 3, 1 / 3, 0.129),
        (2 / 3, 1 / 3, 0.75), (1 / 3, 2 / 3, 0.871), (1 / 3, 2 / 3, 0.629)],
        cell=[[3.16, 0, 0], [-1.58, 3.16 * np.sqrt(3) / 2, 0], [0, 0, 12.29]], pbc=True)
    perovskite = crystal(["Sr", "Ti", "O"], [(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)],
                         spacegroup=221, cellpar=[3.905] * 3 + [90] * 3)
    sheared = bulk("W", cubic=True)
    sheared.set_cell(sheared.cell @ [[1, 0.3, 0], [0, 1, 0.2], [0, 0, 1]], scale_atoms=True)
    return {"bcc": bulk("W"), "fcc": bulk("Cu"), "hcp": bulk("Mg"), "diamond": bulk("Si"),
            "rocksalt": bulk("NaCl", "rocksalt", a=5.64), "perovskite": perovskite,
            "graphite": Graphite("C", latticeconstant={"a": 2.46, "c": 6.7}),
            "MoS2-2H": mos2, "Cs-bcc": bulk("Cs", "bcc", a=6.1), "sheared": sheared,
            "supercell": bulk("W", cubic=True).repeat(3)}


def _vacuum_positives() -> dict[str, Atoms]:
    water = molecule("H2O")
    water.center(vacuum=5.0)
    water.pbc = True
    sheet = graphene(vacuum=7.5)
    sheet.pbc = True
    return {"atom-in-box": Atoms("Cu", cell=[10.0] * 3, pbc=True),
            "slab-15A": fcc111("Cu", (1, 1, 4), vacuum=7.5, periodic=True),
            "W2-in-500A": Atoms("W2", positions=[[250, 250, 250], [252.2, 250, 250]],
                                cell=[500.0] * 3, pbc=True),
            "water-in-box": water, "graphene-15A": sheet,
            "non-periodic": Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]])}


@pytest.mark.parametrize("name", sorted(_bulk_negatives()))
def test_bulk_crystals_are_not_vacuum(name: str) -> None:
    atoms = _bulk_negatives()[name]
    assert vacuum_reason(atoms) is None, largest_gap(atoms)


@pytest.mark.parametrize("name", sorted(_vacuum_positives()))
def test_vacuum_structures_are_flagged(name: str) -> None:
    assert vacuum_reason(_vacuum_positives()[name]) is not None


@pytest.mark.parametrize("verb", ["elastic", "phonon", "eos"])
@pytest.mark.parametrize("name", ["atom-in-box", "slab-15A"])
def test_bulk_verbs_refuse_vacuum_before_relaxing(verb: str, name: str, tmp_path: Path,
                                                  capsys, monkeypatch) -> None:
    relax_module = importlib.import_module("matdesign.properties.relax")

    def no_relax(*args, **kwargs):
        raise AssertionError("relaxed a structure that should have been refused")

    monkeypatch.setattr(relax_module, "relax", no_relax)
    path = tmp_path / f"{name}.cif"
    write(path, _vacuum_positives()[name])
    assert main([verb, str(path), "--potential", "emt"]) == 1
    err = capsys.readouterr().err
    assert "vacuum / not bulk" in err and str(path) in err


def test_property_calculators_refuse_vacuum() -> None:
    from matdesign.properties.elastic import ElasticCalculator
    from matdesign.properties.phonon import PhononCalculator

    slab = _vacuum_positives()["slab-15A"]
    with pytest.raises(ValueError, match="^vacuum / not bulk: elastic constants"):
        ElasticCalculator(EMT()).calc(slab)
    with pytest.raises(ValueError, match="^vacuum / not bulk: phonons"):
        PhononCalculator(EMT()).calc(_vacuum_positives()["W2-in-500A"])


@pytest.mark.parametrize("name", ["atom-in-box", "slab-15A", "non-periodic"])
def test_screen_stores_vacuum_as_failed(name: str) -> None:
    res = evaluate_candidate(_vacuum_positives()[name], SETTINGS, name)
    assert res.status == "failed" and "vacuum / not bulk" in res.reason
    assert "energy_per_atom_ev" not in res.key_value_pairs  # never relaxed, never on the hull
    assert res.key_value_pairs["failure_class"] == "vacuum / not bulk"


def test_relax_of_a_slab_is_still_allowed(tmp_path: Path) -> None:
    path = tmp_path / "slab.cif"
    write(path, _vacuum_positives()["slab-15A"])
    assert main(["relax", str(path), "--potential", "emt", "--ions-only", "--fmax", "0.05",
                 "--json", str(tmp_path / "r.json")]) == 0


# --- case 4: relax output ------------------------------------------------------------------

def test_relax_checks_output_format_before_relaxing(tmp_path: Path, capsys,
                                                    monkeypatch) -> None:
    relax_module = importlib.import_module("matdesign.properties.relax")

    def no_relax(*args, **kwargs):
        raise AssertionError("relaxed before checking the output name")

    monkeypatch.setattr(relax_module, "relax", no_relax)
    cif = tmp_path / "cu.cif"
    write(cif, bulk("Cu", a=3.7))
    assert main(["relax", str(cif), "--potential", "emt", "-o", str(tmp_path / "out.qqq")]) == 1
    err = capsys.readouterr().err
    assert "out.qqq" in err and "unknown structure format" in err
    assert main(["relax", str(cif), "--potential", "emt", "-o", str(tmp_path / "OUTCAR")]) == 1
    assert "read-only" in capsys.readouterr().err


def test_relax_write_failure_keeps_the_result(tmp_path: Path, capsys, monkeypatch) -> None:
    import ase.io

    real_write = ase.io.write

    def failing_write(filename, *args, **kwargs):
        if str(filename).endswith("out.cif"):
            raise OSError("disk full")
        return real_write(filename, *args, **kwargs)

    monkeypatch.setattr(ase.io, "write", failing_write)
    cif = tmp_path / "cu.cif"
    write(cif, bulk("Cu", a=3.7))
    rc = main(["relax", str(cif), "--potential", "emt", "--fmax", "0.01",
               "-o", str(tmp_path / "out.cif"), "--json", str(tmp_path / "r.json")])
    assert rc == 1
    err = capsys.readouterr().err
    rescue = tmp_path / "cu_relaxed.extxyz"
    assert "disk full" in err and str(rescue) in err
    assert read(rescue).get_volume() < bulk("Cu", a=3.7).get_volume()  # EMT Cu a ~ 3.59 Å
    assert (tmp_path / "r.json").is_file()
