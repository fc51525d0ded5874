"""Energy, forces and stress from one autograd call through a symmetric strain.

Positions and cell are deformed by (1 + ε) with ε symmetric and zero-valued; then
F = -∂E/∂r and σ = (1/V) ∂E/∂ε (ASE sign: tensile positive; eV/Å³).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from matdesign.graph import Graph, edge_vectors

__all__ = ["ModelOutput", "edge_vectors", "energy_forces_stress", "head_forces"]


@dataclass(frozen=True)
class ModelOutput:
    """Model predictions for a batch of ``b`` structures with ``n`` atoms in total."""

    energy: torch.Tensor  # (b,) eV
    atomic_energies: torch.Tensor  # (n,) eV
    forces: torch.Tensor  # (n, 3) eV/Å
    # (b, 3, 3) eV/Å³, ASE sign; None if no structure is periodic in 3D. Rows of structures
    # that are not periodic in all three directions are zero: check ``graph.pbc.all(1)``.
    stress: torch.Tensor | None
    # (heads, b) eV: energy of every readout head of a committee model; None for other models.
    head_energy: torch.Tensor | None = None


def energy_forces_stress(
    model: torch.nn.Module, graph: Graph, *, stress: bool = True, training: bool = False
) -> ModelOutput:
    """Evaluate ``model`` on ``graph`` (already in the model's dtype and device).

    Args:
        model: maps (graph, edge vectors) to per-atom energies, shape (n,).
        graph: the batch.
        stress: compute the stress of the structures periodic in all three directions.
        training: keep the graph of the derivatives (``create_graph``) for force/stress losses.
    """
    periodic = graph.pbc.all(dim=1)  # (b,) stress is defined only for 3D-periodic cells
    want_stress = stress and bool(periodic.any())
    b = graph.num_structures
    positions = graph.positions.detach().requires_grad_(True)
    strain = torch.zeros(b, 3, 3, dtype=positions.dtype, device=positions.device,
                         requires_grad=want_stress)
    cell = graph.cell
    if want_stress:
        sym = 0.5 * (strain + strain.transpose(1, 2))
        # matrix products, not einsum: each einsum here was a dozen operations per call
        if b == 1:
            positions_d = positions + positions @ sym[0]
        else:
            positions_d = positions + torch.bmm(positions[:, None, :], sym[graph.batch])[:, 0]
        cell = cell + torch.bmm(cell, sym)
    else:
        positions_d = positions
    vectors = edge_vectors(graph, positions_d, cell)
    head_energy = None
    if getattr(model, "num_heads", 1) > 1:
        heads = model.head_energies(graph, vectors)  # (heads, n)
        head_energy = heads.new_zeros(heads.shape[0], b).index_add(1, graph.batch, heads)
        atomic = heads.mean(0)
    else:
        atomic = model(graph, vectors)
    energy = torch.zeros(b, dtype=atomic.dtype, device=atomic.device)
    energy = energy.index_add(0, graph.batch, atomic)
    inputs = [positions, strain] if want_stress else [positions]
    grads = torch.autograd.grad(energy.sum(), inputs, create_graph=training)
    sigma = None
    if want_stress:
        volume = torch.abs(torch.linalg.det(graph.cell))
        if b == 1:  # periodic, or want_stress would be False
            sigma = grads[1] / volume
        else:
            volume = torch.where(periodic, volume, 1.0)
            sigma = torch.where(periodic[:, None, None], grads[1] / volume[:, None, None], 0.0)
    return ModelOutput(energy=energy, atomic_energies=atomic, forces=-grads[0], stress=sigma,
                       head_energy=head_energy)


def head_forces(model: torch.nn.Module, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies (heads, b) in eV and forces (heads, n, 3) in eV/Å of every committee head.

    One backward pass per head: meant for the few structures where the spread is wanted
    (a relaxed candidate), not for every optimiser step.
    """
    positions = graph.positions.detach().requires_grad_(True)
    heads = model.head_energies(graph, edge_vectors(graph, positions, graph.cell))
    energy = heads.new_zeros(heads.shape[0], graph.num_structures).index_add(1, graph.batch, heads)
    forces = [
        -torch.autograd.grad(e.sum(), positions, retain_graph=k < len(energy) - 1)[0]
        for k, e in enumerate(energy)
    ]
    return energy.detach(), torch.stack(forces).detach()
