"""The compiled edge kernel (matdesign.edge_kernel) against the eager fused products it stands
in for, against finite differences, and its switches (training, MATDESIGN_EDGE_KERNEL=0)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from matdesign import edge_kernel, layers
from matdesign.fused_layers import FusedLayout, fused_messages
from matdesign.layers import aggregate_messages

C = 8
ALL_PATHS = ((0, 0), (0, 1), (1, 1), (1, 0))


@pytest.fixture(scope="module", autouse=True)
def built():
    if os.environ.get(edge_kernel.ENV_SWITCH) == "0":
        pytest.skip("the compiled kernel is switched off")
    # a machine with the project's toolchain must build it: a silent fallback would hide
    # the default inference path from every other test
    assert edge_kernel.kernel() is not None


def _inputs(kinds, dtype, n=11, m=70, seed=0):
    g = torch.Generator().manual_seed(seed)
    vectors = any(k[0] == 1 for k in kinds)
    s = torch.randn(n, C, dtype=dtype, generator=g, requires_grad=True)
    v = torch.randn(n, 3 * C, dtype=dtype, generator=g, requires_grad=True) if vectors else None
    sh = torch.randn(m, 4, dtype=dtype, generator=g, requires_grad=True)
    w = torch.randn(m, len(kinds) * C, dtype=dtype, generator=g, requires_grad=True)
    edge_index = torch.randint(0, n, (2, m), generator=g)
    edge_index[:, 0] = torch.tensor([n - 1, 0])  # the last node receives, the first sends
    return s, v, sh, w, edge_index


def _eager(kinds, s, v, sh, w, edge_index):
    layout = FusedLayout(kinds=kinds, scales=(1.0,) * len(kinds), out_blocks=(), channels=C,
                         has_vectors=v is not None, order=torch.arange(4 * C))

    def fn(*a):
        return fused_messages(a[:-2], a[-2], a[-1].split(C, dim=1), layout)
    feats = (s,) if v is None else (s, v)
    return aggregate_messages(fn, edge_index, s.shape[0], feats, sh, w, chunked=False)


@pytest.mark.parametrize("kinds", [((0, 0), (0, 1)), ALL_PATHS, ((1, 0), (0, 0), (1, 1))])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernel_equals_the_eager_products_and_their_gradients(kinds, dtype):
    s, v, sh, w, ei = _inputs(kinds, dtype)
    codes = tuple(edge_kernel.PATH_CODES[k] for k in kinds)
    ref = _eager(kinds, s, v, sh, w, ei)
    got = edge_kernel.edge_products(s, v, sh[:, 1:], w, ei, s.shape[0], codes)
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    for a, b in zip(ref, got, strict=True):
        assert torch.allclose(a, b, atol=tol, rtol=tol)
    outs = [torch.randn_like(a) for a in ref]
    ins = [t for t in (s, v, sh, w) if t is not None]
    grads = torch.autograd.grad(got, ins, outs)
    for a, b in zip(torch.autograd.grad(ref, ins, outs), grads, strict=True):
        assert torch.allclose(a, b, atol=tol, rtol=tol)
    # the 0e harmonic enters no path: its gradient is exactly zero
    assert grads[-2][:, 0].abs().max() == 0


def test_kernel_gradient_against_finite_differences():
    s, v, sh, w, ei = _inputs(ALL_PATHS, torch.float64, seed=3)
    codes = tuple(edge_kernel.PATH_CODES[k] for k in ALL_PATHS)
    probe = [torch.randn(s.shape[0], 3 * C if c in (1, 2) else C, dtype=torch.float64)
             for c in codes]

    def scalar(s_, v_, y_, w_):
        outs = edge_kernel.edge_products(s_, v_, y_, w_, ei, s.shape[0], codes)
        return sum((o * p).sum() for o, p in zip(outs, probe, strict=True))

    y = sh[:, 1:].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(scalar, (s, v, y, w), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("mirrored", [False, True])
def test_chunked_sums_equal_one_pass(monkeypatch, mirrored):
    """Above one chunk the edges go in checkpointed pieces (an edge with its reverse):
    same sums, same gradients; mirrored, the same as on every edge."""
    s, v, sh, w, ei = _inputs(ALL_PATHS, torch.float64, m=90, seed=5)
    codes = tuple(edge_kernel.PATH_CODES[k] for k in ALL_PATHS)
    radial_in = torch.randn(90, 3, dtype=torch.float64)
    if mirrored:
        ei = torch.cat([ei[:, :45], ei[:, :45].flip(0)], dim=1)
        radial_in = torch.cat([radial_in[:45], radial_in[:45]])
    radial_in.requires_grad_(True)
    lin = torch.randn(3, 4 * C, dtype=torch.float64)

    def radial(x):
        return torch.tanh(x @ lin)

    def run(mirror=mirrored):
        outs = edge_kernel.summed_messages(radial, s, v, sh[:, 1:], radial_in, ei, s.shape[0],
                                           codes, mirrored=mirror)
        total = sum((o ** 2).sum() for o in outs)
        return outs, torch.autograd.grad(total, (s, v, sh, radial_in))

    whole, g_whole = run()
    monkeypatch.setattr(layers, "EDGE_CHUNK", 7)  # 7 edges per chunk in float32 bytes: 3 here
    monkeypatch.setattr(layers, "MAX_EDGE_CHUNKS", 1000)
    parts, g_parts = run()
    for a, b in zip((*whole, *g_whole), (*parts, *g_parts), strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    if mirrored:  # every edge's own radial weights: the same sums
        every, _ = run(mirror=False)
        for a, b in zip(whole, every, strict=True):
            assert torch.allclose(a, b, atol=1e-12)


def _alloy_cell():
    from ase.build import bulk

    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(2)
    atoms.set_chemical_symbols(["Nb", "Mo", "Ta", "W"] * 4)
    atoms.rattle(0.05, seed=2)
    return atoms


def _one_atom_cell():
    """A strained one-atom cell: every edge joins the atom to one of its own images."""
    from ase.build import bulk

    atoms = bulk("Mo", "bcc", a=3.16)
    atoms.set_cell(atoms.cell.array @ [[1.02, 0.01, 0], [0, 0.99, 0.02], [0, 0, 1.01]],
                   scale_atoms=True)
    return atoms


@pytest.mark.parametrize("make", [_alloy_cell, _one_atom_cell])
def test_potential_runs_the_kernel_and_agrees_with_the_eager_products(monkeypatch, make):
    """Inference on a fused model runs the kernel, on mirrored edges (radial networks once
    per pair): same energy, forces and stress as the eager products on every edge, to 1e-10
    in float64."""
    from matdesign.calculator import load_calculator

    calls = []
    original = edge_kernel.EdgeProducts.apply
    monkeypatch.setattr(edge_kernel.EdgeProducts, "apply",
                        lambda *a: calls.append(a[-1]) or original(*a))
    atoms = make()
    results = {}
    for mode in ("kernel", "eager"):
        monkeypatch.setattr(edge_kernel, "_failed", mode == "eager")
        monkeypatch.setattr(edge_kernel, "_module", edge_kernel._module if mode == "kernel"
                            else None)
        calc = load_calculator("default", dtype="float64")
        a = atoms.copy()
        a.calc = calc
        results[mode] = (a.get_potential_energy(), a.get_forces(), a.get_stress())
        # the kernel ran, on mirrored edges, for both layers (and not for the lone atoms)
        assert (True in calls) == (mode == "kernel")
        calls.clear()
    (e1, f1, s1), (e2, f2, s2) = results["kernel"], results["eager"]
    assert abs(e1 - e2) < 1e-10
    assert np.abs(f1 - f2).max() < 1e-10 and np.abs(s1 - s2).max() < 1e-10
    assert np.abs(s1).max() > 1e-4  # strained or rattled: the comparison is not of zeros


def test_switched_off_kernel_is_none(monkeypatch):
    monkeypatch.setattr(edge_kernel, "_module", None)
    monkeypatch.setattr(edge_kernel, "_failed", False)
    monkeypatch.setenv(edge_kernel.ENV_SWITCH, "0")
    assert edge_kernel.kernel() is None


def test_a_fused_layer_in_training_mode_runs_the_eager_products(monkeypatch):
    """Training differentiates forces once more, which the kernel cannot: in train mode the
    fused layer takes the eager products, and the force loss has a gradient."""
    from ase.build import bulk

    from matdesign.calculator import load_calculator
    from matdesign.forces import energy_forces_stress
    from matdesign.fused_layers import FusedInteraction
    from matdesign.graph import atoms_to_graph

    calls = []
    original = edge_kernel.EdgeProducts.apply
    monkeypatch.setattr(edge_kernel.EdgeProducts, "apply",
                        lambda *a: calls.append(1) or original(*a))
    model = load_calculator("default", dtype="float64").members[0]
    assert any(isinstance(layer, FusedInteraction) for layer in model.layers)
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=4)
    graph = atoms_to_graph(atoms, model.config.cutoff, model.species_index).to(
        "cpu", torch.float64)
    forces = {}
    for training in (False, True):
        model.train(training)
        calls.clear()
        out = energy_forces_stress(model, graph, stress=False, training=training)
        assert (len(calls) > 0) == (not training)
        forces[training] = out.forces
    model.eval()
    loss = (forces[True] ** 2).sum()
    weight = next(p for p in model.parameters() if p.requires_grad)
    assert torch.autograd.grad(loss, weight)[0].abs().sum() > 0
    assert torch.allclose(forces[False], forces[True].detach(), atol=1e-10)


def test_mirrored_edges_share_one_radial_row_per_pair():
    """Edge m/2 + k the reverse of edge k: the kernel reads pair k's weights for both edges
    and sums both edges' weight gradients into it, as the eager products on duplicated
    weights do."""
    s, v, sh, _, ei = _inputs(ALL_PATHS, torch.float64, m=60, seed=7)
    ei = torch.cat([ei[:, :30], ei[:, :30].flip(0)], dim=1)  # the second half reversed
    w_half = torch.randn(30, 4 * C, dtype=torch.float64, requires_grad=True)
    codes = tuple(edge_kernel.PATH_CODES[k] for k in ALL_PATHS)
    ref = _eager(ALL_PATHS, s, v, sh, torch.cat([w_half, w_half]), ei)
    got = edge_kernel.edge_products(s, v, sh[:, 1:], w_half, ei, s.shape[0], codes,
                                    mirrored=True)
    outs = [torch.randn_like(a) for a in ref]
    for a, b in zip(ref, got, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ref, (s, v, sh, w_half), outs),
                    torch.autograd.grad(got, (s, v, sh, w_half), outs), strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    with pytest.raises(RuntimeError, match="edge shapes"):  # one row per edge is refused
        edge_kernel.edge_products(s, v, sh[:, 1:], torch.cat([w_half, w_half]), ei,
                                  s.shape[0], codes, mirrored=True)
