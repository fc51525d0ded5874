"""Equivariant interaction block: Clebsch–Gordan convolution, self-connection and gate."""

from __future__ import annotations

from collections.abc import Callable

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from torch.utils.checkpoint import checkpoint

# Edges per chunk of the message sum at inference, for float32 features; a wider dtype gets
# proportionally fewer (float64: 32,768). Above one chunk, messages are computed chunk by chunk
# and recomputed in the backward pass instead of being stored, which bounds memory (a
# 9,826-atom bcc cell, 255k edges: 1.25 GB in float32 and 1.5 GB in float64). The chunks were
# 8,192 edges while every call faulted in fresh pages, when cache-sized chunks paid; once freed
# buffers are reused (matdesign/memory.py) the recomputation is what chunks cost, and 1,024
# atoms ran 1.3-1.7x faster unchunked than in 8,192-edge chunks (eleventh session). Peak
# memory grows with the number of chunks, by about one node-sized buffer per chunk and layer
# (measured; the cause is not traced), so chunks grow beyond MAX_EDGE_CHUNKS of them (float64
# at 9,826 atoms: 3.2 GB with 62 chunks, 1.55 GB with 16). benchmarks/README.md, issue 12.
EDGE_CHUNK = 65536
MAX_EDGE_CHUNKS = 16


def edge_chunk(num_edges: int, element_size: int) -> int:
    """Edges per chunk of a chunked message sum: :data:`EDGE_CHUNK` scaled by the features'
    width in bytes (float32: 4), at most :data:`MAX_EDGE_CHUNKS` chunks."""
    return max(1, EDGE_CHUNK * 4 // element_size, -(-num_edges // MAX_EDGE_CHUNKS))


def aggregate_messages(
    message_fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]],
    edge_index: torch.Tensor,
    num_nodes: int,
    node_features: torch.Tensor | tuple[torch.Tensor, ...],
    *edge_inputs: torch.Tensor,
    chunked: bool,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Σ_j m_ij per receiver i, shape (num_nodes, width), or one such sum per message block.

    ``message_fn(*x_sender, *edge_inputs)`` gives the (m, width) messages of its edges from the
    sender features (one tensor, or a tuple of node tensors gathered separately, which spares
    the backward pass a concatenation of their gradients). It may return a tuple of message
    blocks instead; each is summed on its own and a tuple of sums returned (no edge-sized
    concatenation in the forward pass, nor a split of its gradient). With ``chunked`` and more edges
    than one chunk (:data:`EDGE_CHUNK` scaled by the features' width in bytes, at most
    :data:`MAX_EDGE_CHUNKS` chunks) the sum runs chunk by chunk under activation
    checkpointing: the same numbers, memory bounded by one chunk, one extra forward pass of the
    edge part during the backward pass. Training keeps ``chunked`` off (its loss
    differentiates twice through the messages).
    """
    receiver, sender = edge_index
    feats = node_features if isinstance(node_features, tuple) else (node_features,)
    k = len(feats)

    single = False

    def part(rec: torch.Tensor, snd: torch.Tensor, *tensors: torch.Tensor
             ) -> tuple[torch.Tensor, ...]:
        nonlocal single
        # index_select, not x[snd]: advanced indexing gathers several times slower on CPU and
        # its backward is a serial index_put with accumulate (benchmarks/README.md, issue 12).
        gathered = [x.index_select(0, snd) for x in tensors[:k]]
        messages = message_fn(*gathered, *tensors[k:])
        single = isinstance(messages, torch.Tensor)
        blocks = (messages,) if single else messages
        return tuple(b.new_zeros(num_nodes, b.shape[1]).index_add_(0, rec, b) for b in blocks)

    m = receiver.shape[0]
    chunk = edge_chunk(m, feats[0].element_size())
    if not chunked or m <= chunk:
        sums = part(receiver, sender, *feats, *edge_inputs)
    else:
        sums = None
        for start in range(0, m, chunk):
            e = slice(start, start + chunk)
            args = (receiver[e], sender[e], *feats, *(t[e] for t in edge_inputs))
            got = (checkpoint(part, *args, use_reentrant=False) if torch.is_grad_enabled()
                   else part(*args))
            sums = got if sums is None else tuple(a + b for a, b in zip(sums, got, strict=True))
    return sums[0] if single else sums


def hidden_irreps(channels: int, lmax: int) -> o3.Irreps:
    """Node-feature irreps: ``channels`` copies of each ℓ ≤ lmax with the natural parity (-1)^ℓ.

    Keeping only natural-parity features keeps the model energy invariant under inversion.
    """
    return o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])


def _gate_for(target: o3.Irreps) -> Gate:
    """A gate whose output is ``target``: SiLU on scalars, sigmoid gates on ℓ > 0."""
    scalars = o3.Irreps([(m, ir) for m, ir in target if ir.l == 0])
    gated = o3.Irreps([(m, ir) for m, ir in target if ir.l > 0])
    gates = o3.Irreps([(gated.num_irreps, "0e")]) if gated.num_irreps else o3.Irreps("")
    act_gates = [torch.sigmoid] if gated.num_irreps else []
    return Gate(scalars, [torch.nn.functional.silu], gates, act_gates, gated)


class Interaction(torch.nn.Module):
    """One message-passing layer (NequIP-like).

    m_i = Σ_j R(|r_ij|) ⊗_CG (W h_j) ⊗ Y(r̂_ij) / sqrt(avg_neighbours), followed by a linear map,
    a species-dependent self-connection of h_i, a gate, and a residual where shapes allow.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        num_species: int,
        num_basis: int,
        radial_hidden: int,
        avg_num_neighbours: float,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.norm = float(avg_num_neighbours) ** -0.5
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)

        wanted = {ir for _, ir in self.irreps_out}
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for j, (_, ir_edge) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_edge:
                    if ir_out in wanted:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid, perm, _ = o3.Irreps(mid).sort()
        instructions = [(i, j, perm[k], mode, w) for i, j, k, mode, w in instructions]
        self.tp = o3.TensorProduct(
            self.irreps_in, irreps_sh, irreps_mid, instructions,
            shared_weights=False, internal_weights=False,
        )
        self.radial = FullyConnectedNet(
            [num_basis, radial_hidden, radial_hidden, self.tp.weight_numel],
            torch.nn.functional.silu,
        )
        self.gate = _gate_for(self.irreps_out)
        self.linear_out = o3.Linear(irreps_mid, self.gate.irreps_in)
        self.self_connection = o3.FullyConnectedTensorProduct(
            self.irreps_in, o3.Irreps(f"{num_species}x0e"), self.gate.irreps_in
        )
        self.residual = self.irreps_in == self.irreps_out

    def forward(
        self,
        h: torch.Tensor,
        species_onehot: torch.Tensor,
        edge_index: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        edge_length: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
        h: (n, irreps_in.dim) node features.
        species_onehot: (n, num_species).
        edge_index: (2, m) receiver i, sender j.
        edge_sh: (m, irreps_sh.dim) spherical harmonics of r̂_ij.
        edge_radial: (m, num_basis) radial basis already multiplied by the envelope.
        edge_length: (m,) |r_ij|, Å (unused here; the lean twin's radial tables take it).
        Returns (n, irreps_out.dim).
        """
        fusion = getattr(self, "training_fusion", None)  # matdesign.training.fused
        if fusion is not None and self.training:
            return fusion(self, h, species_onehot, edge_index, edge_sh, edge_radial)
        agg = aggregate_messages(
            lambda x, sh, radial: self.tp(x, sh, self.radial(radial)), edge_index,
            h.shape[0], self.linear_in(h), edge_sh, edge_radial, chunked=not self.training)
        out = self.linear_out(agg * self.norm) + self.self_connection(h, species_onehot)
        out = self.gate(out)
        return out + h if self.residual else out
