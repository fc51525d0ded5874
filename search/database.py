"""The rows of ``matdesign screen`` and ``matdesign design`` in an ASE database (SQLite file or
any ``ase.db.connect`` URL; opened and checked by :mod:`matdesign.search.connection`).

Screen rows: one per candidate: the relaxed structure (with energy, forces, stress),
key-value pairs (``status``, ``source``, ``content_hash``, ``settings_hash``,
``energy_per_atom_ev``, ...) and the full results in ``data``. ase.db computes the ``formula``
column from the structure itself (``formula`` is a reserved key there). Campaign rows: see
:class:`matdesign.search.campaign.CampaignStore`.

Retry policy (screen): ``done`` rows are never recomputed. ``failed`` rows are skipped too (a
deterministic failure would only repeat) unless the run asks to retry them; a retried candidate's
new row replaces the failed one in the same transaction, so each candidate appears once.
Processes sharing one database coordinate through claims (:mod:`matdesign.search.claims`), kept
in a table of the same SQLite file or PostgreSQL database.

The energy above the hull is recomputed over every done row by :meth:`ResultsDB.update_hull`,
for both commands.
"""

from __future__ import annotations

import csv
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matdesign.properties.stability import HullEntry, formula_elements, hull_energies
from matdesign.search.connection import WRITER_KEY, check_writer, open_database, sqlite_file
from matdesign.search.record import CandidateResult, plain_value

if TYPE_CHECKING:
    from ase import Atoms

#: keys ase.db reserves for its own columns (refused as key-value pairs)
_RESERVED = {"id", "unique_id", "ctime", "mtime", "user", "calculator", "energy", "forces",
             "stress", "magmom", "magmoms", "charge", "charges", "natoms", "formula", "age",
             "pbc", "cell", "numbers", "positions", "key", "x"}
#: what each writer's database is called in errors
_ROLES = {"screen": "results", "design": "campaign"}
#: attempts of one write transaction that SQLite refuses with "database is locked"
LOCKED_ATTEMPTS = 8


def retry_when_locked(transaction: Callable[[], Any], attempts: int = LOCKED_ATTEMPTS) -> Any:
    """Run ``transaction`` again (after 0.05-3 s, growing) when SQLite refuses it as locked.

    SQLite returns "database is locked" at once, without waiting out its busy timeout, when
    waiting could deadlock: a process that has read inside a transaction asks for the write
    lock while another writer holds it (ase.db's ``update`` reads the row, then writes).
    The transaction was rolled back, so running it again is safe.

    Raises:
        sqlite3.OperationalError: still locked after ``attempts`` tries, or another error.
    """
    for attempt in range(attempts):
        try:
            return transaction()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(min(3.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
    return None  # pragma: no cover - the loop returns or raises


def storable_pairs(pairs: dict[str, Any]) -> dict[str, float | int | str | bool]:
    """The pairs ase.db can store as key-value pairs: identifier keys that ase.db does not
    reserve, finite scalars (numpy scalars cast to Python); the rest is left out."""
    out = {}
    for key, value in pairs.items():
        plain = plain_value(value)
        if plain is not None and key.isidentifier() and key not in _RESERVED:
            out[key] = plain
    return out


def stored_references(rows: list[Any]) -> list[HullEntry]:
    """The elemental references and competing phases recorded in rows'
    ``data["references"]`` (``{"elements": {symbol: eV/atom}, "competing": [phase, ...]}``,
    written by the screen pipeline), one entry per element and per phase name."""
    refs: dict[str, HullEntry] = {}
    for row in rows:
        stored = (row.data or {}).get("references") or {}
        for element, energy in (stored.get("elements") or {}).items():
            refs[f"ref:{element}"] = HullEntry(f"ref:{element}", element, float(energy))
        for phase in stored.get("competing") or []:
            name = f"phase:{phase['name']}"
            refs[name] = HullEntry(name, phase["formula"], float(phase["energy_per_atom_ev"]))
    return list(refs.values())


class ResultsDB:
    """Thin wrapper over ``ase.db`` for the rows of ``screen`` or of a ``design`` campaign.

    Args:
        url: a file path (SQLite; ``.db`` is added by ASE if missing) or an ase.db URL such as
            ``postgresql://user:pw@host/db`` (needs ``pip install matdesign[postgres]``).
        writer: the command writing it, ``"screen"`` or ``"design"``; a database written by
            the other one is refused. A screen database is marked at once; a campaign sets
            its metadata itself (:meth:`set_metadata`) after comparing it with the stored one.
        existing: only read an existing database (``--status``): a missing file is an error
            and nothing is marked.
    """

    def __init__(self, url: str, *, writer: str = "screen", existing: bool = False) -> None:
        self.url = str(url)
        self.writer = writer
        if existing and "://" not in self.url and not any(
                Path(name).is_file() for name in (self.url, self.url + ".db")):
            raise ValueError(f"no results database {self.url}")
        self._db = open_database(self.url, _ROLES[writer])
        check_writer(self._db, writer, self.url)
        if writer == "screen" and not existing:
            self.set_metadata(self.metadata)

    @property
    def metadata(self) -> dict[str, Any]:
        """The database's metadata (ase.db stores it as JSON)."""
        return dict(self._db.metadata)

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Store ``metadata`` plus the :data:`WRITER_KEY` mark (nothing written when equal)."""
        full = {**metadata, WRITER_KEY: self.writer}
        if self._db.metadata != full:
            self._db.metadata = full

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite file behind this database (None for other backends)."""
        return sqlite_file(self._db)

    def finished(self, content_hash: str, settings_hash: str) -> list[tuple[int, str]]:
        """``(row id, status)`` of every row of one candidate."""
        return [(int(row.id), str(row.get("status")))
                for row in self._db.select(content_hash=content_hash,
                                           settings_hash=settings_hash,
                                           columns=["id", "key_value_pairs"])]

    def write(self, result: CandidateResult) -> int:
        """Write one screened candidate now; replaces earlier failed rows of the same candidate.

        Returns:
            The new row id.
        """
        pairs = storable_pairs(result.key_value_pairs)
        pairs.update(status=result.status, source=result.source,
                     content_hash=result.content_hash, settings_hash=result.settings_hash,
                     elapsed_s=float(result.elapsed_s))
        if result.reason is not None:
            pairs["reason"] = result.reason[:500]
        data = {**result.data, "reason": result.reason, "input_formula": result.formula}
        old = [row.id for row in self._db.select(content_hash=result.content_hash,
                                                 settings_hash=result.settings_hash,
                                                 status="failed")]
        return self.add(result.atoms, pairs, data, replaces=old)

    def add(self, atoms: Atoms, key_value_pairs: dict[str, Any], data: dict[str, Any], *,
            replaces: list[int] | tuple[int, ...] = ()) -> int:
        """Insert one row and delete the rows ``replaces`` in one transaction.

        Args:
            atoms: the structure (with its calculator's results, if any).
            key_value_pairs: storable pairs (:func:`storable_pairs`).
            data: anything JSON-serialisable.
            replaces: ids of rows the new one supersedes.

        Returns:
            The new row id.
        """
        def transaction() -> int:
            with self._db:
                row_id = self._db.write(atoms, key_value_pairs=key_value_pairs, data=data)
                if replaces:
                    self._db.delete(list(replaces))
            return int(row_id)

        return retry_when_locked(transaction)

    def done_keys(self, include_failed: bool = True) -> set[tuple[str, str]]:
        """``(content_hash, settings_hash)`` of finished rows (failed ones too by default)."""
        keys = set()
        for row in self._db.select(columns=["key_value_pairs"]):
            pairs = row.key_value_pairs
            if pairs.get("status") == "done" or (include_failed
                                                 and pairs.get("status") == "failed"):
                keys.add((pairs.get("content_hash"), pairs.get("settings_hash")))
        return keys

    def rows(self, status: str | None = None, **filters: Any) -> list:
        """ase.db rows, optionally only those with ``status`` and other key=value filters."""
        if status is not None:
            filters["status"] = status
        return list(self._db.select(**filters))

    def count(self) -> int:
        return int(self._db.count())

    def update_hull(self, settings_hash: str | None = None,
                    also: Callable[[Any, float], dict[str, Any]] | None = None) -> int:
        """Recompute ``e_above_hull_ev_per_atom`` of every done row over the references stored
        in the rows (:func:`stored_references`) plus every done row.

        Rows with an element that has no stored elemental reference keep their values (e.g.
        a campaign's custom evaluator without ``data["references"]``).

        Args:
            settings_hash: only rows with this settings hash (energies from different
                potentials or settings must not share a hull). None: all done rows.
            also: ``also(row, e_above_hull)``, more key-value pairs to update with it (a
                campaign's ``feasible``).

        Returns:
            The number of rows updated.
        """
        filters = {"status": "done"}
        if settings_hash is not None:
            filters["settings_hash"] = settings_hash
        rows = list(self._db.select(**filters))
        references = stored_references(rows)
        known = {e.formula for e in references if e.name.startswith("ref:")}
        entries = [e for e in references if formula_elements(e.formula) <= known]
        rows = [r for r in rows
                if "energy_per_atom_ev" in r and formula_elements(r.formula) <= known]
        if not rows:
            return 0
        hull = hull_energies(entries + [HullEntry(f"row:{r.id}", r.formula,
                                                  float(r.energy_per_atom_ev)) for r in rows])
        def transaction() -> None:
            with self._db:
                for r in rows:
                    e_hull = hull[f"row:{r.id}"]
                    self._db.update(r.id, e_above_hull_ev_per_atom=e_hull,
                                    **(also(r, e_hull) if also else {}))

        retry_when_locked(transaction)
        return len(rows)

    def count_where(self, **filters: Any) -> int:
        """Number of rows with these key=value pairs (counted by the database)."""
        return int(self._db.count(**filters))

    def recent(self, limit: int, **filters: Any) -> list[tuple[float, float]]:
        """``(written at, Unix s; elapsed_s)`` of the ``limit`` newest rows (by id) with these
        key=value pairs, newest first."""
        from ase.db.core import T2000, YEAR

        rows = self._db.select(sort="-id", limit=limit, include_data=False,
                               columns=["id", "ctime", "key_value_pairs"], **filters)
        return [(float(r.ctime) * YEAR + T2000, float(r.get("elapsed_s", float("nan"))))
                for r in rows]

    def iter_records(self, batch: int = 500,
                     columns: tuple[str, ...] = ("id", "numbers", "key_value_pairs")
                     ) -> Iterator[dict[str, Any]]:
        """Every row's key-value pairs plus ``id``, ``formula`` and ``natoms``, in id order,
        fetched ``batch`` rows at a time (``id > last``: memory stays bounded however large
        the database; ase.db's own ``select`` fetches every row at once)."""
        last = 0
        while True:
            rows = list(self._db.select(f"id>{last}", sort="id", limit=batch,
                                        columns=list(columns), include_data=False))
            for row in rows:
                yield {"id": int(row.id), "formula": row.formula, "natoms": int(row.natoms),
                       **row.key_value_pairs}
            if len(rows) < batch:
                return
            last = int(rows[-1].id)

    def export(self, path: str | Path, batch: int = 500) -> int:
        """Write all rows' key-value pairs (plus id, formula, natoms) as CSV or JSON, streaming
        ``batch`` rows at a time; return the count.

        JSON is one list of objects, written one object at a time. CSV needs its header first:
        a first pass collects the column names, a second writes the rows.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".csv"):
            raise ValueError(f"--export {path}: use a .csv or .json file name")
        n = 0
        with open(path, "w", newline="") as fh:
            if suffix == ".json":
                fh.write("[")
                for n, rec in enumerate(self.iter_records(batch), start=1):
                    fh.write(("\n" if n == 1 else ",\n") + json.dumps(rec))
                fh.write("\n]\n" if n else "]\n")
                return n
            columns = list(dict.fromkeys(k for rec in self.iter_records(batch) for k in rec))
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for rec in self.iter_records(batch):
                writer.writerow(rec)
                n += 1
        return n
