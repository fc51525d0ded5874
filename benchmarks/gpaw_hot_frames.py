"""PBE energies and forces of hot ternary and quaternary Nb-Mo-Ta-W cells with GPAW, written
as ordinary training frames: the one kind of environment the NbMoTaW data lack entirely.

The data hold hot frames of single elements (54-atom AIMD) and mostly near-relaxed binary
cells; nothing is both hot and mixed, yet the held-out quaternary AIMD cells are exactly that
(twenty-second session: the shipped model's forces on GPAW's hot quaternary cells are off by
0.12-0.18 eV/Å MAE against 0.005-0.023 on the data's own binary frames, where GPAW and the
data's VASP agree). Steps:

``make`` (the project's Python): random 16-atom bcc cells (2×2×2 cubic) at a fraction of
GPAW's Vegard volume, each equilibrated by Langevin molecular dynamics with a potential
(default: the shipped model) at its temperature; the last snapshot is the cell::

    python benchmarks/gpaw_hot_frames.py make --out-dir runs/gpaw_hot
    python benchmarks/gpaw_hot_frames.py make --out-dir runs/gpaw_hot2 --cells held_out

``compute`` (system Python with Debian's GPAW; resumable, one JSON per cell, the same
settings as ``gpaw_alloys.py``: PBE, 450 eV, Γ-centred 3×3×3, Fermi-Dirac 0.1 eV)::

    OMP_NUM_THREADS=1 /usr/bin/python3 benchmarks/gpaw_hot_frames.py compute \\
        --out-dir runs/gpaw_hot --worker 0 --workers 2

``collect`` (the project's Python) writes extended-XYZ frames in the data's convention, from
these cells and, with their forces, ``gpaw_alloys.py``'s cold ones (the computed records are
committed under ``benchmarks/results/s23``)::

    python benchmarks/gpaw_hot_frames.py collect benchmarks/results/s23/gpaw_hot \\
        benchmarks/results/s23/gpaw_alloys --data ../shared/data/NbMoTaW/train.extxyz \\
        --out runs/gpaw_hot/frames.extxyz --repeat 6 \\
        --hold-out NbMoTaW_q2 Ta7NbMoW W7NbMoTa NbMoTaW_q5_hot

Transfer to the data's VASP. Each frame is mapped to the corresponding state of the data's
code: the cell is scaled isotropically from GPAW's Vegard volume to the data's (same fraction
of each code's own Vegard volume, as ``train.mixing_energies`` does), the forces are kept, and
the energy becomes E_GPAW − Σ_atoms (μ_GPAW,s − μ_data,s), with μ the bcc energy per atom at
each code's own V₀ (μ_data: the lowest ``<El>_Elastic`` frame of the data; the data's V₀
from the lattice constants its README gives). On the data's own
binary frames GPAW's forces agree with VASP's to 0.005-0.06 eV/Å (MAE) and its mixing
energies to 0-21 meV/atom (``benchmarks/results/s22/mixing_energies_pbe.json``); no stress
is written (the volume mapping is first order in the stress).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from gpaw_alloys import CELLS as ALLOY_CELLS
from gpaw_alloys import ELEMENTS, KPTS_CELL, data_v0, gpaw_energy, gpaw_v0, vegard_volume

# (name, atoms per element in Nb, Mo, Ta, W order, temperature K, volume fraction of Vegard);
# the twenty-third session computed the first 18 (the last two were left for lack of time)
CELLS = (
    ("hq_2000_a", (4, 4, 4, 4), 2000.0, 1.01), ("hq_2500_hold", (4, 4, 4, 4), 2500.0, 1.015),
    ("hq_1000_a", (4, 4, 4, 4), 1000.0, 1.0), ("hq_3000_a", (4, 4, 4, 4), 3000.0, 1.02),
    ("hW7_1500_hold", (3, 3, 3, 7), 1500.0, 1.005), ("hq_1500_b", (4, 4, 4, 4), 1500.0, 1.005),
    ("hNb7_2000", (7, 3, 3, 3), 2000.0, 1.01), ("hMo7_2000", (3, 7, 3, 3), 2000.0, 1.01),
    ("hTa7_2000", (3, 3, 7, 3), 2000.0, 1.01), ("hW7_2000", (3, 3, 3, 7), 2000.0, 1.01),
    ("hNbMoTa_2000", (6, 5, 5, 0), 2000.0, 1.01), ("hMoTaW_2000", (0, 6, 5, 5), 2000.0, 1.01),
    ("hNbTaW_2000", (5, 0, 5, 6), 2000.0, 1.01), ("hNbMoW_2000", (5, 6, 0, 5), 2000.0, 1.01),
    ("hq_2500_b", (4, 4, 4, 4), 2500.0, 1.015), ("h5533_1500", (5, 5, 3, 3), 1500.0, 1.005),
    ("h3355_1500", (3, 3, 5, 5), 1500.0, 1.005), ("hMoTaW_1000_hold", (0, 6, 5, 5), 1000.0, 1.0),
    ("hq_600_a", (4, 4, 4, 4), 600.0, 1.0), ("hq_3000_b", (4, 4, 4, 4), 3000.0, 1.02),
)
#: A second, held-out set (twenty-fourth session), equilibrated by the model trained on the
#: first (``make --cells held_out``): temperatures and compositions between the first set's
HELD_OUT_CELLS = (
    ("hq_800_hold", (4, 4, 4, 4), 800.0, 1.0), ("hq_1200_hold", (4, 4, 4, 4), 1200.0, 1.0),
    ("hq_1800_hold", (4, 4, 4, 4), 1800.0, 1.01),
    ("hNb7_1200_hold", (7, 3, 3, 3), 1200.0, 1.0),
    ("hMo7_1500_hold", (3, 7, 3, 3), 1500.0, 1.005),
    ("hTa7_1500_hold", (3, 3, 7, 3), 1500.0, 1.005),
    ("hNbMoTa_1200_hold", (6, 5, 5, 0), 1200.0, 1.0),
    ("hNbTaW_1500_hold", (5, 0, 5, 6), 1500.0, 1.005),
    ("hNbMoW_1000_hold", (5, 6, 0, 5), 1000.0, 1.0),
    ("h5533_2000_hold", (5, 5, 3, 3), 2000.0, 1.01),
)
SEED = 23
#: each set's cells and the seed of its first cell's random decoration and MD
CELL_SETS = {"training": (CELLS, SEED), "held_out": (HELD_OUT_CELLS, SEED + 1000)}
# GPAW bcc references at V0 (energy, eV), copied from gpaw_alloys.py's compute step
REFS_DIR = Path(__file__).parent / "results" / "s23" / "gpaw_refs"
MD_STEPS = 400  # 2 fs each, after Maxwell-Boltzmann velocities at 2 T (equipartition)
TIMESTEP_FS = 2.0
FRICTION = 0.02  # Langevin friction, 1/fs × ASE's units below


def make(out_dir: Path, potential: str, cell_set: str = "training") -> None:
    """Equilibrate each cell of ``CELL_SETS[cell_set]`` with ``potential`` and write
    ``cells.json``."""
    from ase import units
    from ase.build import bulk
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from matdesign.calculator import load_calculator

    if (out_dir / "cells.json").exists():
        raise SystemExit(f"{out_dir / 'cells.json'} exists: its cells may already be computed; "
                         "choose another --out-dir")
    calc = load_calculator(potential, dtype="float64")
    v0 = gpaw_v0()
    cells = []
    chosen, seed = CELL_SETS[cell_set]
    for k, (name, counts, temp, f) in enumerate(chosen):
        rng = np.random.default_rng(seed + k)
        atoms = bulk("W", "bcc", a=1.0, cubic=True).repeat(2)
        symbols = [el for el, n in zip(ELEMENTS, counts) for _ in range(n)]
        rng.shuffle(symbols)
        atoms.set_chemical_symbols(symbols)
        volume = f * vegard_volume(symbols, v0)
        atoms.set_cell(atoms.cell * (volume / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
        atoms.calc = calc
        MaxwellBoltzmannDistribution(atoms, temperature_K=2 * temp, rng=rng)
        dyn = Langevin(atoms, TIMESTEP_FS * units.fs, temperature_K=temp,
                       friction=FRICTION / units.fs, rng=rng)
        dyn.run(MD_STEPS)
        cells.append({"name": name, "temperature_k": temp, "volume_fraction": f,
                      "symbols": atoms.get_chemical_symbols(), "cell": atoms.cell.tolist(),
                      "scaled_positions": atoms.get_scaled_positions().tolist()})
        rms = float(np.sqrt((atoms.get_forces() ** 2).mean()))
        print(f"{name}: {temp:.0f} K, model force rms {rms:.2f} eV/Å", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cells.json").write_text(json.dumps({"potential": potential, "cells": cells},
                                                   indent=1) + "\n")


def compute(out_dir: Path, worker: int, workers: int) -> None:
    """GPAW energy and forces of every ``worker``-th cell of ``cells.json`` not yet done."""
    from ase import Atoms

    cells = json.loads((out_dir / "cells.json").read_text())["cells"]
    for k, rec in enumerate(cells):
        path = out_dir / f"{rec['name']}.json"
        if k % workers != worker or path.exists():
            continue
        atoms = Atoms(rec["symbols"], cell=rec["cell"], scaled_positions=rec["scaled_positions"],
                      pbc=True)
        start = time.time()
        energy, forces = gpaw_energy(atoms, KPTS_CELL, str(out_dir / f"{rec['name']}.txt"))
        path.write_text(json.dumps({**rec, "energy_ev": energy, "forces_ev_per_a": forces,
                                    "seconds": time.time() - start}, indent=1))
        print(rec["name"], round(energy / len(atoms), 5), f"{time.time() - start:.0f} s",
              flush=True)


def data_references(data: Path) -> dict[str, float]:
    """The data's bcc energy per atom (eV) of each element: its lowest ``<El>_Elastic`` frame
    (as ``gpaw_alloys.py``'s binary check takes it)."""
    from ase.io import read

    mu: dict[str, float] = {}
    for frame in read(data, ":"):
        ct = frame.info.get("config_type", "")
        el = ct.removesuffix("_Elastic")
        if ct.endswith("_Elastic") and el in ELEMENTS:
            mu[el] = min(mu.get(el, np.inf), frame.get_potential_energy() / len(frame))
    return mu


def gpaw_references() -> dict[str, float]:
    """GPAW's bcc energy per atom (eV) of each element at its GPAW V₀: the 2-atom references
    of ``gpaw_alloys.py`` (6×6×6 k-points), committed under ``REFS_DIR``."""
    mu = {}
    for el in ELEMENTS:
        ref = json.loads((REFS_DIR / f"ref_{el}.json").read_text())
        mu[el] = ref["energy_ev"] / len(ref["symbols"])
    return mu


def collect(out_dirs: list[Path], data: Path, out: Path, repeat: int = 1,
            hold_out: tuple[str, ...] = (), pair_offsets: Path | None = None) -> None:
    """Training frames (``out``, each written ``repeat`` times: a per-frame weight for a
    trainer that samples frames uniformly) and held-out frames (names ending ``_hold`` or in
    ``hold_out``, once: ``<out stem>_holdout.extxyz``), mapped to the data's code as the
    module docstring says. ``out_dirs`` hold one JSON per cell (this script's or
    ``gpaw_alloys.py``'s; the latter's binary checks and references are skipped).
    ``pair_offsets``: a ``gpaw_pair_offsets.py fit`` result; every energy (and held-out mixing
    energy) then loses N times its offset (``PairOffsets.offset_ev`` at the cell's volume
    fraction), GPAW's pairwise departure from the data's VASP."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write
    from gpaw_pair_offsets import load_offsets

    offsets = load_offsets(pair_offsets) if pair_offsets else None
    alloy_fractions = {c[0]: c[2] for c in ALLOY_CELLS}  # gpaw_alloys.py's records carry none
    mu_data = data_references(data)
    v_data = data_v0()
    v_gpaw = gpaw_v0()
    mu_gpaw = gpaw_references()
    train, held, held_points = [], [], []
    paths = sorted(p for d in out_dirs for p in d.glob("*.json"))
    for path in paths:
        if path.name == "cells.json" or path.name.startswith(("check_", "ref_")):
            continue
        rec = json.loads(path.read_text())
        sym = rec["symbols"]
        scale = (vegard_volume(sym, v_data) / vegard_volume(sym, v_gpaw)) ** (1 / 3)
        atoms = Atoms(sym, cell=np.array(rec["cell"]) * scale,
                      scaled_positions=rec["scaled_positions"], pbc=True)
        f = rec.get("volume_fraction", alloy_fractions.get(rec["name"]))
        offset = offsets.offset_ev(sym, f) if offsets else 0.0  # eV/atom
        energy = rec["energy_ev"] - sum(mu_gpaw[s] - mu_data[s] for s in sym) - len(sym) * offset
        atoms.calc = SinglePointCalculator(atoms, energy=energy,
                                           forces=np.array(rec["forces_ev_per_a"]))
        kind = "quaternary" if len(set(sym)) == 4 else "ternary"
        hot = "temperature_k" in rec or "hot" in rec["name"]
        atoms.info.update(config_type=f"GPAW_{'hot' if hot else 'cold'}_{kind}",
                          name=rec["name"], pair_offset_ev_per_atom=round(offset, 6))
        is_held = rec["name"].endswith("_hold") or rec["name"] in hold_out
        (held if is_held else train).append(atoms)
        if is_held:  # also as a train.mixing_energies point, for mixing_check.py
            n = len(sym)
            shape = np.array(rec["cell"]) / (f * vegard_volume(sym, v_gpaw)) ** (1 / 3)
            held_points.append({
                "name": rec["name"], "symbols": sym, "cell_shape": np.round(shape, 10).tolist(),
                "scaled_positions": rec["scaled_positions"], "volume_fraction": f,
                "mixing_energy_ev": round((rec["energy_ev"] - sum(mu_gpaw[s] for s in sym)) / n
                                          - offset, 5)})
    out.parent.mkdir(parents=True, exist_ok=True)
    write(out, [a for a in train for _ in range(repeat)], format="extxyz")
    write(out.with_name(out.stem + "_holdout.extxyz"), held, format="extxyz")
    if held_points:
        source = ("GPAW 22.8, PBE, the settings of gpaw_alloys.py; mixing energy against bcc "
                  "elements at their GPAW V0; benchmarks/gpaw_hot_frames.py, held-out cells"
                  + (f"; pair offsets of {pair_offsets} subtracted" if offsets else ""))
        out.with_name(out.stem + "_holdout_mixing.json").write_text(
            json.dumps({"source": source, "points": held_points}, indent=1) + "\n")
    print(f"{len(train)} training frames (x{repeat}) -> {out}; {len(held)} held out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out-dir", type=Path, required=True)
    m.add_argument("--potential", default="default")
    m.add_argument("--cells", choices=sorted(CELL_SETS), default="training")
    c = sub.add_parser("compute")
    c.add_argument("--out-dir", type=Path, required=True)
    c.add_argument("--worker", type=int, default=0)
    c.add_argument("--workers", type=int, default=1)
    k = sub.add_parser("collect")
    k.add_argument("out_dirs", type=Path, nargs="+")
    k.add_argument("--data", type=Path, required=True)
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--repeat", type=int, default=1, help="copies of each training frame")
    k.add_argument("--hold-out", nargs="*", default=[], help="more cell names to hold out")
    k.add_argument("--pair-offsets", type=Path, help="gpaw_pair_offsets.py fit output")
    args = parser.parse_args()
    if args.step == "make":
        make(args.out_dir, args.potential, args.cells)
    elif args.step == "compute":
        compute(args.out_dir, args.worker, args.workers)
    else:
        collect(args.out_dirs, args.data, args.out, args.repeat, tuple(args.hold_out),
                args.pair_offsets)


if __name__ == "__main__":
    main()
