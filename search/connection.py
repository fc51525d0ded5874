"""Connecting to the ase.db database a run will write, with every check made before any work.

The database (an SQLite file or any ``ase.db.connect`` URL) must be one this process can write,
and it must not hold the other command's rows: the metadata key :data:`WRITER_KEY` records the
writing command (a campaign cannot resume once a screen has appended rows to it).

PostgreSQL (``postgresql://user:password@host:port/dbname``, through ASE's
``ase-db-backends``): the database must exist (``createdb``); its tables are made on first
use. :func:`adapt_postgres` fixes two gaps of that backend for many concurrent writers.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from matdesign.search.claims import is_postgres_url

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
        # SQLite locks the file itself (busy timeout, retry_when_locked); ase.db's extra lock
        # file, made with O_EXCL, outlives a SIGKILLed writer and then blocks every other
        # process forever, so it is off for SQLite files (kept for other file formats).
        sqlite_name = "://" not in url and Path(url).suffix in ("", ".db")
        db = ase.db.connect(url, use_lock_file=not sqlite_name)
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
