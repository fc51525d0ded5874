"""benchmarks/gpaw_pair_offsets.py: GPAW's pairwise offset from the data's code, fitted as a
regular solution and subtracted from alloy labels; checked against offsets planted by hand."""

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
BENCH = ROOT / "benchmarks"
ELEMENTS = ("Nb", "Mo", "Ta", "W")
# planted Ω_AB, eV/atom, in the script's pair order (NbMo NbTa NbW MoTa MoW TaW)
OMEGA = {"NbMo": 0.060, "NbTa": 0.004, "NbW": 0.050, "MoTa": -0.002, "MoW": 0.004,
         "TaW": -0.044}
KAPPA = -0.8  # planted strain term, eV/atom per unit volume fraction


def _planted(symbols: list[str], f: float) -> float:
    n = len(symbols)
    x = {el: symbols.count(el) / n for el in ELEMENTS}
    pairs = [(a, b) for k, a in enumerate(ELEMENTS) for b in ELEMENTS[k + 1:]]
    xx = {a + b: x[a] * x[b] for a, b in pairs}
    return sum(OMEGA[p] * v for p, v in xx.items()) + KAPPA * (f - 1.0) * sum(xx.values())


def _committed_mu_gpaw() -> dict[str, float]:
    out = {}
    for el in ELEMENTS:
        rec = json.loads((BENCH / "results" / "s23" / "gpaw_refs" / f"ref_{el}.json").read_text())
        out[el] = rec["energy_ev"] / len(rec["symbols"])
    return out


def _data(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    """Each element's two *_Elastic frames; the lower energy per atom is the reference."""
    frames, mu = [], {}
    for k, el in enumerate(ELEMENTS):
        for j in range(2):
            atoms = bulk(el, "bcc", a=3.2 + 0.05 * j)
            e = -9.0 - k - 0.2 * j
            atoms.calc = SinglePointCalculator(atoms, energy=e, forces=np.zeros((1, 3)))
            atoms.info["config_type"] = f"{el}_Elastic"
            frames.append(atoms)
        mu[el] = e
    path = tmp_path / "data.extxyz"
    write(path, frames, format="extxyz")
    return path, mu


def _pair_record(name: str, symbols: list[str], mu_data: dict, mu_gpaw: dict,
                 delta_ev: float, rng, f: float = 1.0) -> dict:
    """A record whose GPAW mixing energy exceeds the data's by ``delta_ev`` per atom."""
    n = len(symbols)
    e_data = sum(mu_data[s] for s in symbols) + n * rng.uniform(-0.03, 0.03)
    e_gpaw = sum(mu_gpaw[s] for s in symbols) + (e_data - sum(mu_data[s] for s in symbols)) \
        + n * delta_ev
    forces = rng.normal(0, 0.5, (n, 3))
    return {"name": name, "symbols": symbols, "energy_ev": e_gpaw, "volume_fraction": f,
            "forces_ev_per_a": (forces + 0.01).tolist(), "data_energy_ev": e_data,
            "data_forces_ev_per_a": forces.tolist()}


def _module(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(BENCH))


def test_fit_recovers_planted_pair_offsets_and_reports_left_out_residuals(tmp_path):
    g = _module("gpaw_pair_offsets")
    data, mu_data = _data(tmp_path)
    mu_gpaw = _committed_mu_gpaw()
    rng = np.random.default_rng(0)
    recs = tmp_path / "pairs"
    recs.mkdir()
    for (a, b), pair in zip(g.PAIR_ELEMENTS, g.PAIRS):
        for k, (n_a, f) in enumerate(((4, 0.96), (8, 1.0), (12, 1.05))):  # three per pair
            sym = [a] * n_a + [b] * (16 - n_a)
            rec = _pair_record(f"pair_{pair}_SS_{k}", sym, mu_data, mu_gpaw, _planted(sym, f),
                               rng, f)
            (recs / f"{rec['name']}.json").write_text(json.dumps(rec))
    # a record of another kind in the same directory is not a pair frame
    (recs / "cells.json").write_text("{}")
    out = tmp_path / "fit.json"
    g.fit([recs], data, out)
    res = json.loads(out.read_text())
    for pair in g.PAIRS:
        assert res["omega_ev"][pair] == pytest.approx(OMEGA[pair], abs=2e-5)
    assert res["kappa_ev"] == pytest.approx(KAPPA, abs=1e-3)
    assert res["frames_per_pair"] == {p: 3 for p in g.PAIRS}
    assert res["fit_rms_ev_per_atom"] < 1e-5
    assert res["leave_one_out_rms_ev_per_atom"] < 1e-5
    assert res["uncorrected_rms_ev_per_atom"] > 3e-3  # the offsets were there to be found
    assert all(r["force_mae_ev_per_a"] == pytest.approx(0.01, abs=1e-4) for r in res["frames"])
    # the correction of an equiatomic quaternary at Vegard's volume: Σ Ω / 16
    assert res["equiatomic_quaternary_offset_ev"] == pytest.approx(sum(OMEGA.values()) / 16,
                                                                    abs=2e-5)
    offsets = g.load_offsets(out)
    quaternary = ["Nb", "Mo", "Ta", "W"] * 4
    assert offsets.offset_ev(quaternary, 1.02) == pytest.approx(_planted(quaternary, 1.02),
                                                                abs=3e-5)


def test_fit_refuses_a_pair_without_frames_and_leaves_a_lone_frame_unjudged(tmp_path):
    g = _module("gpaw_pair_offsets")
    data, mu_data = _data(tmp_path)
    mu_gpaw = _committed_mu_gpaw()
    rng = np.random.default_rng(1)
    recs = tmp_path / "pairs"
    recs.mkdir()
    for (a, b), pair in list(zip(g.PAIR_ELEMENTS, g.PAIRS))[:5]:  # TaW missing
        for k in range(2 if pair != "NbMo" else 1):
            sym = [a] * 8 + [b] * 8
            f = 1.0 + 0.03 * k
            rec = _pair_record(f"pair_{pair}_SS_{k}", sym, mu_data, mu_gpaw,
                               _planted(sym, f) + 0.001 * (pair == "NbTa" and k == 1), rng, f)
            (recs / f"{rec['name']}.json").write_text(json.dumps(rec))
    with pytest.raises(SystemExit, match="TaW"):
        g.fit([recs], data, tmp_path / "fit.json")
    sym = ["Ta"] * 8 + ["W"] * 8
    rec = _pair_record("pair_TaW_SS_0", sym, mu_data, mu_gpaw, _planted(sym, 1.0), rng)
    (recs / "pair_TaW_SS_0.json").write_text(json.dumps(rec))
    g.fit([recs], data, tmp_path / "fit.json")
    rows = {r["frame"]: r for r in json.loads((tmp_path / "fit.json").read_text())["frames"]}
    assert rows["pair_NbMo_SS_0"]["leave_one_out_residual_ev_per_atom"] is None
    # left out, NbTa's second frame is predicted from its partner and the others' strain term:
    # off by the 1 meV/atom planted on it
    assert rows["pair_NbTa_SS_1"]["leave_one_out_residual_ev_per_atom"] == pytest.approx(
        0.001, abs=2e-6)


def test_collect_and_correct_targets_subtract_the_regular_solution_offset(tmp_path):
    g = _module("gpaw_pair_offsets")
    data, mu_data = _data(tmp_path)
    offsets = tmp_path / "offsets.json"
    offsets.write_text(json.dumps({"omega_ev": OMEGA, "kappa_ev": KAPPA}))
    rng = np.random.default_rng(2)
    cells = tmp_path / "gpaw_hot"
    cells.mkdir()
    sym = ["Nb", "Mo", "Ta", "W", "Mo", "Mo", "Ta", "W"] * 2
    for name in ("hx_1500", "hx_hold"):
        (cells / f"{name}.json").write_text(json.dumps({
            "name": name, "temperature_k": 1500.0, "volume_fraction": 1.02, "symbols": sym,
            "cell": (np.eye(3) * 6.4).tolist(), "scaled_positions":
            rng.uniform(0, 1, (16, 3)).tolist(), "energy_ev": -170.0,
            "forces_ev_per_a": np.zeros((16, 3)).tolist()}))
    x = {el: sym.count(el) / 16 for el in ELEMENTS}
    xx = [x[a] * x[b] for a, b in g.PAIR_ELEMENTS]
    by_hand = (sum(OMEGA[a + b] * v for (a, b), v in zip(g.PAIR_ELEMENTS, xx, strict=True))
               + KAPPA * 0.02 * sum(xx))  # the cells sit at 1.02 × Vegard
    assert by_hand != 0.0
    frames = {}
    for tag, extra in (("plain", []), ("corrected", ["--pair-offsets", str(offsets)])):
        out = tmp_path / tag / "frames.extxyz"
        subprocess.run([sys.executable, str(BENCH / "gpaw_hot_frames.py"), "collect", str(cells),
                        "--data", str(data), "--out", str(out), *extra], check=True, cwd=ROOT)
        frames[tag] = (read(out, ":"), json.loads(
            out.with_name("frames_holdout_mixing.json").read_text())["points"])
    (plain,), plain_points = frames["plain"]
    (corr,), corr_points = frames["corrected"]
    assert corr.get_potential_energy() == pytest.approx(
        plain.get_potential_energy() - 16 * by_hand, abs=1e-8)
    assert corr.info["pair_offset_ev_per_atom"] == pytest.approx(by_hand, abs=1e-6)
    assert corr_points[0]["mixing_energy_ev"] == pytest.approx(
        plain_points[0]["mixing_energy_ev"] - by_hand, abs=2e-5)
    # the same offset for a targets file of train.mixing_energies
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps({"source": "test", "points": plain_points}))
    g.correct_targets(targets, offsets, tmp_path / "targets_corrected.json")
    (point,) = json.loads((tmp_path / "targets_corrected.json").read_text())["points"]
    assert point["mixing_energy_ev"] == pytest.approx(corr_points[0]["mixing_energy_ev"],
                                                      abs=2e-5)


@pytest.mark.parametrize("doc", [{"omega_ev": {"NbMo": 0.1}, "kappa_ev": 0.0},
                                 {"omega_ev": {**OMEGA, "TaW": float("nan")}, "kappa_ev": 0.0},
                                 {"omega_ev": None, "kappa_ev": 0.0},
                                 {"omega_ev": OMEGA}, {"omega_ev": OMEGA, "kappa_ev": "0.1"}])
def test_an_offsets_file_without_every_coefficient_is_refused(tmp_path, doc):
    g = _module("gpaw_pair_offsets")
    path = tmp_path / "offsets.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match="offsets.json"):
        g.load_offsets(path)
