"""Single-point speed of the potential: energy + forces + stress, µs/atom and peak memory.

Default hyperparameters (``PotentialConfig()``), randomly initialised weights (speed does not
depend on their values), species Nb Mo Ta W Si. Every case runs in a fresh subprocess so its
peak resident memory (``ru_maxrss``) is its own. Reference on these 2-core machines:
SevenNet-0 takes about 4.1 ms/atom for Si 216 (E+F+S).

    python benchmarks/speed.py                 # all cases, float32 and float64
    python benchmarks/speed.py --quick         # two small cases, few repeats
    python benchmarks/speed.py --profile       # where the time goes (torch.profiler)
    python benchmarks/speed.py --json out.json --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SPECIES = ["Nb", "Mo", "Ta", "W", "Si"]
SEVENNET_US_PER_ATOM = 4100.0  # SevenNet-0, Si 216, E+F+S, 2 threads, these machines
CASES = {  # name -> (element, lattice, a (Å), repetitions of the cubic cell)
    "Si-64": ("Si", "diamond", 5.43, 2),
    "Si-216": ("Si", "diamond", 5.43, 3),
    "Si-512": ("Si", "diamond", 5.43, 4),
    "W-128": ("W", "bcc", 3.165, 4),
    "W-1024": ("W", "bcc", 3.165, 8),
}
QUICK_CASES = ["Si-64", "W-128"]


def build_structure(name: str):
    """The benchmark crystal, rattled by 0.02 Å so forces and stress are generic."""
    from ase.build import bulk

    element, lattice, a, n = CASES[name]
    atoms = bulk(element, lattice, a=a, cubic=True).repeat(n)
    atoms.rattle(0.02, seed=0)
    return atoms


def _maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _setup(name: str, dtype: str, threads: int, model_spec: str | None = None):
    """Import, set threads, build the model and structure; returns (calculator, atoms).

    ``model_spec``: None (random ``PotentialConfig()``), a training YAML (its ``model``
    section, random weights) or a checkpoint path / ``default`` (the model itself).
    """
    import torch

    from matdesign.calculator import MatdesignCalculator, load_calculator
    from matdesign.model import Potential, PotentialConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if model_spec and not model_spec.endswith((".yaml", ".yml")):
        return load_calculator(model_spec, dtype=dtype), build_structure(name)
    config = PotentialConfig()
    if model_spec:
        from matdesign.training.config import load_config

        config = load_config(model_spec)[0]
    model = Potential(config, species=SPECIES).to(getattr(torch, dtype)).eval()
    return MatdesignCalculator(model), build_structure(name)


def run_case(name: str, dtype: str, threads: int, repeats: int, warmup: int,
             model_spec: str | None = None) -> dict:
    """Time ``calculate_batch`` (graph building + model + autograd) for one case."""
    calc, atoms = _setup(name, dtype, threads, model_spec)
    from matdesign.graph import atoms_to_graph

    rss_before = _maxrss_mib()
    for _ in range(warmup):
        calc.calculate_batch([atoms])
    times, graph_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = calc.calculate_batch([atoms])[0]
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        graph = atoms_to_graph(atoms, calc.cutoff, calc.model.species_index)
        graph_times.append(time.perf_counter() - t0)
    assert "stress" in result and len(result["forces"]) == len(atoms)
    n = len(atoms)
    median = statistics.median(times)
    return {
        "case": name,
        "dtype": dtype,
        "threads": threads,
        "n_atoms": n,
        "n_edges": int(graph.edge_index.shape[1]),
        "us_per_atom": 1e6 * median / n,
        "min_us_per_atom": 1e6 * min(times) / n,
        "graph_us_per_atom": 1e6 * statistics.median(graph_times) / n,
        "ms_per_call": 1e3 * median,
        "repeats": repeats,
        "peak_rss_mib": _maxrss_mib(),
        "peak_rss_delta_mib": _maxrss_mib() - rss_before,
        "speedup_vs_sevennet": SEVENNET_US_PER_ATOM / (1e6 * median / n),
    }


def profile_case(name: str, dtype: str, threads: int, rows: int) -> None:
    """Print the top operators (self CPU time) of a few E+F+S calls."""
    from torch.profiler import ProfilerActivity, profile

    calc, atoms = _setup(name, dtype, threads)
    calc.calculate_batch([atoms])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            calc.calculate_batch([atoms])
    print(f"## profile: {name} {dtype}, {threads} threads, 3 calls\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def _spawn(name: str, dtype: str, threads: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, dtype,
           "--threads", str(threads), "--repeats", str(args.repeats),
           "--warmup", str(args.warmup)] + (["--model", args.model] if args.model else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"case": name, "dtype": dtype, "threads": threads,
                "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| case | dtype | threads | atoms | edges | µs/atom (median) | µs/atom (min) "
        "| graph µs/atom | peak RSS MiB (Δ) | × faster than SevenNet-0 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['dtype']} | {r['threads']} | failed: {r['error']} |")
            continue
        lines.append(
            f"| {r['case']} | {r['dtype']} | {r['threads']} | {r['n_atoms']} | {r['n_edges']} "
            f"| {r['us_per_atom']:.0f} | {r['min_us_per_atom']:.0f} "
            f"| {r['graph_us_per_atom']:.1f} "
            f"| {r['peak_rss_mib']:.0f} ({r['peak_rss_delta_mib']:+.0f}) "
            f"| {r['speedup_vs_sevennet']:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"only {QUICK_CASES}, 3 repeats")
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), help="subset of cases")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                   choices=["float32", "float64"])
    p.add_argument("--threads", type=int, nargs="+", default=[2],
                   help="torch.set_num_threads values to time (default 2)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    p.add_argument("--model", help="a training YAML (architecture, random weights), a "
                   "checkpoint or 'default' (default: PotentialConfig() with random weights)")
    p.add_argument("--profile", action="store_true", help="profile one case instead of timing")
    p.add_argument("--profile-case", default="Si-216", choices=sorted(CASES))
    p.add_argument("--profile-rows", type=int, default=20)
    p.add_argument("--worker", nargs=2, metavar=("CASE", "DTYPE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        name, dtype = args.worker
        print(json.dumps(run_case(name, dtype, args.threads[0], args.repeats, args.warmup,
                                  args.model)))
        return 0
    if args.profile:
        for dtype in args.dtypes:
            profile_case(args.profile_case, dtype, args.threads[0], args.profile_rows)
        return 0
    cases = args.cases or (QUICK_CASES if args.quick else list(CASES))
    if args.quick:
        args.repeats, args.warmup = min(args.repeats, 3), 1
    rows = []
    for name in cases:
        for dtype in args.dtypes:
            for threads in args.threads:
                rows.append(_spawn(name, dtype, threads, args))
                print(f"done {name} {dtype} {threads} threads", file=sys.stderr, flush=True)
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
