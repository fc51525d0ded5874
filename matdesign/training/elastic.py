"""Elastic constants as a fitting target: the small-strain curvature of cubic elements.

The DFT cells of a data set (``*_Elastic`` groups, strains of about 1 %) pin the elastic
constants at the model's own minimum only loosely: retrains of one recipe land 4-9 % apart.
Classical fits (EAM, SNAP) put the elastic constants into the objective; this term does the
same for the network. For every target element, a one-atom cubic cell at the target lattice
constant ``a`` is strained by ±ε (uniaxial ε_xx, and a shear with engineering strain
γ_yz = ε), and the central difference (σ(+ε) − σ(−ε)) / 2ε of the model's stress is compared
with the cubic tensor's column:

* uniaxial: dσ/dε = diag(C11, C12, C12);
* shear:    dσ_yz/dγ = dσ_zy/dγ = C44, every other component 0.

The term is the mean square of the difference over both strains, nine components and every
target, in (eV/Å³)², the stress term's units. Central differences cancel the third-order
constants; for one-atom bcc and fcc cells every atom is an inversion centre, so there is no
internal relaxation and these clamped-ion constants are the relaxed-ion ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase.units import GPa

from matdesign.config_utils import typed_float
from matdesign.forces import energy_forces_stress
from matdesign.graph import Graph, atoms_to_graph, batch_graphs

LATTICES = ("bcc", "fcc")  # one-atom primitive cells without internal relaxation
_KEYS = ("lattice", "a", "C11", "C12", "C44")


@dataclass(frozen=True)
class ElasticTarget:
    """Cubic elastic constants of one element at a lattice constant (conventional cell)."""

    element: str
    lattice: str  # "bcc" or "fcc"
    a_angstrom: float
    c11_gpa: float
    c12_gpa: float
    c44_gpa: float


def parse_elastic_targets(data: Any, section: str = "train.elastic_targets",
                          ) -> tuple[ElasticTarget, ...]:
    """``{El: {lattice, a, C11, C12, C44}}`` (Å, GPa) as targets; errors name the key.

    Raises:
        ValueError: not a mapping, a missing or unknown key, a lattice other than bcc/fcc, a
            non-positive lattice constant, or constants that are not Born-stable
            (C11 > |C12|, C11 + 2 C12 > 0, C44 > 0).
    """
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise ValueError(f"{section}: expected a mapping of element to constants, got {data!r}")
    targets = []
    for element, entry in data.items():
        where = f"{section}.{element}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with keys {list(_KEYS)}")
        missing = [k for k in _KEYS if k not in entry]
        unknown = sorted(set(entry) - set(_KEYS))
        if missing or unknown:
            raise ValueError(f"{where}: missing {missing} / unknown {unknown}; keys are "
                             f"{list(_KEYS)}")
        if entry["lattice"] not in LATTICES:
            raise ValueError(f"{where}.lattice: {entry['lattice']!r} is not one of {LATTICES}")
        a = typed_float(entry["a"], f"{where}.a", minimum=0.5)
        c11, c12, c44 = (typed_float(entry[k], f"{where}.{k}") for k in ("C11", "C12", "C44"))
        if not (c11 > abs(c12) and c11 + 2 * c12 > 0 and c44 > 0):
            raise ValueError(f"{where}: C11={c11}, C12={c12}, C44={c44} GPa are not Born-stable")
        targets.append(ElasticTarget(str(element), entry["lattice"], a, c11, c12, c44))
    return tuple(targets)


def targets_to_config(targets: Sequence[ElasticTarget]) -> dict[str, dict[str, Any]]:
    """The inverse of :func:`parse_elastic_targets` (for checkpoint metadata and YAML)."""
    return {t.element: {"lattice": t.lattice, "a": t.a_angstrom, "C11": t.c11_gpa,
                        "C12": t.c12_gpa, "C44": t.c44_gpa} for t in targets}


def _strains(strain: float) -> list[np.ndarray]:
    """+uniaxial, −uniaxial, +shear, −shear (symmetric strain tensors)."""
    uni = np.zeros((3, 3))
    uni[0, 0] = strain
    shear = np.zeros((3, 3))
    shear[1, 2] = shear[2, 1] = strain / 2  # engineering γ_yz = strain
    return [uni, -uni, shear, -shear]


def _target_derivatives(t: ElasticTarget) -> np.ndarray:
    """(2, 3, 3) dσ/dε of the uniaxial and the shear mode, eV/Å³."""
    d = np.zeros((2, 3, 3))
    d[0] = np.diag([t.c11_gpa, t.c12_gpa, t.c12_gpa])
    d[1, 1, 2] = d[1, 2, 1] = t.c44_gpa
    return d * GPa


@dataclass(frozen=True)
class ElasticTerm:
    """The strained cells of every target, batched once, with their target derivatives."""

    targets: tuple[ElasticTarget, ...]
    graph: Graph  # 4 cells per target: +uni, −uni, +shear, −shear (float64, CPU)
    target: torch.Tensor  # (targets, 2, 3, 3) eV/Å³
    strain: float

    @classmethod
    def build(cls, targets: Sequence[ElasticTarget], species: Sequence[str], cutoff: float,
              strain: float) -> ElasticTerm:
        """Raises ``ValueError`` for a target element the model does not know."""
        from ase.build import bulk
        from ase.data import atomic_numbers

        if not 0 < strain <= 0.05:
            raise ValueError(f"train.elastic_strain must be in (0, 0.05], got {strain}")
        index = {atomic_numbers[s]: k for k, s in enumerate(species)}
        graphs = []
        for t in targets:
            if t.element not in species:
                raise ValueError(f"train.elastic_targets.{t.element}: not one of the model's "
                                 f"species {list(species)}")
            base = bulk(t.element, t.lattice, a=t.a_angstrom)
            for eps in _strains(strain):
                atoms = base.copy()
                atoms.set_cell(base.cell.array @ (np.eye(3) + eps), scale_atoms=True)
                graphs.append(atoms_to_graph(atoms, cutoff, index))
        target = torch.tensor(np.stack([_target_derivatives(t) for t in targets]))
        return cls(tuple(targets), batch_graphs(graphs), target, float(strain))

    def derivatives(self, model: torch.nn.Module, *, training: bool) -> torch.Tensor:
        """The model's (targets, 2, 3, 3) central-difference dσ/dε, eV/Å³."""
        p = next(model.parameters())
        out = energy_forces_stress(model, self.graph.to(p.device, p.dtype), stress=True,
                                   training=training)
        s = out.stress.reshape(len(self.targets), 2, 2, 3, 3)  # (target, mode, sign, 3, 3)
        return (s[:, :, 0] - s[:, :, 1]) / (2 * self.strain)

    def loss(self, model: torch.nn.Module, call: int = 0) -> torch.Tensor:
        """Mean square of (model − target) dσ/dε over modes, components and targets, eV²/Å⁶
        (``call``: unused; the cells are the same on every call)."""
        d = self.derivatives(model, training=True)
        return (d - self.target.to(d.device, d.dtype)).pow(2).mean()

    def errors_gpa(self, model: torch.nn.Module) -> dict[str, float]:
        """Model − target C11, C12, C44 per element, GPa (for the training log)."""
        d = self.derivatives(model, training=False).detach().double().cpu()
        diff = (d - self.target) / GPa
        out = {}
        for k, t in enumerate(self.targets):
            out[f"{t.element}_C11"] = round(float(diff[k, 0, 0, 0]), 2)
            out[f"{t.element}_C12"] = round(float(diff[k, 0, 1, 1]), 2)
            out[f"{t.element}_C44"] = round(float(diff[k, 1, 1, 2]), 2)
        return out

    def report(self, model: torch.nn.Module) -> tuple[dict[str, Any], str]:
        """The training log's entry (``elastic_error_gpa``) and progress-line suffix."""
        errors = self.errors_gpa(model)
        return {"elastic_error_gpa": errors}, f"C rms {rms_gpa(errors):.1f} GPa"


def rms_gpa(errors: dict[str, float]) -> float:
    """Root mean square of the entries of :meth:`ElasticTerm.errors_gpa`, GPa."""
    return math.sqrt(sum(v * v for v in errors.values()) / max(len(errors), 1))
