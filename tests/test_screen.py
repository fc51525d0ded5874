"""Screening loop (in-process, EMT): failures with reasons, resume, hull, gates, timeout.

Independent references: EMT energies minimised over the lattice constant (scipy), EMT EOS
bulk modulus, and pymatgen PhaseDiagram built by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.io import write
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from matdesign.checkpoint import save_potential
from matdesign.search.database import ResultsDB, stored_references
from matdesign.search.hashing import content_hash
from matdesign.search.pipeline import ScreenSettings, evaluate_candidate
from matdesign.search.screen import run_screen

SETTINGS = ScreenSettings(potential="emt", fmax=1e-3, max_steps=300)


def l12(a: float = 3.75) -> Atoms:
    return Atoms("Cu3Au", scaled_positions=[[0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                                            [0, 0, 0]], cell=[a] * 3, pbc=True)


def make_inputs(folder: Path) -> Path:
    """Good structures, a malformed file, an unknown element and overlapping atoms."""
    folder.mkdir()
    write(folder / "cu.cif", bulk("Cu", a=3.7))
    write(folder / "l12.xyz", l12(), format="extxyz")
    write(folder / "alloys.xyz", [bulk("CuAu", "rocksalt", a=5.2), bulk("NiAl", "cesiumchloride",
                                                                        a=2.9)], format="extxyz")
    write(folder / "POSCAR", bulk("Ni", a=3.45), format="vasp")
    write(folder / "w.cif", bulk("W"))
    overlap = bulk("Cu", cubic=True)
    overlap.positions[1] = overlap.positions[0] + [0.1, 0, 0]
    write(folder / "overlap.xyz", overlap, format="extxyz")
    (folder / "broken.cif").write_text("data_x\n_cell_length_a 3.0\nthis is not a cif\n")
    return folder


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("screen")
    inputs = make_inputs(root / "in")
    db = root / "results.db"
    summary = run_screen([str(inputs)], str(db), SETTINGS, progress=False)
    assert (summary.n_candidates, summary.n_done, summary.n_failed) == (8, 5, 3)
    return inputs, db


def by_source(db: Path) -> dict[str, object]:
    return {Path(r.source).name: r for r in ResultsDB(str(db)).rows()}


def test_failures_have_reasons(screened: tuple[Path, Path]) -> None:
    rows = by_source(screened[1])
    assert "cannot read" in rows["broken.cif"].reason and "broken.cif" in rows["broken.cif"].reason
    assert "['W']" in rows["w.cif"].reason and "not known" in rows["w.cif"].reason
    assert "overlapping" in rows["overlap.xyz"].reason
    for name in ("cu.cif", "l12.xyz", "alloys.xyz@0", "alloys.xyz@1", "POSCAR"):
        assert rows[name].status == "done", rows[name].get("reason")
    assert len(rows) == 8


def test_rows_record_settings_and_potential(screened: tuple[Path, Path]) -> None:
    rows = ResultsDB(str(screened[1])).rows()
    assert {r.status for r in rows} == {"done", "failed"}  # workers' and coordinator's rows
    for row in rows:
        assert row.potential_id == "emt", row.source
        assert row.data["settings"] == SETTINGS.to_dict()
        assert row.data["settings"]["fmax"] == 1e-3 and row.data["settings"]["potential"] == "emt"


def _min_energy(atoms: Atoms) -> float:
    """EMT energy per atom minimised over the lattice constant of a cubic-symmetric cell."""
    from scipy.optimize import minimize_scalar

    def energy(scale: float) -> float:
        a = atoms.copy()
        a.set_cell(a.cell * scale, scale_atoms=True)
        a.calc = EMT()
        return a.get_potential_energy() / len(a)

    return float(minimize_scalar(energy, bracket=(0.95, 1.0, 1.05), tol=1e-10).fun)


def test_energies_against_emt_eos(screened: tuple[Path, Path]) -> None:
    rows = by_source(screened[1])
    mu = {el: _min_energy(bulk(el)) for el in ("Cu", "Au")}
    e_l12 = _min_energy(l12())
    row = rows["l12.xyz"]
    assert row.energy_per_atom_ev == pytest.approx(e_l12, abs=1e-6)
    assert row.formation_energy_ev_per_atom == pytest.approx(
        e_l12 - 0.75 * mu["Cu"] - 0.25 * mu["Au"], abs=2e-6)
    assert row.formation_energy_ev_per_atom < -0.005  # L1_2 Cu3Au is bound in EMT
    relaxed = row.toatoms()  # the stored structure reproduces the stored energy
    relaxed.calc = EMT()
    assert relaxed.get_potential_energy() / len(relaxed) == pytest.approx(
        row.energy_per_atom_ev, abs=1e-10)


def test_hull_matches_hand_built_phase_diagram(screened: tuple[Path, Path]) -> None:
    db = ResultsDB(str(screened[1]))
    done = db.rows(status="done")
    refs = stored_references(done)
    assert sorted(e.formula for e in refs) == ["Al", "Au", "Cu", "Ni"]
    entries = [PDEntry(Composition(e.formula), e.energy_per_atom_ev, name=e.name)
               for e in refs]
    row_entries = {}
    for r in done:
        comp = Composition(r.formula)
        row_entries[r.id] = PDEntry(comp, r.energy_per_atom_ev * comp.num_atoms)
    for el in ("Cu", "Au", "Ni", "Al"):  # elemental references are one atom per formula unit
        assert Composition(el).num_atoms == 1
    diagram = PhaseDiagram(entries + list(row_entries.values()))
    for r in done:
        expected = diagram.get_e_above_hull(row_entries[r.id])
        assert r.e_above_hull_ev_per_atom == pytest.approx(expected, abs=1e-9)
    assert max(r.e_above_hull_ev_per_atom for r in done) > 0.05  # rocksalt CuAu is unstable


def test_rerun_skips_and_retry_replaces(screened: tuple[Path, Path], tmp_path: Path) -> None:
    inputs, db = screened
    again = run_screen([str(inputs)], str(db), SETTINGS, progress=False)
    assert (again.n_skipped, again.n_done, again.n_failed) == (8, 0, 0)
    retry = run_screen([str(inputs)], str(db), SETTINGS, progress=False, retry_failed=True)
    assert (retry.n_skipped, retry.n_failed) == (5, 3)
    keys = [(r.content_hash, r.source) for r in ResultsDB(str(db)).rows()]
    assert len(keys) == len(set(keys)) == 8


def test_gate_skips_expensive_and_elastic_matches_eos(tmp_path: Path) -> None:
    from ase.units import GPa

    cu = bulk("Cu", a=3.6)
    gated = ScreenSettings(potential="emt", fmax=1e-3, properties=("elastic",),
                           gates=(("formation_energy_ev_per_atom", "<=", -1.0),))
    res = evaluate_candidate(cu, gated, "cu")
    assert res.status == "done" and res.key_value_pairs["skipped_expensive"] is True
    assert "bulk_modulus_vrh_gpa" not in res.key_value_pairs
    full = evaluate_candidate(cu, ScreenSettings(potential="emt", fmax=1e-4,
                                                 properties=("elastic",)), "cu")
    assert full.status == "done", full.reason
    vols, ens = [], []
    for s in np.linspace(0.98, 1.02, 9):
        a = bulk("Cu", a=3.6 * s)
        a.calc = EMT()
        vols.append(a.get_volume())
        ens.append(a.get_potential_energy())
    b_eos = EquationOfState(vols, ens).fit()[2] / GPa
    assert full.key_value_pairs["bulk_modulus_vrh_gpa"] == pytest.approx(b_eos, rel=0.02)
    assert isinstance(full.key_value_pairs["born_stable"], bool)


def test_candidate_failures_never_raise() -> None:
    nan = bulk("Cu")
    nan.positions[0, 0] = np.nan
    res = evaluate_candidate(nan, SETTINGS, "nan")
    assert res.status == "failed" and "NaN" in res.reason
    slow = bulk("Cu", cubic=True) * (2, 2, 2)
    slow.rattle(0.05, seed=1)
    res = evaluate_candidate(slow, SETTINGS, "slow", timeout_s=1e-4)
    assert res.status == "failed" and res.reason.startswith("timeout")
    stuck = evaluate_candidate(slow, ScreenSettings(potential="emt", fmax=1e-6, max_steps=2), "s")
    assert stuck.status == "failed" and "not converged" in stuck.reason
    assert "relax" in stuck.data  # the unfinished relaxation is kept


def test_hashes() -> None:
    a = l12()
    b = a.copy()
    b.positions += 1e-8
    assert content_hash(a) == content_hash(b)
    b.positions[0] += 1e-3
    assert content_hash(a) != content_hash(b)
    assert SETTINGS.settings_hash() != ScreenSettings(potential="emt", fmax=2e-3,
                                                      max_steps=300).settings_hash()
    with pytest.raises(ValueError, match="magnetism"):
        ScreenSettings(properties=("magnetism",))


def test_user_competing_phase_and_override(tmp_path: Path) -> None:
    """A supplied Cu3Au phase enters the hull; a supplied elemental Au overrides ASE's."""
    ref_file = tmp_path / "refs.xyz"
    write(ref_file, [l12(), bulk("Au", "bcc", a=3.3)], format="extxyz")
    settings = ScreenSettings(potential="emt", fmax=1e-3, references=(str(ref_file),))
    res = evaluate_candidate(bulk("CuAu", "rocksalt", a=5.2), settings, "rs")
    assert res.status == "done", res.reason
    refs = res.data["references"]
    au_bcc = bulk("Au", "bcc", a=3.3)
    assert refs["elements"]["Au"] == pytest.approx(_min_energy(au_bcc), abs=1e-5)
    (phase,) = refs["competing"]
    entries = [PDEntry(Composition(el), e, name=el) for el, e in refs["elements"].items()]
    entries.append(PDEntry(Composition("Cu3Au"), 4 * phase["energy_per_atom_ev"]))
    cand = PDEntry(Composition("CuAu"), 2 * res.key_value_pairs["energy_per_atom_ev"])
    expected = PhaseDiagram([*entries, cand]).get_e_above_hull(cand)
    assert res.key_value_pairs["e_above_hull_ev_per_atom"] == pytest.approx(expected, abs=1e-9)


# ---- staged gates: elastic results gate the phonons ----------------------------------------
STAGED = ScreenSettings(potential="emt", fmax=1e-3, properties=("elastic", "phonon"),
                        phonon_min_length=6.0, gates=(("born_stable", "==", True),))


@pytest.fixture(scope="module")
def staged() -> dict[str, object]:
    """bcc Cu is Born-unstable under EMT (see test_properties_elastic), fcc Cu is stable."""
    return {"bcc": evaluate_candidate(bulk("Cu", "bcc", a=2.87), STAGED, "bcc"),
            "fcc": evaluate_candidate(bulk("Cu", "fcc", a=3.6), STAGED, "fcc")}


def test_born_gate_skips_phonons_of_unstable(staged: dict) -> None:
    res = staged["bcc"]
    assert res.status == "done", res.reason
    kvp = res.key_value_pairs
    assert kvp["born_stable"] is False and kvp["skipped_expensive"] is True
    assert "elastic" in res.data and "phonon" not in res.data
    assert "dynamically_stable" not in kvp and "min_frequency_thz" not in kvp
    assert res.data["gates_failed"] == ["born_stable == 1"]


def test_born_gate_passes_stable(staged: dict) -> None:
    res = staged["fcc"]
    assert res.status == "done", res.reason
    kvp = res.key_value_pairs
    assert kvp["born_stable"] is True and kvp["skipped_expensive"] is False
    assert kvp["dynamically_stable"] is True and "gates_failed" not in res.data
    assert res.data["phonon"]["band_structure"]["segments"]


def test_gate_validation() -> None:
    assert STAGED.gates == (("born_stable", "==", 1.0),)  # one representation: floats
    same = ScreenSettings(potential="emt", fmax=1e-3, properties=("elastic", "phonon"),
                          phonon_min_length=6.0, gates=(("born_stable", "==", 1),))
    assert same.settings_hash() == STAGED.settings_hash()
    el = ("elastic", "phonon")
    for gate, match in [(("born_stable", "<", 1.0), "boolean"),
                        (("born_stable", "==", 0.5), "boolean"),
                        (("dynamically_stable", "==", 1.0), "phonon results"),
                        (("pugh_ratio", ">=", "high"), "finite number"),
                        (("pugh_ratio", ">=", float("nan")), "finite number"),
                        (("pugh_ratio", "~", 1.0), "op in"), (("pugh_ratio", ">="), "op in")]:
        with pytest.raises(ValueError, match=match):
            ScreenSettings(potential="emt", properties=el, gates=(gate,))
    with pytest.raises(ValueError, match="add 'elastic'"):
        ScreenSettings(potential="emt", properties=("phonon",), gates=(("pugh_ratio", ">", 1),))


def test_gated_candidate_is_infeasible_in_campaign_and_report(staged: dict,
                                                              tmp_path: Path) -> None:
    from matdesign.search.campaign import Campaign
    from matdesign.search.config import parse_campaign
    from matdesign.search.report import build_report

    cfg = parse_campaign({
        "space": {"elements": ["Cu", "Au"], "ordered": [{"prototype": "B2"}]},
        "objectives": [{"property": "pugh_ratio"}, {"property": "min_frequency_thz"}],
        "constraints": ["born_stable", "dynamically_stable"],
        "screen": {"properties": ["elastic", "phonon"]}})
    assert cfg.gates() == (("born_stable", "==", 1.0),)  # dynamically_stable: no gate
    camp = Campaign(cfg, str(tmp_path / "c.db"), evaluator=lambda a, s: None)
    xs = camp.space.enumerate_ordered()[:2]
    recs = [camp.store.write(camp.space.decode(x), x, staged[k], "bo", 0)
            for x, k in zip(xs, ("bcc", "fcc"), strict=True)]
    assert [r.feasible for r in recs] == [False, True]
    records = camp.store.records()
    summary = camp.summary(records, "bo", 2)
    assert summary.n_feasible == 1 and summary.best_key == recs[1].key
    assert camp.objective_matrix(records)[1].tolist() == [False, True]
    rep = build_report(tmp_path / "c.db", tmp_path / "report", top=2)
    assert (rep.n_rows, rep.n_feasible) == (2, 1)
    assert f"phonon_bands_{recs[1].row_id}.png" in rep.figures
    gated = recs[0].row_id  # no phonon data: no phonon figure of either kind
    assert not {f"phonon_bands_{gated}.png", f"phonon_{gated}.png"} & set(rep.figures)


def test_committee_spread_is_stored_from_the_relaxed_structure(tmp_path: Path) -> None:
    """A committee checkpoint: the row's σ is the calculator's uncertainty() of the relaxed
    cell (one evaluation, not the last optimiser step's)."""
    from matdesign.calculator import MatdesignCalculator
    from tests.helpers import make_model

    path = tmp_path / "committee.pt"
    save_potential(make_model(scale=2.0), path)
    settings = ScreenSettings(potential=str(path), fmax=5e-3, max_steps=400, dtype="float64")
    cuau = bulk("Cu", "fcc", a=3.9, cubic=True)
    cuau.symbols[[1, 2]] = "Au"
    res = evaluate_candidate(cuau, settings, "cuau")
    assert res.status == "done", res.reason
    kvp = res.key_value_pairs
    spread = MatdesignCalculator(make_model(scale=2.0)).uncertainty(res.atoms)
    assert kvp["energy_std_ev_per_atom"] == pytest.approx(spread.energy_std_ev / 4, rel=1e-6)
    assert kvp["forces_std_max_ev_per_a"] == pytest.approx(
        float(np.max(spread.forces_std_ev_per_a)), rel=1e-6)
    assert kvp["energy_std_ev_per_atom"] > 0


def test_search_package_lists_its_public_names():
    import matdesign.search as search

    assert search.__all__ and all(getattr(search, name) is not None for name in search.__all__)
    with pytest.raises(AttributeError):
        search.not_a_public_name  # noqa: B018
