"""Evaluate a checkpoint on a labelled file: metrics (overall, per config_type) and parity plots."""

from __future__ import annotations

from typing import Any

import numpy as np

from matdesign.training.data import Frame, load_frames
from matdesign.training.metrics import error_metrics


def evaluate_file(
    potential: str, data: str, *, dtype: str = "float64", plot: str | None = None
) -> dict[str, Any]:
    """Metrics of ``potential`` ('default' or a checkpoint path) on every frame of ``data``.

    Raises:
        ValueError: ``potential`` names EMT or a factory, not a matdesign checkpoint.
        FileNotFoundError: a missing checkpoint file.
    """
    import torch

    from matdesign.checkpoint import load_potential
    from matdesign.potential_spec import parse_potential

    path = parse_potential(potential).checkpoint_file()
    model = load_potential(path, dtype=getattr(torch, dtype))
    frames = load_frames(data, model.config.cutoff, model.species_index)
    metrics, preds = error_metrics(model, frames)
    metrics = {"potential": str(path), "data": str(data), **metrics}
    if plot:
        parity_plot(frames, preds, plot)
        metrics["plot"] = plot
    return metrics


def parity_plot(frames: list[Frame], preds: list[dict], path: str) -> None:
    """Energy per atom, force component and stress component parity panels in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.stress import full_3x3_to_voigt_6_stress
    from ase.units import GPa

    e_ref = [f.energy / len(f.symbols) for f in frames]
    e_pred = [p["energy"] / len(f.symbols) for f, p in zip(frames, preds)]
    f_ref = np.concatenate([f.forces.ravel() for f in frames if f.forces is not None] or [[]])
    f_pred = np.concatenate([p["forces"].ravel() for f, p in zip(frames, preds)
                             if f.forces is not None] or [[]])
    voigt = full_3x3_to_voigt_6_stress
    pairs = [(voigt(f.stress), voigt(p["stress"])) for f, p in zip(frames, preds)
             if f.stress is not None and p["stress"] is not None]
    s_ref = np.concatenate([a for a, _ in pairs] or [[]]) / GPa
    s_pred = np.concatenate([b for _, b in pairs] or [[]]) / GPa
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    panels = [(e_ref, e_pred, "energy (eV/atom)"), (f_ref, f_pred, "force (eV/Å)"),
              (s_ref, s_pred, "stress (GPa)")]
    for ax, (ref, pred, label) in zip(axes, panels):
        ax.scatter(ref, pred, s=3, alpha=0.5)
        if len(ref):
            lo, hi = float(np.min(ref)), float(np.max(ref))
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"DFT {label}")
        ax.set_ylabel(f"model {label}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
