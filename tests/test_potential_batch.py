"""Batching and precision.

References: a batch is a disconnected graph, so each structure's results must equal its own
single evaluation; float32 must agree with float64 of the same weights to ~1e-4 relative;
the dtype belongs to the model and torch's global default is never changed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from matdesign.forces import energy_forces_stress
from matdesign.graph import atoms_to_graph, batch_graphs
from tests.helpers import make_calc, make_model, molecule, sheared_cell


def _periodic_set():
    a = sheared_cell()
    b = bulk("Au", "fcc", a=4.0).repeat((2, 1, 1))
    b.symbols[0] = "Cu"
    b.rattle(0.1, seed=8)
    c = sheared_cell(seed=9).repeat((1, 2, 1))
    return [a, b, c]


def test_batch_equals_one_by_one():
    calc = make_calc(lmax=2)
    structures = _periodic_set()
    batched = calc.calculate_batch(structures)
    for atoms, got in zip(structures, batched, strict=True):
        ref = calc.calculate_batch([atoms])[0]
        assert got["energy"] == pytest.approx(ref["energy"], abs=1e-11)
        np.testing.assert_allclose(got["forces"], ref["forces"], atol=1e-11)
        np.testing.assert_allclose(got["stress"], ref["stress"], atol=1e-12)
    # The structures really differ, so a mix-up between them would be seen.
    per_atom = [r["energy"] / len(a) for r, a in zip(batched, structures, strict=True)]
    assert len({round(e, 6) for e in per_atom}) == 3


def test_graph_batch_with_molecule():
    """Graph level: a periodic cell batched with a molecule keeps its own stress; the
    molecule's stress row is zero (undefined) and flagged by ``graph.pbc``."""
    model = make_model(lmax=2)
    structures = [sheared_cell(), molecule()]
    graphs = [atoms_to_graph(a, model.config.cutoff, model.species_index) for a in structures]
    out = energy_forces_stress(model, batch_graphs(graphs))
    alone = energy_forces_stress(model, graphs[0]).stress[0]
    assert torch.allclose(out.stress[0], alone, atol=1e-12) and alone.abs().max() > 1e-4
    assert torch.all(out.stress[1] == 0)
    assert energy_forces_stress(model, graphs[1]).stress is None
    start = 0
    for g in graphs:
        ref = energy_forces_stress(model, g)
        n = g.positions.shape[0]
        assert torch.allclose(out.forces[start:start + n], ref.forces, atol=1e-11)
        start += n
    ref_e = torch.cat([energy_forces_stress(model, g).energy for g in graphs])
    assert torch.allclose(out.energy, ref_e, atol=1e-11)


def test_float32_matches_float64_and_default_dtype_untouched():
    default = torch.get_default_dtype()
    c32, c64 = make_calc(dtype=torch.float32, lmax=2), make_calc(dtype=torch.float64, lmax=2)
    assert c32.model.dtype == torch.float32 and c64.model.dtype == torch.float64
    for atoms in (sheared_cell(), molecule()):
        r32, r64 = c32.calculate_batch([atoms])[0], c64.calculate_batch([atoms])[0]
        assert r32["energy"] == pytest.approx(r64["energy"], rel=1e-5)
        scale = np.abs(r64["forces"]).max()
        assert np.abs(r32["forces"] - r64["forces"]).max() < 1e-4 * scale
        assert np.abs(r64["forces"]).max() > 0.05
        if "stress" in r64:
            assert np.abs(r32["stress"] - r64["stress"]).max() < 1e-4 * np.abs(r64["stress"]).max()
        # float32 is really float32: it differs from float64 in the last digits.
        assert r32["energy"] != r64["energy"]
    assert torch.get_default_dtype() == default


def test_load_calculator_dtype_does_not_change_global_default():
    from matdesign.calculator import load_calculator

    default = torch.get_default_dtype()
    calc = load_calculator(make_model(dtype=torch.float32), dtype="float64")
    assert calc.model.dtype == torch.float64
    calc.calculate_batch([sheared_cell()])
    assert torch.get_default_dtype() == default
    with pytest.raises(ValueError, match="float16"):
        load_calculator(make_model(), dtype="float16")
