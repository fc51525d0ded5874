"""Many processes, one database: counts after a SIGKILL (issue 15's floor).

``postgres``: a throwaway PostgreSQL server (``tests/pg_server.py``), N ``matdesign screen``
processes on one database and the same inputs (tiny Cu/Ni/Au fcc cells, EMT, loose fmax), one
SIGKILLed mid-way while it holds claims. ``dask``: a ``dask scheduler`` and two ``dask
worker`` processes, one ``matdesign screen --scheduler``, one worker SIGKILLed mid-task.
Both report rows, distinct candidates, duplicates and lost candidates.

    python benchmarks/cluster.py                      # 4 processes, 200 candidates + Dask 40
    python benchmarks/cluster.py --scenario postgres --candidates 200 --processes 4
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLI = [sys.executable, "-c", "import sys; from matdesign.cli import main; sys.exit(main())"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def screen_cmd(inputs: Path, db: str, fmax: float, *extra: str) -> list[str]:
    return [*CLI, "screen", str(inputs), "--db", db, "--potential", "emt", "--fmax", str(fmax),
            "--max-steps", "300", "--no-progress", *extra]


def counts(hashes: list[str], n: int) -> dict[str, int]:
    """Rows, distinct candidates, duplicate rows and lost candidates."""
    distinct = len(set(hashes))
    return {"candidates": n, "rows": len(hashes), "distinct": distinct,
            "duplicates": len(hashes) - distinct, "lost": n - distinct}


def postgres(args: argparse.Namespace, work: Path) -> dict:
    """N screen processes on one PostgreSQL database, one SIGKILLed mid-way."""
    from tests.pg_server import start_server
    from tests.test_postgres import query, write_cells

    server = start_server()
    try:
        url = server.create_database("bench")
        inputs = write_cells(work / "pg_in", args.candidates, rattle=0.01)
        env = {**ENV, "MATDESIGN_CLAIM_TIMEOUT_S": str(args.claim_timeout)}
        t0 = time.perf_counter()
        procs = [subprocess.Popen(screen_cmd(inputs, url, args.fmax, "--json",
                                             str(work / f"pg{k}.json")), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for k in range(args.processes)]
        victim, held, killed_at = procs[0], [], None
        while victim.poll() is None:
            n_rows = query(url, "SELECT COUNT(*) FROM systems")[0][0] if _has_rows(url) else 0
            if n_rows >= args.candidates // 4:
                held = query(url, "SELECT content_hash FROM matdesign_claims WHERE owner LIKE "
                                  f"'%:{victim.pid}:%'")
                if held:
                    victim.send_signal(signal.SIGKILL)
                    killed_at = n_rows
                    break
            time.sleep(0.01)
        victim.wait()
        codes = [p.wait(timeout=1800) for p in procs[1:]]
        wall = time.perf_counter() - t0
        hashes = [h for (h,) in query(url, "SELECT key_value_pairs->>'content_hash' FROM "
                                           "systems")]
        statuses = Counter(s for (s,) in query(url, "SELECT key_value_pairs->>'status' FROM "
                                                    "systems"))
        left = query(url, "SELECT COUNT(*) FROM matdesign_claims")[0][0]
        done = [json.loads((work / f"pg{k}.json").read_text())["n_done"]
                for k in range(1, args.processes)]
    finally:
        server.stop()
    return {"processes": args.processes, "killed_after_rows": killed_at,
            "victim_claims_when_killed": len(held), "survivor_exit_codes": codes,
            "rows_by_survivors": done, "rows_by_victim": len(hashes) - sum(done),
            "statuses": dict(statuses), "claims_left": left, "wall_s": round(wall, 1),
            **counts(hashes, args.candidates)}


def _has_rows(url: str) -> bool:
    from tests.test_postgres import query

    try:
        query(url, "SELECT 1 FROM systems LIMIT 1")
        return True
    except Exception:
        return False


def dask(args: argparse.Namespace, work: Path) -> dict:
    """One screen on a two-worker Dask cluster, one worker SIGKILLed mid-task."""
    from ase.db import connect

    from tests.test_dask_cluster import Cluster
    from tests.test_postgres import write_cells

    inputs = write_cells(work / "dask_in", args.dask_candidates, rattle=0.05)
    (work / "dask").mkdir()
    cluster = Cluster(work / "dask")
    db = work / "dask.db"
    try:
        cluster.ensure_workers(2)
        t0 = time.perf_counter()
        proc = subprocess.Popen(screen_cmd(inputs, str(db), 0.05, "--scheduler",
                                           cluster.address, "--workers", "2"), env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        killed = cluster.kill_busy_worker(
            lambda: db.exists() and connect(str(db)).count() >= args.dask_candidates // 4)
        code = proc.wait(timeout=1800)
        wall = time.perf_counter() - t0
    finally:
        cluster.close()
    hashes = [r.content_hash for r in connect(str(db)).select()]
    return {"workers": 2, "killed_worker": killed, "exit_code": code, "wall_s": round(wall, 1),
            **counts(hashes, args.dask_candidates)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", choices=["postgres", "dask", "both"], default="both")
    p.add_argument("--candidates", type=int, default=200)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--fmax", type=float, default=0.5, help="eV/Å; loose: milliseconds each")
    p.add_argument("--claim-timeout", type=float, default=5.0, help="s")
    p.add_argument("--dask-candidates", type=int, default=40)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/cluster.json"))
    args = p.parse_args()
    out: dict = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="matdesign-cluster-") as tmp:
        if args.scenario in ("postgres", "both"):
            out["postgres"] = postgres(args, Path(tmp))
            print(json.dumps(out["postgres"]), flush=True)
        if args.scenario in ("dask", "both"):
            out["dask"] = dask(args, Path(tmp))
            print(json.dumps(out["dask"]), flush=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
