"""Write the train/validation split that ``matdesign train`` used, for ``matdesign evaluate``.

    python benchmarks/split_data.py ../shared/data/NbMoTaW/train.extxyz --valid-fraction 0.1 \
        --seed 0 --out runs/nbmotaw

Uses the same ``matdesign.training.data.split`` (same fraction and seed) as training, so the
validation file holds exactly the frames the model never trained on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ase.io import write

from matdesign.training.data import read_frames, split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--valid-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    frames = read_frames(args.data)
    train, valid = split(len(frames), args.valid_fraction, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "train.extxyz", [frames[i] for i in train])
    write(out / "valid.extxyz", [frames[i] for i in valid])
    print(f"{len(train)} train, {len(valid)} valid frames -> {out}")


if __name__ == "__main__":
    main()
