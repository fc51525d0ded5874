"""ACE-style layer: an atomic basis A from one edge tensor product, then products of A.

One layer of the ``correlation >= 2`` architecture (MACE-like; Batatia et al. 2022, Drautz 2019):

    A_i = Σ_j R(|r_ij|) ⊗_CG (W h_j) ⊗ Y(r̂_ij) / sqrt(avg_neighbours)       (two-body basis)
    B_i = [A_i, B2_i = L(A ⊗ A)_i, B3_i = L(B2 ⊗ A)_i, …] to ``correlation`` factors (ν-body basis)
    h_i' = Linear(B_i) + SelfConnection(h_i, species_i)

The products are channel-wise Clebsch–Gordan tensor products (e3nn ``"uuu"`` paths) whose
path weights depend on the receiving atom's species, so a layer sees (ν+1)-body correlations
for the price of node-wise products: the per-edge work is one tensor product, as in a two-body
layer. Edge spherical harmonics can reach ℓ = 3 while hidden features stay at ℓ ≤ 1.
"""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet


def natural_irreps(channels: int, lmax: int) -> o3.Irreps:
    """``channels`` copies of every ℓ ≤ lmax with parity (-1)^ℓ (0e, 1o, 2e, 3o, …)."""
    return o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])


class ChannelProduct(torch.nn.Module):
    """(x ⊗ y)_c for every channel c, paths into ``irreps_out`` only, species-dependent weights.

    ``x`` and ``y`` must have the same multiplicity ``C`` in every irrep. With ``symmetric``
    (x is y) the path (ℓ2, ℓ1) duplicates (ℓ1, ℓ2) and is skipped.
    """

    def __init__(self, irreps_x: o3.Irreps, irreps_y: o3.Irreps, irreps_out: o3.Irreps,
                 num_species: int, symmetric: bool) -> None:
        super().__init__()
        wanted = {ir for _, ir in irreps_out}
        mid, instructions = [], []
        for i, (mul, ir_x) in enumerate(irreps_x):
            for j, (_, ir_y) in enumerate(irreps_y):
                if symmetric and j < i:
                    continue
                for ir in ir_x * ir_y:
                    if ir in wanted:
                        instructions.append((i, j, len(mid), "uuu", True))
                        mid.append((mul, ir))
        if not mid:
            raise ValueError(f"no product path {irreps_x} x {irreps_y} -> {irreps_out}")
        irreps_mid, perm, _ = o3.Irreps(mid).sort()
        instructions = [(i, j, perm[k], mode, w) for i, j, k, mode, w in instructions]
        self.tp = o3.TensorProduct(irreps_x, irreps_y, irreps_mid, instructions,
                                   shared_weights=False, internal_weights=False)
        # Species-dependent path weights: one row per species (an embedding, not a function of
        # geometry), so the product stays a polynomial of A.
        self.weights = torch.nn.Linear(num_species, self.tp.weight_numel, bias=False)
        torch.nn.init.normal_(self.weights.weight, std=1.0)
        self.irreps_out = irreps_mid.simplify()
        self.irreps_mid = irreps_mid

    def forward(self, x: torch.Tensor, y: torch.Tensor, species_onehot: torch.Tensor
                ) -> torch.Tensor:
        """x (n, irreps_x.dim), y (n, irreps_y.dim) -> (n, irreps_mid.dim)."""
        return self.tp(x, y, self.weights(species_onehot))


class ProductInteraction(torch.nn.Module):
    """One ACE-style message-passing layer (see the module docstring) on scalar node features.

    Node features between layers are ``channels`` scalars (as in MACE with L = 0): all angular
    information lives in the atomic basis A, whose ℓ-blocks are the Clebsch–Gordan products of
    a scalar with Y_ℓ (a trivial coupling, written as a broadcast product instead of a generic
    tensor product: it is the per-edge hot spot), and in the node-wise products of A.

    Args:
        channels: multiplicity C of the node features and of the atomic basis A.
        lmax_edge: highest ℓ of the edge spherical harmonics (and of A).
        correlation: number of A factors in the highest product (1 = two-body only).
        num_species, num_basis, radial_hidden, avg_num_neighbours: as in the two-body layer.
    """

    def __init__(self, channels: int, lmax_edge: int, correlation: int, num_species: int,
                 num_basis: int, radial_hidden: int, avg_num_neighbours: float) -> None:
        super().__init__()
        self.channels = channels
        self.lmax_edge = lmax_edge
        self.norm = float(avg_num_neighbours) ** -0.5
        scalars = o3.Irreps(f"{channels}x0e")
        self.irreps_out = scalars
        irreps_a = natural_irreps(channels, lmax_edge)
        self.linear_up = torch.nn.Linear(channels, channels, bias=False)
        # R_{ℓc}(r): one radial weight per ℓ and channel.
        self.radial = FullyConnectedNet(
            [num_basis, radial_hidden, radial_hidden, (lmax_edge + 1) * channels],
            torch.nn.functional.silu,
        )
        # Products: an intermediate product (A⊗A, …) is mixed back to the shape of A by a
        # linear map (fewer paths in the next product); the last keeps scalars only.
        self.products = torch.nn.ModuleList()
        self.mixers = torch.nn.ModuleList()
        for nu in range(2, correlation + 1):
            target = scalars if nu == correlation else irreps_a
            prod = ChannelProduct(irreps_a, irreps_a, target, num_species, symmetric=(nu == 2))
            self.products.append(prod)
            self.mixers.append(o3.Linear(prod.irreps_mid, target))
        # Only the ℓ = 0 part of A and the scalar outputs of the products reach the next layer.
        self.linear_out = torch.nn.Linear(channels * correlation, channels, bias=False)
        self.self_connection = torch.nn.Linear(num_species * channels, channels, bias=False)
        self.num_species = num_species

    def atomic_basis(self, h: torch.Tensor, edge_index: torch.Tensor, edge_sh: torch.Tensor,
                     edge_radial: torch.Tensor) -> torch.Tensor:
        """A_i (n, irreps_a.dim): Σ_j R_{ℓc}(r_ij) (W h_j)_c Y_ℓm(r̂_ij) / sqrt(avg_neighbours)."""
        receiver, sender = edge_index
        c, lmax = self.channels, self.lmax_edge
        weights = self.radial(edge_radial).view(-1, lmax + 1, c)
        w = weights * self.linear_up(h)[sender][:, None, :]  # (m, ℓ, c)
        blocks = []
        for ell in range(lmax + 1):
            y = edge_sh[:, ell * ell:(ell + 1) * (ell + 1)]  # (m, 2ℓ+1)
            block = w[:, ell, :, None] * y[:, None, :]  # (m, c, 2ℓ+1)
            blocks.append(block.reshape(w.shape[0], c * (2 * ell + 1)))
        messages = torch.cat(blocks, dim=1)  # e3nn layout: per ℓ-block, channel-major
        agg = messages.new_zeros(h.shape[0], messages.shape[1])
        return agg.index_add(0, receiver, messages) * self.norm

    def forward(self, h: torch.Tensor, species_onehot: torch.Tensor, edge_index: torch.Tensor,
                edge_sh: torch.Tensor, edge_radial: torch.Tensor,
                edge_length: torch.Tensor | None = None) -> torch.Tensor:
        """Same arguments and shapes as :class:`matdesign.layers.Interaction`; h is scalar."""
        a = self.atomic_basis(h, edge_index, edge_sh, edge_radial)
        scalars = [a[:, :self.channels]]
        basis = a
        for prod, mix in zip(self.products, self.mixers, strict=True):
            basis = mix(prod(basis, a, species_onehot))
            scalars.append(basis[:, :self.channels])
        # Species-dependent self-connection: h_i ⊗ onehot_i (a 0e x 0e product).
        sc = (h[:, None, :] * species_onehot[:, :, None]).reshape(h.shape[0], -1)
        return self.linear_out(torch.cat(scalars, dim=1)) + self.self_connection(sc)
