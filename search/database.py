"""Screening results in an ASE database (SQLite file or any ``ase.db.connect`` URL).

One row per candidate: the relaxed structure (with energy, forces, stress), key-value pairs
(``status``, ``source``, ``content_hash``, ``settings_hash``, ``energy_per_atom_ev``, ...) and
the full results in ``data``. ase.db computes the ``formula`` column from the structure itself
(``formula`` is a reserved key there).

Retry policy: ``done`` rows are never recomputed. ``failed`` rows are skipped too (a
deterministic failure would only repeat) unless the run asks to retry them; a retried candidate's
new row replaces the failed one in the same transaction, so each candidate appears once.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from matdesign.properties.stability import HullEntry, hull_energies
from matdesign.search.pipeline import CandidateResult, plain_value


class ResultsDB:
    """Thin wrapper over ``ase.db`` for screening results.

    Args:
        url: a file path (SQLite; ``.db`` is added by ASE if missing) or an ase.db URL such as
            ``postgresql://user:pw@host/db`` (needs ``pip install matdesign[postgres]``).
    """

    def __init__(self, url: str) -> None:
        import ase.db

        self.url = str(url)
        if "://" not in self.url:
            Path(self.url).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = ase.db.connect(self.url)
            self._wait_until_initialised()
        except Exception as exc:
            raise ValueError(f"cannot open results database {self.url}: {exc}") from exc

    def _wait_until_initialised(self, limit_s: float = 10.0) -> None:
        """Open the database now (ase.db connects lazily).

        ASE creates a new SQLite file's tables and only then inserts its version row, in two
        transactions; another process opening the file in between reads no version row
        (``TypeError`` inside ase.db). That state lasts milliseconds, so wait it out.
        """
        deadline = time.monotonic() + limit_s
        while True:
            try:
                self._db.count()
                return
            except TypeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def write(self, result: CandidateResult, extra: dict[str, Any] | None = None) -> int:
        """Write one candidate now; replaces earlier failed rows of the same candidate.

        Args:
            result: the candidate's result.
            extra: more key-value pairs (e.g. design variables); values must be scalars.

        Returns:
            The new row id.
        """
        kvp: dict[str, Any] = {}
        for key, value in {**result.key_value_pairs, **(extra or {})}.items():
            cast = plain_value(value)
            if cast is not None:
                kvp[key] = cast
        kvp.update(status=result.status, source=result.source,
                   content_hash=result.content_hash, settings_hash=result.settings_hash,
                   elapsed_s=float(result.elapsed_s))
        if result.reason is not None:
            kvp["reason"] = result.reason[:500]
        data = {**result.data, "reason": result.reason, "input_formula": result.formula}
        old = [row.id for row in self._db.select(content_hash=result.content_hash,
                                                 settings_hash=result.settings_hash,
                                                 status="failed")]
        with self._db:  # one transaction: the new row and removal of stale failed rows
            row_id = self._db.write(result.atoms, key_value_pairs=kvp, data=data)
            if old:
                self._db.delete(old)
        return int(row_id)

    def done_keys(self, include_failed: bool = True) -> set[tuple[str, str]]:
        """``(content_hash, settings_hash)`` of finished rows (failed ones too by default)."""
        keys = set()
        for row in self._db.select(columns=["key_value_pairs"]):
            kvp = row.key_value_pairs
            if kvp.get("status") == "done" or (include_failed and kvp.get("status") == "failed"):
                keys.add((kvp.get("content_hash"), kvp.get("settings_hash")))
        return keys

    def rows(self, status: str | None = None, **filters: Any) -> list:
        """ase.db rows, optionally only those with ``status`` and other key=value filters."""
        if status is not None:
            filters["status"] = status
        return list(self._db.select(**filters))

    def count(self) -> int:
        return int(self._db.count())

    def update_hull(self, references: dict[str, dict[str, Any]],
                    settings_hash: str | None = None) -> None:
        """Recompute ``e_above_hull_ev_per_atom`` of done rows over references + all done rows.

        Args:
            references: ``{name: {"formula": str, "energy_per_atom_ev": float}}`` — elemental
                references and competing phases computed with the same potential.
            settings_hash: only rows with this settings hash (energies from different
                potentials or settings must not share a hull). None: all done rows.
        """
        filters = {"status": "done"}
        if settings_hash is not None:
            filters["settings_hash"] = settings_hash
        rows = [r for r in self._db.select(**filters) if "energy_per_atom_ev" in r]
        if not rows:
            return
        entries = [HullEntry(f"ref:{name}", ref["formula"], float(ref["energy_per_atom_ev"]))
                   for name, ref in references.items()]
        entries += [HullEntry(f"row:{r.id}", r.formula, float(r.energy_per_atom_ev))
                    for r in rows]
        hull = hull_energies(entries)
        with self._db:
            for r in rows:
                self._db.update(r.id, e_above_hull_ev_per_atom=hull[f"row:{r.id}"])

    def export(self, path: str | Path) -> int:
        """Write all rows' key-value pairs (plus id and formula) as CSV or JSON; return count."""
        path = Path(path)
        records = []
        for row in self._db.select():
            records.append({"id": int(row.id), "formula": row.formula, "natoms": int(row.natoms),
                            **row.key_value_pairs})
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(records, indent=2) + "\n")
        elif path.suffix.lower() == ".csv":
            columns = list(dict.fromkeys(k for rec in records for k in rec))
            with open(path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(records)
        else:
            raise ValueError(f"--export {path}: use a .csv or .json file name")
        return len(records)
