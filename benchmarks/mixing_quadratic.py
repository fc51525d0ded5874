"""How far a quadratic form of the (period, group) difference explains the binaries' mixing.

Reads the NbMoTaW training file, takes each binary family's near-equiatomic solid-solution
frames (majority fraction < 0.6) and their mixing energy against each element's lowest-energy
``*_Elastic`` frame (E/N − Σ x_i E_i, meV/atom), then fits Ω(d) = w_pp d_p² + w_gg d_g² +
w_pg d_p d_g (d: difference of the standardised (period, group) descriptors) to five families
and predicts the sixth.

Usage:
    python benchmarks/mixing_quadratic.py --data ../shared/data/NbMoTaW/train.extxyz
"""

from __future__ import annotations

import argparse

import numpy as np
from ase.io import read

from matdesign.model import species_attributes

SPECIES = ["Nb", "Mo", "Ta", "W"]


def mixing_energies(path: str) -> dict[tuple[str, str], float]:
    """Mean near-equiatomic mixing energy per binary family, meV/atom."""
    frames = read(path, ":")
    ref: dict[str, float] = {}
    for a in frames:
        kind = a.info["config_type"]
        if kind.endswith("_Elastic"):
            el = kind.split("_")[0]
            ref[el] = min(ref.get(el, np.inf), a.get_potential_energy() / len(a))
    sums: dict[tuple[str, str], list[float]] = {}
    for a in frames:
        if not a.info["config_type"].endswith("_SS"):
            continue
        symbols = a.get_chemical_symbols()
        n = len(symbols)
        if max(symbols.count(e) for e in set(symbols)) / n >= 0.6:
            continue
        pair = tuple(sorted(set(symbols), key=SPECIES.index))
        emix = a.get_potential_energy() / n - sum(ref[s] for s in symbols) / n
        sums.setdefault(pair, []).append(1000 * emix)
    return {pair: float(np.mean(v)) for pair, v in sorted(sums.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    table = species_attributes(SPECIES, descriptors=True)[:, 1:].numpy()
    emix = mixing_energies(args.data)
    pairs = list(emix)
    rows = []
    for a, b in pairs:
        d = table[SPECIES.index(a)] - table[SPECIES.index(b)]
        rows.append([d[0] ** 2, d[1] ** 2, d[0] * d[1]])
    x, y = np.array(rows), np.array([emix[p] for p in pairs])
    print("pair  DFT mixing (meV/atom)  predicted from the other five")
    for i, pair in enumerate(pairs):
        keep = np.arange(len(pairs)) != i
        w, *_ = np.linalg.lstsq(x[keep], y[keep], rcond=None)
        print(f"{''.join(pair):5s} {y[i]:8.1f} {x[i] @ w:8.1f}")


if __name__ == "__main__":
    main()
