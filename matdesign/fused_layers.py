"""Fused ℓ ≤ 1 interaction layers: e3nn's two-body layer as dense maps and broadcast products.

:class:`FusedInteraction` is the default inference twin of an ℓ ≤ 1
:class:`~matdesign.layers.Interaction` (the calculator builds it through
:func:`matdesign.inference.lean_potential`); :func:`fused_maps` and :func:`fused_messages` are
the same kernels for training (:mod:`matdesign.training.fused`), where the maps are read off the
e3nn weights on every step. Shared pieces: the "uvu" path table of an e3nn tensor product
(:func:`tensor_product_paths`), the component-major layout, the species self-connection as one
matrix and the radial network as plain matrices (:class:`DenseRadial`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from e3nn import o3

from matdesign import edge_kernel
from matdesign.layers import Interaction, aggregate_messages


def dense_map(fn: torch.nn.Module, dim_in: int, dtype: torch.dtype) -> torch.Tensor:
    """Matrix M (dim_in, dim_out) with fn(x) = x @ M for a linear, bias-free ``fn``."""
    with torch.no_grad():
        return fn(torch.eye(dim_in, dtype=dtype)).detach().clone()


def self_connection_map(layer: Interaction, n_attr: int, din: int, dtype: torch.dtype
                        ) -> tuple[torch.Tensor, int]:
    """The species self-connection as one matrix (din, n_attr × dgate), and dgate."""
    attrs = torch.eye(n_attr, dtype=dtype)
    sc = torch.stack([dense_map(lambda x, a=a: layer.self_connection(
        x, a.expand(x.shape[0], -1)), din, dtype) for a in attrs])  # (attr, din, dgate)
    return sc.permute(1, 0, 2).reshape(din, -1), sc.shape[2]


class _Path(torch.nn.Module):
    """One "uvu" instruction: out[e, u, k] = c w[e, u] Σ_ij C_ijk x[e, u, i] y[e, j].

    For ℓ ≤ 1 every Wigner-3j block met here is a multiple of the identity (0⊗ℓ→ℓ, ℓ⊗0→ℓ,
    ℓ⊗ℓ→0), so the contraction is a broadcast product or a dot product; other paths use the
    general einsum.
    """

    def __init__(self, x_slice: slice, l1: int, y_slice: slice, l2: int, l3: int,
                 w_slice: slice, mul: int, constant: float) -> None:
        super().__init__()
        self.x_slice, self.y_slice, self.w_slice = x_slice, y_slice, w_slice
        self.mul, self.l1, self.l3 = mul, l1, l3
        c = o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * constant
        if l1 == 0 or l2 == 0 or l3 == 0:
            block = c.reshape(-1)[0] * torch.eye(max(l1, l2, l3) * 2 + 1, dtype=torch.float64)
            kind = "dot" if l3 == 0 and l1 > 0 else "product"
            if torch.allclose(c.reshape(block.shape), block, atol=1e-12):
                self.kind, self.scale = kind, float(c.reshape(-1)[0])
            else:  # pragma: no cover - e3nn's real basis makes these blocks diagonal
                self.kind, self.scale = "general", 1.0
        else:
            self.kind, self.scale = "general", 1.0
        self.register_buffer("w3j", c)

    def forward(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        m = x.shape[0]
        xs = x[:, self.x_slice].view(m, self.mul, 2 * self.l1 + 1)
        ys = y[:, self.y_slice][:, None, :]
        w = weights[:, self.w_slice, None] * self.scale
        if self.kind == "product":  # one factor is a scalar: broadcast
            out = xs * ys
        elif self.kind == "dot":  # a batched matrix product: reductions over 3 are slow
            out = torch.bmm(xs, ys.transpose(1, 2))
        else:
            out = torch.einsum("eui,ej,ijk->euk", xs, ys[:, 0], self.w3j.to(x.dtype))
        return (out * w).reshape(m, self.mul * (2 * self.l3 + 1))


def tensor_product_paths(tp: o3.TensorProduct) -> torch.nn.ModuleList:
    """Fused paths of an e3nn "uvu" TensorProduct whose output irreps appear once per path."""
    paths, w_start = [], 0
    for ins in tp.instructions:
        if ins.connection_mode != "uvu" or not ins.has_weight:
            raise ValueError(f"lean path supports weighted 'uvu' instructions, got {ins}")
        mul, ir1 = tp.irreps_in1[ins.i_in1]
        _, ir2 = tp.irreps_in2[ins.i_in2]
        _, ir3 = tp.irreps_out[ins.i_out]
        paths.append(_Path(tp.irreps_in1.slices()[ins.i_in1], ir1.l,
                           tp.irreps_in2.slices()[ins.i_in2], ir2.l, ir3.l,
                           slice(w_start, w_start + mul), mul, ins.path_weight))
        w_start += mul
    order = [ins.i_out for ins in tp.instructions]
    if order != sorted(order) or len(set(order)) != len(order):
        raise ValueError("lean path needs one instruction per output irrep, in output order")
    return torch.nn.ModuleList(paths)


class DenseRadial(torch.nn.Module):
    """e3nn's ``FullyConnectedNet`` (normalised SiLU, no biases) as plain matrices: each layer's
    1/sqrt(fan-in) and the activation's normalisation constant are folded into the weights once.

    Raises:
        ValueError: the rebuilt network differs from the original by more than 1e-10 (float64),
            e.g. a layer kind this rewrite does not know.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        mats, carry = [], 1.0  # carry: the previous activation's output factor
        for layer in net:
            scale = (layer.h_in * layer.var_in) ** -0.5 if layer.act is not None else (
                layer.h_in * layer.var_in / layer.var_out) ** -0.5
            mats.append(layer.weight.detach().double() * scale * carry)
            carry = layer.var_out ** 0.5 * float(layer.act.cst) if layer.act is not None else 1.0
        if carry != 1.0:
            raise ValueError("DenseRadial needs a network whose last layer is linear")
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(m.clone(), requires_grad=False) for m in mats)
        self.act = net[0].act.f if net[0].act is not None else None
        probe = torch.randn(64, mats[0].shape[0], dtype=torch.float64)
        with torch.no_grad():
            err = (self(probe) - copy.deepcopy(net).double()(probe)).abs().max().item()
        if err > 1e-10:
            raise ValueError(f"DenseRadial does not reproduce the radial network ({err:.1e})")

    def forward(self, x: torch.Tensor, split: int | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The network's output (m, out), or with ``split`` its consecutive column blocks of
        that width as separate products (no concatenation of their gradients)."""
        *hidden, last = self.weights
        for w in hidden:
            x = self.act(x @ w)
        if split is None:
            return x @ last
        return tuple(x @ w for w in last.split(split, dim=1))


class FusedGate(torch.nn.Module):
    """e3nn's ``Gate`` of a two-body layer (C×0e scalars [+ C×0e gates and C×1o gated vectors])
    in a handful of dense operations: e3nn's version splits, activates and multiplies through
    its generic elementwise tensor product, about 40 operations forward and 40 backward for
    the first layer's gate, a seventh of a 16-atom cell's whole call.

    The activations are e3nn's own normalised functions; the product's constant is read off
    the e3nn module. Same input and output layout as the gate (vectors u-major).

    Raises:
        ValueError: a gate of another shape, or a rebuilt gate that differs from e3nn's by more
            than 1e-12 (float64).
    """

    def __init__(self, gate: torch.nn.Module) -> None:
        super().__init__()
        self.n_scalars = gate.irreps_scalars.dim
        self.n_gates = gate.irreps_gates.dim
        if gate.irreps_gated.dim not in (0, 3 * self.n_gates) or any(
                ir.l != 1 for _, ir in gate.irreps_gated):
            raise ValueError(f"FusedGate needs C×1o gated vectors, got {gate.irreps_gated}")
        self.act_scalars = _only_activation(gate.act_scalars)
        self.act_gates = _only_activation(gate.act_gates) if self.n_gates else None
        self.product = 1.0
        if self.n_gates:
            with torch.no_grad():
                probe = gate.mul(torch.ones(1, 3 * self.n_gates), torch.ones(1, self.n_gates))
            self.product = float(probe[0, 0])
            if not torch.allclose(probe, torch.full_like(probe, self.product)):
                raise ValueError("FusedGate: the gate's product is not one constant")
        x = torch.randn(7, gate.irreps_in.dim, dtype=torch.float64)
        with torch.no_grad():
            err = (self(x) - copy.deepcopy(gate).double()(x)).abs().max().item()
        if err > 1e-12:
            raise ValueError(f"FusedGate does not reproduce the gate ({err:.1e})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.n_gates:
            return self.act_scalars(x)
        s, g, v = x.split([self.n_scalars, self.n_gates, 3 * self.n_gates], dim=1)
        g = self.act_gates(g)
        if self.product != 1.0:
            g = g * self.product
        v = (v.view(-1, self.n_gates, 3) * g[:, :, None]).view(x.shape[0], -1)
        return torch.cat([self.act_scalars(s), v], dim=1)


def _only_activation(act: torch.nn.Module) -> torch.nn.Module:
    """The one normalised function of an e3nn ``Activation`` over a single block of scalars."""
    paths = act.paths
    if len(paths) != 1 or paths[0][1][0] != 0 or paths[0][2] is None:
        raise ValueError(f"FusedGate needs one activated block of scalars, got {paths}")
    return paths[0][2]


class FusedInteraction(torch.nn.Module):
    """The inference twin of an ℓ ≤ 1 two-body :class:`~matdesign.layers.Interaction` (hidden
    features C×0e [+ C×1o], edge harmonics 0e + 1o), about 1.5× faster than e3nn's kernels for
    energy, forces and stress on a 128-atom cell.

    Every tensor-product path is one broadcast product on contiguous (edges, C) blocks: vector
    features are laid out component-major (x, y, z blocks of C channels) by permuting the
    columns of the input map and the rows of the output map, so no 3-element reductions,
    transposes or slice gradients (each a full zero tensor in autograd) are met. The path
    constants and 1/sqrt(avg neighbours) are folded into the output map; the radial MLP
    becomes :class:`DenseRadial` and takes the model's radial features as they are.

    Args:
        layer: a trained two-body layer with supported paths (:func:`fusable`).
        potential: its potential (for the species count).
    """

    def __init__(self, layer: Interaction, potential: torch.nn.Module) -> None:
        super().__init__()
        dtype = torch.float64
        layer = copy.deepcopy(layer).to("cpu", dtype)
        n_attr = potential.species_attrs.shape[1]
        din = layer.irreps_in.dim
        self.gate, self.residual = FusedGate(layer.gate), layer.residual
        self.layout = FusedLayout.of(layer)
        with torch.no_grad():
            w_in, w_out = fused_maps(layer, self.layout, dtype)
        self.register_buffer("w_in", w_in.contiguous())
        self.register_buffer("w_out", w_out.contiguous())
        w_self, dgate = self_connection_map(layer, n_attr, din, dtype)
        # Only scalars reach scalars through the species (0e) self-connection: the rows of
        # vector inputs and the columns of vector gate inputs are zero, and are dropped.
        c = self.layout.channels
        n_scalar = self.gate.n_scalars + self.gate.n_gates  # the gate input's 0e entries
        blocks = w_self.view(din, n_attr, dgate)
        if blocks[c:].abs().sum() > 0 or blocks[:, :, n_scalar:].abs().sum() > 0:
            raise ValueError("FusedInteraction: the self-connection maps vectors or makes them")
        self.register_buffer("w_self", blocks[:c, :, :n_scalar].reshape(c, -1).contiguous())
        self.n_scalar, self.pad = n_scalar, dgate - n_scalar
        self.radial = DenseRadial(layer.radial)
        self.codes = tuple(edge_kernel.PATH_CODES[k] for k in self.layout.kinds)

    def _messages(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        *x, sh, radial = inputs
        weights = self.radial(radial, split=self.layout.channels)
        return fused_messages(tuple(x), sh, weights, self.layout)

    #: the model passes ``mirrored=True`` for edges in mirrored order (matdesign.graph)
    uses_mirrored_edges = True

    def forward(self, h: torch.Tensor, attrs: torch.Tensor, edge_index: torch.Tensor,
                edge_sh: torch.Tensor, edge_radial: torch.Tensor,
                edge_length: torch.Tensor | None = None, mirrored: bool = False
                ) -> torch.Tensor:
        """As :meth:`Interaction.forward`. Outside training the compiled edge kernel
        (:mod:`matdesign.edge_kernel`) sums the messages where it is built, and with
        ``mirrored`` edges (edge m/2 + k the reverse of edge k) the radial network runs on
        the first half only: its input is a function of the edge length alone."""
        blocks = sender_blocks(h, self.w_in, self.layout)
        if not self.training and edge_kernel.kernel() is not None:
            aggs = edge_kernel.summed_messages(
                self.radial, blocks[0], blocks[1] if len(blocks) > 1 else None,
                edge_sh[:, 1:4], edge_radial, edge_index, h.shape[0], self.codes,
                mirrored=mirrored)
        else:
            aggs = aggregate_messages(self._messages, edge_index, h.shape[0], blocks, edge_sh,
                                      edge_radial, chunked=not self.training)
        c = self.layout.channels
        scalars = h.split([c, h.shape[1] - c], dim=1)[0] if self.layout.has_vectors else h
        own = (scalars @ self.w_self).view(h.shape[0], -1, self.n_scalar)
        own = torch.bmm(attrs[:, None, :], own)[:, 0]  # Σ_a attrs_na own_nad
        own = torch.nn.functional.pad(own, (0, self.pad)) if self.pad else own
        out = self.gate(fused_output(aggs, self.w_out) + own)
        return out + h if self.residual else out


@dataclass(frozen=True, eq=False)
class FusedLayout:
    """The static shape of a fusable layer, read once (:meth:`of`): what the fused maps and
    messages need besides the weights.

    Attributes:
        kinds: (ℓ_in, ℓ_out) of each tensor-product path, in output order.
        scales: each path's constant (Wigner-3j entry × e3nn path weight).
        out_blocks: each path's rows in e3nn's output map.
        channels: C, the multiplicity of every irrep.
        has_vectors: whether the input carries the 3C vector block.
        order: column order that lays the input out component-major.
    """

    kinds: tuple[tuple[int, int], ...]
    scales: tuple[float, ...]
    out_blocks: tuple[slice, ...]
    channels: int
    has_vectors: bool
    order: torch.Tensor

    @classmethod
    def of(cls, layer: Interaction) -> FusedLayout:
        paths = tensor_product_paths(layer.tp)
        mid_slices = layer.tp.irreps_out.slices()
        channels = layer.irreps_in[0].mul
        return cls(kinds=tuple((p.l1, p.l3) for p in paths),
                   scales=tuple(p.scale for p in paths),
                   out_blocks=tuple(mid_slices[ins.i_out] for ins in layer.tp.instructions),
                   channels=channels, has_vectors=layer.irreps_in.dim > channels,
                   order=_component_major(layer.irreps_in))


def fused_maps(layer: Interaction, layout: FusedLayout, dtype: torch.dtype
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's input and output maps as matrices for :func:`fused_messages`.

    The input map's columns are permuted to the component-major layout; the output map's rows
    follow it and carry the path constants and 1/sqrt(avg neighbours). Differentiable in the
    layer's weights (training reads them off every step).

    Returns:
        w_in (din, din) and w_out (Σ path widths, gate input dim).
    """
    din, dmid = layer.irreps_in.dim, layer.tp.irreps_out.dim
    c = layout.channels
    w_in = layer.linear_in(torch.eye(din, dtype=dtype, device=_device_of(layer)))
    w_in = w_in[:, layout.order.to(w_in.device)]
    w_out = layer.linear_out(torch.eye(dmid, dtype=dtype, device=w_in.device)) * layer.norm
    rows = []
    for (_, l3), scale, block in zip(layout.kinds, layout.scales, layout.out_blocks,
                                     strict=True):
        rows_k = w_out[block] * scale
        if l3 == 1:  # u-major rows (u, i) -> component-major (i, u)
            rows_k = rows_k.view(c, 3, -1).transpose(0, 1).reshape(3 * c, -1)
        rows.append(rows_k)
    return w_in, torch.cat(rows)


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def sender_blocks(h: torch.Tensor, w_in: torch.Tensor, layout: FusedLayout
                  ) -> tuple[torch.Tensor, ...]:
    """Node features through the input map as the scalar (n, C) [and vector (n, 3C)] blocks,
    each a product of its own, so each is gathered onto the edges on its own and the backward
    pass concatenates no gradients."""
    if not layout.has_vectors:
        return (h @ w_in,)
    w_s, w_v = w_in.split([layout.channels, w_in.shape[1] - layout.channels], dim=1)
    return h @ w_s, h @ w_v


def fused_messages(x: tuple[torch.Tensor, ...], sh: torch.Tensor,
                   weights: Sequence[torch.Tensor], layout: FusedLayout
                   ) -> tuple[torch.Tensor, ...]:
    """Messages of the fused ℓ ≤ 1 paths, one (edges, path width) block per path in path
    order, unnormalised. The blocks are summed over edges one by one and meet the output map
    in :func:`fused_output`: concatenating them cost an edge-sized copy forward and a split
    backward (4-7 % of a 128-atom call, seventeenth session).

    Args:
        x: sender blocks of :func:`sender_blocks` on the edges: scalars (edges, C) [and
            component-major vectors (edges, 3C)].
        sh: edge harmonics 0e + 1o, (edges, 4).
        weights: radial weights of each path, (edges, C), in path order.
        layout: the layer's :class:`FusedLayout`.
    """
    # Blocks are taken with split/unbind, never by slicing: the backward of a slice is a
    # zero tensor of the whole input plus a copy (two passes over (edges, 4C) per slice),
    # that of split/unbind one concatenation.
    c = layout.channels
    y = sh.split([1, 3], dim=1)[1]
    y0, y1, y2 = y.split(1, dim=1)
    s = x[0]
    v = x[1].view(-1, 3, c) if layout.has_vectors else None
    blocks = []
    for (l1, l3), w in zip(layout.kinds, weights, strict=True):
        if l1 == 0 and l3 == 0:
            blocks.append(w * s)
        elif l1 == 0:
            blocks.append((y[:, :, None] * (w * s)[:, None, :]).reshape(-1, 3 * c))
        elif l3 == 1:
            blocks.append((w[:, None, :] * v).reshape(-1, 3 * c))
        else:
            vx, vy, vz = v.unbind(1)
            dot = torch.addcmul(torch.addcmul(vx * y0, vy, y1), vz, y2)
            blocks.append(w * dot)
    return tuple(blocks)


def fused_output(aggs: Sequence[torch.Tensor], w_out: torch.Tensor) -> torch.Tensor:
    """Σ_k agg_k @ W_k: the per-path message sums (n, width_k) through their rows of the
    output map of :func:`fused_maps`, (n, gate input dim)."""
    rows = w_out.split([a.shape[1] for a in aggs], dim=0)
    out = aggs[0] @ rows[0]
    for agg, w in zip(aggs[1:], rows[1:], strict=True):
        out = torch.addmm(out, agg, w)
    return out


def _component_major(irreps: o3.Irreps) -> torch.Tensor:
    """Column order that lays C×0e + C×1o out as [scalars, x-block, y-block, z-block]."""
    order, start = [], 0
    for mul, ir in irreps:
        d = 2 * ir.l + 1
        order += [start + u * d + i for i in range(d) for u in range(mul)]
        start += mul * d
    return torch.tensor(order)


def fusable(layer: torch.nn.Module) -> bool:
    """Whether :class:`FusedInteraction` can stand in for ``layer``: an e3nn two-body layer with
    hidden features C×0e [+ C×1o] and "uvu" paths from ℓ ≤ 1 to ℓ ≤ 1 of natural parity."""
    if not isinstance(layer, Interaction):
        return False
    irreps = [(mul, ir.l, ir.p) for mul, ir in layer.irreps_in]
    if irreps not in ([(irreps[0][0], 0, 1)], [(irreps[0][0], 0, 1), (irreps[0][0], 1, -1)]):
        return False
    tp = layer.tp
    if [ir.l for _, ir in tp.irreps_in2] != [0, 1]:
        return False
    for ins in tp.instructions:
        mul, ir3 = tp.irreps_out[ins.i_out]
        if (ins.connection_mode != "uvu" or not ins.has_weight or mul != irreps[0][0]
                or ir3.l > 1 or ir3.p != (-1) ** ir3.l):
            return False
    try:
        tensor_product_paths(tp)
    except ValueError:
        return False
    return True
