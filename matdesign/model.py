"""The equivariant potential: species embedding, interaction blocks, per-atom energy readout."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from ase.data import atomic_numbers
from e3nn import o3

from matdesign.graph import Graph
from matdesign.layers import Interaction, hidden_irreps
from matdesign.mixing import ChemicalPairTerm, ElementPairTerm, EmbeddedAtomTerm, smooth_floor
from matdesign.product import ProductInteraction
from matdesign.radial import BesselBasis, radial_features
from matdesign.repulsion import ZBLRepulsion

SQRT3 = math.sqrt(3.0)


@dataclass(frozen=True)
class PotentialConfig:
    """Architecture hyperparameters (all lengths in Å).

    Attributes:
        cutoff: neighbour cutoff r_c; the receptive field is about num_layers * cutoff.
        channels: multiplicity of every irrep in the hidden features.
        lmax: highest angular momentum of hidden features (0 for product layers, whose node
            features are scalars; 1-2 for the two-body layers).
        lmax_edge: highest angular momentum of the edge spherical harmonics (and of the atomic
            basis A of the product layers).
        correlation: body order per layer. 1 is the two-body NequIP-like layer of format 1;
            ν ≥ 2 builds ACE-style products of the atomic basis up to ν factors
            (:mod:`matdesign.product`).
        num_layers: message-passing layers.
        num_basis: Bessel radial functions.
        radial_hidden: width of the radial MLP that makes per-edge tensor-product weights.
        readout_hidden: width of the scalar readout MLP.
        heads: readout heads of the last layer; more than one gives a committee whose spread
            is the model's uncertainty (the energy is their mean).
        committee: members of a last-layer Laplace committee attached after training
            (:mod:`matdesign.training.committee`); 0 for none. Excludes ``heads > 1``.
        species_descriptors: species enter as physical descriptors [1, period, group] instead
            of one-hot vectors (see :func:`species_attributes`).
        zbl: add the switched ZBL core repulsion (:mod:`matdesign.repulsion`).
        chemical_pairs: add the descriptor-space pair term of :mod:`matdesign.mixing` (unlike
            pairs interact through a quadratic form of their (period, group) difference).
        chemical_pairs_min_r: Å; when positive, the chemical pair term sees every distance
            through :func:`matdesign.mixing.smooth_floor`, so it stays flat below this
            distance instead of extrapolating to contacts the data never had; 0: off.
        element_pairs: add the per-element pair term of :mod:`matdesign.mixing` (unlike pairs by
            the arithmetic-mean mixing rule, carrying the elements' hot-cell stiffness into
            alloys).
        embedded_atom: add the Finnis-Sinclair-like embedding term of :mod:`matdesign.mixing`
            (neighbour chemistry through one scalar density per element).
        isolated_reference: an atom without neighbours has exactly its isolated-atom energy
            (crystal reference + tabulated cohesive energy) instead of a fitted constant.
        avg_num_neighbours: normalisation of the neighbour sum (set from data when training).
        avg_density: mean Σ_j f_cut(r_ij) per atom in the training data (set when training);
            normalises the coordination of the isolated-atom baseline.
        baseline_saturation: coordination (in units of ``avg_density``) at which the
            isolated-atom baseline reaches the crystal reference and stops changing. Below 1
            the baseline's curvature step (its second derivative jumps there) lies below the
            coordination of the data's atoms (surface atoms start at 0.52-0.54), so the network
            never has to cancel it; checkpoints before format 3 used 1, the training data's
            mean, with the step among the atoms of hot and strained cells.
        envelope_p: exponent of the polynomial cutoff envelope.
    """

    cutoff: float = 5.0
    channels: int = 32
    lmax: int = 1
    lmax_edge: int = 1
    correlation: int = 1
    num_layers: int = 2
    num_basis: int = 8
    radial_hidden: int = 32
    readout_hidden: int = 16
    heads: int = 1
    committee: int = 0
    species_descriptors: bool = False
    zbl: bool = True
    chemical_pairs: bool = False
    chemical_pairs_min_r: float = 0.0
    element_pairs: bool = False
    embedded_atom: bool = False
    isolated_reference: bool = True
    avg_num_neighbours: float = 20.0
    avg_density: float = 10.0
    baseline_saturation: float = 0.5
    envelope_p: int = 6

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PotentialConfig:
        """Build from a mapping; unknown keys or wrong types raise ``ValueError`` naming them."""
        from matdesign.config_utils import typed_config

        config = typed_config(cls, data, "model")
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first out-of-range setting."""
        positive = ("cutoff", "channels", "num_layers", "num_basis", "radial_hidden",
                    "readout_hidden", "heads", "correlation", "avg_num_neighbours",
                    "avg_density", "envelope_p", "baseline_saturation")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)!r}")
        for name in ("lmax", "lmax_edge"):
            if not 0 <= getattr(self, name) <= 4:
                raise ValueError(f"model.{name} must be 0..4, got {getattr(self, name)!r}")
        if self.correlation == 1 and self.lmax_edge != self.lmax:
            raise ValueError("model.correlation 1 (two-body layers) needs lmax_edge == lmax")
        if not 0 <= self.chemical_pairs_min_r < self.cutoff:
            raise ValueError("model.chemical_pairs_min_r must be in [0, cutoff), got "
                             f"{self.chemical_pairs_min_r!r}")
        if self.chemical_pairs_min_r and not self.chemical_pairs:
            raise ValueError("model.chemical_pairs_min_r needs model.chemical_pairs: true")
        if self.committee < 0 or (self.committee and self.heads > 1):
            raise ValueError("model.committee must be >= 0 and needs heads: 1")
        if self.correlation > 1 and self.lmax != 0:
            raise ValueError("model.lmax must be 0 for product layers (correlation >= 2): their "
                             "node features are scalars; set lmax_edge for angular resolution")
        if self.correlation > 4:
            raise ValueError(f"model.correlation must be 1..4, got {self.correlation}")

    @property
    def two_body(self) -> bool:
        """NequIP-like two-body layers (the format-1 architecture)."""
        return self.correlation == 1


class Potential(torch.nn.Module):
    """Per-atom energies E_i from an E(3)-equivariant message-passing net.

    E_i = scale_s ε_i + shift_s (format 1, ``isolated_reference`` off), or with the isolated-atom
    reference E_i = E_iso,s + (E_ref,s − E_iso,s) g(ρ_i) + scale_s (ε_i − ε_i^∅), where ε_i^∅ is ε
    of the same species with no neighbours (so a lone atom has exactly E_iso), ρ_i the
    coordination Σ_j f_cut(r_ij) / avg_density and g(ρ) = 1 − (1 − ρ/ρ_s)² below ρ_s =
    ``baseline_saturation``, 1 above (a saturating baseline that never favours compression).
    ε_i is the mean over the readout heads of the last layer (plus, for product layers, a
    linear readout of every earlier layer's scalars). ``zbl`` adds the switched core repulsion.

    Args:
        config: architecture hyperparameters.
        species: chemical symbols the model knows, in embedding order.
    """

    def __init__(self, config: PotentialConfig | None = None, species: list[str] = ()) -> None:
        super().__init__()
        config = config or PotentialConfig()
        config.validate()
        if not species:
            raise ValueError("Potential needs a non-empty species list, e.g. species=['W']")
        unknown = [s for s in species if s not in atomic_numbers]
        if unknown:
            raise ValueError(f"not chemical symbols: {unknown}")
        self.config = config
        self.species: list[str] = list(species)
        self.species_index = {atomic_numbers[s]: k for k, s in enumerate(self.species)}
        n = len(self.species)
        attrs = species_attributes(self.species, config.species_descriptors)
        self.register_buffer("species_attrs", attrs, persistent=False)
        n_attr = attrs.shape[1]
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.lmax_edge)
        self.embedding = torch.nn.Linear(n_attr, config.channels, bias=False)
        self.basis = BesselBasis(config.cutoff, config.num_basis)
        self.layers = torch.nn.ModuleList(self._build_layers(config, n_attr))
        scalars = config.channels
        self.layer_readouts = torch.nn.ModuleList(
            torch.nn.Linear(scalars, 1, bias=False)
            for _ in range(config.num_layers - 1 if not config.two_body else 0))
        self.heads = torch.nn.ModuleList(
            _mlp(scalars, config.readout_hidden) for _ in range(config.heads))
        if config.isolated_reference:
            self.isolated_energy = torch.nn.Parameter(torch.zeros(n), requires_grad=False)  # eV
        self.zbl = ZBLRepulsion(self.species) if config.zbl else None
        self.chemical_pairs = None
        if config.chemical_pairs:
            table = species_attributes(self.species, descriptors=True)[:, 1:]
            self.chemical_pairs = ChemicalPairTerm(table, config.num_basis)
        self.element_pairs = (ElementPairTerm(n, config.num_basis) if config.element_pairs
                              else None)
        self.embedded_atom = (EmbeddedAtomTerm(n, config.num_basis) if config.embedded_atom
                              else None)
        if config.committee:
            # Offsets of the first head's last-layer weights, one row per member (eV⁻¹-free:
            # the layer's own units); set by matdesign.training.committee, never trained.
            self.committee_deltas = torch.nn.Parameter(
                torch.zeros(config.committee, config.readout_hidden), requires_grad=False)
            # Mean training feature (eV): spreads measure distance from it (intercept
            # marginalised), so every member's offset is (f_i - centre)·δ_k.
            self.committee_center = torch.nn.Parameter(
                torch.zeros(config.readout_hidden), requires_grad=False)
        # 0 switches the network's share of E_i off (the pair-first training stage, see
        # TrainConfig.pair_first_fraction); never saved, 1 whenever a model is built or loaded.
        self.register_buffer("network_gate", torch.ones(()), persistent=False)
        self.energy_shift = torch.nn.Parameter(torch.zeros(n), requires_grad=False)  # eV/atom
        self.energy_scale = torch.nn.Parameter(torch.ones(n))  # eV
        self.metadata: dict[str, Any] = {}

    @staticmethod
    def _build_layers(config: PotentialConfig, n_attr: int) -> list[torch.nn.Module]:
        hidden = hidden_irreps(config.channels, config.lmax)
        scalars = o3.Irreps(f"{config.channels}x0e")
        irreps_sh = o3.Irreps.spherical_harmonics(config.lmax_edge)
        layers: list[torch.nn.Module] = []
        irreps_in = scalars
        for k in range(config.num_layers):
            # The last layer only needs scalars: the energy is the ℓ = 0 output.
            out = hidden if k < config.num_layers - 1 else scalars
            if config.two_body:
                layers.append(Interaction(irreps_in, out, irreps_sh, n_attr, config.num_basis,
                                          config.radial_hidden, config.avg_num_neighbours))
            else:
                layers.append(ProductInteraction(
                    config.channels, config.lmax_edge, config.correlation, n_attr,
                    config.num_basis, config.radial_hidden, config.avg_num_neighbours))
            irreps_in = out
        return layers

    @property
    def dtype(self) -> torch.dtype:
        return self.energy_scale.dtype

    @property
    def device(self) -> torch.device:
        return self.energy_scale.device

    @property
    def num_heads(self) -> int:
        """Committee members: trained heads, or the attached last-layer committee."""
        return self.config.committee or self.config.heads

    def _trunk(self, attrs: torch.Tensor, edge_index: torch.Tensor, sh: torch.Tensor,
               radial: torch.Tensor, r: torch.Tensor, mirrored: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Last layer's node features (n, channels) and the earlier layers' readouts (n,).
        ``mirrored``: the edges are in mirrored order (:mod:`matdesign.graph`), which layers
        that know it (``uses_mirrored_edges``) use to evaluate their radial networks once per
        pair."""
        h = self.embedding(attrs)
        c = self.config.channels
        layer_sum = torch.zeros(attrs.shape[0], dtype=attrs.dtype, device=attrs.device)
        for k, layer in enumerate(self.layers):
            if mirrored and getattr(layer, "uses_mirrored_edges", False):
                h = layer(h, attrs, edge_index, sh, radial, r, mirrored=True)
            else:
                h = layer(h, attrs, edge_index, sh, radial, r)
            if k < len(self.layer_readouts):
                layer_sum = layer_sum + self.layer_readouts[k](h[:, :c]).squeeze(-1)
        return h, layer_sum

    def _network(self, attrs: torch.Tensor, edge_index: torch.Tensor, sh: torch.Tensor,
                 radial: torch.Tensor, r: torch.Tensor, mirrored: bool = False
                 ) -> torch.Tensor:
        """ε per committee member and atom, shape (heads, n), dimensionless; attrs (n, n_attr)."""
        h, layer_sum = self._trunk(attrs, edge_index, sh, radial, r, mirrored)
        if self.config.committee:
            first, act, last = self.heads[0]
            phi = act(first(h))  # (n, readout_hidden): the last layer's inputs
            eps = last(phi).squeeze(-1)[None] + (phi @ self.committee_deltas.T).T
            return eps + layer_sum
        return torch.stack([head(h).squeeze(-1) for head in self.heads]) + layer_sum

    def _inputs(self, edge_vectors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Edge lengths r (m,), harmonics (m, sh), envelope (m,), radial basis (m, num_basis)."""
        r = torch.linalg.norm(edge_vectors, dim=1)
        if self.config.lmax_edge == 1:  # e3nn's component-normalised ℓ ≤ 1: [1, √3 r̂], in 4 ops
            sh = torch.cat([torch.ones_like(edge_vectors[:, :1]),
                            edge_vectors * (SQRT3 / r)[:, None]], dim=1)
        else:
            sh = o3.spherical_harmonics(self.irreps_sh, edge_vectors, normalize=True,
                                        normalization="component")
        envelope, radial = radial_features(self.basis, r, self.config.envelope_p)
        return r, sh, envelope, radial

    def readout_features(self, graph: Graph, edge_vectors: torch.Tensor) -> torch.Tensor:
        """∂E_i/∂w of the first head's last linear layer w, shape (n, readout_hidden), eV.

        E_i is linear in w with these coefficients (the lone-atom term subtracted where the
        model has an isolated-atom reference): the features of a last-layer Laplace committee.
        """
        attrs = self.species_attrs.to(self.dtype)
        r, sh, envelope, radial = self._inputs(edge_vectors)
        first, act, _ = self.heads[0]
        h, _ = self._trunk(attrs[graph.species], graph.edge_index, sh, radial, r,
                           graph.mirrored)
        phi = act(first(h))
        s = graph.species
        if self.config.isolated_reference:
            lone, _ = self._trunk(attrs, graph.edge_index.new_zeros((2, 0)), sh[:0], radial[:0],
                                  r[:0])
            phi = phi - act(first(lone))[s]
        return phi * self.energy_scale[s, None]

    def head_energies(self, graph: Graph, edge_vectors: torch.Tensor) -> torch.Tensor:
        """Per-member atomic energies (eV), shape (heads, n), from edge vectors r_ij (m, 3), Å."""
        cfg = self.config
        attrs = self.species_attrs.to(self.dtype)
        r, sh, envelope, radial = self._inputs(edge_vectors)
        s = graph.species
        network_off = bool(self.network_gate == 0)  # pair-first training stage
        if network_off:
            eps = r.new_zeros(self.num_heads, s.shape[0])
        else:
            eps = self._network(attrs[s], graph.edge_index, sh, radial, r, graph.mirrored)
        if not cfg.isolated_reference:
            energy = self.network_gate * eps * self.energy_scale[s] + self.energy_shift[s]
        else:
            # ε of a lone atom of each species (no edges): subtracted so it has E_iso exactly.
            eps_lone = (eps.new_zeros(eps.shape[0], attrs.shape[0]) if network_off
                        else self._lone_eps(attrs, graph.edge_index, sh, radial, r))
            rho = r.new_zeros(s.shape[0]).index_add(0, graph.edge_index[0], envelope)
            x = rho / (cfg.avg_density * cfg.baseline_saturation)
            coordination = 1.0 - (1.0 - x.clamp(max=1.0)) ** 2
            base = (self.isolated_energy[s]
                    + (self.energy_shift[s] - self.isolated_energy[s]) * coordination)
            energy = base + self.network_gate * self.energy_scale[s] * (eps - eps_lone[:, s])
        if cfg.committee:
            energy = energy - (self.committee_deltas @ self.committee_center)[:, None]
        if self.zbl is not None:
            energy = energy + self.zbl(s, graph.edge_index, r)
        if self.chemical_pairs is not None:
            chem = radial
            if cfg.chemical_pairs_min_r:
                floor = smooth_floor(r, cfg.chemical_pairs_min_r)
                chem = radial_features(self.basis, floor, cfg.envelope_p)[1]
            energy = energy + self.chemical_pairs(s, graph.edge_index, chem)
        if self.element_pairs is not None:
            energy = energy + self.element_pairs(s, graph.edge_index, radial)
        if self.embedded_atom is not None:
            energy = energy + self.embedded_atom(s, graph.edge_index, radial)
        return energy

    def _lone_eps(self, attrs: torch.Tensor, edge_index: torch.Tensor, sh: torch.Tensor,
                  radial: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """ε of a lone atom of every species, shape (heads, species): the network with no edges.

        It depends on the weights only, so in eval mode it is computed once and kept (detached:
        no gradient with respect to the weights) until a parameter or buffer changes: an
        in-place update (optimiser step, EMA, ``load_state_dict``) bumps the tensor's version,
        a ``.to()`` replaces its storage, and either recomputes it. For a 16-atom cell this
        network pass was about a quarter of the forward time. Training mode never caches.
        """
        def compute() -> torch.Tensor:
            return self._network(attrs, edge_index[:, :0], sh[:0], radial[:0], r[:0])

        if self.training:
            return compute()
        tensors = _own_tensors(self, [])
        key = (attrs.dtype, attrs.device, tuple((t.data_ptr(), t._version) for t in tensors))
        cached = self.__dict__.get("_lone_cache")
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, compute().detach())
            self.__dict__["_lone_cache"] = cached  # not a buffer: never saved or moved
        return cached[1]

    def atomic_energies(self, graph: Graph, edge_vectors: torch.Tensor) -> torch.Tensor:
        """Per-atom energies E_i (eV), shape (n,): the mean over heads."""
        return self.head_energies(graph, edge_vectors).mean(0)

    def forward(self, graph: Graph, edge_vectors: torch.Tensor) -> torch.Tensor:
        return self.atomic_energies(graph, edge_vectors)


def _own_tensors(module: torch.nn.Module, out: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every parameter and buffer of ``module`` and its submodules (``parameters()`` and
    ``buffers()`` without their name bookkeeping: a quarter of the cost, which matters on every
    call of a small cell)."""
    out.extend(t for t in module._parameters.values() if t is not None)
    out.extend(t for t in module._buffers.values() if t is not None)
    for child in module._modules.values():
        if child is not None:
            _own_tensors(child, out)
    return out


def species_attributes(species: list[str], descriptors: bool) -> torch.Tensor:
    """Per-species input attributes (n_species, n_attr): one-hot, or physical descriptors.

    Descriptors are [1, period, group] (periodic-table row and column, standardised over the
    model's species), so chemically similar elements start from similar embeddings and a pair
    never seen in training sits between pairs that were (Nb, Ta: group 5; Mo, W: group 6).

    Raises:
        ValueError: two species with identical descriptors (use one-hot attributes).
    """
    n = len(species)
    if not descriptors:
        return torch.eye(n)
    from pymatgen.core import Element

    table = torch.tensor([[float(Element(s).row), float(Element(s).group)] for s in species])
    if len({tuple(row.tolist()) for row in table}) < n:
        raise ValueError(f"species {species} share period and group: set "
                         "model.species_descriptors false")
    sd = table.std(0, correction=0)
    table = (table - table.mean(0)) / torch.where(sd > 0, sd, torch.ones_like(sd))
    return torch.cat([torch.ones(n, 1), table], dim=1)


def _mlp(width: int, hidden: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.SiLU(),
                               torch.nn.Linear(hidden, 1))


def config_dict(config: PotentialConfig) -> dict[str, Any]:
    """Plain-Python dict of a config (safe for ``torch.load(weights_only=True)``)."""
    items = dataclasses.asdict(config).items()
    return {k: (float(v) if isinstance(v, float) else v) for k, v in items}


