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


def test_chunked_sums_equal_one_pass(monkeypatch):
    """Above one chunk the edges go in checkpointed pieces: same sums, same gradients."""
    s, v, sh, w, ei = _inputs(ALL_PATHS, torch.float64, m=90, seed=5)
    codes = tuple(edge_kernel.PATH_CODES[k] for k in ALL_PATHS)
    radial_in = torch.randn(90, 3, dtype=torch.float64, requires_grad=True)
    lin = torch.randn(3, 4 * C, dtype=torch.float64)

    def radial(x):
        return torch.tanh(x @ lin)

    def run():
        outs = edge_kernel.summed_messages(radial, s, v, sh[:, 1:], radial_in, ei, s.shape[0],
                                           codes)
        total = sum((o ** 2).sum() for o in outs)
        return outs, torch.autograd.grad(total, (s, v, sh, radial_in))

    whole, g_whole = run()
    monkeypatch.setattr(layers, "EDGE_CHUNK", 7)  # 7 edges per chunk in float32 bytes: 3 here
    monkeypatch.setattr(layers, "MAX_EDGE_CHUNKS", 1000)
    parts, g_parts = run()
    for a, b in zip((*whole, *g_whole), (*parts, *g_parts), strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_potential_uses_the_kernel_outside_training_only(monkeypatch):
    """Inference on a fused model runs the kernel (same energy and forces as the eager
    products to 1e-12 in float64); a module in training mode never does."""
    from ase.build import bulk

    from matdesign.calculator import load_calculator

    calls = []
    original = edge_kernel.EdgeProducts.apply
    monkeypatch.setattr(edge_kernel.EdgeProducts, "apply",
                        lambda *a: calls.append(1) or original(*a))
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(2)
    atoms.set_chemical_symbols(["Nb", "Mo", "Ta", "W"] * 4)
    atoms.rattle(0.05, seed=2)
    results = {}
    for mode in ("kernel", "eager"):
        monkeypatch.setattr(edge_kernel, "_failed", mode == "eager")
        monkeypatch.setattr(edge_kernel, "_module", edge_kernel._module if mode == "kernel"
                            else None)
        calc = load_calculator("default", dtype="float64")
        a = atoms.copy()
        a.calc = calc
        results[mode] = (a.get_potential_energy(), a.get_forces(), a.get_stress())
        n_calls = len(calls)
        assert (n_calls > 0) == (mode == "kernel")
        calls.clear()
    (e1, f1, s1), (e2, f2, s2) = results["kernel"], results["eager"]
    assert abs(e1 - e2) < 1e-10
    assert np.abs(f1 - f2).max() < 1e-10 and np.abs(s1 - s2).max() < 1e-10
    assert np.abs(f1).max() > 0.01  # a rattled alloy: the comparison is not of zeros


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
