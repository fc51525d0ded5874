"""Screening results in an ASE database (SQLite file or any ``ase.db.connect`` URL).

One row per candidate: the relaxed structure (with energy, forces, stress), key-value pairs
(``status``, ``source``, ``content_hash``, ``settings_hash``, ``energy_per_atom_ev``, ...) and
the full results in ``data``. ase.db computes the ``formula`` column from the structure itself
(``formula`` is a reserved key there).

Retry policy: ``done`` rows are never recomputed. ``failed`` rows are skipped too (a
deterministic failure would only repeat) unless the run asks to retry them; a retried candidate's
new row replaces the failed one in the same transaction, so each candidate appears once.

Opening checks, before any work: the file is an ase.db database this process can write, and it
was not written by ``matdesign design`` (the metadata key :data:`WRITER_KEY` records the
writing command; a campaign cannot resume once a screen has appended rows to it). Processes
sharing one database coordinate through claims (:mod:`matdesign.search.claims`), kept in a
table of the same SQLite file or PostgreSQL database.

PostgreSQL (``postgresql://user:password@host:port/dbname``, through ASE's
``ase-db-backends``): the database must exist (``createdb``); its tables are made on first
use. :func:`adapt_postgres` fixes two gaps of that backend for many concurrent writers.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from matdesign.properties.stability import HullEntry, hull_energies
from matdesign.search.claims import is_postgres_url
from matdesign.search.pipeline import CandidateResult, plain_value

#: ``pg_advisory_lock`` key serialising ase.db's creation of its tables in a new database
PG_INIT_LOCK = 0x6D6464  # "mdd"

#: ase.db metadata key naming the command that writes a database ("screen" or "design")
WRITER_KEY = "matdesign_writer"
_WRITER_COMMANDS = {"screen": "`matdesign screen` results",
                    "design": "a `matdesign design` campaign"}


def open_database(url: str, role: str) -> Any:
    """Connect to an ase.db database this run will write, checking that it can, before any work.

    Args:
        url: a file path or an ase.db URL.
        role: what the database is for, named in errors ("results", "campaign").

    Returns:
        The ase.db connection.

    Raises:
        ValueError: naming the file: it is not an ase.db database (e.g. a text file), of an
            unknown type, or cannot be written (read-only file or folder).
    """
    import ase.db

    try:
        if "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
        db = ase.db.connect(url)
    except Exception as exc:
        raise ValueError(f"cannot open {role} database {url}: {exc}") from exc
    path = sqlite_file(db)
    if path is not None:
        _prepare_sqlite(path, role)
    try:
        if is_postgres_url(url):
            adapt_postgres(db)
            _initialise_postgres(db, url)
        else:
            _wait_until_initialised(db)
    except Exception as exc:
        raise ValueError(f"cannot open {role} database {url}: {exc}") from exc
    return db


def adapt_postgres(db: Any) -> None:
    """Make an ase-db-backends PostgreSQL connection safe for concurrent writers (in place).

    Two gaps of ``ase_db_backends.postgresql`` (0.11): the id of a new row is read as the
    *global* ``last_value`` of the id sequence, so with two writers a row's key-value index
    rows (tables ``keys``, ``species``, ``*_key_values``) can be filed under the other
    writer's row; ``currval`` is the value this session drew. And its connection wrapper has
    no ``rollback``, so a failed ``with db:`` transaction left the connection open and in use.
    """
    import psycopg2
    from ase_db_backends.postgresql import Connection

    class _Connection(Connection):
        def rollback(self) -> None:
            self.con.rollback()

    def connect() -> _Connection:
        return _Connection(psycopg2.connect(db.filename))

    def get_last_id(cur: Any) -> int:
        cur.execute("SELECT currval('systems_id_seq')")
        return int(cur.fetchone()[0])

    db._connect = connect
    db.get_last_id = get_last_id


def _initialise_postgres(db: Any, url: str) -> None:
    """Open a PostgreSQL database now, creating ase.db's tables if missing while holding an
    advisory lock: ase.db creates them without one, and two processes opening a new database
    at once would both try."""
    import psycopg2

    con = psycopg2.connect(url)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (PG_INIT_LOCK,))
            try:
                db.count()
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (PG_INIT_LOCK,))
    finally:
        con.close()


def sqlite_file(db: Any) -> str | None:
    """The SQLite file behind an ase.db connection; None for other backends (ASE's PostgreSQL
    backend subclasses the SQLite one, so the class alone does not tell)."""
    from ase.db.sqlite import SQLite3Database

    name = str(getattr(db, "filename", ""))
    return name if isinstance(db, SQLite3Database) and "://" not in name else None


def _prepare_sqlite(path: str, role: str) -> None:
    """Create ase.db's tables in a new SQLite file in ONE transaction, or check that an
    existing one can be written (a write transaction, rolled back).

    ase.db creates its tables statement by statement: two processes opening a new file at once
    can both try (``table systems already exists``). Writing needs the file AND its folder
    writable (SQLite puts a journal next to the file).

    Raises:
        ValueError: naming the file: not a database, or SQLite cannot write it.
    """
    from ase.db.sqlite import index_statements, init_statements

    con = None
    try:
        con = sqlite3.connect(path, timeout=60.0, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        if con.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='systems'").fetchone()[0]:
            con.execute("CREATE TABLE matdesign_write_probe (x INTEGER)")
            con.execute("ROLLBACK")
        else:
            for statement in init_statements + index_statements:
                con.execute(statement)
            con.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        raise ValueError(f"cannot write {role} database {path}: {exc} (check the permissions "
                         "of the file and of its folder)") from exc
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"cannot open {role} database {path}: {exc}") from exc
    finally:
        if con is not None:
            con.close()


def _wait_until_initialised(db: Any, limit_s: float = 10.0) -> None:
    """Open the database now (ase.db connects lazily).

    A new SQLite file made by ase.db itself (not :func:`_prepare_sqlite`) gets its tables and
    only then its version row, in two transactions; another process opening the file in
    between reads no version row (``TypeError`` inside ase.db). That lasts milliseconds.
    """
    deadline = time.monotonic() + limit_s
    while True:
        try:
            db.count()
            return
        except TypeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _infer_writer(db: Any) -> str | None:
    """Which command wrote a database without the :data:`WRITER_KEY` mark (older versions):
    campaign metadata or rows with ``candidate_key`` -> "design"; screen rows -> "screen"."""
    if "campaign" in db.metadata or db.count("candidate_key"):
        return "design"
    if db.count("content_hash"):
        return "screen"
    return None


def check_writer(db: Any, kind: str, name: str) -> None:
    """Refuse a database written by the other command (their rows cannot be mixed).

    Args:
        db: an ase.db connection.
        kind: the command about to write it, "screen" or "design".
        name: the database as the user gave it (for the message).

    Raises:
        ValueError: the database holds the other command's rows.
    """
    found = db.metadata.get(WRITER_KEY) or _infer_writer(db)
    if found is not None and found != kind:
        raise ValueError(f"{name} holds {_WRITER_COMMANDS.get(found, found)}; `matdesign "
                         f"{kind}` will not add its rows to it: give it another --db")


class ResultsDB:
    """Thin wrapper over ``ase.db`` for screening results.

    Args:
        url: a file path (SQLite; ``.db`` is added by ASE if missing) or an ase.db URL such as
            ``postgresql://user:pw@host/db`` (needs ``pip install matdesign[postgres]``).
        existing: only read an existing database (``--status``): a missing file is an error
            and nothing is marked.
    """

    def __init__(self, url: str, *, existing: bool = False) -> None:
        self.url = str(url)
        if existing and "://" not in self.url and not any(
                Path(name).is_file() for name in (self.url, self.url + ".db")):
            raise ValueError(f"no results database {self.url}")
        self._db = open_database(self.url, "results")
        check_writer(self._db, "screen", self.url)
        meta = self._db.metadata
        if meta.get(WRITER_KEY) != "screen" and not existing:
            self._db.metadata = {**meta, WRITER_KEY: "screen"}

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
