"""Physical checks of a NbMoTaW potential against the DFT values implied by its training data.

    python benchmarks/physcheck.py --potential runs/v12/model.pt --json runs/v12/phys.json

For bcc Nb, Mo, Ta and W (float64): the relaxed lattice constant, the relaxed-ion C11, C12,
C44 (strains ±0.5 % and ±1 %, as ``matdesign elastic``) and the phonons on a 7×7×7 primitive
supercell, faces 16 Å apart (stable or not, lowest frequency; until the twenty-first session
5×5×5, 11.7 Å, by the default atom cap). Prints each against the DFT reference, the number of
elastic entries within 5 % and the mean |error| of the elastic entries without Nb C44 (the
data constrain it poorly: benchmarks/README.md, "Elastic constants and lattice constants").

E(V) of one-atom bcc, fcc and simple-cubic cells of each element from 0.35 to 2.5 of the DFT
bcc volume (44 volumes per unit of V/V0; up to the twentieth session 0.35 to 1.3, which missed
v15's simple-cubic W minimum at 1.84 V0). A sane potential has one minimum per lattice, below
1.25 V0 (these metals' bcc, fcc and sc equilibrium volumes lie within about ±10 % of bcc's),
no fcc or sc minimum below the bcc equilibrium energy (bcc is the ground state of all four)
and no compressed cell (V ≤ 0.8 V0) below it either.

With ``--lattice-energies FILE`` (a ``train.lattice_energies`` targets file, e.g. the GPAW PBE
one of ``benchmarks/gpaw_lattices.py``) the same cells are compared with those reference
energies above bcc at V0: mean and largest |error| over all cells, and the error of each.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase.build import bulk

#: DFT (PBE) lattice constants implied by the data's *_Elastic groups, Å
DFT_A = {"Nb": 3.323, "Mo": 3.169, "Ta": 3.322, "W": 3.190}
#: DFT C11, C12, C44 implied by the data, GPa (data README; Nb C44 from the energies)
DFT_C = {"Nb": (240.0, 141.0, 15.0), "Mo": (483.0, 155.0, 104.0), "Ta": (264.0, 161.0, 67.0),
         "W": (526.0, 195.0, 141.0)}
TOLERANCE = 0.05  # the 5 % floor on each elastic entry


@dataclass(frozen=True)
class ElementCheck:
    """One element's checks (lengths Å, moduli GPa, frequencies THz)."""

    element: str
    lattice_a: float
    lattice_error_percent: float
    c11_gpa: float
    c12_gpa: float
    c44_gpa: float
    born_stable: bool
    phonons_stable: bool
    min_frequency_thz: float


def check_element(calc: object, element: str) -> ElementCheck:
    from matdesign.properties import ElasticCalculator, PhononCalculator, relax

    atoms, res = relax(bulk(element, "bcc", a=DFT_A[element]), calc)
    if not res.converged:
        raise SystemExit(f"relaxation of bcc {element} did not converge: {res}")
    a = (2 * atoms.get_volume()) ** (1 / 3)
    elastic = ElasticCalculator(calc).calc(atoms)
    c = np.array(elastic.elastic_tensor_gpa)  # ase's bcc primitive keeps the cubic axes
    # the default cap (MAX_SUPERCELL_ATOMS, 400 since the twenty-first session) gives the
    # 7x7x7 primitive supercell min_length asks for; the earlier 200 gave 5x5x5 (11.7 Å),
    # narrower than the model's 10 Å receptive field (v21's Nb: -0.29 THz near Γ there)
    phonon = PhononCalculator(calc, min_length=15.0, imaginary_policy="ignore").calc(atoms)
    return ElementCheck(element=element, lattice_a=float(a),
                        lattice_error_percent=float(100 * (a / DFT_A[element] - 1)),
                        c11_gpa=float(c[0, 0]), c12_gpa=float(c[0, 1]), c44_gpa=float(c[3, 3]),
                        born_stable=bool(elastic.born_stable),
                        phonons_stable=bool(phonon.dynamically_stable),
                        min_frequency_thz=float(phonon.min_frequency_thz))


@dataclass(frozen=True)
class ShortRangeCheck:
    """E(V) of one lattice of one element (energies eV/atom, relative to bcc at V0)."""

    element: str
    lattice: str
    local_minima: int
    lowest_compressed_ev: float  # min over V <= 0.8 V0 of E - E_bcc(V0)
    # V/V0 of every local minimum and its energy above bcc at V0 (eV/atom)
    minima_fractions: tuple[float, ...] = ()
    minima_ev: tuple[float, ...] = ()


def short_range(calc: object, element: str) -> list[ShortRangeCheck]:
    from matdesign.training.compression import energies_above_bcc

    fractions = np.linspace(0.35, 2.5, 95)
    out = []
    for lattice, e in energies_above_bcc(calc, element, DFT_A[element], fractions).items():
        at = np.flatnonzero((e[1:-1] < e[:-2]) & (e[1:-1] < e[2:])) + 1
        out.append(ShortRangeCheck(element, lattice, len(at), float(e[fractions <= 0.8].min()),
                                   tuple(round(float(fractions[k]), 3) for k in at),
                                   tuple(round(float(e[k]), 3) for k in at)))
    return out


def lattice_energy_errors(calc: object, path: str) -> dict[str, float]:
    """Model minus reference E(lattice, f·V0) − E_bcc(V0), eV/atom, per target cell ("W fcc
    1.00"); V0 = DFT_A³/2 for the model, the reference's own V0 for the targets."""
    from matdesign.training.compression import energies_above_bcc
    from matdesign.training.lattice_energies import load_lattice_targets

    targets = [t for t in load_lattice_targets(path) if t.element in DFT_A]
    errors = {}
    for element in dict.fromkeys(t.element for t in targets):  # one E(V) scan per element
        mine = [t for t in targets if t.element == element]
        fractions = sorted({t.volume_fraction for t in mine})
        scan = energies_above_bcc(calc, element, DFT_A[element], np.array(fractions))
        for t in mine:
            e = scan[t.lattice][fractions.index(t.volume_fraction)]
            errors[f"{t.element} {t.lattice} {t.volume_fraction:.2f}"] = round(
                float(e - t.energy_above_bcc_ev), 4)
    return errors


def summarise(checks: list[ElementCheck]) -> dict:
    """Elastic entries within 5 % and the mean |relative error| without Nb C44."""
    within, errors = 0, []
    for ch in checks:
        for value, ref, name in zip((ch.c11_gpa, ch.c12_gpa, ch.c44_gpa), DFT_C[ch.element],
                                    ("C11", "C12", "C44"), strict=True):
            err = abs(value / ref - 1)
            within += err <= TOLERANCE
            if (ch.element, name) != ("Nb", "C44"):
                errors.append(err)
    return {"elastic_within_5_percent": int(within), "elastic_entries": 3 * len(checks),
            "mean_abs_error_percent_without_nb_c44": float(100 * np.mean(errors)),
            "max_lattice_error_percent": float(max(abs(c.lattice_error_percent) for c in checks)),
            "all_phonons_stable": all(c.phonons_stable for c in checks)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--potential", default="default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the checks and summary here")
    p.add_argument("--lattice-energies", help="reference energies of one-atom cells (JSON)")
    args = p.parse_args()
    import torch

    from matdesign.calculator import load_calculator

    torch.set_num_threads(args.threads)
    calc = load_calculator(args.potential, dtype="float64")
    checks = [check_element(calc, el) for el in DFT_A]
    print(f"{'':4s}{'a (Å)':>9s}{'Δa %':>7s}{'C11':>8s}{'C12':>8s}{'C44':>8s}   DFT C11/C12/C44"
          "   phonons")
    for ch in checks:
        ref = "/".join(f"{v:.0f}" for v in DFT_C[ch.element])
        print(f"{ch.element:4s}{ch.lattice_a:9.4f}{ch.lattice_error_percent:7.2f}"
              f"{ch.c11_gpa:8.1f}{ch.c12_gpa:8.1f}{ch.c44_gpa:8.1f}   {ref:15s}"
              f"   {'stable' if ch.phonons_stable else 'UNSTABLE'} "
              f"(min {ch.min_frequency_thz:.2f} THz)")
    summary = summarise(checks)
    ranges = [r for el in DFT_A for r in short_range(calc, el)]
    for r in ranges:
        where = ", ".join(f"{f:.2f} V0 ({e:+.2f} eV)" for f, e in
                          zip(r.minima_fractions, r.minima_ev, strict=True))
        print(f"{r.element:3s}{r.lattice:4s} minima {r.local_minima} [{where}], lowest "
              f"compressed (V <= 0.8 V0) {r.lowest_compressed_ev:+.2f} eV/atom vs bcc")
    summary["lattices_with_one_minimum"] = sum(r.local_minima == 1 for r in ranges)
    summary["minima_above_1.25_v0"] = [f"{r.element} {r.lattice} {f:.2f}" for r in ranges
                                       for f in r.minima_fractions if f > 1.25]
    # bcc is the ground state of all four: no other lattice may sit below it at any volume
    summary["minima_below_bcc"] = [f"{r.element} {r.lattice} {f:.2f} ({e:+.2f} eV)"
                                   for r in ranges if r.lattice != "bcc"
                                   for f, e in zip(r.minima_fractions, r.minima_ev, strict=True)
                                   if e < 0]
    summary["lattices"] = len(ranges)
    summary["compressed_below_bcc"] = [f"{r.element} {r.lattice}" for r in ranges
                                       if r.lowest_compressed_ev < 0]
    lattice_errors = {}
    if args.lattice_energies:
        lattice_errors = lattice_energy_errors(calc, args.lattice_energies)
        values = np.abs(list(lattice_errors.values()))
        summary["lattice_energies_mae_ev"] = round(float(values.mean()), 4)
        worst = max(lattice_errors, key=lambda k: abs(lattice_errors[k]))
        summary["lattice_energies_worst"] = f"{worst} ({lattice_errors[worst]:+.3f} eV)"
        summary["fcc_at_v0_errors_ev"] = {k: v for k, v in lattice_errors.items()
                                          if " fcc 1.00" in k}
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"potential": args.potential, "checks": [asdict(c) for c in checks],
             "short_range": [asdict(r) for r in ranges], "lattice_energy_errors_ev":
             lattice_errors, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
