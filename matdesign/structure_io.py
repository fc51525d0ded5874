"""Reading structure files defensively, and telling bulk crystals from vacuum (numpy/ASE only).

One reader for every entry point (``matdesign calc|relax|...`` and the screen's inputs):
malformed input becomes a :class:`StructureFileError` naming the file, before any model work.
:func:`vacuum_reason` flags structures that are not 3D bulk (molecules, slabs, atoms in a
box) so bulk-only properties (elastic tensor, phonons, convex hull) refuse them.

This module must not import torch: it runs in the CLI before a model is loaded.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import covalent_radii

from matdesign.errors import (
    NonFiniteError,
    NotBulkError,
    OverlappingAtomsError,
    StructureFileError,
)

# A bulk crystal leaves no slab of empty space wider than this between consecutive atomic
# planes, for any plane family (hkl) with h, k, l in {-1, 0, 1}. Centre-to-centre widths of
# real bulk: graphite 3.35 Å, MoS2 (S...S across the vdW gap) ~3.0 Å, Cs bcc (110) 4.3 Å,
# noble-gas solids < 3.7 Å; a slab with 15 Å vacuum has ~15 Å, a dimer in a 500 Å box ~500 Å.
VACUUM_GAP_A = 6.0
# ... but never less than this multiple of the largest covalent radius present (heavy alkali
# metals have nearest-neighbour distances near 5.3 Å, i.e. 2.2 covalent radii).
VACUUM_GAP_RADII = 2.5

_VASP_PREFIXES = ("POSCAR", "CONTCAR")
_COMPRESSED = {".gz", ".bz2", ".xz"}


def _is_vasp(path: Path) -> bool:
    """Whether ``path`` is a VASP POSCAR/CONTCAR (by name, else by ASE's format guess)."""
    name = path.name
    if path.suffix.lower() in _COMPRESSED:
        return False
    if name.upper().startswith(_VASP_PREFIXES) or path.suffix.lower() in (".vasp", ".poscar"):
        return True
    from ase.io.formats import filetype

    try:
        return filetype(str(path)) == "vasp"
    except Exception:  # noqa: BLE001 - an unguessable format is ASE's to report
        return False


def _leading_ints(tokens: list[str]) -> list[int]:
    out = []
    for tok in tokens:
        try:
            out.append(int(tok))
        except ValueError:
            break
    return out


def _is_coordinate_line(line: str) -> bool:
    tokens = line.split()
    if len(tokens) < 3:
        return False
    try:
        [float(t) for t in tokens[:3]]
    except ValueError:
        return False
    return True


def check_poscar(path: str | Path) -> None:
    """Check a POSCAR's species and counts lines against its coordinate lines.

    ASE reads a POSCAR whose species line names two elements but whose counts line says
    ``1`` as a one-atom cell; VASP would refuse it. Here the counts line must have one entry
    per species (VASP 5 layout) and its sum must equal the number of coordinate lines (which
    end at the first blank or non-numeric line, so CONTCAR velocity blocks are not counted).

    Raises:
        StructureFileError: naming the file and both numbers.
    """
    path = Path(path)
    lines = path.read_text(errors="replace").splitlines()
    if len(lines) < 8:
        return  # too short to be a POSCAR: ASE's own error is clear enough
    i, species = 5, None
    first = lines[5].split()
    if first and not _leading_ints(first[:1]):
        species = [t for t in first if not t.startswith(("!", "#"))]
        i = 6
    counts = _leading_ints(lines[i].split()) if i < len(lines) else []
    if not counts:
        return
    if species is not None and len(counts) != len(species):
        raise StructureFileError(
            f"cannot read {path}: the species line names {len(species)} element(s) "
            f"({' '.join(species)}) but the counts line has {len(counts)} number(s) "
            f"({' '.join(map(str, counts))})")
    i += 1
    if i < len(lines) and lines[i].strip()[:1] in ("s", "S"):
        i += 1  # "Selective dynamics"
    i += 1  # "Direct" / "Cartesian"
    n_lines = 0
    while i + n_lines < len(lines) and _is_coordinate_line(lines[i + n_lines]):
        n_lines += 1
    if n_lines != sum(counts):
        raise StructureFileError(
            f"cannot read {path}: the counts line says {sum(counts)} atom(s) "
            f"({' '.join(map(str, counts))}) but the file has {n_lines} coordinate line(s)")


def read_structures(path: str | Path) -> list[Atoms]:
    """Every structure (frame) in a file any ASE reader understands, checked.

    Args:
        path: the file (CIF, POSCAR/CONTCAR, extxyz, ASE db, ...).

    Returns:
        At least one ``Atoms``; frames may be empty (callers decide).

    Raises:
        FileNotFoundError: no such file.
        StructureFileError: unreadable or inconsistent content; the message names the file.
    """
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure file not found: {path}")
    if _is_vasp(path):
        check_poscar(path)
    try:
        frames = read(str(path), index=":")
    except Exception as exc:  # ASE raises many types for malformed input
        raise StructureFileError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(frames, Atoms):
        frames = [frames]
    if not frames:
        raise StructureFileError(f"cannot read {path}: no structures in the file")
    return list(frames)


def read_one(path: str | Path, index: int | None = None, *,
             hint: str = "pass an index") -> Atoms:
    """The single structure of a file, or frame ``index`` of a multi-frame file.

    A multi-frame file without ``index`` is an error rather than a silent choice of frame.

    Raises:
        StructureFileError: several frames and no index, an index out of range, no atoms.
    """
    frames = read_structures(path)
    if index is None:
        if len(frames) > 1:
            raise StructureFileError(
                f"{path} holds {len(frames)} structures; {hint} (0 to {len(frames) - 1})")
        index = 0
    if not -len(frames) <= index < len(frames):
        raise StructureFileError(
            f"{path} holds {len(frames)} structure(s); index {index} is out of range")
    atoms = frames[index]
    if len(atoms) == 0:
        raise StructureFileError(f"{path}: the structure holds no atoms")
    return atoms


def largest_gap(atoms: Atoms) -> tuple[float, tuple[int, int, int]]:
    """Widest empty slab between consecutive atomic planes, over plane families (hkl).

    For each family with h, k, l in {-1, 0, 1} the atoms' plane coordinates
    ``s = (h f1 + k f2 + l f3) mod 1`` are sorted; the largest circular gap times the
    interplanar spacing ``d = 1 / |h b1 + k b2 + l b3|`` (b_i: reciprocal vectors without 2π)
    is the width of empty space, centre to centre, in Å.

    Returns:
        (width in Å, the (hkl) where it occurs). Requires a non-degenerate cell.
    """
    frac = atoms.get_scaled_positions(wrap=True)
    recip = atoms.cell.reciprocal()
    best, best_hkl = 0.0, (0, 0, 1)
    for hkl in itertools.product((-1, 0, 1), repeat=3):
        if hkl <= (0, 0, 0):  # one of each ± pair, and not (0, 0, 0)
            continue
        s = np.sort((frac @ np.array(hkl, float)) % 1.0)
        gaps = np.append(np.diff(s), s[0] + 1.0 - s[-1])
        width = float(gaps.max()) / float(np.linalg.norm(np.array(hkl, float) @ recip))
        if width > best:
            best, best_hkl = width, hkl
    return best, best_hkl


def vacuum_reason(atoms: Atoms) -> str | None:
    """Why ``atoms`` is not a 3D bulk crystal, or None if it is.

    Not bulk: a direction without periodic boundaries, a degenerate cell, or an empty slab
    wider than ``max(VACUUM_GAP_A, VACUUM_GAP_RADII * largest covalent radius)`` between
    consecutive atomic planes (:func:`largest_gap`). An empty structure or non-finite numbers
    return None (different errors, reported by the geometry checks).
    """
    if not np.all(atoms.pbc):
        missing = ", ".join("abc"[k] for k in range(3) if not atoms.pbc[k])
        return f"not periodic along {missing}"
    finite = np.all(np.isfinite(atoms.cell.array)) and np.all(np.isfinite(atoms.positions))
    if len(atoms) == 0 or not finite:
        return None
    if abs(atoms.cell.volume) < 1e-6:
        return "the cell is degenerate (zero volume)"
    limit = max(VACUUM_GAP_A, VACUUM_GAP_RADII * float(covalent_radii[atoms.numbers].max()))
    width, hkl = largest_gap(atoms)
    if width > limit:
        return (f"an empty gap of {width:.1f} Å between atomic planes ({' '.join(map(str, hkl))})"
                f" exceeds {limit:.1f} Å: a slab, molecule or isolated atom, not a bulk crystal")
    return None


def require_bulk(atoms: Atoms, what: str, source: str | None = None) -> None:
    """Raise :class:`NotBulkError` (text starting "vacuum") unless ``atoms`` is bulk.

    Args:
        atoms: the structure.
        what: the property that needs bulk, for the message (e.g. "elastic constants").
        source: the file or candidate name, for the message.
    """
    reason = vacuum_reason(atoms)
    if reason is not None:
        where = f"{source}: " if source else ""
        raise NotBulkError(f"vacuum / not bulk: {where}{what} requires a 3D-periodic bulk "
                           f"crystal; {reason}")


def check_output_path(path: str | Path) -> str:
    """ASE format that will write ``path``, checked before any expensive work.

    Creates the parent folder. Returns the format name.

    Raises:
        StructureFileError: the extension names no format ASE can write.
    """
    from ase.io.formats import filetype, ioformats

    path = Path(path)
    try:
        fmt = filetype(str(path), read=False)  # "out.qqq" gives "qqq": checked below
    except Exception:  # noqa: BLE001 - ASE raises KeyError or UnknownFileTypeError
        fmt = None
    io = ioformats.get(fmt) if fmt else None
    if io is None:
        raise StructureFileError(
            f"cannot write {path}: unknown structure format (use e.g. .cif, .vasp, .extxyz, "
            ".traj)")
    if not io.can_write:
        raise StructureFileError(f"cannot write {path}: ASE's format {fmt!r} is read-only")
    path.parent.mkdir(parents=True, exist_ok=True)
    return fmt


# --- geometry checks before any calculation -------------------------------------------------

def check_finite(atoms: Atoms) -> None:
    """Raise ``ValueError`` for NaN/inf positions or cell, or a degenerate periodic cell."""
    if not np.all(np.isfinite(np.asarray(atoms.positions))):
        raise NonFiniteError("positions contain NaN or infinity")
    if np.any(atoms.pbc):
        cell = atoms.cell.array
        if not np.all(np.isfinite(cell)):
            raise NonFiniteError("cell contains NaN or infinity")
        periodic_rows = cell[np.asarray(atoms.pbc)]
        # Only the periodic lattice vectors must be independent: a slab (pbc T, T, F) may
        # have a zero cell vector along its open direction.
        flat = np.linalg.svd(periodic_rows, compute_uv=False).min() < 1e-6
        if flat or (np.all(atoms.pbc) and abs(np.linalg.det(cell)) < 1e-6):
            raise ValueError("periodic cell is degenerate (zero volume or a zero lattice vector)")


# Pairs closer than OVERLAP_FRACTION * (r_cov,i + r_cov,j), and never closer than the absolute
# floor ``min_distance``, are overlapping atoms. Half the covalent bond length sits well below
# any distance a DFT training set samples (W-W: 1.62 Å vs 2.74 Å at equilibrium and about
# 2.2 Å in hot MD), so the check rejects only unphysical inputs.
OVERLAP_FRACTION = 0.5


def pair_thresholds(zi: np.ndarray, zj: np.ndarray, min_distance: float) -> np.ndarray:
    return np.maximum(min_distance, OVERLAP_FRACTION * (covalent_radii[zi] + covalent_radii[zj]))


def raise_if_close(i: np.ndarray, j: np.ndarray, d: np.ndarray, limit: np.ndarray) -> None:
    close = d < limit
    if np.any(close):
        k = int(np.flatnonzero(close)[np.argmin(d[close])])
        raise OverlappingAtomsError(
            f"atoms {int(i[k])} and {int(j[k])} are {d[k]:.3f} Å apart, closer than the "
            f"minimum distance {limit[k]:.2f} Å for this pair (overlapping atoms)"
        )


def check_geometry(atoms: Atoms, cutoff: float, *, min_distance: float = 0.5) -> None:
    """Raise ``ValueError`` for inputs that would silently give meaningless numbers.

    Rejects NaN/inf positions or cell, a degenerate periodic cell, and overlapping atoms:
    pairs closer than ``max(min_distance, 0.5 (r_cov,i + r_cov,j))`` (ASE covalent radii).

    Args:
        atoms: the structure.
        cutoff: model cutoff, Å (only used to describe the check).
        min_distance: absolute floor of the overlap distance, Å.
    """
    check_finite(atoms)
    if len(atoms) > 1 or np.any(atoms.pbc):
        z = np.asarray(atoms.numbers)
        search = float(pair_thresholds(z, z, min_distance).max())
        from ase.neighborlist import neighbor_list  # numpy: no torch (vesin would import it)

        i, j, s = neighbor_list("ijS", atoms, search)
        pos = np.asarray(atoms.positions)
        d = np.linalg.norm(pos[j] - pos[i] + s @ atoms.cell.array, axis=1)
        raise_if_close(i, j, d, pair_thresholds(z[i], z[j], min_distance))
