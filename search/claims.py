"""Work claims: several screening processes (on one or many machines) share one database.

A claim is one row of ``matdesign_claims(content_hash, settings_hash, owner, heartbeat)`` in the
results database itself: "owner is computing this candidate". The primary key makes taking a
claim atomic: ``INSERT ... ON CONFLICT DO NOTHING`` succeeds for exactly one process, and a claim
whose heartbeat is older than the timeout (its owner died) is taken over by one conditional
``UPDATE``, which also succeeds for exactly one process (as does taking the claim of an owner
that ran on this machine and whose process is gone, so a restarted run need not wait). A claim
is released (deleted) once the candidate's row is written; an owner refreshes the heartbeats of
all its claims from a background thread every ``timeout / 4``.

Heartbeats are Unix times (s) of the claimer's clock: machines sharing a database need clocks
that agree to well within the timeout (NTP does).

Backends: :class:`SqliteClaims` on an SQLite file (Python's ``sqlite3``, with a busy timeout),
:class:`PostgresClaims` in a PostgreSQL database (psycopg2, from ``matdesign[postgres]``), and
:class:`MemoryClaims` for databases without a shared backend (JSON files): claims there only
keep one process consistent. The SQL is written once in :class:`Claims` with ``?``
placeholders; a backend sets ``PARAM``, ``REAL`` and ``_connect``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_TIMEOUT_S = 120.0
TIMEOUT_ENV = "MATDESIGN_CLAIM_TIMEOUT_S"
TABLE = "matdesign_claims"
Key = tuple[str, str]  # (content_hash, settings_hash)

log = logging.getLogger(__name__)


def claim_timeout(value: float | None = None) -> float:
    """Heartbeat timeout, s: ``value``, else ``$MATDESIGN_CLAIM_TIMEOUT_S``, else 120 s.

    Raises:
        ValueError: a timeout that is not a positive number.
    """
    if value is None:
        text = os.environ.get(TIMEOUT_ENV, "").strip()
        try:
            value = float(text) if text else DEFAULT_TIMEOUT_S
        except ValueError:
            raise ValueError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    if not value > 0:
        raise ValueError(f"the claim timeout must be positive, got {value}")
    return float(value)


def _host() -> str:
    """This machine's name, plus on Linux its pid namespace: pids compare only within one."""
    try:
        return f"{socket.gethostname()}#{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return socket.gethostname()


def new_owner() -> str:
    """A unique owner id, ``host:pid:random``."""
    return f"{_host()}:{os.getpid()}:{secrets.token_hex(4)}"


def claim_is_live(owner: str, heartbeat: float, cutoff: float) -> bool:
    """A claim is live while its heartbeat is at or after ``cutoff`` (s since the epoch) and
    its owner is not known dead."""
    return float(heartbeat) >= cutoff and not owner_is_dead(str(owner))


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` ran on this machine (same pid namespace) and its process is gone.

    Lets a run restarted after a SIGKILL take its predecessor's claims at once instead of
    after the heartbeat timeout. A reused pid only makes it wait for the timeout.
    """
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != _host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by another user
        return False
    return False


class Claims:
    """Claims of one owner; subclasses provide ``_connect`` (a DB-API connection).

    Args:
        timeout_s: a claim whose heartbeat is older than this, s, is taken over.
        owner: this process's id (default :func:`new_owner`).
    """

    PARAM = "?"
    REAL = "REAL"

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, owner: str | None = None) -> None:
        self.timeout_s = claim_timeout(timeout_s)
        self.owner = owner or new_owner()
        self._execute(self._create_sql())

    def _create_sql(self) -> str:
        """The statement that creates the claim table if it is missing."""
        return (f"CREATE TABLE IF NOT EXISTS {TABLE} (content_hash TEXT NOT NULL, "
                f"settings_hash TEXT NOT NULL, owner TEXT NOT NULL, heartbeat {self.REAL} "
                "NOT NULL, PRIMARY KEY (content_hash, settings_hash))")

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        raise NotImplementedError

    def _execute(self, sql: str, params: tuple = (), fetch: bool = False) -> Any:
        """Run one statement in its own transaction; the rows if ``fetch``, else the row count."""
        with self._connect() as con:
            cur = con.cursor()
            try:
                cur.execute(sql.replace("?", self.PARAM), params)
                out = cur.fetchall() if fetch else cur.rowcount
                con.commit()
            except BaseException:
                con.rollback()
                raise
            finally:
                cur.close()
        return out

    def claim(self, key: Key) -> bool:
        """Take ``key`` if it is free, ours already, its owner's heartbeat is stale, or its
        owner is known dead.

        Returns:
            True when this owner now holds the claim.
        """
        now = time.time()
        got = self._execute(
            f"INSERT INTO {TABLE} (content_hash, settings_hash, owner, heartbeat) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (content_hash, settings_hash) DO NOTHING",
            (*key, self.owner, now)) == 1
        if not got:
            got = self._execute(
                f"UPDATE {TABLE} SET owner = ?, heartbeat = ? WHERE content_hash = ? AND "
                "settings_hash = ? AND (owner = ? OR heartbeat < ?)",
                (self.owner, now, *key, self.owner, now - self.timeout_s)) == 1
        return got or self._take_from_dead(key, now)

    def _take_from_dead(self, key: Key, now: float) -> bool:
        """Take ``key`` from a holder known dead (:func:`owner_is_dead`), atomically: only if
        that holder still has it."""
        rows = self._execute(f"SELECT owner FROM {TABLE} WHERE content_hash = ? AND "
                             "settings_hash = ?", key, fetch=True)
        if not rows or not owner_is_dead(str(rows[0][0])):
            return False
        return self._execute(
            f"UPDATE {TABLE} SET owner = ?, heartbeat = ? WHERE content_hash = ? AND "
            "settings_hash = ? AND owner = ?", (self.owner, now, *key, str(rows[0][0]))) == 1

    def release(self, key: Key) -> None:
        """Give ``key`` up (its row is written, or this owner stops)."""
        self._execute(f"DELETE FROM {TABLE} WHERE content_hash = ? AND settings_hash = ? "
                      "AND owner = ?", (*key, self.owner))

    def drop_abandoned(self, settings_hash: str, content_hashes: set[str]) -> int:
        """Delete the claims on inputs whose rows are already finished when their owner is
        dead or its heartbeat stale: a process killed between writing a row and releasing its
        claim leaves one that no later run would take over (it skips finished inputs).

        Returns:
            How many claims were deleted.
        """
        rows = self._execute(f"SELECT content_hash, owner, heartbeat FROM {TABLE} WHERE "
                             "settings_hash = ?", (settings_hash,), fetch=True)
        cutoff, n = time.time() - self.timeout_s, 0
        for content, owner, beat in rows:
            if str(content) in content_hashes and not claim_is_live(owner, beat, cutoff):
                n += int(self._execute(
                    f"DELETE FROM {TABLE} WHERE content_hash = ? AND settings_hash = ? AND "
                    "owner = ?", (str(content), settings_hash, str(owner))) or 0)
        return n

    def release_all(self) -> None:
        """Give up every claim of this owner."""
        self._execute(f"DELETE FROM {TABLE} WHERE owner = ?", (self.owner,))

    def refresh(self) -> int:
        """Set the heartbeat of all this owner's claims to now; returns how many there are."""
        return int(self._execute(f"UPDATE {TABLE} SET heartbeat = ? WHERE owner = ?",
                                 (time.time(), self.owner)))

    def holders(self, settings_hash: str) -> dict[str, tuple[str, float]]:
        """``{content_hash: (owner, heartbeat)}`` of the live claims (any owner) of one
        settings hash; stale claims and those of owners known dead are left out."""
        rows = self._execute(f"SELECT content_hash, owner, heartbeat FROM {TABLE} WHERE "
                             "settings_hash = ? AND heartbeat >= ?",
                             (settings_hash, time.time() - self.timeout_s), fetch=True)
        return {str(c): (str(o), float(h)) for c, o, h in rows if not owner_is_dead(str(o))}

    def counts(self, settings_hash: str | None = None) -> tuple[int, int]:
        """``(live, stale)`` numbers of claims (of one settings hash, or all): live ones are
        being computed now; stale ones belong to owners that stopped sending heartbeats and
        will be taken over by the next run that reaches them."""
        sql = f"SELECT owner, heartbeat FROM {TABLE}"
        params: tuple = ()
        if settings_hash is not None:
            sql, params = sql + " WHERE settings_hash = ?", (settings_hash,)
        cutoff = time.time() - self.timeout_s
        live = stale = 0
        for owner, beat in self._execute(sql, params, fetch=True):
            if claim_is_live(owner, beat, cutoff):
                live += 1
            else:
                stale += 1
        return live, stale

    @contextmanager
    def keep_alive(self) -> Iterator[Claims]:
        """Refresh heartbeats from a daemon thread every ``timeout / 4`` while inside; on exit
        stop it and release every claim still held (an interrupted run frees its work)."""
        stop = threading.Event()
        thread = threading.Thread(target=self._beat, args=(stop,), daemon=True,
                                  name="matdesign-claims-heartbeat")
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=10)
            try:
                self.release_all()
            except Exception as exc:  # noqa: BLE001 - stale claims time out anyway
                log.warning("could not release claims of %s: %s", self.owner, exc)

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(self.timeout_s / 4):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - a busy database: try again next beat
                log.warning("claim heartbeat failed: %s", exc)


class SqliteClaims(Claims):
    """Claims in an SQLite file (the results database itself).

    Args:
        path: the SQLite file.
        timeout_s: heartbeat timeout, s.
        owner: this process's id.
        busy_timeout_s: how long a statement waits for another process's write lock, s.
    """

    def __init__(self, path: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 owner: str | None = None, busy_timeout_s: float = 60.0) -> None:
        self.path, self.busy_timeout_s = str(path), busy_timeout_s
        super().__init__(timeout_s, owner)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_s)
        try:
            yield con
        finally:
            con.close()


class MemoryClaims(Claims):
    """Claims private to this process, for databases with no shared claim backend yet."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, owner: str | None = None) -> None:
        self._con = sqlite3.connect(":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        super().__init__(timeout_s, owner)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._con


class PostgresClaims(Claims):
    """Claims in a PostgreSQL database (the results database itself).

    Every statement runs in its own short transaction on its own connection (the heartbeat
    thread included), so no connection is shared between threads. Under PostgreSQL's default
    READ COMMITTED isolation, ``INSERT ... ON CONFLICT DO NOTHING`` and the conditional
    ``UPDATE`` of :meth:`Claims.claim` succeed for exactly one of several racing processes
    (the loser re-checks the ``WHERE`` clause against the winner's committed row).

    Args:
        url: ``postgresql://user:password@host:port/database``.
        timeout_s: heartbeat timeout, s.
        owner: this process's id.
        connect_timeout_s: how long opening a connection may take, s.
    """

    PARAM = "%s"
    REAL = "DOUBLE PRECISION"
    #: ``pg_advisory_xact_lock`` key serialising the creation of the claim table
    LOCK_KEY = 0x6D6463  # "mdc"

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 owner: str | None = None, connect_timeout_s: float = 30.0) -> None:
        self.url, self.connect_timeout_s = str(url), connect_timeout_s
        super().__init__(timeout_s, owner)

    def _create_sql(self) -> str:
        # Two processes running CREATE TABLE IF NOT EXISTS at once can both pass the check and
        # one then fails on a unique index of the catalogue: serialise them.
        return f"SELECT pg_advisory_xact_lock({self.LOCK_KEY}); {super()._create_sql()}"

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        import psycopg2

        con = psycopg2.connect(self.url, connect_timeout=max(1, int(self.connect_timeout_s)))
        try:
            yield con
        finally:
            con.close()


def is_postgres_url(url: str | None) -> bool:
    """True for a ``postgresql://`` or ``postgres://`` database URL."""
    return str(url or "").startswith(("postgresql://", "postgres://"))


def open_claims(sqlite_path: str | None, timeout_s: float | None = None,
                url: str | None = None) -> Claims:
    """Claims for a results database: shared ones in its SQLite file or PostgreSQL database,
    else process-local.

    Args:
        sqlite_path: the database's SQLite file, or None for other backends.
        timeout_s: heartbeat timeout, s (None: :func:`claim_timeout`'s default).
        url: the database's URL; a PostgreSQL one gets :class:`PostgresClaims`.
    """
    timeout = claim_timeout(timeout_s)
    if sqlite_path is None and is_postgres_url(url):
        return PostgresClaims(str(url), timeout)
    if sqlite_path is None:
        log.warning("this database type has no shared work claims yet: do not run several "
                    "screens on it at once")
        return MemoryClaims(timeout)
    return SqliteClaims(sqlite_path, timeout)
