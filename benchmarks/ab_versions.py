"""Two or more versions of our inference path, alternating in fresh processes on the same cells.

Each variant is a name, a source tree (what ``PYTHONPATH`` points at; e.g. a ``git worktree``
of an older commit) and optional environment settings. Every (round, size, variant) runs
``_speed_worker.py ours-fused`` in a fresh process; variants alternate within each round, and
their order is reversed every other round, so drift on a shared machine hits all alike.
Only ``matdesign`` itself comes from the variant's tree: the editable install maps
``matdesign.properties`` and ``matdesign.search`` to the installed checkout whatever
``PYTHONPATH`` says, so compare versions that differ in the potential's code only.
Reported: median s/call per variant and the median ratio of each variant's time to the first
variant's in the same round.

    git worktree add /tmp/old <commit>
    python benchmarks/ab_versions.py --variant old=/tmp/old --variant new=. \\
        --variant new-no-malloc=.:MATDESIGN_KEEP_FREED_MEMORY=0 --threads 1 2 --sizes 128 1024
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from speed_peers import structures  # noqa: E402


def parse_variant(text: str) -> tuple[str, Path, dict[str, str]]:
    """``name=path[:KEY=VALUE[:KEY=VALUE...]]`` -> (name, source tree, environment)."""
    name, _, rest = text.partition("=")
    if not name or not rest:
        raise argparse.ArgumentTypeError(f"--variant wants name=path[:KEY=VALUE...], got {text!r}")
    path, *settings = rest.split(":")
    env = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--variant {name}: {item!r} is not KEY=VALUE")
        env[key] = value
    tree = Path(path).resolve()
    if not (tree / "matdesign" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"--variant {name}: no matdesign package in {tree}")
    return name, tree, env


def run(tree: Path, env_extra: dict[str, str], structure: Path, threads: int, dtype: str,
        repeats: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads), **env_extra}
    cmd = [sys.executable, str(ROOT / "_speed_worker.py"), "ours-fused", str(structure),
           "--threads", str(threads), "--repeats", str(repeats), "--dtype", dtype]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])["s_per_call"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", type=parse_variant, action="append", required=True)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20, help="timed calls per process")
    p.add_argument("--json", help="write every run and the summary here")
    args = p.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        cells = [c for c in structures(Path(tmp), tuple(args.sizes)) if "NbMoTaW" in c.name]
        for r in range(args.rounds):
            order = args.variant if r % 2 == 0 else args.variant[::-1]
            for threads in args.threads:
                for cell in cells:
                    for name, tree, env in order:
                        t = run(tree, env, cell, threads, args.dtype, args.repeats)
                        runs.append({"round": r, "variant": name, "cell": cell.name,
                                     "threads": threads, "s_per_call": t})
                        print(f"round {r} {cell.stem} {threads} thr {name}: {1e3 * t:.1f} ms",
                              flush=True)
    first = args.variant[0][0]
    summary = []
    for threads in args.threads:
        for cell in sorted({x["cell"] for x in runs}):
            def times(name: str, c: str = cell, t: int = threads) -> dict[int, float]:
                return {x["round"]: x["s_per_call"] for x in runs
                        if x["variant"] == name and x["cell"] == c and x["threads"] == t}
            base = times(first)
            for name, _, _ in args.variant:
                mine = times(name)
                summary.append({"cell": cell, "threads": threads, "variant": name,
                                "median_s": statistics.median(mine.values()),
                                "speedup_vs_first": statistics.median(
                                    base[k] / mine[k] for k in mine)})
    print(f"\n| cell | threads | variant | ms / call | {first} ÷ variant |")
    print("|---|---:|---|---:|---:|")
    for s in summary:
        print(f"| {s['cell']} | {s['threads']} | {s['variant']} | {1e3 * s['median_s']:.1f} | "
              f"{s['speedup_vs_first']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {**vars(args), "variant": [
            [n, str(t), e] for n, t, e in args.variant]}, "runs": runs, "summary": summary},
            indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
