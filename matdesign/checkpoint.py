"""Checkpoints: one file with format version, config, species, weights, units and metadata.

Loaded with ``torch.load(weights_only=True)``: only tensors and plain Python containers are
accepted, so a crafted file cannot execute code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from matdesign.graph import Graph
from matdesign.model import Potential, PotentialConfig, config_dict
from matdesign.plain import to_plain

FORMAT = "matdesign-potential"
FORMAT_VERSION = 3
#: Format 1 had only the two-body architecture; its configs lack the keys added in format 2.
#: Reading one fills them with the values that reproduce it exactly.
FORMAT1_DEFAULTS = {"correlation": 1, "heads": 1, "zbl": False, "isolated_reference": False,
                    "species_descriptors": False, "committee": 0}
#: Format 3 added ``baseline_saturation``; earlier models saturate at the mean coordination.
FORMAT2_DEFAULTS = {"baseline_saturation": 1.0}
UNITS = {"length": "Å", "energy": "eV", "forces": "eV/Å", "stress": "eV/Å³"}


class PotentialEnsemble(torch.nn.Module):
    """A committee of potentials with identical config and species (e.g. different seeds).

    ``forward`` returns the mean per-atom energy; use ``members`` for the committee spread.
    """

    def __init__(self, members: list[Potential]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        for m in members[1:]:
            if m.species != first.species or m.config != first.config:
                raise ValueError("ensemble members must share config and species")
        self.members = torch.nn.ModuleList(members)
        self.config = first.config
        self.species = first.species
        self.species_index = first.species_index
        self.metadata: dict[str, Any] = {}

    @property
    def dtype(self) -> torch.dtype:
        return self.members[0].dtype

    def forward(self, graph: Graph, edge_vectors: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(graph, edge_vectors) for m in self.members]).mean(0)

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
        save_potential(self, path, metadata=metadata)


def _is_derived(key: str) -> bool:
    """Constants e3nn's code generation adds to a module's buffers at first call (not weights)."""
    return "._tensor_constant" in key


def _weights(model: Potential) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float64) for k, v in model.state_dict().items()
            if not _is_derived(k)}


def save_potential(
    model: Potential | PotentialEnsemble, path: str | Path, metadata: dict[str, Any] | None = None
) -> None:
    """Write ``model`` (weights stored in float64 on CPU) to ``path``."""
    members = list(model.members) if isinstance(model, PotentialEnsemble) else [model]
    meta = dict(getattr(model, "metadata", {}) or {})
    meta.update(metadata or {})
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config_dict(model.config),
        "species": list(model.species),
        "units": dict(UNITS),
        "metadata": to_plain(meta),
        "members": [_weights(m) for m in members],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a killed run never leaves a half-written checkpoint


def _migrate_config(config: dict[str, Any], version: int) -> dict[str, Any]:
    """The current config of a checkpoint written in format ``version``."""
    if version >= 3 or not isinstance(config, dict):
        return config
    if version < 2:
        config = {**FORMAT1_DEFAULTS, "lmax_edge": config.get("lmax", 1), **config}
    return {**FORMAT2_DEFAULTS, **config}


def _migrate_weights(state: dict[str, torch.Tensor], version: int) -> dict[str, torch.Tensor]:
    """Format-2 weight names: format 1 called its only readout ``readout`` (now ``heads.0``)."""
    out = {}
    for key, value in state.items():
        if _is_derived(key):
            continue
        if version < 2 and key.startswith("readout."):
            key = "heads.0." + key[len("readout."):]
        out[key] = value
    return out


def load_potential(
    path: str | Path, *, dtype: torch.dtype | str = torch.float64, device: str = "cpu"
) -> Potential | PotentialEnsemble:
    """Load a checkpoint written by :func:`save_potential`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a matdesign checkpoint, a future format, or unsafe content.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, refused globals, truncated files
        raise ValueError(f"{path}: not a loadable matdesign checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a matdesign checkpoint (missing format tag {FORMAT!r})")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"{path}: checkpoint format version {version!r} is not supported "
            f"(this matdesign reads versions 1..{FORMAT_VERSION}; upgrade matdesign)"
        )
    missing = [k for k in ("config", "species", "members") if k not in payload]
    if missing or not payload.get("members"):
        what = missing or ["members"]
        raise ValueError(f"{path}: incomplete checkpoint (missing or empty {what})")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    members = []
    try:
        config = PotentialConfig.from_dict(_migrate_config(payload["config"], version))
        for k, state in enumerate(payload["members"]):
            m = Potential(config, species=list(payload["species"]))
            try:
                m.load_state_dict(_migrate_weights(state, version))
            except RuntimeError as exc:
                raise ValueError(f"weights of member {k} do not match the config: {exc}") from exc
            members.append(m.to(device=device, dtype=dtype).eval())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    model: Potential | PotentialEnsemble
    model = members[0] if len(members) == 1 else PotentialEnsemble(members).eval()
    model.metadata = dict(payload.get("metadata", {}))
    return model
