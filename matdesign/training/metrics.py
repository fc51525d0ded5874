"""Error metrics of a potential on labelled frames, overall and per config_type."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase.stress import full_3x3_to_voigt_6_stress
from ase.units import GPa

from matdesign.forces import energy_forces_stress
from matdesign.training.data import Frame, batch_to, iterate_batches


def predict(model: torch.nn.Module, frames: Sequence[Frame], batch_size: int = 16) -> list[dict]:
    """Per-frame predictions (energy eV, forces eV/Å, stress eV/Å³ 3×3 or None)."""
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    preds: list[dict] = []
    for batch in iterate_batches(frames, batch_size, shuffle=False, rng=None):
        batch = batch_to(batch, device, dtype)
        out = energy_forces_stress(model, batch.graph, stress=True, training=False)
        counts = batch.graph.n_atoms.tolist()
        forces = torch.split(out.forces.detach().double().cpu(), counts)
        heads = out.head_energy
        for b in range(len(counts)):
            preds.append({
                "energy": float(out.energy[b].detach()),
                # committee spread (eV, whole structure), None for a single-head model
                "energy_std": None if heads is None
                else float(heads[:, b].detach().double().std(correction=0)),
                "forces": forces[b].numpy(),
                "stress": None if out.stress is None or not bool(batch.graph.pbc[b].all())
                else out.stress[b].detach().double().cpu().numpy(),
            })
    return preds


def _summary(e: list[float], f: list[np.ndarray], s: list[np.ndarray], n: int) -> dict[str, Any]:
    e_arr = np.asarray(e)
    f_arr = np.concatenate(f) if f else np.zeros(0)
    s_arr = np.concatenate(s) if s else np.zeros(0)
    rms = lambda x: float(np.sqrt(np.mean(x**2))) if x.size else None  # noqa: E731
    mae = lambda x: float(np.mean(np.abs(x))) if x.size else None  # noqa: E731
    return {
        "n_frames": n,
        "energy_mae_mev_per_atom": 1000 * mae(e_arr) if e_arr.size else None,
        "energy_rmse_mev_per_atom": 1000 * rms(e_arr) if e_arr.size else None,
        "force_mae_ev_per_a": mae(f_arr),
        "force_rmse_ev_per_a": rms(f_arr),
        "stress_mae_gpa": None if not s_arr.size else mae(s_arr) / GPa,
        "stress_rmse_gpa": None if not s_arr.size else rms(s_arr) / GPa,
    }


def error_metrics(
    model: torch.nn.Module, frames: Sequence[Frame], batch_size: int = 16
) -> tuple[dict[str, Any], list[dict]]:
    """MAE/RMSE of energy per atom (meV/atom), force components (eV/Å) and stress (GPa, over
    the six Voigt components).

    Returns ``(metrics, predictions)``; ``metrics['by_config_type']`` holds the same keys per group.
    """
    preds = predict(model, frames, batch_size)
    groups: dict[str, tuple[list, list, list, list]] = defaultdict(lambda: ([], [], [], [0]))
    for frame, p in zip(frames, preds):
        n = len(frame.symbols)
        for key in ("__all__", frame.config_type):
            e, f, s, count = groups[key]
            e.append((p["energy"] - frame.energy) / n)
            if frame.forces is not None:
                f.append((p["forces"] - frame.forces).ravel())
            if frame.stress is not None and p["stress"] is not None:
                # six independent Voigt components: a 3x3 ravel would count shear twice
                s.append(full_3x3_to_voigt_6_stress(p["stress"] - frame.stress))
            count[0] += 1
    overall = groups.pop("__all__")
    metrics = _summary(*overall[:3], overall[3][0])
    metrics["by_config_type"] = {k: _summary(*v[:3], v[3][0]) for k, v in sorted(groups.items())}
    return metrics, preds
