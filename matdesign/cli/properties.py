"""Property verbs: ``matdesign relax | eos | elastic | phonon | md STRUCTURE``.

Every property verb relaxes the structure first (cell and ions) unless ``--no-relax``; a
relaxation that does not converge stops the verb with an error that gives the reason.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any

from matdesign.cli.common import (
    add_index_arg,
    add_json_arg,
    add_potential_arg,
    read_structure,
    write_json,
)

# verbs whose result means nothing for a slab, molecule or atom in a box
BULK_VERBS = ("eos", "elastic", "phonon")


def _common(p: argparse.ArgumentParser, *, relax_first: bool = True) -> None:
    p.add_argument("structure", help="any file ASE reads (CIF, POSCAR, extxyz, ...)")
    add_index_arg(p)
    add_potential_arg(p)
    add_json_arg(p)
    if relax_first:
        p.add_argument("--no-relax", action="store_true",
                       help="use the structure as given (default: relax cell and ions first)")
        p.add_argument("--relax-fmax", type=float, default=1e-3, metavar="F",
                       help="force threshold of the preliminary relaxation, eV/Å (default 1e-3)")
        p.add_argument("--relax-steps", type=int, default=1000, metavar="N",
                       help="step limit of the preliminary relaxation (default 1000)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("relax", help="relax ions and cell of a structure")
    _common(p, relax_first=False)
    p.add_argument("--fmax", type=float, default=1e-3, help="force threshold, eV/Å (1e-3)")
    p.add_argument("--max-steps", type=int, default=1000, help="optimizer step limit (1000)")
    p.add_argument("--optimizer", default="FIRE", choices=["FIRE", "BFGS", "LBFGS"])
    p.add_argument("--fix-symmetry", action="store_true", help="keep the starting space group")
    p.add_argument("--ions-only", action="store_true", help="keep the cell fixed")
    p.add_argument("-o", "--output", metavar="OUT.cif", help="write the relaxed structure")
    p.add_argument("--trajectory", metavar="OUT.traj", help="ASE trajectory of the relaxation")
    p.set_defaults(func=run_relax)

    p = sub.add_parser("eos", help="energy-volume curve and Birch-Murnaghan fit")
    _common(p)
    p.add_argument("--n-points", type=int, default=7, help="number of volumes (7)")
    p.add_argument("--max-strain", type=float, default=0.04, help="largest linear strain (0.04)")
    p.add_argument("--clamped-ion", action="store_true", help="no ionic relaxation per volume")
    p.set_defaults(func=run_eos)

    p = sub.add_parser("elastic", help="elastic tensor and VRH moduli (GPa)")
    _common(p)
    p.add_argument("--clamped-ion", action="store_true",
                   help="clamped-ion tensor (default: relax ions in every strained cell)")
    p.add_argument("--strains", type=float, nargs="+", default=[-0.01, -0.005, 0.005, 0.01],
                   help="tensor strain magnitudes (default -0.01 -0.005 0.005 0.01)")
    p.set_defaults(func=run_elastic)

    p = sub.add_parser("phonon", help="phonon bands, DOS, stability and thermodynamics")
    _common(p)
    p.add_argument("--min-length", type=float, default=15.0, help="supercell width, Å (15)")
    p.add_argument("--max-atoms", type=int, default=None,
                   help="supercell atom cap (default: properties.phonon.MAX_SUPERCELL_ATOMS, "
                        "400; imported at run time, not at start-up)")
    p.add_argument("--displacement", type=float, default=0.01, help="displacement, Å (0.01)")
    p.add_argument("--mesh", type=int, nargs=3, default=[20, 20, 20], help="q-mesh (20 20 20)")
    p.add_argument("--t-max", type=float, default=1000.0, help="highest temperature, K (1000)")
    p.add_argument("--imaginary-tolerance", type=float, default=0.1, help="THz (0.1)")
    p.add_argument("--imaginary-policy", default="warn", choices=["warn", "error", "ignore"])
    p.add_argument("--output-dir", metavar="DIR",
                   help="phonopy.yaml and band_dos.png go here "
                        "(default: STEM_phonon beside STRUCTURE)")
    p.add_argument("--plot", metavar="OUT.png", help="write the band structure + DOS figure")
    p.set_defaults(func=run_phonon)

    p = sub.add_parser("md", help="molecular dynamics (NVE or Langevin NVT)")
    _common(p)
    p.add_argument("--ensemble", default="nve", choices=["nve", "nvt"])
    p.add_argument("--temperature", type=float, default=300.0, help="K (300)")
    p.add_argument("--steps", type=int, default=1000, help="MD steps (1000)")
    p.add_argument("--timestep", type=float, default=2.0, help="fs (2.0)")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (0.01)")
    p.add_argument("--trajectory", metavar="OUT.traj",
                   help="ASE trajectory, every step (default: STEM_md.traj beside STRUCTURE)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, nargs=3, default=[1, 1, 1], metavar=("NA", "NB", "NC"),
                   help="run on this supercell of the (relaxed) structure (default 1 1 1)")
    p.set_defaults(func=run_md)


def _reports_failures(func: Callable[[argparse.Namespace], int]) -> Callable:
    """Turn the property modules' own errors into a clear message and exit status 1."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from matdesign.properties.phonon import PhononInstabilityError
        from matdesign.properties.relax import NotConvergedError

        try:
            return func(args)
        except (NotConvergedError, PhononInstabilityError) as exc:
            print(f"matdesign {args.verb}: error: {exc}", file=sys.stderr)
            return 1

    return wrapper


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any] | None]:
    """Read the structure, load the calculator and relax first unless ``--no-relax``.

    Bulk-only verbs refuse a slab, molecule or isolated atom here, before any model work.
    """
    from matdesign.calculator import load_calculator
    from matdesign.properties.relax import relax, require_converged
    from matdesign.structure_io import check_geometry, require_bulk

    atoms = read_structure(args.structure, args.index)
    if args.verb in BULK_VERBS:
        require_bulk(atoms, f"'matdesign {args.verb}'", args.structure)
    calc = load_calculator(args.potential, dtype="float64")
    if args.no_relax:
        check_geometry(atoms, float(getattr(calc, "cutoff", 0.0)))
        return atoms, calc, None
    atoms, res = relax(atoms, calc, fmax=args.relax_fmax, max_steps=args.relax_steps)
    require_converged(res, args.verb)
    return atoms, calc, res.to_dict()


def _report(args: argparse.Namespace, atoms: Any, relaxation: dict | None,
            result: Any) -> dict[str, Any]:
    return {"structure": args.structure, "formula": atoms.get_chemical_formula(),
            "n_atoms": len(atoms), "potential": str(args.potential),
            "relaxation": relaxation, **result.to_dict()}


def _write_relaxed(atoms: Any, out: str, structure: str) -> bool:
    """Write the relaxed structure; if that fails, save it as extxyz elsewhere and say where."""
    import tempfile
    from pathlib import Path

    from ase.io import write

    try:
        write(out, atoms)
        print(f"wrote {out}", file=sys.stderr)
        return True
    except Exception as exc:  # noqa: BLE001 - the relaxation must not be lost to a write error
        print(f"matdesign relax: error: cannot write {out}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
    stem = Path(structure).stem
    for folder in (Path(structure).parent, Path(tempfile.gettempdir())):
        rescue = folder / f"{stem}_relaxed.extxyz"
        try:
            write(rescue, atoms, format="extxyz")
        except OSError:
            continue
        print(f"matdesign relax: the relaxed structure was saved to {rescue}", file=sys.stderr)
        break
    return False


@_reports_failures
def run_relax(args: argparse.Namespace) -> int:
    from matdesign.calculator import load_calculator
    from matdesign.properties.relax import relax
    from matdesign.structure_io import check_output_path

    if args.output:  # an unwritable name must fail now, not after the relaxation
        check_output_path(args.output)
    atoms = read_structure(args.structure, args.index)
    calc = load_calculator(args.potential, dtype="float64")
    relaxed, res = relax(atoms, calc, fmax=args.fmax, max_steps=args.max_steps,
                         optimizer=args.optimizer, relax_cell=not args.ions_only,
                         fix_symmetry=args.fix_symmetry, trajectory=args.trajectory)
    written = _write_relaxed(relaxed, args.output, args.structure) if args.output else True
    write_json(_report(args, relaxed, None, res), args.json)
    if not res.converged:
        from matdesign.properties.relax import NotConvergedError, require_converged

        try:
            require_converged(res, "relax")
        except NotConvergedError as exc:
            print(f"matdesign relax: error: {exc}; outputs written anyway", file=sys.stderr)
        return 1
    return 0 if written else 1


@_reports_failures
def run_eos(args: argparse.Namespace) -> int:
    from matdesign.properties.eos import EOSCalculator

    atoms, calc, relaxation = _prepare(args)
    result = EOSCalculator(calc, n_points=args.n_points, max_strain=args.max_strain,
                           relax_ions=not args.clamped_ion).calc(atoms)
    write_json(_report(args, atoms, relaxation, result), args.json)
    return 0


@_reports_failures
def run_elastic(args: argparse.Namespace) -> int:
    from matdesign.properties.elastic import ElasticCalculator

    atoms, calc, relaxation = _prepare(args)
    result = ElasticCalculator(calc, strains=args.strains,
                               relax_ions=not args.clamped_ion).calc(atoms)
    write_json(_report(args, atoms, relaxation, result), args.json)
    return 0


@_reports_failures
def run_phonon(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from matdesign.properties.phonon import MAX_SUPERCELL_ATOMS, PhononCalculator

    atoms, calc, relaxation = _prepare(args)
    max_atoms = MAX_SUPERCELL_ATOMS if args.max_atoms is None else args.max_atoms
    phonons = PhononCalculator(
        calc, min_length=args.min_length, max_atoms=max_atoms,
        displacement=args.displacement, imaginary_tolerance_thz=args.imaginary_tolerance,
        imaginary_policy=args.imaginary_policy, mesh=tuple(args.mesh), t_max=args.t_max,
    )
    structure = Path(args.structure)
    out = Path(args.output_dir or structure.with_name(f"{structure.stem}_phonon"))
    try:
        result = phonons.calc(atoms, output_dir=out)
    finally:  # the figure is written before an instability error: keep it
        if args.plot and (out / "band_dos.png").is_file():
            Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / "band_dos.png", args.plot)
            print(f"wrote {args.plot}", file=sys.stderr)
    write_json(_report(args, atoms, relaxation, result), args.json)
    return 0


@_reports_failures
def run_md(args: argparse.Namespace) -> int:
    from pathlib import Path

    from matdesign.properties.md import run_md as md

    structure = Path(args.structure)
    default_traj = structure.with_name(f"{structure.stem}_md.traj")
    atoms, calc, relaxation = _prepare(args)
    if min(args.repeat) < 1:
        raise ValueError(f"--repeat needs positive integers, got {args.repeat}")
    atoms = atoms.repeat(args.repeat)
    result = md(atoms, calc, ensemble=args.ensemble, temperature_k=args.temperature,
                steps=args.steps, timestep_fs=args.timestep, friction=args.friction,
                trajectory=args.trajectory or str(default_traj),
                seed=args.seed)
    write_json(_report(args, atoms, relaxation, result), args.json)
    return 0
