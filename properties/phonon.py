"""Harmonic phonons by finite displacements (phonopy), with the forces batched."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from matdesign.properties.base import PropertyCalculator, PropertyResult, gate_field
from matdesign.properties.batch import evaluate_many
from matdesign.structure_io import require_bulk

POLICIES = ("warn", "error", "ignore")
#: default q-mesh as a length, Å (see PhononCalculator)
MESH_LENGTH_A = 60.0
#: spacing of the total-DOS frequency points, THz. The tetrahedron DOS costs in proportion to
#: the number of points: phonopy's default (201 points over the range, 0.036 THz for a bcc
#: metal) took 1.7 s of a 16-atom cell's 7 s phonon step; 0.1 THz (0.4 meV, finer than the
#: finite-displacement frequency errors) takes 0.6 s.
DOS_PITCH_THZ = 0.1
#: cap on stored band frequencies (q-points x bands); longer paths are thinned per segment,
#: always keeping the segment end points (the high-symmetry points). About 7 bytes each in JSON.
MAX_BAND_VALUES = 20_000
BAND_DECIMALS = 4  # THz: 0.1 GHz, far below the finite-displacement error


class PhononInstabilityError(RuntimeError):
    """Imaginary modes beyond the tolerance with ``imaginary_policy="error"``."""


@dataclass(frozen=True)
class PhononResult(PropertyResult):
    """Phonon band extrema, high-symmetry frequencies and harmonic thermodynamics.

    Frequencies in THz, imaginary ones as negative numbers. Thermal properties are per mole
    of the primitive cell (phonopy's convention): kJ/mol and J/(K mol).
    """

    dynamically_stable: bool = gate_field()
    min_frequency_thz: float = gate_field()  # over the mesh and the band path
    max_frequency_thz: float
    high_symmetry_points: list[dict[str, Any]]  # {"label", "qpoint" (reduced), "frequencies_thz"}
    thermal: dict[str, list[float]]
    thermal_imaginary_modes_dropped: bool  # mesh modes below -tolerance, skipped in the sums
    supercell_matrix: list[list[int]]  # relative to the primitive cell below
    primitive_matrix: list[list[float]]  # phonopy convention, relative to the (rotated) input
    primitive_lattice_a: list[list[float]]  # rows, Å; seekpath's standard primitive cell
    n_atoms_primitive: int
    n_atoms_supercell: int
    supercell_min_width_a: float  # smallest distance between opposite supercell faces
    n_displacements: int
    displacement_a: float
    imaginary_tolerance_thz: float
    mesh: list[int]
    # {"distances" (path length, 1/Å, no 2π), "frequencies_thz" (per q-point, per band),
    #  "segments" [{"from", "to", "start", "stop"}] (index ranges into distances, stop
    #  exclusive; start and stop-1 are the high-symmetry points), "labels",
    #  "label_distances" (tick positions; "A|B" at a break in the path)}; see band_structure_data
    band_structure: dict[str, Any] = field(default_factory=dict)
    # {"frequencies_thz", "total_dos_per_thz"}: total DOS of the mesh, states/THz per primitive
    # cell (integrates to 3 x n_atoms_primitive)
    dos: dict[str, list[float]] = field(default_factory=dict)


def face_widths(lattice: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of a cell (Å): V / |a_j x a_k| for each i."""
    lat = np.asarray(lattice, dtype=float)
    vol = abs(np.linalg.det(lat))
    return np.array([vol / np.linalg.norm(np.cross(lat[(i + 1) % 3], lat[(i + 2) % 3]))
                     for i in range(3)])


#: default atom cap on a phonon supercell: 400 lets a one-atom cubic primitive cell reach the
#: default 15 Å (7×7×7, 343 atoms, faces 16.4 Å apart for bcc Nb). The earlier 200 stopped at
#: 5×5×5 (11.7 Å), narrower than the shipped model's 10 Å receptive field; there its force
#: constants alias into the interpolated long-wavelength branch, and the shipped v21 model's
#: Nb (soft C44) showed a spurious −0.29 THz near Γ that 7, 9 and 11 repetitions do not.
MAX_SUPERCELL_ATOMS = 400


def choose_supercell(lattice: np.ndarray, n_atoms: int, min_length: float,
                     max_atoms: int) -> tuple[list[int], float]:
    """Diagonal supercell whose face widths reach ``min_length`` (Å) within ``max_atoms``.

    If the full length would exceed the atom cap, the largest smaller width that fits is used.

    Returns:
        ``(n, width)``: repetitions along each primitive vector and the smallest face width, Å.
    """
    h = face_widths(lattice)
    candidates = sorted({min_length} | {k * hi for hi in h for k in range(1, 64)
                                        if k * hi < min_length}, reverse=True)
    for target in candidates:
        n = [max(1, math.ceil(target / hi - 1e-9)) for hi in h]
        if int(np.prod(n)) * n_atoms <= max_atoms:
            return n, float(min(ni * hi for ni, hi in zip(n, h, strict=True)))
    raise ValueError(f"even the primitive cell ({n_atoms} atoms) exceeds max_atoms={max_atoms}")


def _standard_primitive(atoms: Atoms) -> tuple[Atoms, dict[str, Any]]:
    """Seekpath (spglib) standard primitive cell and its k-path description."""
    import seekpath

    path = seekpath.get_path((atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers),
                             with_time_reversal=True)
    prim = Atoms(numbers=path["primitive_types"], cell=path["primitive_lattice"],
                 scaled_positions=path["primitive_positions"], pbc=True)
    return prim, path


def _primitive_matrix(atoms: Atoms, path: dict[str, Any]) -> list[list[float]]:
    """P with (a_p b_p c_p) = R (a b c) P in columns, R seekpath's rotation of the input."""
    rotated_rows = atoms.cell.array @ np.asarray(path["rotation_matrix"]).T
    p = np.linalg.solve(rotated_rows.T, np.asarray(path["primitive_lattice"]).T)
    return [[round(float(x), 6) for x in row] for row in p]


def _label(name: str) -> str:
    return "Γ" if name.upper() == "GAMMA" else name


def band_structure_data(phonon: Any, max_values: int = MAX_BAND_VALUES) -> dict[str, Any]:
    """Compact JSON-able band structure of a phonopy object (bands already run).

    Frequencies are rounded to ``BAND_DECIMALS`` THz; when q-points x bands exceeds
    ``max_values`` every segment is thinned evenly, keeping both of its end points.
    See :class:`PhononResult` for the layout.
    """
    bs = phonon.band_structure
    if bs is None:
        raise ValueError("run the band structure first")
    labels = list(bs.labels or [])
    connections = list(bs.path_connections or [True] * len(bs.distances))
    n_total = sum(len(d) for d in bs.distances) * int(np.shape(bs.frequencies[0])[1])
    keep_frac = min(1.0, max_values / max(n_total, 1))
    dist, freqs, segments = [], [], []
    ticks, tick_labels, li = [round(float(bs.distances[0][0]), 5)], [], 0
    start = labels[li] if labels else ""
    for k, (d, f) in enumerate(zip(bs.distances, bs.frequencies, strict=True)):
        m = max(2, int(len(d) * keep_frac))
        idx = np.unique(np.round(np.linspace(0, len(d) - 1, m)).astype(int))
        li += 1
        end = labels[li] if li < len(labels) else ""
        segments.append({"from": start.split("|")[-1], "to": end, "start": len(dist),
                         "stop": len(dist) + len(idx)})
        dist += [round(float(x), 5) for x in np.asarray(d)[idx]]
        freqs += [[round(float(x), BAND_DECIMALS) for x in row] for row in np.asarray(f)[idx]]
        tick_labels.append(start)
        if not connections[k] and k + 1 < len(bs.distances):
            li += 1
            end = f"{end}|{labels[li] if li < len(labels) else ''}"
        start = end
        ticks.append(round(float(d[-1]), 5))
    tick_labels.append(start)
    return {"distances": dist, "frequencies_thz": freqs, "segments": segments,
            "labels": tick_labels, "label_distances": ticks}


def dos_data(phonon: Any) -> dict[str, list[float]]:
    """Total DOS of a phonopy object (DOS already run): THz grid and states/THz."""
    dos = phonon.total_dos
    if dos is None:
        raise ValueError("run the total DOS first")
    return {"frequencies_thz": [round(float(x), BAND_DECIMALS) for x in dos.frequency_points],
            "total_dos_per_thz": [round(float(x), 6) for x in dos.dos]}


def plot_band_data(band: dict[str, Any], dos: dict[str, Any] | None, path: str | Path,
                   title: str | None = None) -> Path:
    """Save a band structure (+ DOS when given) figure from stored :class:`PhononResult` data.

    Args:
        band: ``PhononResult.band_structure`` (or its JSON round trip).
        dos: ``PhononResult.dos`` or None/empty for the band panel only.
        path: output image file.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not band or not band.get("segments"):
        raise ValueError("band structure data has no segments")
    with_dos = bool(dos and dos.get("total_dos_per_thz"))
    fig, axes = plt.subplots(1, 2 if with_dos else 1, sharey=True, squeeze=False,
                             figsize=(8, 4.5) if with_dos else (6, 4.5),
                             gridspec_kw={"width_ratios": [3, 1] if with_dos else [1],
                                          "wspace": 0.05})
    ax = axes[0, 0]
    dist = np.asarray(band["distances"], dtype=float)
    freqs = np.asarray(band["frequencies_thz"], dtype=float)
    for seg in band["segments"]:
        sl = slice(int(seg["start"]), int(seg["stop"]))
        ax.plot(dist[sl], freqs[sl], color="tab:blue", lw=1)
    ticks = [float(t) for t in band["label_distances"]]
    ax.set_xticks(ticks, [str(t) for t in band["labels"]])
    for t in ticks:
        ax.axvline(t, color="0.7", lw=0.5)
    ax.axhline(0, color="0.3", lw=0.5, ls="--")
    ax.set_xlim(ticks[0], ticks[-1])
    ax.set_ylabel("frequency (THz)")
    if title:
        ax.set_title(title)
    if with_dos:
        axes[0, 1].plot(dos["total_dos_per_thz"], dos["frequencies_thz"], color="tab:blue", lw=1)
        axes[0, 1].set_xlabel("DOS (states/THz)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_band_dos(phonon: Any, path: str | Path) -> Path:
    """Save a band structure + DOS figure of a phonopy object (bands and DOS already run)."""
    if phonon.band_structure is None or phonon.total_dos is None:
        raise ValueError("run the band structure and total DOS before plotting")
    return plot_band_data(band_structure_data(phonon, max_values=10**9), dos_data(phonon), path)


class PhononCalculator(PropertyCalculator[PhononResult]):
    """Finite-displacement phonons of the standard primitive cell with phonopy.

    The imaginary tolerance defaults to 0.1 THz (≈0.4 meV): finite-difference force constants
    in float64 leave acoustic modes near Γ at a few 0.01 THz, while soft modes that signal a
    real instability are typically tenths of a THz or more.
    """

    def __init__(self, calculator: Any, *, min_length: float = 15.0,
                 max_atoms: int = MAX_SUPERCELL_ATOMS,
                 displacement: float = 0.01, imaginary_tolerance_thz: float = 0.1,
                 imaginary_policy: str = "warn", mesh: tuple[int, int, int] | float = MESH_LENGTH_A,
                 t_max: float = 1000.0, t_step: float = 10.0, band_points: int = 51,
                 dos_pitch_thz: float = DOS_PITCH_THZ) -> None:
        """Set up.

        Args:
            calculator: any ASE calculator.
            min_length: smallest supercell face width wanted, Å.
            max_atoms: atom cap on the supercell; the width is reduced to fit under it (see
                :data:`MAX_SUPERCELL_ATOMS`).
            displacement: displacement amplitude, Å.
            imaginary_tolerance_thz: modes below minus this count as imaginary, THz.
            imaginary_policy: ``"warn"``, ``"error"`` (raise :class:`PhononInstabilityError`
                after writing any outputs) or ``"ignore"``.
            mesh: q-mesh for DOS and thermodynamics, or a length l (Å) for phonopy's automatic
                mesh n_i = round(l |b_i|): the same q-point density for any cell. The default
                gives 26 points along a bcc primitive vector (3.2 Å) and 9 along a 16-atom
                cubic supercell (6.4 Å), where a fixed 20x20x20 mesh would cost 10x more in
                the DOS for no better thermodynamics.
            t_max: highest temperature, K (from 0 K).
            t_step: temperature step, K.
            band_points: q-points per band-path segment.
            dos_pitch_thz: spacing of the total-DOS frequency points, THz.
        """
        super().__init__(calculator)
        if imaginary_policy not in POLICIES:
            raise ValueError(
                f"imaginary_policy must be one of {POLICIES}, not {imaginary_policy!r}"
            )
        if (displacement <= 0 or min_length <= 0 or dos_pitch_thz <= 0
                or imaginary_tolerance_thz < 0):
            raise ValueError("displacement, min_length and dos_pitch_thz must be > 0, "
                             "the tolerance >= 0")
        self.min_length = min_length
        self.max_atoms = max_atoms
        self.displacement = displacement
        self.imaginary_tolerance_thz = imaginary_tolerance_thz
        self.imaginary_policy = imaginary_policy
        self.mesh = mesh
        self.t_max = t_max
        self.t_step = t_step
        self.band_points = band_points
        self.dos_pitch_thz = dos_pitch_thz

    def force_constants(self, atoms: Atoms) -> tuple[Any, dict[str, Any], float]:
        """Phonopy object with symmetrised force constants, seekpath data, supercell width."""
        from phonopy import Phonopy
        from phonopy.structure.atoms import PhonopyAtoms

        require_bulk(atoms, "phonons")  # a dimer in a box would look "dynamically stable"
        prim, path = _standard_primitive(atoms)
        n, width = choose_supercell(prim.cell.array, len(prim), self.min_length, self.max_atoms)
        unit = PhonopyAtoms(numbers=prim.numbers, cell=prim.cell.array,
                            scaled_positions=prim.get_scaled_positions())
        ph = Phonopy(unit, supercell_matrix=np.diag(n), primitive_matrix=np.eye(3))
        ph.generate_displacements(distance=self.displacement)
        perfect = ph.supercell
        cells = [Atoms(numbers=sc.numbers, cell=sc.cell, scaled_positions=sc.scaled_positions,
                       pbc=True) for sc in [perfect, *ph.supercells_with_displacements]]
        results = evaluate_many(self.calculator, cells)
        # subtracting the perfect supercell's forces removes residual forces of an imperfect
        # relaxation (first order in the displacement cancels against them)
        residual = results[0]["forces"]
        ph.forces = np.array([r["forces"] - residual for r in results[1:]])
        ph.produce_force_constants()
        ph.symmetrize_force_constants(show_drift=False)
        return ph, path, width

    def _band_path(self, ph: Any, path: dict[str, Any]) -> None:
        coords = path["point_coords"]
        bands = []
        for a, b in path["path"]:
            qa, qb = np.array(coords[a]), np.array(coords[b])
            bands.append([qa + (qb - qa) * t for t in np.linspace(0, 1, self.band_points)])
        labels, connections = [], []
        for k, (a, b) in enumerate(path["path"]):
            connected = k + 1 < len(path["path"]) and path["path"][k + 1][0] == b
            if k == 0 or not connections[-1]:
                labels.append(_label(a))
            labels.append(_label(b))
            connections.append(connected)
        ph.run_band_structure(bands, labels=labels, path_connections=connections)

    def _high_symmetry(self, ph: Any, path: dict[str, Any]) -> list[dict[str, Any]]:
        names = list(dict.fromkeys(p for seg in path["path"] for p in seg))
        qpoints = np.array([path["point_coords"][k] for k in names])
        ph.run_qpoints(qpoints)
        freqs = ph.qpoints.frequencies
        return [{"label": _label(k), "qpoint": [float(x) for x in q],
                 "frequencies_thz": [float(x) for x in f]}
                for k, q, f in zip(names, qpoints, freqs, strict=True)]

    def calc(self, atoms: Atoms, *, output_dir: str | Path | None = None) -> PhononResult:
        """Phonons of ``atoms`` (assumed relaxed; not modified).

        Writes ``phonopy.yaml`` (with force constants) and ``band_dos.png`` into
        ``output_dir`` when given, before any instability error is raised.
        """
        ph, path, width = self.force_constants(atoms)
        high = self._high_symmetry(ph, path)
        self._band_path(ph, path)
        ph.run_mesh(self.mesh, is_gamma_center=True)
        mesh_freqs = ph.mesh.frequencies
        ph.run_total_dos(freq_pitch=self.dos_pitch_thz)
        # Γ acoustic modes are rigid translations; imaginary modes are skipped by phonopy
        ph.run_thermal_properties(t_min=0, t_max=self.t_max, t_step=self.t_step,
                                  exclude_gamma_acoustic=True)
        tp = ph.thermal_properties
        band_min = min(float(np.min(f)) for f in ph.band_structure.frequencies)
        f_min = min(band_min, float(np.min(mesh_freqs)))
        f_max = max(max(float(np.max(f)) for f in ph.band_structure.frequencies),
                    float(np.max(mesh_freqs)))
        stable = f_min >= -self.imaginary_tolerance_thz
        result = PhononResult(
            dynamically_stable=bool(stable),
            min_frequency_thz=f_min,
            max_frequency_thz=f_max,
            high_symmetry_points=high,
            thermal={
                "temperature_k": [float(x) for x in tp.temperatures],
                "free_energy_kj_per_mol": [float(x) for x in tp.free_energy],
                "entropy_j_per_k_mol": [float(x) for x in tp.entropy],
                "heat_capacity_j_per_k_mol": [float(x) for x in tp.heat_capacity],
            },
            thermal_imaginary_modes_dropped=bool(
                np.min(mesh_freqs) < -self.imaginary_tolerance_thz),
            supercell_matrix=[[int(x) for x in row] for row in ph.supercell_matrix],
            primitive_matrix=_primitive_matrix(atoms, path),
            primitive_lattice_a=[[float(x) for x in row] for row in ph.primitive.cell],
            n_atoms_primitive=len(ph.primitive),
            n_atoms_supercell=len(ph.supercell),
            supercell_min_width_a=width,
            n_displacements=len(ph.supercells_with_displacements),
            displacement_a=float(self.displacement),
            imaginary_tolerance_thz=float(self.imaginary_tolerance_thz),
            mesh=[int(x) for x in ph.mesh.mesh_numbers],
            band_structure=band_structure_data(ph),
            dos=dos_data(ph),
        )
        if output_dir is not None:
            out = Path(output_dir)
            out.mkdir(parents=True, exist_ok=True)
            ph.save(out / "phonopy.yaml", settings={"force_constants": True})
            plot_band_dos(ph, out / "band_dos.png")
        if not stable and self.imaginary_policy != "ignore":
            msg = (f"imaginary phonon modes down to {f_min:.3f} THz (tolerance "
                   f"{self.imaginary_tolerance_thz} THz): the structure is dynamically unstable")
            if self.imaginary_policy == "error":
                raise PhononInstabilityError(msg)
            warnings.warn(msg, stacklevel=2)
        return result
