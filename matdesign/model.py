"""The equivariant potential: species embedding, interaction blocks, per-atom energy readout."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ase.data import atomic_numbers
from e3nn import o3

from matdesign.graph import Graph
from matdesign.layers import Interaction, hidden_irreps
from matdesign.radial import BesselBasis, polynomial_envelope


@dataclass(frozen=True)
class PotentialConfig:
    """Architecture hyperparameters (all lengths in Å).

    Attributes:
        cutoff: neighbour cutoff r_c; the receptive field is about num_layers * cutoff.
        channels: multiplicity of every irrep in the hidden features.
        lmax: highest angular momentum of hidden features and edge spherical harmonics.
        num_layers: message-passing layers.
        num_basis: Bessel radial functions.
        radial_hidden: width of the radial MLP that makes per-edge tensor-product weights.
        readout_hidden: width of the scalar readout MLP.
        avg_num_neighbours: normalisation of the neighbour sum (set from data when training).
        envelope_p: exponent of the polynomial cutoff envelope.
    """

    cutoff: float = 5.0
    channels: int = 64
    lmax: int = 1
    num_layers: int = 2
    num_basis: int = 8
    radial_hidden: int = 32
    readout_hidden: int = 16
    avg_num_neighbours: float = 20.0
    envelope_p: int = 6

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PotentialConfig:
        """Build from a mapping; unknown keys or wrong types raise ``ValueError`` naming them."""
        from matdesign.config_utils import typed_config

        return typed_config(cls, data, "model")


class Potential(torch.nn.Module):
    """E = Σ_i [scale_s(i) · ε_i + shift_s(i)], ε_i from an E(3)-equivariant message-passing net.

    Args:
        config: architecture hyperparameters.
        species: chemical symbols the model knows, in embedding order.
    """

    def __init__(self, config: PotentialConfig | None = None, species: list[str] = ()) -> None:
        super().__init__()
        config = config or PotentialConfig()
        if not species:
            raise ValueError("Potential needs a non-empty species list, e.g. species=['W']")
        unknown = [s for s in species if s not in atomic_numbers]
        if unknown:
            raise ValueError(f"not chemical symbols: {unknown}")
        self.config = config
        self.species: list[str] = list(species)
        self.species_index = {atomic_numbers[s]: k for k, s in enumerate(self.species)}
        n = len(self.species)
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.lmax)
        self.embedding = torch.nn.Linear(n, config.channels, bias=False)
        self.basis = BesselBasis(config.cutoff, config.num_basis)
        hidden = hidden_irreps(config.channels, config.lmax)
        layers = []
        irreps_in = o3.Irreps(f"{config.channels}x0e")
        for k in range(config.num_layers):
            # The last layer only needs scalars: the energy is the ℓ = 0 output.
            out = hidden if k < config.num_layers - 1 else o3.Irreps(f"{config.channels}x0e")
            layers.append(
                Interaction(irreps_in, out, self.irreps_sh, n, config.num_basis,
                            config.radial_hidden, config.avg_num_neighbours)
            )
            irreps_in = out
        self.layers = torch.nn.ModuleList(layers)
        self.readout = torch.nn.Sequential(
            torch.nn.Linear(config.channels, config.readout_hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(config.readout_hidden, 1),
        )
        self.energy_shift = torch.nn.Parameter(torch.zeros(n), requires_grad=False)  # eV/atom
        self.energy_scale = torch.nn.Parameter(torch.ones(n))  # eV
        self.metadata: dict[str, Any] = {}

    @property
    def dtype(self) -> torch.dtype:
        return self.energy_scale.dtype

    @property
    def device(self) -> torch.device:
        return self.energy_scale.device

    def atomic_energies(self, graph: Graph, edge_vectors: torch.Tensor) -> torch.Tensor:
        """Per-atom energies ε_i (eV), shape (n,), from edge vectors r_ij (m, 3) in Å."""
        onehot = torch.nn.functional.one_hot(graph.species, len(self.species)).to(self.dtype)
        r = torch.linalg.norm(edge_vectors, dim=1)
        sh = o3.spherical_harmonics(self.irreps_sh, edge_vectors, normalize=True,
                                    normalization="component")
        radial = self.basis(r) * polynomial_envelope(r, self.config.cutoff,
                                                     self.config.envelope_p)[:, None]
        h = self.embedding(onehot)
        for layer in self.layers:
            h = layer(h, onehot, graph.edge_index, sh, radial)
        out = self.readout(h).squeeze(-1)
        return out * self.energy_scale[graph.species] + self.energy_shift[graph.species]

    def forward(self, graph: Graph, edge_vectors: torch.Tensor) -> torch.Tensor:
        return self.atomic_energies(graph, edge_vectors)

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
        """Write a checkpoint (see :mod:`matdesign.checkpoint`)."""
        from matdesign.checkpoint import save_potential

        save_potential(self, path, metadata=metadata)


def config_dict(config: PotentialConfig) -> dict[str, Any]:
    """Plain-Python dict of a config (safe for ``torch.load(weights_only=True)``)."""
    items = dataclasses.asdict(config).items()
    return {k: (float(v) if isinstance(v, float) else v) for k, v in items}


