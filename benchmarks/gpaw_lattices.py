"""PBE energies of one-atom bcc, fcc and simple-cubic cells with GPAW: targets for
``train.lattice_energies`` (matdesign.training.lattice_energies).

The NbMoTaW data hold no fcc or simple-cubic cell and nothing stretched far beyond
equilibrium; this script labels those cells with the data's functional (PBE) so that a
training stage can pin the energies the data leave free.

Two steps. First, per element (resumable: points already in ``OUT_DIR/<El>.json`` are kept;
one core each, about 12 minutes per element on this machine)::

    OMP_NUM_THREADS=1 /usr/bin/python3 benchmarks/gpaw_lattices.py compute W --out-dir runs/gpaw

finds bcc V₀ from a Birch-Murnaghan fit over five volumes (±6 %), then the energy of each
lattice at f·V₀, f in :data:`FRACTIONS`. Second, with any Python that has ASE::

    python benchmarks/gpaw_lattices.py collect runs/gpaw/*.json --out targets.json

writes E(lattice, f·V₀) − E(bcc, V₀) per atom in the targets format.

GPAW is not a project dependency: Debian's ``apt-get install gpaw gpaw-data`` (GPAW 22.8 with
its PAW setups, for the system Python) is enough. Settings: plane waves 550 eV, PBE, k-point
density 8 Å (Γ-centred), Fermi-Dirac smearing 0.1 eV (energies extrapolated to zero width),
not spin-polarised (as the data).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# ``compute`` runs under the system Python that has GPAW and no torch, so the lattice names
# and cell construction are written here rather than imported from matdesign.training
FRACTIONS = (1.0, 0.85, 0.92, 1.1, 1.25, 1.45, 1.7, 2.0, 2.5)  # V/V₀
LATTICES = ("bcc", "fcc", "sc")
A_GUESS = {"Nb": 3.31, "Mo": 3.16, "Ta": 3.32, "W": 3.18}  # Å, starting bcc lattice constant
ATOMS_PER_CUBIC_CELL = {"bcc": 2, "fcc": 4, "sc": 1}


def compute(element: str, out_dir: Path) -> None:
    """Label the element's cells (GPAW), appending each point to ``out_dir/<element>.json``."""
    from ase.build import bulk
    from ase.eos import EquationOfState
    from gpaw import GPAW, PW, FermiDirac

    out = out_dir / f"{element}.json"
    record = json.loads(out.read_text()) if out.exists() else {"element": element,
                                                               "points": []}

    def energy(lattice: str, volume: float) -> float:
        for p in record["points"]:
            if p["lattice"] == lattice and round(p["volume_a3"], 5) == round(volume, 5):
                return p["energy_ev"]
        a = (ATOMS_PER_CUBIC_CELL[lattice] * volume) ** (1 / 3)
        atoms = bulk(element, lattice, a=a)
        start = time.time()
        atoms.calc = GPAW(mode=PW(550), xc="PBE", kpts={"density": 8.0, "gamma": True},
                          occupations=FermiDirac(0.1), txt=None, setups="paw")
        e = atoms.get_potential_energy()
        record["points"].append({"lattice": lattice, "volume_a3": volume, "energy_ev": e,
                                 "seconds": time.time() - start})
        out.write_text(json.dumps(record, indent=1))
        print(element, lattice, round(volume, 3), e, flush=True)
        return e

    guess = A_GUESS[element] ** 3 / 2
    volumes = [guess * f for f in (0.94, 0.97, 1.0, 1.03, 1.06)]
    energies = [energy("bcc", v) for v in volumes]
    v0, e0, _ = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    record["v0_a3"], record["e0_ev"] = v0, e0
    out.write_text(json.dumps(record, indent=1))
    for f in FRACTIONS:
        for lattice in LATTICES:
            energy(lattice, v0 * f)


def collect(paths: list[Path], out: Path) -> None:
    """Energies above bcc at V₀ for every element's points at :data:`FRACTIONS`."""
    points = []
    for path in paths:
        record = json.loads(path.read_text())
        v0 = record["v0_a3"]
        by_key = {(p["lattice"], round(p["volume_a3"] / v0, 4)): p["energy_ev"]
                  for p in record["points"]}
        e_ref = by_key[("bcc", 1.0)]
        for f in FRACTIONS:
            for lattice in LATTICES:
                key = (lattice, round(f, 4))
                if key in by_key and key != ("bcc", 1.0):
                    points.append({"element": record["element"], "lattice": lattice,
                                   "volume_fraction": f,
                                   "energy_above_bcc_ev": round(by_key[key] - e_ref, 5)})
    source = ("GPAW 22.8 (Debian), PBE, PAW setups 0.9.20000, plane waves 550 eV, k-point "
              "density 8/Å Γ-centred, Fermi-Dirac 0.1 eV extrapolated to 0, not spin-polarised; "
              "one-atom cells; V0 from a Birch-Murnaghan fit of bcc; benchmarks/gpaw_lattices.py")
    out.write_text(json.dumps({"source": source, "points": points}, indent=1) + "\n")
    print(f"{len(points)} points -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    c = sub.add_parser("compute")
    c.add_argument("element", choices=sorted(A_GUESS))
    c.add_argument("--out-dir", type=Path, required=True)
    k = sub.add_parser("collect")
    k.add_argument("paths", nargs="+", type=Path)
    k.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.step == "compute":
        args.out_dir.mkdir(parents=True, exist_ok=True)
        compute(args.element, args.out_dir)
    else:
        collect(args.paths, args.out)


if __name__ == "__main__":
    main()
