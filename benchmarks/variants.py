"""Cost of the architecture variants: one training step and one inference call.

Randomly initialised models (cost does not depend on the weights' values), NbMoTaW data:

    python benchmarks/variants.py --data ../shared/data/NbMoTaW/train.extxyz --threads 1

Training step: loss (E, F, σ) + backward on 8 frames of 16 atoms. Inference: E+F+σ of a random
equiatomic 128-atom Nb-Mo-Ta-W bcc cell, float32. Median of repeats, variants in one process.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

VARIANTS = {
    "two-body 64 (format 1)": dict(channels=64, zbl=False, isolated_reference=False),
    "+ ZBL, isolated reference": dict(channels=64),
    "+ 8 trained heads": dict(channels=64, heads=8),
    "+ species descriptors": dict(channels=64, heads=8, species_descriptors=True),
    "shipped: two-body 64 + 32-member committee": dict(channels=64, committee=32,
                                                       readout_hidden=16),
    "products 32, l_edge 2, nu 3": dict(channels=32, lmax=0, lmax_edge=2, correlation=3,
                                        heads=8, radial_hidden=64),
    "products 32, l_edge 3, nu 3": dict(channels=32, lmax=0, lmax_edge=3, correlation=3,
                                        heads=8, radial_hidden=64),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    from ase.build import bulk
    from ase.data import atomic_numbers
    from ase.io import read

    from matdesign.forces import energy_forces_stress
    from matdesign.graph import atoms_to_graph
    from matdesign.model import PotentialConfig
    from matdesign.training.data import batch_to, collate, to_frame
    from matdesign.training.loss import loss_terms
    from matdesign.training.trainer import build_model

    torch.set_num_threads(args.threads)
    species = ["Nb", "Mo", "Ta", "W"]
    index = {atomic_numbers[s]: k for k, s in enumerate(species)}
    frames = [to_frame(a, 5.0, index, "x") for a in read(args.data, "0:2000:25")
              if len(a) == 16][:8]
    cell = bulk("W", "bcc", a=3.2, cubic=True).repeat(4)
    cell.numbers = np.random.default_rng(0).permutation(np.repeat([41, 42, 73, 74], 32))
    cell.rattle(0.05, seed=1)
    print("| variant | params | train step (ms) | inference (µs/atom) |\n|---|---:|---:|---:|")
    for name, kw in VARIANTS.items():
        torch.manual_seed(0)
        model = build_model(PotentialConfig(**kw), species, frames).float()
        batch = batch_to(collate(frames), "cpu", torch.float32)
        opt = torch.optim.Adam(model.parameters())
        steps = []
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            loss = sum(loss_terms(model, batch).values())
            opt.zero_grad()
            loss.backward()
            steps.append(time.perf_counter() - t0)
        model.eval()
        graph = atoms_to_graph(cell, 5.0, model.species_index).to("cpu", torch.float32)
        calls = []
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            energy_forces_stress(model, graph)
            calls.append(time.perf_counter() - t0)
        params = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {params} | {1e3 * np.median(steps[1:]):.0f} "
              f"| {1e6 * np.median(calls[1:]) / len(cell):.0f} |", flush=True)


if __name__ == "__main__":
    main()
