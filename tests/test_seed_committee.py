"""benchmarks/seed_committee.py: a committee of seeds formed from leave-one-family-out results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seed_committee.py"


def _write(folder: Path, name: str, seed: int, split_seed: int, valid: np.ndarray,
           left: np.ndarray, laplace_noise: float, rng: np.random.Generator) -> Path:
    """A lofo.py result whose signed errors are the given (frames,) arrays, meV/atom."""
    def part(signed: np.ndarray, unseen: float) -> dict:
        spread = np.abs(signed) * rng.uniform(1 - laplace_noise, 1 + laplace_noise, len(signed))
        return {"signed_errors_mev_per_atom": signed.tolist(),
                "errors_mev_per_atom": np.abs(signed).tolist(),
                "spread_mev_per_atom": spread.tolist(),
                "unseen_edge_fraction": [unseen] * len(signed),
                "pair_prior_mev_per_atom": 5.0}
    path = folder / f"{name}_{seed}.json"
    path.write_text(json.dumps({"leave_out": [name], "seed": seed, "split_seed": split_seed,
                                "valid": part(valid, 0.0), "left_out": part(left, 0.0)}))
    return path


def _run(paths: list[Path], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, paths), "--json",
                           str(tmp_path / "out.json")], capture_output=True, text=True,
                          timeout=120)


def test_seeds_spread_that_tracks_the_error_ranks_it(tmp_path):
    """Members that scatter around a common prediction in proportion to each frame's error
    scale: the seeds' spread ranks the error of their mean, while a Laplace spread that is pure
    noise does not; the seed mean's error is the members' average's."""
    rng = np.random.default_rng(1)
    scale_v, scale_l = rng.uniform(0.2, 2.0, 60), rng.uniform(2.0, 20.0, 40)
    members_v = scale_v * rng.normal(0, 1, (4, 60))
    members_l = scale_l * rng.normal(0, 1, (4, 40))
    paths = [_write(tmp_path, "A", s, 0, members_v[s], members_l[s], 0.99, rng)
             for s in range(4)]
    for p in paths:  # Laplace spread unrelated to the error
        data = json.loads(p.read_text())
        for key in ("valid", "left_out"):
            n = len(data[key]["spread_mev_per_atom"])
            data[key]["spread_mev_per_atom"] = rng.uniform(1, 2, n).tolist()
        p.write_text(json.dumps(data))
    done = _run(paths, tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["seeds"]["spearman"] > 0.5
    assert abs(report["laplace"]["spearman"]) < 0.3
    mean = np.concatenate([members_v, members_l], axis=1).mean(0)
    valid_mae = report["mae_mev_per_atom"]["valid"]["seed_mean"]
    assert valid_mae == pytest.approx(np.mean(np.abs(mean[:60])), rel=1e-3)


def test_fits_on_different_splits_are_refused_by_name(tmp_path):
    rng = np.random.default_rng(2)
    a = _write(tmp_path, "A", 0, 0, rng.normal(size=10), rng.normal(size=5), 0.1, rng)
    b = _write(tmp_path, "A", 1, 1, rng.normal(size=10), rng.normal(size=5), 0.1, rng)
    done = _run([a, b], tmp_path)
    assert done.returncode != 0
    assert "validation split" in done.stderr and "A_0.json" in done.stderr
