"""The campaign report renders: HTML with the ranked table, figures, CIFs; headless browser."""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
from ase.io import read

from matdesign.cli import main
from matdesign.search import report
from matdesign.search.campaign import Campaign
from matdesign.search.config import parse_campaign
from matdesign.search.evaluation import Evaluation

CHROMIUM = "/usr/bin/chromium"


@lru_cache(maxsize=1)
def cu_phonon() -> dict:
    """A real stored phonon result (fcc Cu, EMT, small supercell) with its band path."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from matdesign.properties.phonon import PhononCalculator

    calc = PhononCalculator(EMT(), min_length=5.0, mesh=(6, 6, 6))
    return calc.calc(bulk("Cu", "fcc", a=3.59)).to_dict()


def two_objectives(atoms, source: str) -> Evaluation:
    n_w = atoms.get_chemical_symbols().count("W") / len(atoms)
    born = n_w < 0.9
    kvp = {"pugh_ratio": 2.0 + 0.5 * (1 - n_w), "shear_modulus_vrh_gpa": 50.0 + 100.0 * n_w,
           "born_stable": born, "energy_std_ev_per_atom": 0.02 * n_w,
           "skipped_expensive": not born}
    if born:
        kvp.update(dynamically_stable=True, min_frequency_thz=0.0)
    # a Born-unstable candidate was gated: no phonon data at all
    return Evaluation("done", kvp, atoms, {"phonon": cu_phonon()} if born else {})


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    cfg = parse_campaign({
        "space": {"elements": ["Nb", "Mo", "Ta", "W"], "ordered": [{"prototype": "B2"}]},
        "objectives": [{"property": "pugh_ratio", "goal": "max"},
                       {"property": "shear_modulus_vrh_gpa", "goal": "max"}],
        "constraints": ["born_stable"], "budget": 7,
        "optimizer": {"batch_size": 2, "n_initial": 3},
        "uncertainty_energy_std_ev_per_atom": 0.015})
    Campaign(cfg, str(tmp / "c.db"), two_objectives).run()
    assert main(["report", str(tmp / "c.db"), "--out", str(tmp / "out"), "--json",
                 str(tmp / "r.json")]) == 0
    return tmp / "out"


def test_report_html_contents(report_dir: Path) -> None:
    page = (report_dir / "index.html").read_text()
    assert '<table id="ranking">' in page and page.count("<tr") == 1 + 7
    for name in ("best_so_far.png", "pareto.png"):
        assert (report_dir / name).stat().st_size > 1000 and name in page
    assert "⚠ yes" in page  # W-rich candidates exceed the committee-spread threshold
    assert "flagged uncertain (committee spread above threshold)" in page
    bands = sorted(report_dir.glob("phonon_bands_*.png"))
    assert bands and all(b.name in page for b in bands)
    assert bands[0].stat().st_size > 10_000  # a real band structure + DOS figure
    cifs = sorted((report_dir / "cif").glob("*.cif"))
    assert len(cifs) == 7
    assert len(read(cifs[0])) == 2  # B2 cell round-trips through CIF


class FakeRow:
    """The parts of an ase.db row the phonon plots read."""

    def __init__(self, row_id: int, data: dict) -> None:
        self.id, self.data, self.formula = row_id, data, "Cu"

    def get(self, key: str) -> str:
        return f"row{self.id}" if key == "candidate_key" else None


def test_phonon_plots_fall_back_and_skip(tmp_path) -> None:
    points = {"high_symmetry_points": cu_phonon()["high_symmetry_points"]}
    rows = [FakeRow(1, {"phonon": cu_phonon()}), FakeRow(2, {"phonon": points}),
            FakeRow(3, {}), FakeRow(4, {"phonon": {"band_structure": {}}})]
    names = report._plot_phonons(rows, [0, 1, 2, 3], tmp_path, 4)
    assert names == ["phonon_bands_1.png", "phonon_2.png"]
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)


def test_report_errors_name_the_file(tmp_path) -> None:
    assert main(["report", str(tmp_path / "missing.db"), "--out", str(tmp_path)]) == 1


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                    reason="/usr/bin/chromium absent: run benchmarks/install_chromium.sh")
def test_report_renders_in_headless_chromium(report_dir: Path, tmp_path) -> None:
    shot = tmp_path / "out.png"
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1200,900",
                    (report_dir / "index.html").resolve().as_uri()],
                   check=True, timeout=90, capture_output=True)
    assert shot.stat().st_size > 5000
