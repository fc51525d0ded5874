"""The lean inference path (fused layers, tabulated radials) against the network it replaces.

References: the e3nn network itself in float64 (the lean path must reproduce it to ≤ 1e-6
eV/atom), exact rotations, and finite differences of the lean path's own energy (its forces
must be the gradient of what it computes). A coarse table must be caught by the same check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matdesign.calculator import MatdesignCalculator
from matdesign.inference import RadialTable, lean_potential
from matdesign.model import Potential, PotentialConfig
from tests.helpers import make_model, sheared_cell
from tests.test_potential_derivatives import fd_forces, stress_fd_mismatch


def _two_body(lmax: int, physics: bool) -> Potential:
    """A tiny trained-looking two-body model; ``physics`` adds ZBL and the isolated reference."""
    if not physics:
        return make_model(arch="two_body", lmax=lmax)
    torch.manual_seed(3)
    config = PotentialConfig(cutoff=3.8, channels=8, lmax=lmax, lmax_edge=lmax, num_basis=6,
                             radial_hidden=8, readout_hidden=8, avg_num_neighbours=12.0,
                             avg_density=6.0, zbl=True, isolated_reference=True)
    model = Potential(config, species=["Cu", "Au"]).double()
    with torch.no_grad():
        model.energy_shift.copy_(torch.tensor([-3.5, -3.0]))
        model.energy_scale.copy_(torch.tensor([25.0, 30.0]))
        model.isolated_energy.copy_(torch.tensor([-0.5, -0.2]))
    return model.eval()


def _results(model: Potential, atoms) -> dict:
    return MatdesignCalculator(model).calculate_batch([atoms])[0]


@pytest.mark.parametrize("lmax", [1, 2])
@pytest.mark.parametrize("physics", [False, True])
@pytest.mark.parametrize("tabulate", [False, True])
def test_lean_path_reproduces_the_network(lmax, physics, tabulate):
    model = _two_body(lmax, physics)
    atoms = sheared_cell()
    ref = _results(model, atoms)
    got = _results(lean_potential(model, tabulate=tabulate), atoms)
    assert np.abs(ref["forces"]).max() > 0.05
    tol_e, tol_f = (1e-6, 1e-5) if tabulate else (1e-11, 1e-10)
    assert abs(got["energy"] - ref["energy"]) / len(atoms) < tol_e
    np.testing.assert_allclose(got["forces"], ref["forces"], atol=tol_f)
    np.testing.assert_allclose(got["stress"], ref["stress"], atol=tol_f)


def test_a_coarse_table_is_caught():
    """Negative control: 0.4 Å knots are visibly wrong, so the check above can fail."""
    model = _two_body(1, physics=False)
    atoms = sheared_cell()
    ref = _results(model, atoms)["energy"]
    got = _results(lean_potential(model, spacing=0.4), atoms)["energy"]
    assert abs(got - ref) / len(atoms) > 1e-6


def test_lean_forces_and_stress_are_gradients_of_its_energy():
    atoms = sheared_cell()
    atoms.calc = MatdesignCalculator(lean_potential(_two_body(2, physics=True)))
    forces = atoms.get_forces().copy()
    np.testing.assert_allclose(forces, fd_forces(atoms), atol=1e-6)
    assert stress_fd_mismatch(atoms) < 1e-7


def test_lean_path_is_rotation_equivariant():
    from e3nn import o3

    calc = MatdesignCalculator(lean_potential(_two_body(2, physics=True)))
    atoms = sheared_cell()
    ref = calc.calculate_batch([atoms])[0]
    torch.manual_seed(5)
    rot = -o3.rand_matrix(dtype=torch.float64).numpy()  # with inversion
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    turned.positions = atoms.positions @ rot.T
    got = calc.calculate_batch([turned])[0]
    assert got["energy"] == pytest.approx(ref["energy"], rel=1e-11)
    np.testing.assert_allclose(got["forces"], ref["forces"] @ rot.T, atol=1e-10)


def test_radial_table_interpolates_a_known_function():
    """A smooth analytic function: cubic Hermite error ≤ h⁴ max|f''''| / 384."""
    class Waves(torch.nn.Module):
        def forward(self, r: torch.Tensor) -> torch.Tensor:
            return torch.stack([torch.sin(3.0 * r), torch.exp(-r)], dim=1)

    fn = Waves()
    table = RadialTable(fn, 0.5, 4.0, 0.01)
    r = torch.linspace(0.5, 3.999, 997, dtype=torch.float64)
    err = (table(r) - fn(r)).abs().max().item()
    assert err < 0.01**4 * 81 / 384 * 1.01
    short = torch.tensor([0.2], dtype=torch.float64)  # below the table: the exact function
    torch.testing.assert_close(table(short), fn(short))


def test_load_calculator_uses_the_fused_layers_by_default():
    from matdesign.calculator import load_calculator
    from matdesign.fused_layers import FusedInteraction
    from matdesign.layers import Interaction

    model = _two_body(1, physics=True)
    atoms = sheared_cell()
    fused = load_calculator(model)
    assert all(isinstance(layer, FusedInteraction) for layer in fused.model.layers)
    plain = load_calculator(model, lean=False)
    assert all(isinstance(layer, Interaction) for layer in plain.model.layers)
    ref = plain.calculate_batch([atoms])[0]
    got = fused.calculate_batch([atoms])[0]
    assert got["energy"] == pytest.approx(ref["energy"], abs=1e-12)
    np.testing.assert_allclose(got["forces"], ref["forces"], atol=1e-12)
    np.testing.assert_allclose(got["stress"], ref["stress"], atol=1e-12)


def test_fused_layers_are_gradients_and_equivariant():
    """The fused ℓ ≤ 1 layers (the default inference path) against finite differences of their
    own energy and an exact rotation with inversion; a non-fusable layer (ℓ = 2) is left to
    the general lean layer."""
    from e3nn import o3

    from matdesign.fused_layers import FusedInteraction
    from matdesign.inference import LeanInteraction

    model = lean_potential(_two_body(1, physics=True), tabulate=False)
    assert all(isinstance(layer, FusedInteraction) for layer in model.layers)
    assert all(isinstance(layer, LeanInteraction)
               for layer in lean_potential(_two_body(2, physics=True), tabulate=False).layers)
    atoms = sheared_cell()
    atoms.calc = MatdesignCalculator(model)
    np.testing.assert_allclose(atoms.get_forces(), fd_forces(atoms), atol=1e-6)
    assert stress_fd_mismatch(atoms) < 1e-7
    ref = atoms.calc.calculate_batch([atoms])[0]
    torch.manual_seed(6)
    rot = -o3.rand_matrix(dtype=torch.float64).numpy()
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    turned.positions = atoms.positions @ rot.T
    got = atoms.calc.calculate_batch([turned])[0]
    assert got["energy"] == pytest.approx(ref["energy"], rel=1e-11)
    np.testing.assert_allclose(got["forces"], ref["forces"] @ rot.T, atol=1e-10)


def test_dense_radial_refuses_what_it_cannot_rebuild():
    from e3nn.nn import FullyConnectedNet

    from matdesign.fused_layers import DenseRadial

    with pytest.raises(ValueError, match="last layer is linear"):
        DenseRadial(FullyConnectedNet([4, 8, 3], torch.nn.functional.silu, out_act=True))


@pytest.mark.parametrize("lean", [False, True])
def test_chunked_message_sum_matches_finite_differences(monkeypatch, lean):
    """Large cells sum their messages in checkpointed edge chunks (issue 12's memory bound).

    With a 7-edge chunk every layer runs dozens of ragged chunks; forces and stress must stay
    the finite-difference gradients of the energy, and the energy that of one unchunked sum.
    """
    import matdesign.layers

    model = _two_body(2, physics=True)
    net = lean_potential(model) if lean else model
    atoms = sheared_cell()
    whole = _results(net, atoms)
    monkeypatch.setattr(matdesign.layers, "EDGE_CHUNK", 7)
    monkeypatch.setattr(matdesign.layers, "MAX_EDGE_CHUNKS", 10**6)
    chunked = _results(net, atoms)
    assert abs(chunked["energy"] - whole["energy"]) < 1e-10
    atoms.calc = MatdesignCalculator(net)
    np.testing.assert_allclose(atoms.get_forces(), fd_forces(atoms), atol=1e-6)
    assert stress_fd_mismatch(atoms) < 1e-7


@pytest.mark.parametrize(("dtype", "edges", "chunks"), [
    (torch.float32, 8 * 20, 8),     # 20-edge chunks in float32
    (torch.float64, 8 * 20, 16),    # half as many edges per chunk in float64
    (torch.float64, 8 * 200, 32),   # but never more than MAX_EDGE_CHUNKS chunks
])
def test_edge_chunks_scale_with_bytes_and_are_capped(monkeypatch, dtype, edges, chunks):
    """Chunks are sized in bytes (float64 gets half the edges of float32) and capped in number,
    since peak memory grows with the number of chunks (3.2 GB with 62 float64 chunks at 9,826
    atoms)."""
    import matdesign.layers

    monkeypatch.setattr(matdesign.layers, "EDGE_CHUNK", 20)
    monkeypatch.setattr(matdesign.layers, "MAX_EDGE_CHUNKS", 32)
    calls = []
    real = matdesign.layers.checkpoint

    def counting(fn, *args, **kwargs):
        calls.append(args[1].shape[0])
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(matdesign.layers, "checkpoint", counting)
    gen = torch.Generator().manual_seed(0)
    nodes = 7
    x = torch.randn(nodes, 3, generator=gen, dtype=dtype, requires_grad=True)
    edge_index = torch.randint(0, nodes, (2, edges), generator=gen)
    w = torch.randn(edges, 3, generator=gen, dtype=dtype)
    agg = matdesign.layers.aggregate_messages(lambda xs, we: xs * we, edge_index, nodes, x, w,
                                              chunked=True)
    assert len(calls) == chunks and sum(calls) == edges
    expected = torch.zeros(nodes, 3, dtype=dtype).index_add_(0, edge_index[0],
                                                             x[edge_index[1]] * w)
    torch.testing.assert_close(agg, expected)
    # Message blocks are summed one by one, chunked the same way.
    calls.clear()
    blocks = matdesign.layers.aggregate_messages(
        lambda xs, we: (xs * we, (xs * we)[:, :1].exp()), edge_index, nodes, x, w, chunked=True)
    assert len(calls) == chunks and len(blocks) == 2
    torch.testing.assert_close(blocks[0], expected)
    exp_sum = torch.zeros(nodes, 1, dtype=dtype).index_add_(
        0, edge_index[0], (x[edge_index[1]] * w)[:, :1].exp())
    torch.testing.assert_close(blocks[1], exp_sum)
