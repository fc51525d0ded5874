"""The lean inference path for trained two-body models: fused layers and tabulated radials.

:func:`lean_potential` returns a copy of a trained :class:`~matdesign.model.Potential` whose
interaction layers are replaced by :class:`~matdesign.fused_layers.FusedInteraction` (ℓ ≤ 1
layers, the calculator's default) or by :class:`LeanInteraction` (any ℓ, optionally with
tabulated radials), the same function of the inputs written with fewer, denser operations:

* every linear map of the layer (e3nn ``o3.Linear`` and the species self-connection, a
  bilinear ``FullyConnectedTensorProduct`` with one-hot species) becomes one dense matrix,
  read off by applying the module to unit vectors (these maps are linear, without biases);
* the per-edge tensor product ("uvu" paths, ℓ ≤ 2) is written as broadcast products and the
  Wigner-3j contraction of each path, instead of e3nn's generic kernel;
* the radial network r -> R(r) (Bessel basis × envelope -> MLP -> path weights) becomes a
  cubic Hermite spline on a uniform grid of r, built once from the network's values and
  exact derivatives (DeePMD's "model compression" idea). Its error is below 1e-8 of the
  weights' scale at the default spacing; edges shorter than the table's first knot (never
  met above the overlap check's floor) fall back to the network.

Nothing here is used in training: gradients with respect to the weights are not meant to
flow (the tables are buffers). Forces and stress still come from autograd through positions
and strain (:func:`matdesign.forces.energy_forces_stress`), so the path is conservative.
"""

from __future__ import annotations

import copy

import torch

from matdesign.fused_layers import (
    FusedInteraction,
    dense_map,
    fusable,
    self_connection_map,
    tensor_product_paths,
)
from matdesign.layers import Interaction, aggregate_messages
from matdesign.radial import radial_features

#: grid spacing of the radial tables, Å (error ~ h^4: 1e-3 Å gives < 1e-9 relative)
TABLE_SPACING = 2e-3
#: first knot of the tables, Å (below the overlap check's 0.5 Å floor)
TABLE_START = 0.4


class RadialTable(torch.nn.Module):
    """Cubic Hermite spline of a vector function R(r) on [r0, r_c], values and slopes exact at
    the knots.

    Args:
        fn: maps r (k,) in Å to (k, d); differentiable.
        r0: first knot, Å.
        cutoff: last knot r_c, Å.
        spacing: knot spacing, Å.
    """

    def __init__(self, fn: torch.nn.Module, r0: float, cutoff: float, spacing: float) -> None:
        super().__init__()
        n = int(round((cutoff - r0) / spacing)) + 1
        knots = torch.linspace(r0, cutoff, n, dtype=torch.float64)
        values, slopes = torch.func.jvp(fn, (knots,), (torch.ones_like(knots),))
        self.r0, self.cutoff = float(r0), float(cutoff)
        self.spacing = float(knots[1] - knots[0])
        v0, v1 = values[:-1].detach(), values[1:].detach()
        d0, d1 = (slopes[:-1] * self.spacing).detach(), (slopes[1:] * self.spacing).detach()
        # R = ((c3 s + c2) s + c1) s + c0 on interval k, s in [0, 1): one gather per edge.
        coefficients = torch.stack([v0, d0, 3 * (v1 - v0) - 2 * d0 - d1, 2 * (v0 - v1) + d0 + d1],
                                   dim=1)
        self.register_buffer("coefficients", coefficients)  # (n - 1, 4, d)
        self.fallback = fn

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """R(r), shape (m, d), for edge lengths r (m,) in Å."""
        out = _SplineEval.apply(r, self.coefficients, self.r0, self.spacing)
        short = r < self.r0
        if bool(short.any()):
            out = torch.where(short[:, None], self.fallback(r), out)
        return out


class _SplineEval(torch.autograd.Function):
    """Spline values and, for the backward pass, their r-derivative from the same gather.

    One gather of the interval's four coefficient rows per edge; the backward is a single
    multiply-and-sum (the table itself is constant). Once differentiable: enough for forces
    and stress, not for force training.
    """

    @staticmethod
    def forward(ctx: object, r: torch.Tensor, coefficients: torch.Tensor, r0: float,
                spacing: float) -> torch.Tensor:
        t = (r - r0) / spacing
        k = t.floor().clamp(0, coefficients.shape[0] - 1).long()
        s = (t - k.to(t.dtype))[:, None]
        c = coefficients[k]  # (m, 4, d)
        c0, c1, c2, c3 = c.unbind(1)
        value = ((c3 * s + c2) * s + c1) * s + c0
        if r.requires_grad:
            ctx.save_for_backward(((3 * c3 * s + 2 * c2) * s + c1) / spacing)
        return value

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> tuple:
        (slope,) = ctx.saved_tensors
        return (grad * slope).sum(1), None, None, None


class _RadialOfLength(torch.nn.Module):
    """r -> the layer's radial MLP of (Bessel basis × envelope): what a table samples."""

    def __init__(self, potential: torch.nn.Module, layer: Interaction) -> None:
        super().__init__()
        self.basis, self.mlp = potential.basis, layer.radial
        self.p = potential.config.envelope_p

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.mlp(radial_features(self.basis, r, self.p)[1])


class LeanInteraction(torch.nn.Module):
    """The inference twin of :class:`~matdesign.layers.Interaction` (see the module docstring).

    Args:
        layer: a trained two-body interaction layer (float64 recommended while building).
        potential: its potential (for the radial basis and cutoff).
        tabulate: replace the radial MLP by a spline table.
        spacing: table spacing, Å.
    """

    def __init__(self, layer: Interaction, potential: torch.nn.Module, *, tabulate: bool = True,
                 spacing: float = TABLE_SPACING) -> None:
        super().__init__()
        dtype = torch.float64
        layer = copy.deepcopy(layer).to("cpu", dtype)
        n_attr = potential.species_attrs.shape[1]
        din, dmid = layer.irreps_in.dim, layer.tp.irreps_out.dim
        self.norm, self.residual, self.gate = layer.norm, layer.residual, layer.gate
        self.register_buffer("w_in", dense_map(layer.linear_in, din, dtype))
        self.register_buffer("w_out", dense_map(layer.linear_out, dmid, dtype))
        w_self, self.dgate = self_connection_map(layer, n_attr, din, dtype)
        self.register_buffer("w_self", w_self)
        radial = _RadialOfLength(potential, layer).to(dtype)
        self.radial = (RadialTable(radial, TABLE_START, potential.config.cutoff, spacing)
                       if tabulate else radial)
        self.paths = tensor_product_paths(layer.tp)

    def forward(self, h: torch.Tensor, attrs: torch.Tensor, edge_index: torch.Tensor,
                edge_sh: torch.Tensor, edge_radial: torch.Tensor, edge_length: torch.Tensor
                ) -> torch.Tensor:
        """As :meth:`Interaction.forward`; ``edge_radial`` is unused (the table takes r)."""
        def messages(x: torch.Tensor, sh: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            weights = self.radial(r)
            return torch.cat([path(x, sh, weights) for path in self.paths], dim=1)

        agg = aggregate_messages(messages, edge_index, h.shape[0], h @ self.w_in, edge_sh,
                                 edge_length, chunked=not self.training)
        own = (h @ self.w_self).view(h.shape[0], -1, self.dgate)
        own = torch.bmm(attrs[:, None, :], own)[:, 0]  # Σ_a attrs_na own_nad
        out = self.gate((agg * self.norm) @ self.w_out + own)
        return out + h if self.residual else out


def lean_potential(potential: torch.nn.Module, *, tabulate: bool = True,
                   spacing: float = TABLE_SPACING) -> torch.nn.Module:
    """A copy of ``potential`` (two-body layers) with lean layers, in its dtype and device, in
    eval mode: :class:`FusedInteraction` where :func:`fusable` and ``tabulate`` is off, else
    :class:`LeanInteraction`. Product-layer models are returned unchanged (a copy).

    Args:
        potential: a trained :class:`~matdesign.model.Potential`.
        tabulate: tabulate the radial networks (False: keep the MLPs, fuse the rest).
        spacing: table spacing, Å.
    """
    dtype, device = potential.dtype, potential.device
    lean = copy.deepcopy(potential).to(device="cpu", dtype=torch.float64)
    if potential.config.two_body:
        for k, layer in enumerate(list(lean.layers)):
            lean.layers[k] = (FusedInteraction(layer, lean) if not tabulate and fusable(layer)
                              else LeanInteraction(layer, lean, tabulate=tabulate,
                                                   spacing=spacing))
    lean.metadata = dict(getattr(potential, "metadata", {}) or {})
    return lean.to(device=device, dtype=dtype).eval()
