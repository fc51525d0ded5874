"""Score a trained MACE model; run ONLY with the MACE venv's python (see benchmarks/peers.py).

Usage:
    OMP_NUM_THREADS=1 runs/venv-mace/bin/python benchmarks/_mace_helper.py \
        --model runs/peers/mace/mace.model --valid runs/peers/valid.extxyz --threads 1

Prints one JSON object: validation errors and µs/atom, computed by benchmarks/_peer_eval.py,
the same code that scores our model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a .model file written by mace_run_train")
    ap.add_argument("--valid", required=True, help="extxyz with REF_energy/REF_forces")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()

    import torch
    from mace.calculators import MACECalculator

    sys.path.insert(0, str(Path(__file__).parent))
    from _peer_eval import time_forces, valid_errors

    torch.set_num_threads(args.threads)
    calc = MACECalculator(model_paths=args.model, device="cpu", default_dtype=args.dtype)
    n_params = sum(p.numel() for p in calc.models[0].parameters())
    result = {**valid_errors(calc, args.valid), **time_forces(calc, args.repeats),
              "n_params": int(n_params), "threads": torch.get_num_threads()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
