"""What ``matdesign train`` does: load data, split, train a model, an ensemble or a Pareto sweep."""

from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path
from typing import Any

from ase.data import atomic_numbers

from matdesign.model import PotentialConfig
from matdesign.training.config import TrainConfig
from matdesign.training.data import load_frames, species_in, split
from matdesign.training.trainer import train_potential


def run_training(
    *, data: str, valid: str | None, model_cfg: PotentialConfig, train_cfg: TrainConfig,
    out: str, species: list[str] | None = None, resume: str | None = None,
    init: str | None = None, ensemble: int = 1,
    pareto: list[float] | None = None, log: str | None = None, progress: bool = True,
    config_path: str | None = None,
) -> dict[str, Any]:
    """Train and return a JSON-able summary. See ``matdesign train --help``."""
    if (resume or init) and (pareto or ensemble > 1):
        raise ValueError("--resume/--init continue one model; they cannot be combined with "
                         "--ensemble or --pareto")
    if resume and init:
        raise ValueError("give --resume (continue a run) or --init (fine-tune a model), not both")
    if init:  # a fine-tuned model keeps the architecture and species it was saved with
        from matdesign.training.trainer import load_init

        base = load_init(init)  # read once: its config and species, then its weights
        model_cfg, species = base.config, species or list(base.species)
    species = species or species_in(data)
    index = {atomic_numbers[s]: k for k, s in enumerate(species)}
    frames = load_frames(data, model_cfg.cutoff, index)
    if valid:
        train_frames, valid_frames = frames, load_frames(valid, model_cfg.cutoff, index)
    else:
        tr, va = split(len(frames), train_cfg.valid_fraction, train_cfg.seed)
        train_frames, valid_frames = [frames[i] for i in tr], [frames[i] for i in va]
    split_note = str(valid) if valid else f"random {train_cfg.valid_fraction}"
    meta = {"data": str(data), "valid": split_note, **({"init_from": init} if init else {}),
            "config_file": config_path, "host": platform.node(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    common = dict(species=species, model_config=model_cfg, progress=progress)
    if pareto:
        return _pareto(train_frames, valid_frames, train_cfg, out, pareto, meta, common)
    if ensemble > 1:
        return _ensemble(train_frames, valid_frames, train_cfg, out, ensemble, meta, common)
    summary = train_potential(train_frames, valid_frames, cfg=train_cfg, out=out, resume=resume,
                              init=base if init else None,
                              log_path=log or f"{out}.log.jsonl", metadata=meta, **common)
    return summary.to_dict()


def _ensemble(train, valid, cfg, out, n, meta, common) -> dict[str, Any]:  # noqa: ANN001
    from matdesign.checkpoint import PotentialEnsemble, load_potential, save_potential
    from matdesign.training.metrics import error_metrics

    members, summaries = [], []
    for k in range(n):
        member_out = f"{out}.member{k}.pt"
        s = train_potential(train, valid, cfg=dataclasses.replace(cfg, seed=cfg.seed + k),
                            out=member_out, log_path=f"{member_out}.log.jsonl",
                            metadata={**meta, "member": k}, **common)
        summaries.append(s.to_dict())
        members.append(load_potential(member_out, dtype=cfg.dtype))
    ens = PotentialEnsemble(members)
    metrics, _ = error_metrics(ens, valid)
    save_potential(ens, out, metadata={**meta, "ensemble": n, "valid": metrics,
                                       "members": summaries})
    return {"checkpoint": str(out), "ensemble": n, "valid": metrics, "members": summaries}


def _pareto(train, valid, cfg, out, ratios, meta, common) -> dict[str, Any]:  # noqa: ANN001
    """Train one model per energy weight (forces weight 1) and record the validation front."""
    import json

    rows = []
    stem = Path(out)
    for w in ratios:
        member_out = stem.with_name(f"{stem.stem}.wE{w:g}{stem.suffix or '.pt'}")
        s = train_potential(train, valid, cfg=dataclasses.replace(cfg, energy_weight=w,
                                                                  forces_weight=1.0),
                            out=member_out, log_path=f"{member_out}.log.jsonl",
                            metadata={**meta, "pareto_energy_weight": w}, **common)
        rows.append({"energy_weight": w, "forces_weight": 1.0, "checkpoint": str(member_out),
                     "energy_mae_mev_per_atom": s.valid["energy_mae_mev_per_atom"],
                     "force_mae_ev_per_a": s.valid["force_mae_ev_per_a"]})
    table = stem.with_name(f"{stem.stem}.pareto.json")
    table.write_text(json.dumps(rows, indent=2) + "\n")
    plot = stem.with_name(f"{stem.stem}.pareto.png")
    _plot_front(rows, plot)
    return {"pareto": rows, "table": str(table), "plot": str(plot)}


def _plot_front(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    e = [r["energy_mae_mev_per_atom"] for r in rows]
    f = [r["force_mae_ev_per_a"] for r in rows]
    ax.plot(e, f, "o-")
    for r, x, y in zip(rows, e, f):
        ax.annotate(f"w_E={r['energy_weight']:g}", (x, y), fontsize=8)
    ax.set_xlabel("validation energy MAE (meV/atom)")
    ax.set_ylabel("validation force MAE (eV/Å)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
