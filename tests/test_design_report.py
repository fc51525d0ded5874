"""The campaign report renders: HTML with the ranked table, figures, CIFs; headless browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ase.io import read

from matdesign.cli import main
from matdesign.search.campaign import Campaign, Evaluation
from matdesign.search.config import parse_campaign

CHROMIUM = "/usr/bin/chromium"


def two_objectives(atoms, source: str) -> Evaluation:  # noqa: ANN001
    n_w = atoms.get_chemical_symbols().count("W") / len(atoms)
    phonon = {"high_symmetry_points": [{"label": "G", "frequencies_thz": [0.0, 0.0, 0.0]},
                                       {"label": "H", "frequencies_thz": [4.0, 4.0, 6.0]}]}
    return Evaluation("done", {"pugh_ratio": 2.0 + 0.5 * (1 - n_w),
                               "shear_modulus_vrh_gpa": 50.0 + 100.0 * n_w,
                               "born_stable": n_w < 0.9, "energy_std_ev_per_atom": 0.02 * n_w},
                      atoms, {"phonon": phonon})


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("report")
    cfg = parse_campaign({
        "space": {"elements": ["Nb", "Mo", "W"], "ordered": [{"prototype": "B2"}]},
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
    assert list(report_dir.glob("phonon_*.png"))
    cifs = sorted((report_dir / "cif").glob("*.cif"))
    assert len(cifs) == 7
    assert len(read(cifs[0])) == 2  # B2 cell round-trips through CIF


def test_report_errors_name_the_file(tmp_path) -> None:  # noqa: ANN001
    assert main(["report", str(tmp_path / "missing.db"), "--out", str(tmp_path)]) == 1


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                    reason="/usr/bin/chromium absent: run benchmarks/install_chromium.sh")
def test_report_renders_in_headless_chromium(report_dir: Path, tmp_path) -> None:  # noqa: ANN001
    shot = tmp_path / "out.png"
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1200,900",
                    (report_dir / "index.html").resolve().as_uri()],
                   check=True, timeout=90, capture_output=True)
    assert shot.stat().st_size > 5000
