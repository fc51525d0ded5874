"""Short molecular dynamics runs (NVE velocity Verlet, NVT Langevin) with any ASE calculator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units

from matdesign.properties.base import PropertyCalculator, PropertyResult

ENSEMBLES = ("nve", "nvt")


@dataclass(frozen=True)
class MDResult(PropertyResult):
    """Summary of an MD run. Energies eV, temperatures K, times fs."""

    ensemble: str
    steps: int
    timestep_fs: float
    temperature_k: float  # initial (NVE) or thermostat (NVT) temperature
    mean_temperature_k: float  # over the samples after step 0
    final_temperature_k: float
    energy_drift_ev_per_atom_per_ps: float | None  # slope of E_total/N vs time; NVE only
    max_energy_deviation_ev_per_atom: float  # max |E_total - E_total(0)| / N
    n_atoms: int
    trajectory: str | None


class MDCalculator(PropertyCalculator[MDResult]):
    """MD from Maxwell–Boltzmann velocities at ``temperature_k`` (total momentum removed).

    NVE integrates with velocity Verlet, NVT with a Langevin thermostat. The energy drift is
    the least-squares slope of the total energy per atom against time, eV/atom/ps; it is
    ``None`` for NVT, where the total energy is not conserved.
    """

    def __init__(self, calculator: Any, *, ensemble: str = "nve", temperature_k: float = 300.0,
                 steps: int = 1000, timestep_fs: float = 2.0, friction: float = 0.01,
                 seed: int = 0) -> None:
        """Set up.

        Args:
            calculator: any ASE calculator.
            ensemble: ``"nve"`` (velocity Verlet) or ``"nvt"`` (Langevin).
            temperature_k: initial temperature (NVE) or thermostat temperature (NVT), K.
            steps: number of MD steps.
            timestep_fs: time step, fs.
            friction: Langevin friction, 1/fs (0.01/fs relaxes the temperature in ~100 fs).
            seed: random seed for the initial velocities and the Langevin noise.

        Raises:
            ValueError: unknown ensemble, or non-positive steps/time step/friction.
        """
        super().__init__(calculator)
        if ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble must be one of {ENSEMBLES}, not {ensemble!r}")
        if steps < 1 or timestep_fs <= 0 or temperature_k < 0 or friction <= 0:
            raise ValueError("need steps >= 1, timestep_fs > 0, temperature_k >= 0, friction > 0")
        self.ensemble = ensemble
        self.temperature_k = temperature_k
        self.steps = steps
        self.timestep_fs = timestep_fs
        self.friction = friction
        self.seed = seed

    def _dynamics(self, work: Atoms) -> Any:
        """Thermalised velocities on ``work`` and its integrator."""
        from ase.md import velocitydistribution as vd
        from ase.md.langevin import Langevin
        from ase.md.verlet import VelocityVerlet

        rng = np.random.default_rng(self.seed)
        # thermalize_momenta is ASE >= 3.29's name for MaxwellBoltzmannDistribution
        thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
        thermalize(work, temperature_K=self.temperature_k, rng=rng)
        vd.Stationary(work, preserve_temperature=self.temperature_k > 0)
        dt = self.timestep_fs * units.fs
        if self.ensemble == "nve":
            return VelocityVerlet(work, timestep=dt)
        return Langevin(work, timestep=dt, temperature_K=self.temperature_k,
                        friction=self.friction / units.fs, rng=rng, fixcm=False)

    def calc(self, atoms: Atoms, *, trajectory: str | Path | None = None) -> MDResult:
        """Run MD from ``atoms`` (never modified).

        Args:
            atoms: starting structure, at least 2 atoms.
            trajectory: optional ASE trajectory file, one frame every step.

        Raises:
            ValueError: fewer than 2 atoms.
            FloatingPointError: non-finite energies during the run.
        """
        if len(atoms) < 2:
            raise ValueError(f"MD needs at least 2 atoms (got {len(atoms)}): use a supercell")
        work = atoms.copy()
        work.calc = self.calculator
        dyn = self._dynamics(work)
        traj = None
        if trajectory is not None:
            from ase.io import Trajectory

            traj = Trajectory(str(trajectory), "w", work)
            dyn.attach(traj.write, interval=1)
        times, energies, temps = [], [], []

        def sample() -> None:
            e = work.get_potential_energy() + work.get_kinetic_energy()
            if not np.isfinite(e):
                raise FloatingPointError(f"non-finite energy at MD step {dyn.nsteps}")
            times.append(dyn.nsteps * self.timestep_fs / 1000.0)
            energies.append(e / len(work))
            temps.append(work.get_temperature())

        dyn.attach(sample, interval=1)  # ASE calls observers at step 0 too
        try:
            dyn.run(self.steps)
        finally:
            if traj is not None:
                traj.close()
        t, e = np.array(times), np.array(energies)
        drift = float(np.polyfit(t, e, 1)[0]) if self.ensemble == "nve" else None
        return MDResult(
            ensemble=self.ensemble, steps=int(self.steps), timestep_fs=float(self.timestep_fs),
            temperature_k=float(self.temperature_k), mean_temperature_k=float(np.mean(temps[1:])),
            final_temperature_k=float(temps[-1]), energy_drift_ev_per_atom_per_ps=drift,
            max_energy_deviation_ev_per_atom=float(np.max(np.abs(e - e[0]))),
            n_atoms=len(work), trajectory=None if trajectory is None else str(trajectory),
        )


def run_md(
    atoms: Atoms,
    calc: Any,
    *,
    ensemble: str = "nve",
    temperature_k: float = 300.0,
    steps: int = 1000,
    timestep_fs: float = 2.0,
    friction: float = 0.01,
    trajectory: str | Path | None = None,
    seed: int = 0,
) -> MDResult:
    """:class:`MDCalculator` in one call; arguments as its constructor and ``calc``."""
    md = MDCalculator(calc, ensemble=ensemble, temperature_k=temperature_k, steps=steps,
                      timestep_fs=timestep_fs, friction=friction, seed=seed)
    return md.calc(atoms, trajectory=trajectory)
