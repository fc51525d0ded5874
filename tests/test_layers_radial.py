"""Unit tests of the building blocks: the Bessel basis, the cutoff envelope, one interaction
layer. References are analytic formulas, autograd/finite-difference derivatives and exact
rotations (Wigner D matrices), not earlier outputs of this code."""

from __future__ import annotations

import math

import pytest
import torch
from e3nn import o3

from matdesign.layers import Interaction, hidden_irreps
from matdesign.radial import BesselBasis, polynomial_envelope


def test_bessel_basis_is_the_analytic_formula():
    basis = BesselBasis(cutoff=4.0, num_basis=5).double()
    r = torch.linspace(0.3, 3.9, 17, dtype=torch.float64)
    n = torch.arange(1, 6, dtype=torch.float64)
    expected = math.sqrt(2 / 4.0) * torch.sin(n * math.pi * r[:, None] / 4.0) / r[:, None]
    # the trainable frequencies start from float32 values: agreement to float32 precision
    torch.testing.assert_close(basis(r), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("p", [5, 6, 8])
def test_envelope_is_one_at_zero_and_smooth_to_second_order_at_the_cutoff(p):
    cutoff = 5.0
    assert polynomial_envelope(torch.tensor([0.0], dtype=torch.float64), cutoff, p).item() == 1.0
    r = torch.tensor([cutoff - 1e-9, cutoff, cutoff + 0.5], dtype=torch.float64,
                     requires_grad=True)
    f = polynomial_envelope(r, cutoff, p)
    (d1,) = torch.autograd.grad(f.sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    assert torch.allclose(f, torch.zeros(3, dtype=torch.float64), atol=1e-7)
    assert torch.allclose(d1, torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(d2, torch.zeros(3, dtype=torch.float64), atol=1e-4)
    inside = torch.linspace(0.1, 4.9, 49, dtype=torch.float64)
    values = polynomial_envelope(inside, cutoff, p)
    assert bool((values > 0).all() and (values.diff() < 0).all())  # decreasing, positive


def test_envelope_derivative_matches_finite_differences():
    r = torch.linspace(0.5, 4.8, 11, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(polynomial_envelope(r, 5.0).sum(), r)
    h = 1e-6
    fd = (polynomial_envelope(r.detach() + h, 5.0) - polynomial_envelope(r.detach() - h, 5.0))
    torch.testing.assert_close(grad, fd / (2 * h), atol=1e-8, rtol=1e-6)


def _layer_inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(seed)
    n, m = 5, 12
    vectors = torch.randn(m, 3, dtype=torch.float64) * 1.5
    edge_index = torch.randint(0, n, (2, m))
    species = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1, 1]), 2).double()
    r = vectors.norm(dim=1)
    radial = BesselBasis(4.0, 4).double()(r) * polynomial_envelope(r, 4.0)[:, None]
    return vectors, edge_index, species, radial, r


def _equivariance_case() -> tuple:
    """A 3x(0e+1o) -> 4x(0e+1o) layer, its inputs, node features h and a random rotation."""
    irreps_in, irreps_out = hidden_irreps(3, 1), hidden_irreps(4, 1)
    sh_irreps = o3.Irreps.spherical_harmonics(1)
    layer = Interaction(irreps_in, irreps_out, sh_irreps, 2, 4, 8, 3.0).double()
    vectors, edge_index, species, radial, r = _layer_inputs()
    h = irreps_in.randn(5, -1, dtype=torch.float64)
    torch.manual_seed(1)
    rot = o3.rand_matrix(dtype=torch.float64)

    def run(h_in: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        sh = o3.spherical_harmonics(sh_irreps, vec, normalize=True, normalization="component")
        return layer(h_in, species, edge_index, sh, radial, r)

    return run, h, vectors, rot, irreps_in, irreps_out


def test_interaction_layer_is_rotation_equivariant():
    """h' (ℓ = 0 and ℓ = 1 parts) transforms with the Wigner D matrices of its irreps."""
    run, h, vectors, rot, irreps_in, irreps_out = _equivariance_case()
    out = run(h, vectors)
    rotated = run(h @ irreps_in.D_from_matrix(rot).T, vectors @ rot.T)
    # float64 end to end except e3nn constants built in float32: agreement to ~1e-7
    torch.testing.assert_close(rotated, out @ irreps_out.D_from_matrix(rot).T, atol=1e-6,
                               rtol=1e-6)
    assert out[:, 4:].abs().max() > 1e-3  # the ℓ = 1 part is not trivially zero


def test_interaction_layer_rotation_control():
    """Negative control: rotating the edges but not the features must change the output."""
    run, h, vectors, rot, _, irreps_out = _equivariance_case()
    out = run(h, vectors)
    wrong = run(h, vectors @ rot.T)
    assert not torch.allclose(wrong, out @ irreps_out.D_from_matrix(rot).T, atol=1e-6)


def test_interaction_messages_flow_from_sender_to_receiver():
    """Edges (0 <- j) carry messages from senders j = 1..4 into atom 0 only: changing a
    sender changes atom 0, and changing atom 0 (which sends nothing) changes no other atom."""
    irreps = hidden_irreps(3, 0)
    layer = Interaction(irreps, irreps, o3.Irreps.spherical_harmonics(0), 2, 4, 8, 3.0).double()
    _, _, species, radial, r = _layer_inputs()
    edge_index = torch.stack([torch.full((12,), 0), torch.arange(12) % 4 + 1])  # all into 0
    sh = torch.ones(12, 1, dtype=torch.float64)
    h = irreps.randn(5, -1, dtype=torch.float64)

    def out(features: torch.Tensor) -> torch.Tensor:
        return layer(features, species, edge_index, sh, radial, r)

    sender, receiver = h.clone(), h.clone()
    sender[2] += 1.0
    receiver[0] += 1.0
    assert not torch.allclose(out(sender)[0], out(h)[0])  # 0 hears sender 2
    torch.testing.assert_close(out(receiver)[1:], out(h)[1:])  # nobody hears 0
