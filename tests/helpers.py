"""Test helpers: tiny randomly initialised potentials and small test structures.

The models here are untrained: their weights are random, with ``energy_scale`` and
``energy_shift`` set so that energies are O(1) eV/atom and forces O(0.1-1) eV/Å. Every
physics test compares such a model against an independent reference (finite differences,
symmetry, a supercell, ASE), never against this code's own earlier output.

Import them as ``from tests.helpers import make_calc``; ``conftest.py`` wraps some as fixtures.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

SPECIES = ("Cu", "Au")


#: The two architectures every physics test runs on: ACE-style products (the default, with a
#: 3-head committee, ZBL and the isolated-atom baseline) and the format-1 two-body layers.
ARCHS = ("product", "two_body")


def tiny_config(arch: str, lmax: int = 1, num_layers: int = 2, cutoff: float = 3.8):
    """A channels-8 config of ``arch`` ("product" or "two_body")."""
    from matdesign.model import PotentialConfig

    common = dict(cutoff=cutoff, channels=8, lmax=lmax, num_layers=num_layers, num_basis=6,
                  radial_hidden=8, readout_hidden=8, avg_num_neighbours=12.0)
    if arch == "two_body":
        return PotentialConfig(**common, lmax_edge=lmax, correlation=1, heads=1, zbl=False,
                               isolated_reference=False)
    if arch != "product":
        raise ValueError(arch)
    common["lmax"] = 0  # product layers carry scalars; ℓ lives in the edge harmonics
    return PotentialConfig(**common, lmax_edge=max(lmax, 2), correlation=3, heads=3,
                           avg_density=6.0)


@functools.cache
def _base_model(lmax: int, num_layers: int, cutoff: float, seed: int, scale: float, arch: str):
    """Build (once per argument set) a tiny float32 model; callers get deep copies."""
    from matdesign.model import Potential

    torch.manual_seed(seed)
    model = Potential(tiny_config(arch, lmax, num_layers, cutoff), species=list(SPECIES))
    with torch.no_grad():
        model.energy_shift.copy_(torch.tensor([-3.5, -3.0]))  # eV/atom, like a cohesive energy
        model.energy_scale.copy_(torch.tensor([scale, 1.3 * scale]))  # eV
        if model.config.isolated_reference:
            model.isolated_energy.copy_(torch.tensor([-0.5, -0.2]))  # eV, above the crystal
    return model.eval()


def make_model(
    *,
    dtype: torch.dtype = torch.float64,
    lmax: int = 1,
    num_layers: int = 2,
    cutoff: float = 3.8,
    seed: int = 0,
    scale: float = 25.0,
    arch: str = "product",
):
    """A fresh tiny random ``Potential`` (channels 8) for species Cu, Au, in ``dtype``.

    Args:
        dtype: the model's float type.
        lmax: highest ℓ of hidden features and edge spherical harmonics.
        num_layers: message-passing layers (receptive field ≈ num_layers * cutoff).
        cutoff: neighbour cutoff, Å.
        seed: torch seed for the random weights (same seed -> same weights in every dtype).
        scale: per-atom energy scale, eV (larger -> larger forces).
        arch: "product" (ACE-style, 3 heads, ZBL) or "two_body" (format 1).
    """
    base = _base_model(lmax, num_layers, float(cutoff), seed, float(scale), arch)
    return copy.deepcopy(base).to(dtype).eval()


def make_calc(**kwargs):
    """A ``MatdesignCalculator`` around ``make_model(**kwargs)``."""
    from matdesign.calculator import MatdesignCalculator

    return MatdesignCalculator(make_model(**kwargs))


def sheared_cell(seed: int = 1, rattle: float = 0.08) -> Atoms:
    """A rattled, sheared 4-atom CuAu fcc cell (triclinic, fully periodic, 3D)."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.symbols[[1, 2]] = "Au"
    cell = atoms.cell.array @ np.array([[1.0, 0.06, -0.04], [0.03, 0.97, 0.05], [0.0, -0.02, 1.04]])
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


def molecule(seed: int = 2) -> Atoms:
    """A non-periodic 5-atom CuAu cluster with distances 2.2-3.5 Å."""
    rng = np.random.default_rng(seed)
    base = np.array([[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5], [2.0, 2.0, 1.5]], float)
    pos = base + rng.normal(scale=0.1, size=base.shape)
    return Atoms("Cu2AuCuAu", positions=pos, pbc=False)
