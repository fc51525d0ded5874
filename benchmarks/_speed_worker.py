"""One timing run of one engine on one structure file; prints a JSON line. Run by
``benchmarks/speed_peers.py`` under the engine's own Python (SevenNet lives in its own virtual
environment and never imports matdesign; ours never imports sevenn).

    python _speed_worker.py ENGINE STRUCTURE.extxyz --threads 2 --repeats 5 --dtype float32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _calculator(engine: str, dtype: str):
    if engine == "sevennet":
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator("7net-0", device="cpu")
    from matdesign.calculator import load_calculator
    from matdesign.inference import lean_potential

    if engine in ("ours-fused", "ours-eager"):  # the default inference path; eager: the same
        return load_calculator("default", dtype=dtype)  # layers without the compiled kernel
    calc = load_calculator("default", dtype=dtype, lean=False)  # e3nn's layers
    if engine == "ours":
        return calc
    if engine == "ours-tabulated":
        from matdesign.calculator import MatdesignCalculator

        return MatdesignCalculator(lean_potential(calc.model, tabulate=True))
    raise ValueError(f"unknown engine {engine!r}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("engine")
    p.add_argument("structure")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", default="float32")
    args = p.parse_args()
    import numpy as np
    import torch
    from ase.io import read

    torch.set_num_threads(args.threads)
    atoms = read(args.structure)
    calc = _calculator(args.engine, args.dtype)
    atoms.calc = calc
    rng = np.random.default_rng(0)
    base = atoms.positions.copy()
    times = []
    for k in range(args.warmup + args.repeats):
        # a new geometry every call, so no calculator can return a cached result
        atoms.positions = base + rng.normal(scale=1e-3, size=base.shape)
        t0 = time.perf_counter()
        atoms.get_forces()
        atoms.get_stress()
        if k >= args.warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(json.dumps({"engine": args.engine, "structure": args.structure, "n_atoms": len(atoms),
                      "threads": args.threads, "dtype": args.dtype, "s_per_call": median,
                      "us_per_atom": 1e6 * median / len(atoms), "repeats": args.repeats}))


if __name__ == "__main__":
    main()
