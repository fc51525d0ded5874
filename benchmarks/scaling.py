"""Cost and peak memory against system size: shipped model, E+F+σ, bcc W from 128 to ~10,000
atoms. Each size runs in a fresh process, so ``ru_maxrss`` is that size's own peak.

    python benchmarks/scaling.py --threads 2 --json benchmarks/results/scaling.json
    python benchmarks/scaling.py --threads 2 --edge-chunk 1000000000   # no chunking
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPEATS = (4, 8, 12, 17)  # bcc cubic cells: 2 n^3 atoms = 128, 1024, 3456, 9826


def worker(n: int, threads: int, dtype: str, repeats: int, edge_chunk: int | None) -> dict:
    import torch
    from ase.build import bulk

    import matdesign.layers
    from matdesign.calculator import load_calculator

    torch.set_num_threads(threads)
    if edge_chunk:
        matdesign.layers.EDGE_CHUNK = edge_chunk
    atoms = bulk("W", "bcc", a=3.165, cubic=True).repeat(n)
    atoms.rattle(0.02, seed=0)
    calc = load_calculator("default", dtype=dtype)
    calc.calculate_batch([atoms])  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        calc.calculate_batch([atoms])
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"n_atoms": len(atoms), "dtype": dtype, "threads": threads, "s_per_call": best,
            "us_per_atom": 1e6 * best / len(atoms),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json")
    p.add_argument("--edge-chunk", type=int,
                   help="edges per checkpointed message chunk (default: the library's)")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads, args.dtype, args.repeats,
                                args.edge_chunk)))
        return 0
    rows = []
    for n in REPEATS:
        cmd = [sys.executable, __file__, "--worker", str(n), "--threads", str(args.threads),
               "--dtype", args.dtype, "--repeats", str(args.repeats)]
        if args.edge_chunk:
            cmd += ["--edge-chunk", str(args.edge_chunk)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print("| atoms | s / call | µs/atom | peak RSS (MiB) |\n|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n_atoms']} | {r['s_per_call']:.3f} | {r['us_per_atom']:.0f} "
              f"| {r['peak_rss_mib']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
