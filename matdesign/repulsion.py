"""Physical limits outside the data: ZBL core repulsion and isolated-atom reference energies.

ZBL (Ziegler, Biersack, Littmark 1985) universal screened nuclear repulsion between atoms of
atomic numbers Z_i, Z_j at distance r (Å):

    φ(r) = k_e Z_i Z_j / r · Σ_k c_k exp(-d_k r / a),   a = 0.46850 / (Z_i^0.23 + Z_j^0.23) Å,

k_e = e²/(4πε₀) = 14.399645 eV·Å. It is switched off smoothly between ``inner`` and ``outer``
times the sum of covalent radii (ASE's table), which lies below the shortest distances of the
training sets (e.g. 0.6 × 3.24 Å = 1.94 Å for W-W; the NbMoTaW data start at 2.02 Å), so it
shapes only compressed pairs the data never sample.

Cohesive energies (eV/atom, Kittel, *Introduction to Solid State Physics*, 8th ed., Table 3.1)
place the isolated atom above the crystal: E_isolated(s) = E_crystal(s) + E_coh(s).
"""

from __future__ import annotations

import math

import torch
from ase.data import atomic_numbers, covalent_radii

COULOMB_EV_A = 14.399645  # e²/(4πε₀), eV·Å
_ZBL_C = (0.18175, 0.50986, 0.28022, 0.02817)
_ZBL_D = (3.19980, 0.94229, 0.40290, 0.20162)

#: Experimental cohesive energies, eV/atom (Kittel, Table 3.1).
COHESIVE_ENERGY_EV = {
    "Li": 1.63, "Be": 3.32, "B": 5.81, "C": 7.37, "Na": 1.113, "Mg": 1.51, "Al": 3.39,
    "Si": 4.63, "K": 0.934, "Ca": 1.84, "Sc": 3.90, "Ti": 4.85, "V": 5.31, "Cr": 4.10,
    "Mn": 2.92, "Fe": 4.28, "Co": 4.39, "Ni": 4.44, "Cu": 3.49, "Zn": 1.35, "Ga": 2.81,
    "Ge": 3.85, "Rb": 0.852, "Sr": 1.72, "Y": 4.37, "Zr": 6.25, "Nb": 7.57, "Mo": 6.82,
    "Tc": 6.85, "Ru": 6.74, "Rh": 5.75, "Pd": 3.89, "Ag": 2.95, "Cd": 1.16, "In": 2.52,
    "Sn": 3.14, "Cs": 0.804, "Ba": 1.90, "Hf": 6.44, "Ta": 8.10, "W": 8.90, "Re": 8.03,
    "Os": 8.17, "Ir": 6.94, "Pt": 5.84, "Au": 3.81, "Pb": 2.03,
}


def zbl_pair_energy(r: torch.Tensor, z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
    """Unswitched ZBL pair energy φ(r) in eV; r (m,) Å, z_i, z_j (m,) atomic numbers."""
    zi = z_i.to(r.dtype)
    zj = z_j.to(r.dtype)
    a = 0.46850 / (zi**0.23 + zj**0.23)
    x = r / a
    screen = sum(c * torch.exp(-d * x) for c, d in zip(_ZBL_C, _ZBL_D, strict=True))
    return COULOMB_EV_A * zi * zj / r * screen


def smoothstep_off(r: torch.Tensor, r_in: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    """1 below ``r_in``, 0 above ``r_out``, C² quintic in between."""
    t = ((r - r_in) / (r_out - r_in)).clamp(0.0, 1.0)
    return 1.0 - t**3 * (10.0 - 15.0 * t + 6.0 * t**2)


class ZBLRepulsion(torch.nn.Module):
    """Per-atom share of the switched ZBL pair repulsion: E_i = ½ Σ_j φ(r_ij) s(r_ij).

    Args:
        species: chemical symbols in the model's embedding order.
        inner, outer: switch radii as fractions of r_cov(i) + r_cov(j).
    """

    def __init__(self, species: list[str], inner: float = 0.45, outer: float = 0.6) -> None:
        super().__init__()
        z = torch.tensor([atomic_numbers[s] for s in species], dtype=torch.int64)
        rcov = torch.tensor([covalent_radii[atomic_numbers[s]] for s in species])
        self.register_buffer("z", z, persistent=False)
        self.register_buffer("rcov", rcov.float(), persistent=False)
        self.inner = float(inner)
        self.outer = float(outer)
        # the largest switch-off distance of any pair of these species, Å
        self.max_switch = 2 * self.outer * float(self.rcov.max())

    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, r: torch.Tensor
                ) -> torch.Tensor:
        """species (n,) indices, edge_index (2, m), r (m,) Å -> (n,) eV."""
        energy = torch.zeros(species.shape[0], dtype=r.dtype, device=r.device)
        # the common case in a crystal: no edge inside any pair's switch (two operations)
        if r.numel() == 0 or float(r.detach().min()) >= self.max_switch:
            return energy
        receiver, sender = edge_index
        s_i, s_j = species[receiver], species[sender]
        pair_radius = (self.rcov[s_i] + self.rcov[s_j]).to(r.dtype)
        r_out = self.outer * pair_radius
        close = r < r_out
        if not bool(close.any()):
            return energy
        rc = r[close]
        phi = zbl_pair_energy(rc, self.z[s_i[close]], self.z[s_j[close]])
        switched = phi * smoothstep_off(rc, self.inner * pair_radius[close], r_out[close])
        return energy.index_add(0, receiver[close], 0.5 * switched)


def cohesive_energies(species: list[str], overrides: dict[str, float] | None = None
                      ) -> list[float]:
    """E_coh per species (eV/atom): ``overrides`` first, then the Kittel table.

    Raises:
        ValueError: an element with no tabulated value, naming the config key that sets it.
    """
    overrides = overrides or {}
    missing = [s for s in species if s not in overrides and s not in COHESIVE_ENERGY_EV]
    if missing:
        raise ValueError(f"no cohesive energy tabulated for {missing}: set "
                         f"train.cohesive_energies_ev (e.g. {{{missing[0]}: 4.0}})")
    return [float(overrides.get(s, COHESIVE_ENERGY_EV.get(s, math.nan))) for s in species]
