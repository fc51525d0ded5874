"""Side by side: the shipped model (e3nn layers as "ours", the default fused layers as
"ours-fused", tabulated radials) and
SevenNet-0, alternating in one run on the same structures, threads and dtype.

Structures: a random equiatomic Nb–Mo–Ta–W bcc cell and bcc W, 128 and 1,024 atoms, rattled.
Every (round, engine, structure) is a fresh process (model load excluded from the timing);
rounds alternate the engines so machine drift hits all of them alike. Reported: median
seconds per energy+forces+stress call and the ratio to our e3nn path in the same round.

SevenNet runs under its own virtual environment (``runs/venv-sevenn``; ``pip install -c
constraints.txt torch==2.13.0 sevenn``, weights ship in the wheel) and is never imported here.

    python benchmarks/speed_peers.py --threads 2 --rounds 3 \
        --json benchmarks/results/speed_peers.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
#: "ours-fused" is the default path (fused layers and, where built, the compiled edge kernel);
#: "ours-eager" the same layers with the kernel switched off (MATDESIGN_EDGE_KERNEL=0)
ENGINES = ("ours", "ours-fused", "ours-eager", "ours-tabulated", "sevennet")


def structures(folder: Path, sizes: tuple[int, ...]) -> list[Path]:
    """Write the benchmark cells (bcc, a = 3.2 Å, rattled 0.02 Å) as extxyz; return paths."""
    from ase.build import bulk
    from ase.io import write

    out = []
    rng = np.random.default_rng(0)
    for n in sizes:
        reps = round((n / 2) ** (1 / 3))
        for name in ("NbMoTaW", "W"):
            atoms = bulk("W", "bcc", a=3.2, cubic=True).repeat(reps)
            if name == "NbMoTaW":
                atoms.symbols = list(rng.permutation(np.repeat(["Nb", "Mo", "Ta", "W"],
                                                               len(atoms) // 4)))
            atoms.rattle(0.02, seed=1)
            path = folder / f"{name}-{len(atoms)}.extxyz"
            write(path, atoms, format="extxyz")
            out.append(path)
    return out


def run_one(python: str, engine: str, structure: Path, args: argparse.Namespace) -> dict:
    cmd = [python, str(ROOT / "_speed_worker.py"), engine, str(structure),
           "--threads", str(args.threads), "--repeats", str(args.repeats),
           "--dtype", args.dtype]
    env = {"OMP_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"}
    if engine == "ours-eager":
        env["MATDESIGN_EDGE_KERNEL"] = "0"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        return {"engine": engine, "structure": structure.name,
                "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    p.add_argument("--sevennet-python", default=str(ROOT.parent / "runs/venv-sevenn/bin/python"))
    p.add_argument("--json", help="write all runs and the summary here")
    args = p.parse_args(argv)
    engines = [e for e in args.engines
               if e != "sevennet" or Path(args.sevennet_python).is_file()]
    if "sevennet" in args.engines and "sevennet" not in engines:
        print(f"SevenNet skipped: {args.sevennet_python} not found", file=sys.stderr)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        files = structures(Path(tmp), tuple(args.sizes))
        for rnd in range(args.rounds):
            order = engines if rnd % 2 == 0 else engines[::-1]
            for structure in files:
                for engine in order:
                    python = args.sevennet_python if engine == "sevennet" else sys.executable
                    row = run_one(python, engine, structure, args)
                    row["round"], row["structure"] = rnd, structure.name
                    runs.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    summary = summarise(runs, engines, [f.name for f in files])
    print(table(summary, engines, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs,
                                               "summary": summary}, indent=2) + "\n")
    return 0


def summarise(runs: list[dict], engines: list[str], names: list[str]) -> list[dict]:
    """Per structure and engine: median s/call over rounds and the median per-round ratio to
    ``ours`` (>1: slower than ours)."""
    out = []
    for name in names:
        base = {r["round"]: r["s_per_call"] for r in runs
                if r["structure"] == name and r["engine"] == "ours" and "error" not in r}
        for engine in engines:
            rows = [r for r in runs if r["structure"] == name and r["engine"] == engine
                    and "error" not in r]
            if not rows:
                out.append({"structure": name, "engine": engine, "error": "every run failed"})
                continue
            ratios = [r["s_per_call"] / base[r["round"]] for r in rows if r["round"] in base]
            out.append({"structure": name, "engine": engine, "n_atoms": rows[0]["n_atoms"],
                        "s_per_call": statistics.median(r["s_per_call"] for r in rows),
                        "us_per_atom": statistics.median(r["us_per_atom"] for r in rows),
                        "time_vs_ours": statistics.median(ratios) if ratios else None})
    return out


def table(summary: list[dict], engines: list[str], args: argparse.Namespace) -> str:
    lines = [f"{args.dtype}, {args.threads} threads, E+F+σ, median of {args.rounds} rounds",
             "", "| structure | engine | atoms | s / call | µs/atom | time ÷ ours (e3nn) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in summary:
        if "error" in r:
            lines.append(f"| {r['structure']} | {r['engine']} | | {r['error']} | | |")
            continue
        ratio = "" if r["time_vs_ours"] is None else f"{r['time_vs_ours']:.2f}"
        lines.append(f"| {r['structure']} | {r['engine']} | {r['n_atoms']} "
                     f"| {r['s_per_call']:.4f} | {r['us_per_atom']:.0f} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
