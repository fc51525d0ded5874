"""``matdesign calc``: JSON output with a saved checkpoint and with EMT; errors; instant --help."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.io import write

from matdesign.checkpoint import save_potential
from matdesign.cli import main
from tests.helpers import make_calc, make_model, sheared_cell

KEYS = {"n_atoms", "energy_ev", "forces_ev_per_a", "stress_ev_per_a3"}


@pytest.fixture
def cif(tmp_path):
    path = tmp_path / "cuau.cif"
    write(path, sheared_cell())
    return path


def _run_json(args, tmp_path) -> dict:
    out = tmp_path / "out.json"
    assert main([*args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_calc_with_checkpoint(cif, tmp_path):
    ckpt = tmp_path / "tiny.pt"
    save_potential(make_model(), ckpt)
    data = _run_json(["calc", str(cif), "--potential", str(ckpt)], tmp_path)
    assert KEYS <= set(data) and data["n_atoms"] == 4
    from ase.io import read

    ref = make_calc().calculate_batch([read(cif)])[0]
    assert data["energy_ev"] == pytest.approx(ref["energy"], abs=1e-9)
    np.testing.assert_allclose(data["forces_ev_per_a"], ref["forces"], atol=1e-9)
    np.testing.assert_allclose(data["stress_ev_per_a3"], ref["stress"], atol=1e-9)
    assert np.array(data["forces_ev_per_a"]).shape == (4, 3)
    assert len(data["stress_ev_per_a3"]) == 6


def test_calc_with_emt(cif, tmp_path):
    data = _run_json(["calc", str(cif), "--potential", "emt"], tmp_path)
    from ase.io import read

    atoms = read(cif)
    atoms.calc = EMT()
    assert data["energy_ev"] == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(data["forces_ev_per_a"], atoms.get_forces(), atol=1e-9)
    np.testing.assert_allclose(data["stress_ev_per_a3"], atoms.get_stress(), atol=1e-9)


def test_calc_unreadable_file(tmp_path, capsys):
    bad = tmp_path / "garbage.cif"
    bad.write_text("this is not a crystal\n\x00\x01 data_ nothing here\n")
    assert main(["calc", str(bad), "--potential", "emt"]) != 0
    assert "garbage.cif" in capsys.readouterr().err
    assert main(["calc", str(tmp_path / "absent.cif"), "--potential", "emt"]) != 0
    assert "absent.cif" in capsys.readouterr().err


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from matdesign.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in ('torch', 'e3nn', 'vesin', 'skopt') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "calc" in proc.stdout
    assert "HEAVY []" in proc.stdout, proc.stdout
