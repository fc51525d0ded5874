"""What a resumed campaign must share with the run that wrote its database.

The campaign database's metadata records the objectives, constraints, uncertainty threshold,
screen settings, potential identity and design space. Resuming with any of them changed would
silently mix rows computed (or judged) under different rules, so :func:`check_resume` refuses,
naming every changed key, unless the user explicitly allows it
(``matdesign design --allow-config-change``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from matdesign.search.config import CAMPAIGN_SCREEN_KEYS, CampaignConfig

#: metadata keys that must not change between runs on one database
GUARDED_KEYS = ("objectives", "constraints", "uncertainty_energy_std_ev_per_atom", "screen",
                "potential", "space")


def _plain(obj: Any) -> Any:
    """JSON round trip, as ase.db stores metadata (tuples become lists)."""
    return json.loads(json.dumps(obj))


def campaign_metadata(config: CampaignConfig, potential: str | None) -> dict[str, Any]:
    """The metadata a campaign database records (``matdesign report`` reads the first four).

    Args:
        config: the campaign (threshold already resolved).
        potential: the pipeline's potential spec; None for a custom evaluator (not recorded).
    """
    space = config.space
    meta: dict[str, Any] = {
        "campaign": config.name,
        "objectives": [[o.property, o.goal] for o in config.objectives],
        "constraints": [str(c) for c in config.constraints],
        "uncertainty_energy_std_ev_per_atom": config.uncertainty_energy_std_ev_per_atom,
        "screen": {key: getattr(config.screen, key) for key in CAMPAIGN_SCREEN_KEYS},
        "space": {"ordered": [dataclasses.asdict(s) for s in space.ordered],
                  "disordered": [dataclasses.asdict(s) for s in space.disordered]},
    }
    if potential is not None:
        from matdesign.search.hashing import potential_id

        meta["potential"] = potential_id(potential)  # content, not path: moving a file is fine
    return _plain(meta)


def changed_keys(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: stored X, now Y"`` for every guarded key present in both that differs
    (a section such as ``screen`` is compared field by field: ``screen.fmax``)."""
    out = []
    for key in GUARDED_KEYS:
        if key not in stored or key not in new or stored[key] == new[key]:
            continue
        old, now = stored[key], new[key]
        if key == "screen" and isinstance(old, dict):
            out += [f"screen.{k}: stored {old.get(k)!r}, now {now.get(k)!r}"
                    for k in sorted(set(old) | set(now)) if old.get(k) != now.get(k)]
        else:
            out.append(f"{key}: stored {old!r}, now {now!r}")
    return out


def check_resume(path: str, stored: dict[str, Any], new: dict[str, Any], n_rows: int,
                 allow_change: bool) -> None:
    """Refuse to resume a database of ``n_rows`` evaluations whose guarded metadata differs.

    Raises:
        ValueError: naming the database and every changed key, unless ``allow_change`` or the
            database has no evaluations yet.
    """
    if allow_change or not n_rows:
        return
    changes = changed_keys(stored, new)
    if changes:
        raise ValueError(
            f"{path}: its {n_rows} evaluation(s) were made with a different campaign "
            f"configuration ({'; '.join(changes)}). Resuming would mix results made under "
            "different settings: restore the configuration, use a new --db, or pass "
            "--allow-config-change to resume anyway (the stored metadata is then replaced)")
