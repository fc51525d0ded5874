"""Peer benchmark: a small MACE and our model, same data, split, threads and wall-clock budget.

Usage:
    python benchmarks/peers.py --data ../shared/data/mlearn/Mo/train.extxyz --minutes 20 \
        --threads 2 --out runs/peers --json benchmarks/results/peers.json

MACE lives in its own venv (mace-torch pins e3nn==0.4.4, which would replace ours) and runs
only as a subprocess; nothing in matdesign/ imports it. Install it once:

    python3 -m venv runs/venv-mace
    runs/venv-mace/bin/pip install torch==2.13.0
    echo "torch==2.13.0" > runs/constraints-mace.txt
    runs/venv-mace/bin/pip install -c runs/constraints-mace.txt mace-torch==0.3.16

What it does, one timed thing at a time: a seeded 90/10 split of ``--data`` with
``matdesign.training.data.split`` (written to ``--out`` as train/valid extxyz with REF_energy,
REF_forces, REF_stress in ASE units and sign, which MACE uses too: stress = +dE/dε / V);
trains ours (``--config`` with ``--minutes``/``--threads``), then MACE with ``mace_run_train``
(32x0e+32x1o, max_L 1, correlation 3, max_ell 3, 2 layers, 5 Å, batch 4, EMA, float32, our
config's loss weights) killed at the budget, counted from its "Started training" line. MACE
saves its best (EMA) weights each time validation improves; a second ``mace_run_train
--restart_latest --max_num_epochs <that epoch>`` trains nothing and writes ``mace.model``.
Both models are then scored by the same code (benchmarks/_peer_eval.py): validation MAEs and
µs/atom for an ASE ``get_forces`` call (both calculators also compute stress) on a rattled
128-atom bcc Mo cell, new positions each call, median of repeats.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _peer_eval import time_forces, valid_errors  # noqa: E402


def write_split(data: str, out: Path, seed: int, fraction: float,
                stress_type_weights: dict[str, float]) -> tuple[Path, Path, int, int]:
    """Seeded split (the trainer's own function) written as extxyz for both codes."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read, write

    from matdesign.training.data import split

    frames = read(data, index=":")
    tr, va = split(len(frames), fraction, seed)
    paths = out / "train.extxyz", out / "valid.extxyz"
    for path, idx in zip(paths, (tr, va)):
        rows = []
        for k in idx:
            src = frames[int(k)]
            lab = {**src.arrays, **src.info, **(src.calc.results if src.calc else {})}
            energy, forces, stress = lab.get("energy"), lab.get("forces"), lab.get("stress")
            a = Atoms(src.numbers, src.positions, cell=src.cell, pbc=src.pbc)
            ctype = str(src.info.get("config_type", "default"))
            a.info.update(config_type=ctype, REF_energy=float(energy))
            a.arrays["REF_forces"] = np.asarray(forces, float)
            labels = {"energy": float(energy), "forces": np.asarray(forces, float)}
            if stress is not None and src.pbc.all():
                s = np.asarray(stress, float)
                if s.shape == (6,):
                    from ase.stress import voigt_6_to_full_3x3_stress
                    s = voigt_6_to_full_3x3_stress(s)
                a.info["REF_stress"] = s.reshape(9)
                a.info["config_stress_weight"] = stress_type_weights.get(ctype, 1.0)
                labels["stress"] = s
            a.calc = SinglePointCalculator(a, **labels)  # what our trainer reads
            rows.append(a)
        write(path, rows, format="extxyz")
    return paths[0], paths[1], len(tr), len(va)


def train_ours(args: argparse.Namespace, train: Path, valid: Path) -> dict[str, Any]:
    """Train our model under the budget and score it."""
    import torch

    from matdesign.calculator import load_calculator
    from matdesign.training.config import load_config
    from matdesign.training.workflow import run_training

    # The library leaves torch threads to its caller: set them before training, or it runs on
    # torch's default (every core) whatever --threads says.
    torch.set_num_threads(args.threads)
    model_cfg, train_cfg = load_config(args.config)
    train_cfg = dataclasses.replace(train_cfg, max_time_min=args.minutes, threads=args.threads)
    ckpt = args.out / "ours.pt"
    t0 = time.time()
    s = run_training(data=str(train), valid=str(valid), model_cfg=model_cfg, train_cfg=train_cfg,
                     out=str(ckpt), progress=False, config_path=args.config)
    row = {"train_wall_min": (time.time() - t0) / 60, "epochs": s["epochs"],
           "best_epoch": s["best_epoch"], "stopped": s.get("stopped_because"),
           "trainer_valid": s["valid"], "checkpoint": str(ckpt)}
    calc = load_calculator(str(ckpt), dtype="float32")
    row["n_params"] = sum(p.numel() for p in calc.model.parameters())
    row.update(valid_errors(calc, str(valid)), **time_forces(calc, args.repeats))
    return row


def mace_command(args: argparse.Namespace, train: Path, valid: Path, work: Path,
                 weights: tuple[float, float, float]) -> list[str]:
    e, f, s = weights
    exe = Path(args.mace_python).parent / "mace_run_train"
    return [str(exe), "--name", "mace", "--seed", str(args.seed), "--work_dir", str(work),
            "--train_file", str(train), "--valid_file", str(valid), "--model", "MACE",
            "--num_channels", "32", "--max_L", "1", "--correlation", "3", "--max_ell", "3",
            "--num_interactions", "2", "--r_max", "5.0", "--batch_size", "4",
            "--valid_batch_size", "4", "--E0s", "average", "--loss", "stress" if s else "weighted",
            "--energy_weight", str(e), "--forces_weight", str(f), "--stress_weight", str(s),
            "--energy_key", "REF_energy", "--forces_key", "REF_forces",
            "--stress_key", "REF_stress", "--ema", "--ema_decay", "0.99",
            "--eval_interval", "1", "--keep_checkpoints", "--save_cpu", "--plot", "False",
            "--error_table", "PerAtomMAE", "--device", "cpu", "--default_dtype", "float32"]


def checkpoints(work: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in work.glob("checkpoints/*_epoch-*.pt")
             if (m := re.search(r"_epoch-(\d+)\.pt$", p.name))]
    return sorted(found)


def train_mace(args: argparse.Namespace, train: Path, valid: Path,
               weights: tuple[float, float, float]) -> dict[str, Any]:
    """Run mace_run_train, stop it at the budget, export its best checkpoint and score it."""
    work = args.out / "mace"
    shutil.rmtree(work, ignore_errors=True)  # a stale checkpoint would be resumed otherwise
    work.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    cmd = mace_command(args, train, valid, work, weights)
    log = work / "train.out"
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd + ["--max_num_epochs", "100000", "--patience", "100000"],
                                stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    t_start, budget, killed = None, 60 * args.minutes, False
    try:
        while proc.poll() is None:
            time.sleep(1)
            if t_start is None and "Started training" in log.read_text(errors="replace"):
                t_start = time.time()
            # the budget ends training, but only once a first checkpoint exists
            if t_start and time.time() - t_start >= budget and checkpoints(work):
                killed = True
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    train_min = (time.time() - (t_start or time.time())) / 60
    text = log.read_text(errors="replace")
    if not killed and proc.returncode != 0:
        raise RuntimeError(f"mace_run_train failed (rc {proc.returncode}); tail of {log}:\n"
                           + text[-3000:])
    epochs = max((int(n) for n in re.findall(r"Epoch (\d+):", text)), default=-1) + 1
    ckpts = checkpoints(work)
    if not ckpts:
        raise RuntimeError(f"MACE wrote no checkpoint; see {log}")
    for best, path in reversed(ckpts[-2:]):  # a kill mid-save can truncate the newest file
        with (work / "export.out").open("w") as fh:
            rc = subprocess.run(cmd + ["--restart_latest", "--max_num_epochs", str(best)],
                                stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
        if rc == 0 and (work / "mace.model").is_file():
            break
        path.unlink()
    else:
        raise RuntimeError(f"could not export a MACE model; see {work / 'export.out'}")
    helper = subprocess.run(
        [args.mace_python, str(HERE / "_mace_helper.py"), "--model", str(work / "mace.model"),
         "--valid", str(valid), "--threads", str(args.threads), "--repeats", str(args.repeats)],
        capture_output=True, text=True, env=env)
    if helper.returncode != 0:
        raise RuntimeError(f"_mace_helper.py failed:\n{helper.stderr[-3000:]}")
    row = json.loads(helper.stdout.strip().splitlines()[-1])
    row.update(train_wall_min=train_min, epochs=epochs, best_epoch=best, stopped="killed at budget"
               if killed else f"exited rc {proc.returncode}", checkpoint=str(work / "mace.model"),
               weights={"energy": weights[0], "forces": weights[1], "stress": weights[2]})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="extxyz with energies, forces (and stress)")
    ap.add_argument("--config", default="examples/train_mlearn.yaml")
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget per model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="split seed (and both training seeds)")
    ap.add_argument("--out", type=Path, default=Path("runs/peers"))
    ap.add_argument("--mace-python", default="runs/venv-mace/bin/python")
    ap.add_argument("--repeats", type=int, default=20, help="timed get_forces calls per model")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()
    if not (Path(args.mace_python).parent / "mace_run_train").is_file():
        sys.exit(f"no mace_run_train next to {args.mace_python}; see the install lines in "
                 f"{__file__}'s docstring")
    args.out.mkdir(parents=True, exist_ok=True)

    from matdesign.training.config import load_config

    _, train_cfg = load_config(args.config)
    weights = (train_cfg.energy_weight, train_cfg.forces_weight, train_cfg.stress_weight)
    train, valid, n_tr, n_va = write_split(args.data, args.out, args.seed,
                                           train_cfg.valid_fraction,
                                           dict(train_cfg.stress_config_type_weights))
    print(f"split: {n_tr} train / {n_va} valid frames (seed {args.seed}); "
          f"{args.minutes:g} min per model, {args.threads} thread(s)", flush=True)
    ours = train_ours(args, train, valid)
    print(f"ours done: {ours['epochs']} epochs", flush=True)
    mace = train_mace(args, train, valid, weights)
    keys = ("energy_mae_mev_per_atom", "force_mae_ev_per_a", "us_per_atom")
    ratios = {k: mace[k] / ours[k] for k in keys}
    result = {"data": args.data, "config": args.config, "seed": args.seed, "threads": args.threads,
              "minutes": args.minutes, "n_train": n_tr, "n_valid": n_va, "ours": ours,
              "mace": mace, "ratio_mace_over_ours": ratios}

    print("| model | params | epochs | train (min) | E MAE (meV/atom) | F MAE (eV/Å) | µs/atom |")
    print("|---|---|---|---|---|---|---|")
    for name, r in (("ours", ours), ("MACE", mace)):
        print(f"| {name} | {r['n_params']} | {r['epochs']} | {r['train_wall_min']:.1f} | "
              f"{r['energy_mae_mev_per_atom']:.2f} | {r['force_mae_ev_per_a']:.3f} | "
              f"{r['us_per_atom']:.0f} |")
    print(f"| MACE/ours | | | | {ratios[keys[0]]:.2f} | {ratios[keys[1]]:.2f} | "
          f"{ratios[keys[2]]:.2f} |")
    for path in [args.out / "peers.json"] + ([Path(args.json)] if args.json else []):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
