"""benchmarks/gpaw_hot_frames.py collect: GPAW frames mapped to the data's code, checked by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpaw_hot_frames.py"
ELEMENTS = ("Nb", "Mo", "Ta", "W")
DATA_A = {"Nb": 3.323, "Mo": 3.169, "Ta": 3.322, "W": 3.190}  # the data README's bcc lattices, Å


def _committed(name: str) -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / name).read_text())


def test_collect_maps_energy_volume_and_forces_to_the_data_code(tmp_path):
    # the data: each element's *_Elastic frames, the lowest one per atom is the reference
    frames, mu_data = [], {}
    for k, el in enumerate(ELEMENTS):
        for j, a in enumerate((3.2 + 0.05 * k, 3.3 + 0.05 * k)):
            atoms = bulk(el, "bcc", a=a)
            e = -10.0 - k - 0.3 * j  # the second (larger) cell is the lower
            atoms.calc = SinglePointCalculator(atoms, energy=e, forces=np.zeros((1, 3)))
            atoms.info["config_type"] = f"{el}_Elastic"
            frames.append(atoms)
        mu_data[el] = e
    v_data = {el: a ** 3 / 2 for el, a in DATA_A.items()}
    data = tmp_path / "data.extxyz"
    write(data, frames, format="extxyz")
    # two GPAW records: a held-out quaternary and a training ternary
    rng = np.random.default_rng(0)
    out_dir = tmp_path / "gpaw_hot"
    out_dir.mkdir()
    (out_dir / "cells.json").write_text("{}")
    symbols = {"hq_hold": ["Nb", "Mo", "Ta", "W"] * 4, "htri": ["Mo", "Ta", "W", "Mo"] * 4}
    records = {}
    for name, sym in symbols.items():
        rec = {"name": name, "temperature_k": 1500.0, "volume_fraction": 1.0, "symbols": sym,
               "cell": (np.eye(3) * 6.4).tolist(),
               "scaled_positions": rng.uniform(0, 1, (16, 3)).tolist(),
               "energy_ev": -170.0 - rng.uniform(), "forces_ev_per_a":
               rng.normal(0, 1, (16, 3)).tolist(), "seconds": 1.0}
        (out_dir / f"{name}.json").write_text(json.dumps(rec))
        records[name] = rec
    # gpaw_alloys.py's records: cold cells (no temperature), a binary check and a reference,
    # which are not frames
    alloys = tmp_path / "gpaw_alloys"
    alloys.mkdir()
    for name in ("NbMoW", "W7NbMoTa", "check_MoTa_SS_0", "ref_Nb"):
        rec = {k: v for k, v in records["htri"].items() if k != "temperature_k"}
        (alloys / f"{name}.json").write_text(json.dumps({**rec, "name": name}))
    out = tmp_path / "frames.extxyz"
    subprocess.run([sys.executable, str(SCRIPT), "collect", str(out_dir), str(alloys),
                    "--data", str(data), "--out", str(out), "--repeat", "3",
                    "--hold-out", "W7NbMoTa"], check=True, cwd=ROOT)

    mu_gpaw = {el: (lambda r: r["energy_ev"] / len(r["symbols"]))(
        _committed(f"s23/gpaw_refs/ref_{el}.json")) for el in ELEMENTS}
    v_gpaw = {el: _committed(f"s21/gpaw/{el}.json")["v0_a3"] for el in ELEMENTS}
    train = read(out, ":")
    held = read(tmp_path / "frames_holdout.extxyz", ":")
    # training frames three times each, held out once; sorted by file path
    assert [a.info["name"] for a in train] == ["NbMoW"] * 3 + ["htri"] * 3
    assert [a.info["name"] for a in held] == ["W7NbMoTa", "hq_hold"]
    assert {train[0].info["config_type"], held[0].info["config_type"]} == {"GPAW_cold_ternary"}
    train, held = train[3:], held[1:]
    for atoms, name in ((train[0], "htri"), (held[0], "hq_hold")):
        rec, sym = records[name], symbols[name]
        shift = sum(mu_gpaw[s] - mu_data[s] for s in sym)
        assert np.isclose(atoms.get_potential_energy(), rec["energy_ev"] - shift, atol=1e-8)
        ratio = sum(v_data[s] for s in sym) / sum(v_gpaw[s] for s in sym)
        assert np.isclose(atoms.get_volume() / 6.4 ** 3, ratio, rtol=1e-10)
        assert np.allclose(atoms.get_forces(), rec["forces_ev_per_a"])
        assert np.allclose(atoms.get_scaled_positions(wrap=False) % 1.0,
                           np.array(rec["scaled_positions"]) % 1.0, atol=1e-8)
        assert atoms.get_chemical_symbols() == sym
    assert train[0].info["config_type"] == "GPAW_hot_ternary"  # a temperature: hot
    assert held[0].info["config_type"] == "GPAW_hot_quaternary"
    assert "stress" not in train[0].calc.results  # the volume mapping is first order in it
    # the held-out cells once more, as mixing-energy targets against GPAW's own references
    points = json.loads((tmp_path / "frames_holdout_mixing.json").read_text())["points"]
    assert [p["name"] for p in points] == ["W7NbMoTa", "hq_hold"]
    rec = records["hq_hold"]
    mix = (rec["energy_ev"] - sum(mu_gpaw[s] for s in rec["symbols"])) / 16
    assert points[1]["mixing_energy_ev"] == pytest.approx(mix, abs=1e-5)
    assert points[1]["volume_fraction"] == 1.0


def test_make_refuses_a_directory_whose_cells_may_be_computed(tmp_path):
    """``make`` would replace the cells that ``compute`` has labelled: refused before any MD."""
    (tmp_path / "cells.json").write_text("{}")
    proc = subprocess.run([sys.executable, str(SCRIPT), "make", "--out-dir", str(tmp_path),
                           "--cells", "held_out"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "cells.json exists" in proc.stderr
    assert (tmp_path / "cells.json").read_text() == "{}"


def test_held_out_cells_are_held_out_and_new():
    """Every cell of the second set is held out by its name, and none repeats a first-set name."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpaw_hot_frames as g
    finally:
        sys.path.remove(str(SCRIPT.parent))
    names = [c[0] for c in g.HELD_OUT_CELLS]
    assert all(n.endswith("_hold") for n in names)
    assert not set(names) & {c[0] for c in g.CELLS}
    assert all(sum(c[1]) == 16 for c in g.HELD_OUT_CELLS)
