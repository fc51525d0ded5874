"""Screening throughput: candidates/hour for relax, relax+elastic, relax+elastic+phonon.

Cells: 16-atom equiatomic NbMoTaW bcc supercells with random decorations (default potential),
or Cu/Ni/Al fcc cells with ``--potential emt`` (EMT knows no Nb, Mo, Ta, W). Also times the
relax-only stage with 1 and 2 workers (scaling). Each measurement screens into a fresh
temporary database, so start-up of workers and the potential is included, as in real use.

    python benchmarks/screen.py                        # full benchmark, default potential
    python benchmarks/screen.py --potential emt --quick  # smoke test (seconds)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODES = {"relax": (), "relax+elastic": ("elastic",), "relax+elastic+phonon": ("elastic", "phonon")}


def make_cells(potential: str, n: int, seed: int = 0) -> list:
    """``n`` random 16-atom decorations (NbMoTaW bcc, or CuNiAl fcc for EMT)."""
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    if potential == "emt":
        base, elements = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 1), ["Cu", "Ni", "Al", "Cu"]
    else:
        base, elements = bulk("Mo", "bcc", a=3.2, cubic=True) * (2, 2, 2), ["Nb", "Mo", "Ta", "W"]
    cells = []
    for _ in range(n):
        atoms = base.copy()
        atoms.symbols = list(rng.permutation(np.repeat(elements, len(base) // 4)))
        atoms.rattle(0.02, seed=int(rng.integers(1 << 30)))
        cells.append(atoms)
    return cells


def measure(cells: list, potential: str, properties: tuple[str, ...], workers: int,
            phonon_min_length: float, dtype: str | None = None) -> dict:
    """Screen ``cells`` into a fresh database; return the rate in candidates/hour."""
    from ase.io import write

    from matdesign.search.pipeline import ScreenSettings
    from matdesign.search.screen import run_screen

    settings = ScreenSettings(potential=potential, properties=properties,
                              phonon_min_length=phonon_min_length,
                              **({"dtype": dtype} if dtype else {}))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "in")
        folder.mkdir()
        for k, atoms in enumerate(cells):
            write(folder / f"c{k:03d}.xyz", atoms, format="extxyz")
        start = time.perf_counter()
        summary = run_screen([str(folder)], str(Path(tmp, "r.db")), settings, workers=workers,
                             progress=False)
        wall = time.perf_counter() - start
    return {"properties": list(properties), "workers": workers, "dtype": settings.dtype,
            "n": len(cells),
            "done": summary.n_done, "failed": summary.n_failed, "wall_s": wall,
            "candidates_per_hour": 3600.0 * summary.n_done / wall,
            "failures": summary.failures_by_reason}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--potential", default="default")
    p.add_argument("--n", type=int, default=8, help="candidates per measurement")
    p.add_argument("--quick", action="store_true",
                   help="2 candidates, small phonon supercells (smoke test)")
    p.add_argument("--out", default=None, help="write results as JSON here")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="worker counts to time for every mode (default 1 2)")
    p.add_argument("--phonon-min-length", type=float, default=10.0,
                   help="phonon supercell length, Å (default 10, the issue's setting)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--dtypes", nargs="+", default=[None], choices=["float32", "float64"],
                   help="model precisions to time, alternating (default: the screen's own)")
    args = p.parse_args(argv)
    n = 2 if args.quick else args.n
    min_length = 6.0 if args.quick else args.phonon_min_length
    cells = make_cells(args.potential, n)
    results = []
    for name in args.modes:
        props = MODES[name]
        for workers in args.workers:
            for dtype in args.dtypes:
                r = measure(cells, args.potential, props, workers, min_length, dtype)
                results.append({"mode": name, **r})
                print(f"{name:<22} workers={workers} {r['dtype']}  {r['done']}/{r['n']} done  "
                      f"{r['wall_s']:8.1f} s  {r['candidates_per_hour']:9.1f} candidates/h",
                      file=sys.stderr)
    relax = {r["workers"]: r["candidates_per_hour"] for r in results
             if r["mode"] == "relax" and r["dtype"] == results[0]["dtype"]}
    report = {"potential": args.potential, "quick": args.quick,
              "phonon_min_length_a": min_length, "results": results,
              "scaling_1_to_2_workers": relax[2] / relax[1] if relax.get(1) and relax.get(2)
              else None}
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
