"""Training data: labelled frames, masks for missing labels, splits and batching."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from matdesign.graph import Graph, atoms_to_graph, batch_graphs
from matdesign.structure_io import check_geometry


@dataclass(frozen=True)
class Frame:
    """One labelled structure with its graph built once (float64, CPU)."""

    graph: Graph
    energy: float  # eV (total)
    forces: np.ndarray | None  # (n, 3) eV/Å, None if absent
    stress: np.ndarray | None  # (3, 3) eV/Å³ ASE sign, None if absent or not 3D-periodic
    config_type: str
    symbols: tuple[str, ...]


@dataclass(frozen=True)
class Batch:
    """Targets for a batch of frames; masks are 1 where the label exists."""

    graph: Graph
    energy: torch.Tensor  # (b,) eV
    n_atoms: torch.Tensor  # (b,) float
    forces: torch.Tensor  # (n, 3) eV/Å (zeros where missing)
    forces_mask: torch.Tensor  # (n,) float
    stress: torch.Tensor  # (b, 3, 3) eV/Å³ (zeros where missing)
    stress_weight: torch.Tensor  # (b,) float: 0 where missing, else a per-config-type weight


def read_frames(path: str | Path) -> list[Atoms]:
    """Read every frame ASE can read from ``path``; errors name the file."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        frames = read(path, index=":")
    except Exception as exc:
        raise ValueError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    if not frames:
        raise ValueError(f"{path}: no frames")
    return frames


def species_in(path: str | Path) -> list[str]:
    """The elements present in a data file, by atomic number (a model's species order)."""
    from ase.data import atomic_numbers

    found = {s for a in read_frames(path) for s in a.get_chemical_symbols()}
    return sorted(found, key=lambda s: atomic_numbers[s])


def _label(atoms: Atoms, name: str, source: str) -> np.ndarray | float | None:
    """A label from the attached calculator or ``info``/``arrays``; None if absent."""
    calc = atoms.calc
    value = None
    if calc is not None and name in getattr(calc, "results", {}):
        value = calc.results[name]
    elif name in atoms.info:
        value = atoms.info[name]
    elif name in atoms.arrays:
        value = atoms.arrays[name]
    if value is None:
        return None
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{source}: field '{name}' contains NaN or infinity")
    return arr


def to_frame(atoms: Atoms, cutoff: float, species_index: dict[int, int], source: str) -> Frame:
    """Validate one structure and build its frame. ``source`` names it in errors."""
    try:
        check_geometry(atoms, cutoff)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from exc
    energy = _label(atoms, "energy", source)
    if energy is None:
        raise ValueError(f"{source}: no 'energy' label (training needs energies)")
    forces = _label(atoms, "forces", source)
    if forces is not None and forces.shape != (len(atoms), 3):
        raise ValueError(f"{source}: 'forces' has shape {forces.shape}, expected ({len(atoms)}, 3)")
    stress = _label(atoms, "stress", source)
    if stress is not None:
        if stress.shape == (6,):
            from ase.stress import voigt_6_to_full_3x3_stress

            stress = voigt_6_to_full_3x3_stress(stress)
        if stress.shape != (3, 3):
            raise ValueError(
                f"{source}: 'stress' has shape {stress.shape}, expected (3, 3) or (6,)"
            )
        if not atoms.pbc.all():
            stress = None
    try:
        graph = atoms_to_graph(atoms, cutoff, species_index)
    except KeyError as exc:
        raise ValueError(f"{source}: {exc.args[0]}") from exc
    return Frame(
        graph=graph, energy=float(energy), forces=forces, stress=stress,
        config_type=str(atoms.info.get("config_type", "default")),
        symbols=tuple(atoms.get_chemical_symbols()),
    )


def load_frames(path: str | Path, cutoff: float, species_index: dict[int, int]) -> list[Frame]:
    """Read and convert every frame of a file (graphs built once here)."""
    return [
        to_frame(a, cutoff, species_index, f"{path} frame {k}")
        for k, a in enumerate(read_frames(path))
    ]


def split(n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation index split (deterministic for a seed)."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, int(round(valid_fraction * n)))
    return perm[n_valid:], perm[:n_valid]


def collate(frames: Sequence[Frame], stress_weights: dict[str, float] | None = None) -> Batch:
    """Batch frames; missing labels are zero-filled and masked out."""
    stress_weights = stress_weights or {}
    graph = batch_graphs([f.graph for f in frames])
    forces = [f.forces if f.forces is not None else np.zeros((len(f.symbols), 3)) for f in frames]
    fmask = [np.full(len(f.symbols), float(f.forces is not None)) for f in frames]
    stress = [f.stress if f.stress is not None else np.zeros((3, 3)) for f in frames]
    sw = [0.0 if f.stress is None else stress_weights.get(f.config_type, 1.0) for f in frames]
    t = lambda x: torch.tensor(np.asarray(x), dtype=torch.float64)  # noqa: E731
    return Batch(
        graph=graph,
        energy=t([f.energy for f in frames]),
        n_atoms=t([len(f.symbols) for f in frames]),
        forces=t(np.concatenate(forces)),
        forces_mask=t(np.concatenate(fmask)),
        stress=t(np.stack(stress)),
        stress_weight=t(sw),
    )


def batch_to(batch: Batch, device: str | torch.device, dtype: torch.dtype) -> Batch:
    f = lambda x: x.to(device=device, dtype=dtype)  # noqa: E731
    return Batch(
        graph=batch.graph.to(device, dtype), energy=f(batch.energy), n_atoms=f(batch.n_atoms),
        forces=f(batch.forces), forces_mask=f(batch.forces_mask), stress=f(batch.stress),
        stress_weight=f(batch.stress_weight),
    )


def iterate_batches(
    frames: Sequence[Frame], batch_size: int, *, shuffle: bool, rng: np.random.Generator | None,
    stress_weights: dict[str, float] | None = None,
) -> Iterator[Batch]:
    order = rng.permutation(len(frames)) if shuffle and rng is not None else np.arange(len(frames))
    for start in range(0, len(frames), batch_size):
        yield collate([frames[k] for k in order[start:start + batch_size]], stress_weights)


def fit_reference_energies(frames: Sequence[Frame], species: Sequence[str]) -> np.ndarray:
    """Per-species energies e_s (eV/atom) minimising Σ_frames (E - Σ_s n_s e_s)² (least squares)."""
    counts = np.array([[f.symbols.count(s) for s in species] for f in frames], dtype=float)
    energies = np.array([f.energy for f in frames])
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return solution
