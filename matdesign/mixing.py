"""A chemical pair term in descriptor space: unlike pairs interact through a quadratic form of
their descriptor difference, so a pair never seen in training inherits its interaction from
the pairs that were.

For atoms i, j with species descriptors a = (period, group) (standardised over the model's
species) and d = a_i − a_j, the per-atom energy is

    E_i = ½ Σ_j Σ_k φ_k(r_ij) q_k(d_ij),   q = (d_p², d_g², d_p d_g),
    φ_k(r) = Σ_b w_kb B_b(r) u(r),

with the model's Bessel basis B_b and cutoff envelope u (so it vanishes smoothly at r_c). It
is zero between like atoms (d = 0), symmetric in i ↔ j (q is even in d), invariant under
rotation (it depends on distances only) and linear in its 3 × num_basis weights.

Why: the mixing energies of the Nb–Mo–Ta–W binaries are close to a quadratic form of the
(period, group) difference. In the training data's solid solutions, the near-equiatomic
mixing energies are NbMo −51, TaW −49 (Δgroup only), NbTa −1, MoW −3 (Δperiod only),
NbW −21 and MoTa −87 meV/atom (both, with opposite and equal signs of the cross term).
Pairs with Δperiod alone fix w_pp, with Δgroup alone w_gg, and one pair with both
fixes the cross term w_pg, which then predicts the other pair. A network fed one-hot
species has no such structure: left without Mo–Ta data, it predicts ideal mixing
(benchmarks/README.md, leave one family out).
"""

from __future__ import annotations

import torch

#: Width (Å) of the smooth floor of :func:`smooth_floor`.
FLOOR_WIDTH_A = 0.1


def smooth_floor(r: torch.Tensor, r_min: float, width: float = FLOOR_WIDTH_A) -> torch.Tensor:
    """r_min + w·softplus((r − r_min)/w): r itself well above r_min (within 1e-3 Å from r_min
    + 0.5 Å for w = 0.1 Å), r_min below it, smooth in between (Å).

    The chemical pair term takes its radial functions at this distance when
    ``model.chemical_pairs_min_r`` is set: its functions are fitted on unlike pairs no closer
    than the data's relaxed binaries, so closer contacts (hot alloys) keep the mixing value of
    the closest fitted distance instead of extrapolating it; the repulsion there is left to
    the element pair term and ZBL.
    """
    return r_min + width * torch.nn.functional.softplus((r - r_min) / width)


class ChemicalPairTerm(torch.nn.Module):
    """Per-atom energies (eV) of the descriptor-space pair term.

    Args:
        descriptors: (n_species, 2) standardised (period, group) of the model's species.
        num_basis: radial functions per quadratic component (the model's Bessel basis).
    """

    def __init__(self, descriptors: torch.Tensor, num_basis: int) -> None:
        super().__init__()
        if descriptors.ndim != 2 or descriptors.shape[1] != 2:
            raise ValueError(f"descriptors must be (n_species, 2), got {tuple(descriptors.shape)}")
        self.register_buffer("descriptors", descriptors.clone(), persistent=False)
        # eV per unit of q; starts at zero so an untrained term adds nothing.
        self.weights = torch.nn.Parameter(torch.zeros(3, num_basis))

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor,
                radial: torch.Tensor) -> torch.Tensor:
        """species (n,) indices, edge_index (2, m), radial (m, num_basis) basis × envelope
        -> (n,) eV."""
        receiver, sender = edge_index
        a = self.descriptors.to(radial.dtype)
        d = a[species[receiver]] - a[species[sender]]  # (m, 2)
        q = torch.stack([d[:, 0] ** 2, d[:, 1] ** 2, d[:, 0] * d[:, 1]], dim=1)  # (m, 3)
        phi = radial @ self.weights.to(radial.dtype).T  # (m, 3), eV
        pair = (phi * q).sum(1)
        out = torch.zeros(species.shape[0], dtype=radial.dtype, device=radial.device)
        return out.index_add(0, receiver, 0.5 * pair)


class ElementPairTerm(torch.nn.Module):
    """Per-atom energies (eV) of a pair term fitted per element, unlike pairs by mixing rule.

    Each species s has a radial function φ_s(r) = Σ_b w_sb B_b(r) u(r) (the model's Bessel basis
    and envelope); an unlike pair interacts through the arithmetic mean (the Lorentz-Berthelot
    / Johnson alloy rule of classical pair and EAM potentials):

        E_i = ½ Σ_j ½ (φ_{s_i}(r_ij) + φ_{s_j}(r_ij)).

    Why: the NbMoTaW data show hot, strongly displaced cells only for the pure elements (their
    AIMD) and the binaries only near their relaxed sites, so how the energy rises when unlike
    atoms are pushed together is never seen. A term whose unlike-pair repulsion is the mean of
    the elements' carries the elements' hot-cell stiffness into every alloy by construction.
    Symmetric in i ↔ j, rotation invariant, linear in its n_species × num_basis weights.

    Args:
        num_species: species of the model.
        num_basis: radial functions per species (the model's Bessel basis).
    """

    def __init__(self, num_species: int, num_basis: int) -> None:
        super().__init__()
        # eV per unit of the enveloped basis; zero at start so an untrained term adds nothing.
        self.weights = torch.nn.Parameter(torch.zeros(num_species, num_basis))

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor,
                radial: torch.Tensor) -> torch.Tensor:
        """species (n,) indices, edge_index (2, m), radial (m, num_basis) basis × envelope
        -> (n,) eV."""
        receiver, sender = edge_index
        w = self.weights.to(radial.dtype)
        phi = (radial * (w[species[receiver]] + w[species[sender]])).sum(1)  # 2 φ_ij, eV
        out = torch.zeros(species.shape[0], dtype=radial.dtype, device=radial.device)
        return out.index_add(0, receiver, 0.25 * phi)


class EmbeddedAtomTerm(torch.nn.Module):
    """Per-atom energies (eV) of a Finnis-Sinclair-like embedding term with per-element density.

    Each species s contributes a density f_s(r) = (Σ_b c_sb B_b(r) u(r))² ≥ 0 to its neighbours,
    and an atom of species t embeds the sum ρ_i = Σ_j f_{s_j}(r_ij) as

        E_i = a_t (sqrt(1 + ρ_i) − 1) + b_t ρ_i,

    zero for a lone atom. Chemistry enters the many-body part only through one scalar per
    neighbour, the classical alloy model (EAM): an atom among three or four elements sees a
    density in the range that its binaries already showed, so this part of the energy
    interpolates where a network fed one-hot neighbour species extrapolates.

    Args:
        num_species: species of the model.
        num_basis: radial functions per species density (the model's Bessel basis).
    """

    def __init__(self, num_species: int, num_basis: int) -> None:
        super().__init__()
        # Start from a small positive density and no embedding energy (adds nothing at first).
        self.density = torch.nn.Parameter(torch.full((num_species, num_basis), 0.1))
        self.sqrt_weight = torch.nn.Parameter(torch.zeros(num_species))  # eV
        self.linear_weight = torch.nn.Parameter(torch.zeros(num_species))  # eV

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor,
                radial: torch.Tensor) -> torch.Tensor:
        """species (n,), edge_index (2, m), radial (m, num_basis) basis × envelope -> (n,) eV."""
        receiver, sender = edge_index
        c = self.density.to(radial.dtype)
        f = (radial * c[species[sender]]).sum(1) ** 2
        rho = torch.zeros(species.shape[0], dtype=radial.dtype, device=radial.device)
        rho = rho.index_add(0, receiver, f)
        a = self.sqrt_weight.to(radial.dtype)[species]
        b = self.linear_weight.to(radial.dtype)[species]
        return a * (torch.sqrt(1.0 + rho) - 1.0) + b * rho
