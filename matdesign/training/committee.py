"""A last-layer Laplace committee, attached to a trained model (no retraining).

The energy is linear in the weights w of the first head's last layer: E/N = f·w + const, with
f = Σ_i ∂E_i/∂w / N (:meth:`Potential.readout_features`). Over the training frames, the
Gaussian posterior of w with a free intercept (Laplace approximation; "last-layer prediction
rigidity", Bigi et al., 2024) has covariance Σ = (F̃ᵀF̃ + λ I)⁻¹ with F̃ = F − mean(F), up to a
scale α² fitted on held-out frames (``benchmarks/calibrate.py``), so the predictive spread of
E/N is α sqrt((f − f̄)ᵀ Σ (f − f̄)). λ = 1e-6 of the mean diagonal: on the leave-NbW-out fit,
λ from 1e-8 to 1e-4 ranked errors alike and larger λ worse (benchmarks/README.md).

Instead of sampling, the committee is exact and deterministic: with Σ = L Lᵀ (Cholesky) and
H = readout width, the 2H members w ± sqrt(H) L e_j have mean w (so the committee's mean is
the trained model, bit for bit up to rounding) and population variance of (f − f̄)·w equal to
(f − f̄)ᵀ Σ (f − f̄). Members ride on the calculator's committee machinery: ``energy_std`` on
every call, per-atom ``forces_std`` from ``MatdesignCalculator.uncertainty``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import torch

from matdesign.forces import edge_vectors
from matdesign.model import Potential
from matdesign.training.data import Frame, batch_to, iterate_batches


def structure_features(model: Potential, frames: Sequence[Frame], batch_size: int = 32
                       ) -> torch.Tensor:
    """F (n_frames, readout_hidden): per-atom-averaged readout features, float64."""
    rows = []
    with torch.no_grad():
        for batch in iterate_batches(frames, batch_size, shuffle=False, rng=None):
            g = batch_to(batch, model.device, model.dtype).graph
            per_atom = model.readout_features(g, edge_vectors(g, g.positions, g.cell))
            summed = per_atom.new_zeros(g.num_structures, per_atom.shape[1])
            summed.index_add_(0, g.batch, per_atom)
            rows.append((summed / g.n_atoms[:, None].to(summed.dtype)).double().cpu())
    return torch.cat(rows)


def attach_committee(model: Potential, frames: Sequence[Frame],
                     regularisation: float = 1e-6) -> Potential:
    """A copy of ``model`` carrying the 2H-member last-layer committee fitted on ``frames``.

    Args:
        model: a trained single-head potential.
        frames: its training frames.
        regularisation: λ as a fraction of the mean diagonal of FᵀF.

    Raises:
        ValueError: a model with several trained heads, or one that already has a committee.
    """
    if model.config.heads != 1 or model.config.committee:
        raise ValueError("a last-layer committee attaches to a single-head model without one")
    work = copy.deepcopy(model).double().eval()
    feats = structure_features(work, frames)
    center = feats.mean(0)
    feats = feats - center  # the intercept is marginalised: spread = distance from the mean
    gram = feats.T @ feats
    hidden = gram.shape[0]
    lam = regularisation * float(torch.diagonal(gram).mean())
    cov = torch.linalg.inv(gram + lam * torch.eye(hidden, dtype=gram.dtype))
    chol = torch.linalg.cholesky(0.5 * (cov + cov.T))
    directions = (hidden**0.5) * chol.T  # rows: sqrt(H) L e_j
    deltas = torch.stack([directions, -directions], dim=1).reshape(2 * hidden, hidden)
    config = dataclasses.replace(model.config, committee=2 * hidden)
    out = Potential(config, species=list(model.species))
    state = {k: v for k, v in model.state_dict().items() if "._tensor_constant" not in k}
    out.load_state_dict({**state, "committee_deltas": deltas.to(torch.float32),
                         "committee_center": center.to(torch.float32)}, strict=True)
    out.metadata = {**dict(model.metadata), "committee": {
        "kind": "last-layer Laplace", "members": 2 * hidden, "regularisation": regularisation,
        "n_frames": len(frames)}}
    return out.to(model.dtype).eval()


def without_committee(model: Potential) -> Potential:
    """A copy of ``model`` without its attached committee (the trained single head only), in
    the model's dtype; the model itself when it has none.

    A committee describes the weights it was fitted around: fine-tuning changes them, so the
    trainer strips it and attaches a fresh one at the end.
    """
    if not model.config.committee:
        return model
    plain = Potential(dataclasses.replace(model.config, committee=0), species=list(model.species))
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith("committee_") and "._tensor_constant" not in k}
    plain.load_state_dict(state, strict=True)
    plain.metadata = {k: v for k, v in model.metadata.items() if k != "committee"}
    return plain.to(model.dtype)
