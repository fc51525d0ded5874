"""A throwaway PostgreSQL server for tests and benchmarks (not a test module).

``initdb`` + ``pg_ctl`` from the machine's PostgreSQL (on ``PATH``, or Debian's
``/usr/lib/postgresql/<version>/bin``) in a fresh temporary directory, listening on
127.0.0.1 at a free port (trust authentication, superuser ``matdesign``), without fsync: a
cluster for one test session. PostgreSQL refuses to run as root; as root the server runs as an
existing unprivileged user (``postgres``, else ``nobody``) through ``setpriv`` or ``runuser``,
and owns the temporary directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "matdesign"  # the cluster's superuser


class NoServer(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


@dataclass
class PgServer:
    """A running server; :meth:`url` names a database on it, :meth:`stop` removes it all."""

    root: Path
    port: int
    prefix: list[str]  # runs a command as the server's user
    bindir: Path

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (dropping an old one) and return its URL."""
        import psycopg2

        con = psycopg2.connect(self.url(), connect_timeout=10)
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"),
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def find_bindir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Raises:
        NoServer: PostgreSQL's server programs are not installed.
    """
    found = shutil.which("initdb")
    candidates = ([str(Path(os.path.realpath(found)).parent)] if found else []) + sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if all((Path(folder) / prog).is_file() for prog in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    raise NoServer("PostgreSQL's initdb/pg_ctl/postgres are not installed (apt-get install "
                   "postgresql)")


def _run_as() -> tuple[list[str], int | None, int | None]:
    """The command prefix that drops root, with that user's uid and gid (None: not root)."""
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("setpriv"):
            return (["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                     "--clear-groups", "--"], entry.pw_uid, entry.pw_gid)
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], entry.pw_uid, entry.pw_gid
    raise NoServer("running as root and found no unprivileged user (postgres, nobody) with "
                   "setpriv or runuser to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _checked(cmd: list[str], what: str, env: dict[str, str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    if out.returncode != 0:
        raise NoServer(f"{what} failed ({out.returncode}): {(out.stderr or out.stdout)[-800:]}")


def start_server() -> PgServer:
    """Initialise and start a server in a new temporary directory.

    Raises:
        NoServer: naming the reason (no PostgreSQL, no way to drop root, initdb/start failed).
    """
    bindir = find_bindir()
    prefix, uid, gid = _run_as()
    root = Path(tempfile.mkdtemp(prefix="matdesign-pg-"))
    if uid is not None:
        os.chown(root, uid, gid)
    env = {**os.environ, "HOME": str(root), "LC_ALL": "C"}
    data = root / "data"
    try:
        _checked([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
                  "-E", "UTF8", "--no-sync"], "initdb", env)
        for _ in range(3):  # another process may take the port between choosing and binding
            port = _free_port()
            opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            out = subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts,
                                  "-l", str(root / "server.log"), "-w", "-t", "60", "start"],
                                 capture_output=True, text=True, timeout=120, env=env)
            if out.returncode == 0:
                return PgServer(root, port, prefix, bindir)
        log = (root / "server.log").read_text()[-800:] if (root / "server.log").exists() else ""
        raise NoServer(f"pg_ctl start failed: {out.stderr[-400:]} {log}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
