"""Time the property calculators, batched vs one call per structure, and report bcc elastics.

    python benchmarks/properties.py --potential default --plot w_phonons.png
    python benchmarks/properties.py --potential emt --quick --plot /tmp/cu.png   # smoke test

Times relax, elastic (16-atom bcc cell) and phonon (bcc primitive, 15 Å supercell) with
``--threads`` torch threads; prints C11/C12/C44 (GPa) of bcc Nb, Mo, Ta, W and plots W's
phonon dispersion. EMT knows none of these elements, so ``--potential emt`` runs every case
on bcc Cu instead (mechanically unstable under EMT; only the timings mean anything then).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes

LATTICE_A = {"Nb": 3.30, "Mo": 3.15, "Ta": 3.30, "W": 3.16}  # Å, experimental, room temperature


class OneByOne(Calculator):
    """Hides ``calculate_batch`` so every structure costs its own calculator call."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, inner: Calculator) -> None:
        super().__init__()
        self.inner = inner

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self.inner
        energy = work.get_potential_energy()
        self.results = {"energy": energy, "free_energy": energy, "forces": work.get_forces(),
                        "stress": work.get_stress()}


def timed(label: str, func):
    start = time.perf_counter()
    out = func()
    print(f"{label:<44s} {time.perf_counter() - start:8.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--potential", default="default")
    parser.add_argument("--plot", default="w_phonons.png", help="PNG path for W's dispersion")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args()

    import torch

    from matdesign.calculator import load_calculator
    from matdesign.properties import ElasticCalculator, PhononCalculator, relax

    torch.set_num_threads(args.threads)
    calc = load_calculator(args.potential, dtype="float64")
    emt = args.potential == "emt"
    elements = ["W"] if args.quick else ["Nb", "Mo", "Ta", "W"]
    min_length = 8.0 if args.quick else 15.0
    relaxed = {}
    for el in elements:
        sym = "Cu" if emt else el
        start = bulk(sym, "bcc", a=2.87 if emt else LATTICE_A[el])
        atoms, res = timed(f"relax {el} ({sym}) bcc primitive", lambda s=start: relax(s, calc))
        if not res.converged:
            raise SystemExit(f"relaxation of {el} did not converge: {res}")
        relaxed[el] = atoms

    cell16 = relaxed["W"].copy()
    cell16 = bulk(cell16.get_chemical_symbols()[0], "bcc", a=(2 * cell16.get_volume()) ** (1 / 3),
                  cubic=True) * (2, 2, 2)
    for mode, c in (("batched", calc), ("one-by-one", OneByOne(calc))):
        timed(f"elastic 16-atom bcc, clamped-ion, {mode}",
              lambda c=c: ElasticCalculator(c, relax_ions=False).calc(cell16))
        timed(f"phonon bcc primitive {min_length:g} Å, {mode}",
              lambda c=c: PhononCalculator(c, min_length=min_length, imaginary_policy="ignore",
                                           mesh=(8, 8, 8)).calc(relaxed["W"]))

    print(f"\n{'':4s}{'C11':>9s}{'C12':>9s}{'C44':>9s}  (GPa, relaxed-ion, born_stable)")
    for el, atoms in relaxed.items():
        r = ElasticCalculator(calc).calc(atoms)
        c = np.array(r.elastic_tensor_gpa)
        # the bcc primitive cell from ase.build keeps the cubic axes, so C is in the cubic frame
        print(f"{el:4s}{c[0, 0]:9.1f}{c[0, 1]:9.1f}{c[3, 3]:9.1f}  {r.born_stable}")

    with tempfile.TemporaryDirectory() as tmp:
        result = PhononCalculator(calc, min_length=min_length, imaginary_policy="ignore").calc(
            relaxed["W"], output_dir=tmp)
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        Path(args.plot).write_bytes((Path(tmp) / "band_dos.png").read_bytes())
    print(f"\nW phonons: min {result.min_frequency_thz:.3f} THz, stable "
          f"{result.dynamically_stable}, supercell {result.n_atoms_supercell} atoms; "
          f"wrote {args.plot}")


if __name__ == "__main__":
    main()
