"""``matdesign calc STRUCTURE``: single-point energy, forces and stress."""

from __future__ import annotations

import argparse

from matdesign.cli.common import (
    add_index_arg,
    add_json_arg,
    add_potential_arg,
    read_structure,
    write_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calc", help="single-point energy, forces and stress of a structure")
    p.add_argument("structure", help="any file ASE reads (CIF, POSCAR, extxyz, ...)")
    add_index_arg(p)
    add_potential_arg(p)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from matdesign.calculator import load_calculator

    atoms = read_structure(args.structure, args.index)
    atoms.calc = load_calculator(args.potential, dtype=args.dtype)
    result = {
        "structure": args.structure,
        "formula": atoms.get_chemical_formula(),
        "n_atoms": len(atoms),
        "energy_ev": atoms.get_potential_energy(),
        "energy_per_atom_ev": atoms.get_potential_energy() / len(atoms),
        "forces_ev_per_a": atoms.get_forces(),
        "stress_ev_per_a3": atoms.get_stress(voigt=True) if atoms.pbc.all() else None,
    }
    write_json(result, args.json)
    return 0
