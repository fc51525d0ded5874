"""PBE mixing energies of ternary and quaternary Nb-Mo-Ta-W cells with GPAW: the chemistry the
NbMoTaW data never show, as targets for ``train.mixing_energies``
(matdesign.training.mixing_energies) and as an independent check of a model there.

The data hold elements and binaries only, yet design campaigns search ternaries and
quaternaries, where the held-out error of the shipped model is mostly a systematic offset.
This script labels 16-atom bcc cells (2×2×2 cubic, the data's binary cells) with the data's
functional and reports, per cell,

    ΔE_mix = E(cell)/N − Σ_i x_i E_i(bcc, V₀,i)        (eV/atom)

against each element's bcc crystal at its own GPAW V₀ (``benchmarks/results/s21/gpaw``),
the cell at ``volume_fraction`` × Vegard's volume Σ_i x_i V₀,i. A model is asked for the same
difference at the same fraction of *its* Vegard volume, so neither code's absolute energies
nor its slightly different V₀ enter. Three binary frames of the training data are labelled
too, so that GPAW's mixing energy can be set against the data's own (VASP) on the same cells.

Steps. ``compute`` (system Python with Debian's GPAW; resumable, one JSON per cell;
``--worker k --workers n`` takes every n-th cell)::

    OMP_NUM_THREADS=1 /usr/bin/python3 benchmarks/gpaw_alloys.py compute \\
        --out-dir runs/gpaw_alloys --data ../shared/data/NbMoTaW/train.extxyz \\
        --worker 0 --workers 2

then ``collect`` (any Python with ASE) writes the targets file and the binary check::

    python benchmarks/gpaw_alloys.py collect runs/gpaw_alloys \\
        --data ../shared/data/NbMoTaW/train.extxyz \\
        --out benchmarks/results/s22/mixing_energies_pbe.json

Settings: PBE, PAW setups, plane waves 450 eV, Γ-centred 3×3×3 k-points for the 16-atom cell
and the equivalent 6×6×6 for the 2-atom elemental references (the same sampling, folded, so
that k-point errors cancel in ΔE_mix), Fermi-Dirac 0.1 eV, not spin-polarised. About 8-10
minutes per 16-atom cell on one core of this machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ELEMENTS = ("Nb", "Mo", "Ta", "W")
GPAW_V0_DIR = Path(__file__).parent / "results" / "s21" / "gpaw"  # bcc V₀ per element (Å³)
# the data's bcc lattice constants (data README), Å: its V₀ for the binary check
DATA_A = {"Nb": 3.323, "Mo": 3.169, "Ta": 3.322, "W": 3.190}
CUTOFF_EV = 450.0
KPTS_CELL = 3  # Γ-centred mesh of the 2×2×2 cubic cell; 2 × this for the 2-atom cell
SEED = 22
# looser than GPAW's default (density 1e-4, eigenstates 4e-8): on the first cell the energy
# at density 1e-3 was within 0.15 meV/atom of the default's, at 55 % of the iterations
# (the first two cells, NbMoTaW_q0 and check_MoTa_SS_0, ran with the default)
CONVERGENCE = {"density": 1e-3, "eigenstates": 3e-5}

# (name, atoms per element in Nb, Mo, Ta, W order, volume fraction of Vegard's volume);
# ternaries rotate their majority element, quaternaries are equiatomic or rich in one element
CELLS = (
    ("NbMoTaW_q0", (4, 4, 4, 4), 1.0), ("NbMoTa", (6, 5, 5, 0), 1.0),
    ("NbMoTaW_q1", (4, 4, 4, 4), 1.0), ("MoTaW", (0, 6, 5, 5), 1.0),
    ("NbMoTaW_q2", (4, 4, 4, 4), 1.0), ("NbTaW", (5, 0, 5, 6), 1.0),
    ("NbMoW", (5, 6, 0, 5), 1.0), ("Nb7MoTaW", (7, 3, 3, 3), 1.0),
    ("Mo7NbTaW", (3, 7, 3, 3), 1.0), ("Ta7NbMoW", (3, 3, 7, 3), 1.0),
    ("W7NbMoTa", (3, 3, 3, 7), 1.0), ("NbMoTaW_q3_compressed", (4, 4, 4, 4), 0.94),
    ("NbMoTaW_q4_hot", (4, 4, 4, 4), 1.0), ("NbMoTaW_q5_hot", (4, 4, 4, 4), 1.0),
)
# cells whose atoms are displaced at random (Gaussian, per component, in units of the cube
# root of the atomic volume: 0.035 is about 0.09 Å, a hot AIMD snapshot's size)
RATTLE = {"NbMoTaW_q4_hot": 0.035, "NbMoTaW_q5_hot": 0.035}
# training-data binary frames labelled for the GPAW-vs-VASP check: (config_type, index in
# that family's frames); near-equiatomic ones
BINARY_CHECK = (("MoTa_SS", 0), ("NbW_SS", 0), ("TaW_SS", 0), ("NbW_SS", 102), ("NbMo_SS", 0),
                ("NbTa_SS", 0), ("MoW_SS", 0))
CHECK_SLOTS = (1, 5, 14, 17, 18, 19, 20)  # places in the job list (two early); NbW 102: at
# the Nb lattice, where NbW 0 sits at the W lattice


def gpaw_v0() -> dict[str, float]:
    return {el: json.loads((GPAW_V0_DIR / f"{el}.json").read_text())["v0_a3"]
            for el in ELEMENTS}


def data_v0() -> dict[str, float]:
    """The data's bcc V₀ per element (Å³), from the lattice constants its README gives."""
    return {el: a ** 3 / 2 for el, a in DATA_A.items()}


def alloy_cell(counts: tuple[int, ...], seed: int, rattle: float = 0.0):  # -> ase.Atoms
    """A 16-atom bcc cell (2×2×2 cubic) with the given atoms per element on random sites,
    scaled to unit volume per atom, its atoms displaced by ``rattle`` (Gaussian σ)."""
    from ase.build import bulk

    atoms = bulk("W", "bcc", a=1.0, cubic=True).repeat(2)
    symbols = [el for el, n in zip(ELEMENTS, counts) for _ in range(n)]
    rng = np.random.default_rng(seed)
    rng.shuffle(symbols)
    atoms.set_chemical_symbols(symbols)
    atoms.set_cell(atoms.cell * (len(atoms) / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
    if rattle:
        atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
    return atoms


def binary_frame(frames: list, family: str, index: int):  # -> ase.Atoms
    """The ``index``-th near-equiatomic frame (majority fraction < 0.6) of ``family``."""
    family_frames = [f for f in frames if f.info.get("config_type") == family
                     and max(np.unique(f.numbers, return_counts=True)[1]) / len(f) < 0.6]
    return family_frames[index]


def vegard_volume(symbols: list[str], v0: dict[str, float]) -> float:
    """Σ_i V₀,i over the atoms, Å³."""
    return float(sum(v0[s] for s in symbols))


def jobs(frames: list) -> list[tuple[str, object, float]]:
    """(name, atoms at unit volume per atom or a data frame, volume fraction) per cell;
    ``frames``: the training data, read once by the caller."""
    out = [(name, alloy_cell(counts, SEED + k, RATTLE.get(name, 0.0)), f)
           for k, (name, counts, f) in enumerate(CELLS)]
    vasp_v0 = data_v0()
    for slot, (family, index) in zip(CHECK_SLOTS, BINARY_CHECK):
        frame = binary_frame(frames, family, index)
        f = frame.get_volume() / vegard_volume(frame.get_chemical_symbols(), vasp_v0)
        out.insert(slot, (f"check_{family}_{index}", frame, f))
    return out


def gpaw_energy(atoms, kpts: int, txt: str) -> tuple[float, list]:
    from gpaw import GPAW, PW, FermiDirac

    atoms.calc = GPAW(mode=PW(CUTOFF_EV), xc="PBE", kpts={"size": (kpts,) * 3, "gamma": True},
                      occupations=FermiDirac(0.1), txt=txt, setups="paw",
                      convergence=CONVERGENCE)
    energy = atoms.get_potential_energy()
    return float(energy), atoms.get_forces().tolist()


def compute(out_dir: Path, data: Path, worker: int, workers: int, only: list[str]) -> None:
    from ase.build import bulk
    from ase.io import read

    out_dir.mkdir(parents=True, exist_ok=True)
    v0 = gpaw_v0()
    todo: list[tuple[str, object, int]] = []
    if worker == 0:  # the elemental references first: seconds each
        for el in ELEMENTS:
            todo.append((f"ref_{el}", bulk(el, "bcc", a=(2 * v0[el]) ** (1 / 3), cubic=True),
                         2 * KPTS_CELL))
    cells = list(enumerate(jobs(read(data, ":"))))
    if only:
        cells = sorted((c for c in cells if c[1][0] in only), key=lambda c: only.index(c[1][0]))
    for k, (name, atoms, f) in cells:
        if not only and k % workers != worker:
            continue
        cell = atoms.copy()
        cell.set_cell(atoms.cell * (f * vegard_volume(atoms.get_chemical_symbols(), v0)
                              / atoms.get_volume())
                      ** (1 / 3), scale_atoms=True)
        todo.append((name, cell, KPTS_CELL))
    for name, atoms, kpts in todo:
        path = out_dir / f"{name}.json"
        if path.exists():
            continue
        start = time.time()
        energy, forces = gpaw_energy(atoms, kpts, str(out_dir / f"{name}.txt"))
        path.write_text(json.dumps({
            "name": name, "symbols": atoms.get_chemical_symbols(),
            "cell": atoms.cell.tolist(), "scaled_positions": atoms.get_scaled_positions().tolist(),
            "energy_ev": energy, "forces_ev_per_a": forces, "seconds": time.time() - start,
        }, indent=1))
        print(name, round(energy / len(atoms), 5), f"{time.time() - start:.0f} s", flush=True)


def collect(out_dir: Path, data: Path, out: Path, hold_out: list[str]) -> None:
    """The targets file (alloy cells) and, printed and stored under ``binary_check``, GPAW's
    and the data's mixing energies of the same binary frames. Cells named in ``hold_out`` go
    to a second file, ``<out>_holdout.json``, for testing a model trained on the first."""
    from ase.io import read

    v0 = gpaw_v0()
    frames = read(data, ":")
    mu_vasp = {el: min(fr.get_potential_energy() / len(fr) for fr in frames
                       if fr.info.get("config_type") == f"{el}_Elastic") for el in ELEMENTS}
    mu = {}
    for el in ELEMENTS:
        ref = json.loads((out_dir / f"ref_{el}.json").read_text())
        mu[el] = ref["energy_ev"] / len(ref["symbols"])
    points, check = [], []
    for name, atoms, f in jobs(frames):
        path = out_dir / f"{name}.json"
        if not path.exists():
            print(f"{name}: not computed yet, skipped")
            continue
        rec = json.loads(path.read_text())
        n = len(rec["symbols"])
        mix = rec["energy_ev"] / n - sum(mu[s] for s in rec["symbols"]) / n
        if name.startswith("check_"):
            vasp = (atoms.get_potential_energy() / n
                    - sum(mu_vasp[s] for s in atoms.get_chemical_symbols()) / n)
            check.append({"frame": name, "formula": atoms.get_chemical_formula(),
                          "gpaw_mixing_ev": round(mix, 5), "data_mixing_ev": round(vasp, 5),
                          "difference_ev": round(mix - vasp, 5)})
            print(f"{name} {atoms.get_chemical_formula()}: GPAW {1e3 * mix:.1f}, "
                  f"data {1e3 * vasp:.1f} meV/atom")
            continue
        cell = np.array(rec["cell"]) / (f * vegard_volume(rec["symbols"], v0)) ** (1 / 3)
        points.append({"name": name, "symbols": rec["symbols"],
                       "cell_shape": np.round(cell, 10).tolist(),
                       "scaled_positions": rec["scaled_positions"], "volume_fraction": f,
                       "mixing_energy_ev": round(mix, 5)})
        print(f"{name}: ΔE_mix {1e3 * mix:.1f} meV/atom")
    source = (f"GPAW 22.8 (Debian), PBE, PAW setups, plane waves {CUTOFF_EV:.0f} eV, "
              f"Γ-centred {KPTS_CELL}³ k-points per 16-atom cell ({2 * KPTS_CELL}³ for the "
              "2-atom references), Fermi-Dirac 0.1 eV, not spin-polarised; mixing energy "
              "against bcc elements at their GPAW V0; cells at volume_fraction × Vegard; "
              "benchmarks/gpaw_alloys.py")
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = [p for p in points if p["name"] not in hold_out]
    out.write_text(json.dumps({"source": source, "points": kept, "binary_check": check},
                              indent=1) + "\n")
    print(f"{len(kept)} points -> {out}")
    if hold_out:
        held = out.with_name(out.stem + "_holdout.json")
        held.write_text(json.dumps({"source": source, "points": [
            p for p in points if p["name"] in hold_out]}, indent=1) + "\n")
        print(f"{len(points) - len(kept)} held-out points -> {held}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    c = sub.add_parser("compute")
    c.add_argument("--out-dir", type=Path, required=True)
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--worker", type=int, default=0)
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--only", nargs="*", default=[], help="these cells, in this order")
    k = sub.add_parser("collect")
    k.add_argument("out_dir", type=Path)
    k.add_argument("--data", type=Path, required=True)
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--hold-out", nargs="*", default=[], help="cell names for a test file")
    args = parser.parse_args()
    if args.step == "compute":
        compute(args.out_dir, args.data, args.worker, args.workers, args.only)
    else:
        collect(args.out_dir, args.data, args.out, args.hold_out)


if __name__ == "__main__":
    main()
