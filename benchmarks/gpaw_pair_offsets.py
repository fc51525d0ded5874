"""GPAW's offset from the data's VASP per binary pair, measured on the data's own binary frames
and fitted as a regular solution, to carry GPAW alloy labels over to the data's code.

The ternary and quaternary labels (``gpaw_alloys.py``, ``gpaw_hot_frames.py``) are GPAW
energies mapped to the data by elemental references only. On the data's binary frames GPAW's
mixing energy still differs from VASP's by −15 to +21 meV/atom, of both signs, depending on the
pair (twenty-second and twenty-fourth sessions: part k-point sampling, part code). Those
offsets enter every alloy label. This script measures them on more frames per pair, at the
labels' own settings, and fits

    δ(frame) = ΔE_mix,GPAW − ΔE_mix,data ≈ Σ_{A<B} Ω_AB x_A x_B + κ (f − 1) Σ_{A<B} x_A x_B

(eV/atom; f the frame's volume over Vegard's), so that a label of any composition can be
corrected by the same expression (:class:`PairOffsets`). The strain term is there because the
data's binary frames lie at 0.95-1.07 of Vegard's volume (many at one element's lattice) and
the two codes' alloys answer strain differently; one shared κ halved the leave-one-out error
of Ω alone, one κ per pair overfitted (twenty-fifth session). The spread of the frames about
the fit (leave-one-frame-out) is the correction's own error.

Steps. ``compute`` (system Python with Debian's GPAW; resumable, one JSON per frame; frames
are taken in rounds, one per pair per round, so a run cut short still covers every pair)::

    OMP_NUM_THREADS=1 /usr/bin/python3 benchmarks/gpaw_pair_offsets.py compute \\
        --out-dir runs/gpaw_pairs --data ../shared/data/NbMoTaW/train.extxyz \\
        --worker 0 --workers 2

``fit`` (any Python with ASE; also reads ``gpaw_alloys.py``'s seven ``check_*`` records)::

    python benchmarks/gpaw_pair_offsets.py fit runs/gpaw_pairs benchmarks/results/s23/gpaw_alloys \\
        --data ../shared/data/NbMoTaW/train.extxyz \\
        --out benchmarks/results/s25/pair_offsets.json

The output (``omega_ev``, ``kappa_ev``) is what ``gpaw_hot_frames.py collect --pair-offsets``
subtracts from the frames; ``correct-targets`` does the same for a ``train.mixing_energies``
targets file::

    python benchmarks/gpaw_pair_offsets.py correct-targets \
        benchmarks/results/s22/mixing_energies_pbe_hot.json \
        --pair-offsets benchmarks/results/s25/pair_offsets.json \
        --out benchmarks/results/s25/mixing_energies_pbe_hot_corrected.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gpaw_alloys import (
    BINARY_CHECK,
    ELEMENTS,
    KPTS_CELL,
    binary_frame,
    data_v0,
    gpaw_energy,
    gpaw_v0,
    vegard_volume,
)
from gpaw_hot_frames import data_references, gpaw_references

#: element pairs in ELEMENTS order; a pair's name is its two symbols joined ("NbMo" ... "TaW")
PAIR_ELEMENTS = tuple(itertools.combinations(ELEMENTS, 2))
PAIRS = tuple(a + b for a, b in PAIR_ELEMENTS)
SEED = 25
#: rounds of frames, each one frame per pair: (lowest, highest) count of the pair's first
#: element among the 16 atoms; the middle first, then both sides, then the middle again
ROUNDS = ((6, 10), (3, 5), (11, 13), (6, 10))


def family_frames(frames: list, pair: str) -> list:
    """The data's ``<pair>_SS`` frames, in file order."""
    return [f for f in frames if f.info.get("config_type") == f"{pair}_SS"]


def chosen_frames(frames: list) -> list[tuple[str, int]]:
    """(family, index within the family) for each frame to label, in priority order: per round
    one random frame per pair whose first-element count lies in that round's range, never one
    of ``gpaw_alloys.py``'s check frames."""
    rng = np.random.default_rng(SEED)
    taken = {(fam, family_frames(frames, fam.removesuffix("_SS")).index(
        binary_frame(frames, fam, idx))) for fam, idx in BINARY_CHECK}
    out: list[tuple[str, int]] = []
    for low, high in ROUNDS:
        for pair, (first, _) in zip(PAIRS, PAIR_ELEMENTS):
            fam = family_frames(frames, pair)
            ok = [k for k, f in enumerate(fam) if low <= f.get_chemical_symbols().count(first)
                  <= high and (f"{pair}_SS", k) not in taken]
            k = int(rng.choice(ok))
            taken.add((f"{pair}_SS", k))
            out.append((f"{pair}_SS", k))
    return out


def compute(out_dir: Path, data: Path, worker: int, workers: int) -> None:
    from ase.io import read

    out_dir.mkdir(parents=True, exist_ok=True)
    frames = read(data, ":")
    v0 = gpaw_v0()
    vasp_v0 = data_v0()
    for k, (fam, idx) in enumerate(chosen_frames(frames)):
        name = f"pair_{fam}_{idx}"
        path = out_dir / f"{name}.json"
        if k % workers != worker or path.exists():
            continue
        frame = family_frames(frames, fam.removesuffix("_SS"))[idx]
        sym = frame.get_chemical_symbols()
        f = frame.get_volume() / vegard_volume(sym, vasp_v0)  # the frame's fraction of Vegard
        cell = frame.copy()
        cell.calc = None
        cell.set_cell(frame.cell * (f * vegard_volume(sym, v0) / frame.get_volume()) ** (1 / 3),
                      scale_atoms=True)
        start = time.time()
        energy, forces = gpaw_energy(cell, KPTS_CELL, str(out_dir / f"{name}.txt"))
        path.write_text(json.dumps({
            "name": name, "family": fam, "index_in_family": idx, "symbols": sym,
            "volume_fraction": f, "cell": cell.cell.tolist(),
            "scaled_positions": cell.get_scaled_positions().tolist(),
            "energy_ev": energy, "forces_ev_per_a": forces,
            "data_energy_ev": float(frame.get_potential_energy()),
            "data_forces_ev_per_a": frame.get_forces().tolist(), "seconds": time.time() - start,
        }, indent=1))
        print(name, frame.get_chemical_formula(), f"{time.time() - start:.0f} s", flush=True)


def pair_fractions(symbols: list[str]) -> np.ndarray:
    """x_A x_B for every pair of ``PAIRS``, in that order."""
    n = len(symbols)
    x = {el: symbols.count(el) / n for el in ELEMENTS}
    return np.array([x[a] * x[b] for a, b in PAIR_ELEMENTS])


@dataclass(frozen=True)
class PairOffsets:
    """GPAW's offset from the data's VASP, eV/atom, of a cell with pair fractions x_A x_B at
    ``f`` × Vegard's volume: Σ Ω_AB x_A x_B + κ (f − 1) Σ x_A x_B (a regular solution and one
    shared strain term: the two codes' alloys answer strain differently, which a frame away
    from Vegard's volume shows).

    Attributes:
        omega_ev: Ω_AB per pair of ``PAIRS``, eV/atom.
        kappa_ev: κ, eV/atom per unit volume fraction.
    """

    omega_ev: dict[str, float]
    kappa_ev: float

    def offset_ev(self, symbols: list[str], volume_fraction: float) -> float:
        x = pair_fractions(symbols)
        omega = np.array([self.omega_ev[p] for p in PAIRS])
        return float(x @ omega + self.kappa_ev * (volume_fraction - 1.0) * x.sum())


def load_offsets(path: Path) -> PairOffsets:
    """A ``fit`` result: ``omega_ev`` finite for every pair and a finite ``kappa_ev``."""
    doc = json.loads(Path(path).read_text())
    omega, kappa = doc.get("omega_ev"), doc.get("kappa_ev")
    if not isinstance(omega, dict) or set(omega) != set(PAIRS) or not all(
            np.isfinite(float(v)) for v in omega.values()):
        raise SystemExit(f"{path}: omega_ev must give a finite value for each of {PAIRS}")
    if not isinstance(kappa, (int, float)) or not np.isfinite(kappa):
        raise SystemExit(f"{path}: kappa_ev must be a finite number, got {kappa!r}")
    return PairOffsets({p: float(v) for p, v in omega.items()}, float(kappa))


def correct_targets(targets: Path, pair_offsets: Path, out: Path) -> None:
    """A ``train.mixing_energies`` targets file with each point's offset subtracted from its
    ``mixing_energy_ev`` (its binary check, if any, is dropped)."""
    offsets = load_offsets(pair_offsets)
    doc = json.loads(targets.read_text())
    points = []
    for p in doc["points"]:
        offset = offsets.offset_ev(p["symbols"], p["volume_fraction"])
        points.append({**p, "mixing_energy_ev": round(p["mixing_energy_ev"] - offset, 5),
                       "pair_offset_ev": round(offset, 5)})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": f"{doc['source']}; pair offsets of {pair_offsets} "
                               "subtracted (benchmarks/gpaw_pair_offsets.py)",
                               "points": points}, indent=1) + "\n")
    print(f"{len(points)} points -> {out}")


def _design(x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Columns of the fit: x_A x_B per pair, then (f − 1) Σ x_A x_B."""
    return np.hstack([x, (x.sum(1) * (f - 1.0))[:, None]])


def fit(dirs: list[Path], data: Path, out: Path) -> None:
    """Per frame δ = ΔE_mix,GPAW − ΔE_mix,data (references: GPAW's 2-atom bcc cells of
    ``gpaw_alloys.py`` and the data's lowest ``<El>_Elastic`` frame); Ω_AB and κ of
    :class:`PairOffsets` by least squares; leave-one-frame-out residuals."""
    from ase.io import read

    mu_data = data_references(data)
    mu_gpaw = gpaw_references()
    vasp_v0 = data_v0()
    frames = None
    rows, fractions = [], []
    for path in sorted(p for d in dirs for p in d.glob("*.json")):
        if not path.name.startswith(("pair_", "check_")):
            continue
        rec = json.loads(path.read_text())
        sym = rec["symbols"]
        if "data_energy_ev" in rec:
            e_data, f_data = rec["data_energy_ev"], np.array(rec["data_forces_ev_per_a"])
            f = rec["volume_fraction"]
        else:  # a gpaw_alloys.py check record: find its frame in the data
            frames = read(data, ":") if frames is None else frames
            fam, idx = rec["name"].removeprefix("check_").rsplit("_", 1)
            frame = binary_frame(frames, fam, int(idx))
            e_data, f_data = frame.get_potential_energy(), frame.get_forces()
            f = frame.get_volume() / vegard_volume(frame.get_chemical_symbols(), vasp_v0)
        n = len(sym)
        delta = ((rec["energy_ev"] - sum(mu_gpaw[s] for s in sym))
                 - (e_data - sum(mu_data[s] for s in sym))) / n
        force_mae = float(np.abs(np.array(rec["forces_ev_per_a"]) - f_data).mean())
        fractions.append(pair_fractions(sym))
        rows.append({"frame": rec["name"], "formula": "".join(
            f"{el}{sym.count(el)}" for el in ELEMENTS if el in sym),
            "volume_fraction": round(float(f), 4),
            "delta_ev_per_atom": round(delta, 5), "force_mae_ev_per_a": round(force_mae, 4)})
    if len(rows) <= len(PAIRS):
        raise SystemExit(f"{len(rows)} frames found under {dirs}: need more than one per pair")
    x = np.array(fractions)
    missing = [p for p, col in zip(PAIRS, x.T) if not col.any()]
    if missing:
        raise SystemExit(f"no frame of pair(s) {missing}")
    a = _design(x, np.array([r["volume_fraction"] for r in rows]))
    d = np.array([r["delta_ev_per_atom"] for r in rows])
    coef = np.linalg.lstsq(a, d, rcond=None)[0]
    loo = []
    for k in range(len(rows)):
        keep = np.arange(len(rows)) != k
        if np.linalg.matrix_rank(a[keep]) < a.shape[1]:
            loo.append(np.nan)  # without this frame a coefficient is not determined
            continue
        w = np.linalg.lstsq(a[keep], d[keep], rcond=None)[0]
        loo.append(float(d[k] - a[k] @ w))
    for r, fit_res, lo in zip(rows, d - a @ coef, loo):
        r["fit_residual_ev_per_atom"] = round(float(fit_res), 5)
        r["leave_one_out_residual_ev_per_atom"] = None if np.isnan(lo) else round(lo, 5)
    finite = np.array([v for v in loo if np.isfinite(v)])
    quaternary = PairOffsets({p: float(w) for p, w in zip(PAIRS, coef)}, float(coef[-1]))
    result = {
        "source": "GPAW 22.8 (gpaw_alloys.py settings) against the data's VASP on the data's "
                  "binary _SS frames; benchmarks/gpaw_pair_offsets.py",
        "omega_ev": {p: round(float(w), 5) for p, w in zip(PAIRS, coef)},
        "kappa_ev": round(float(coef[-1]), 5),
        "frames_per_pair": {p: int((col > 0).sum()) for p, col in zip(PAIRS, x.T)},
        "fit_rms_ev_per_atom": round(float(np.sqrt(((d - a @ coef) ** 2).mean())), 5),
        "leave_one_out_rms_ev_per_atom": round(float(np.sqrt((finite ** 2).mean())), 5),
        "uncorrected_rms_ev_per_atom": round(float(np.sqrt((d ** 2).mean())), 5),
        "equiatomic_quaternary_offset_ev": round(quaternary.offset_ev(list(ELEMENTS) * 4,
                                                                       1.0), 5),
        "frames": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        print(f"{r['frame']:24s} {r['formula']:10s} f {r['volume_fraction']:.3f} "
              f"δ {1e3 * r['delta_ev_per_atom']:+6.1f} "
              f"left-out residual {r['leave_one_out_residual_ev_per_atom']} "
              f"force MAE {r['force_mae_ev_per_a']:.3f}")
    print({k: v for k, v in result.items() if k != "frames"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    c = sub.add_parser("compute")
    c.add_argument("--out-dir", type=Path, required=True)
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--worker", type=int, default=0)
    c.add_argument("--workers", type=int, default=1)
    k = sub.add_parser("fit")
    k.add_argument("dirs", type=Path, nargs="+")
    k.add_argument("--data", type=Path, required=True)
    k.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("correct-targets")
    t.add_argument("targets", type=Path, help="a train.mixing_energies targets file")
    t.add_argument("--pair-offsets", type=Path, required=True, help="a fit output")
    t.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.step == "compute":
        compute(args.out_dir, args.data, args.worker, args.workers)
    elif args.step == "fit":
        fit(args.dirs, args.data, args.out)
    else:
        correct_targets(args.targets, args.pair_offsets, args.out)


if __name__ == "__main__":
    main()
