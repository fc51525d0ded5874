"""Static HTML report of a design campaign database (``matdesign report``).

The page holds the best-so-far curve of every objective (feasible candidates only), the Pareto
front when there are several objectives, a ranked table of all proposals with their properties
and constraint status (uncertain candidates flagged), phonon band structures and DOS of the top
candidates where the campaign computed phonons (frequencies at the high-symmetry points only for
rows stored without a band path), and links to CIF files of the proposed materials. Nothing is
recomputed: the report shows what the database holds.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matdesign.search.surrogate import chebyshev_scalarise, pareto_mask

_SHOWN = ("energy_per_atom_ev", "formation_energy_ev_per_atom", "e_above_hull_ev_per_atom",
          "bulk_modulus_vrh_gpa", "shear_modulus_vrh_gpa", "pugh_ratio", "cauchy_pressure_gpa",
          "born_stable", "dynamically_stable", "min_frequency_thz", "energy_std_ev_per_atom")


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and what it holds."""

    html_path: str
    n_rows: int
    n_feasible: int
    n_cif: int
    figures: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"html_path": self.html_path, "n_rows": self.n_rows,
                "n_feasible": self.n_feasible, "n_cif": self.n_cif,
                "figures": list(self.figures)}


def _load(db_path: str) -> tuple[list[Any], list[tuple[str, str]], list[str]]:
    from ase.db import connect

    if not Path(db_path).is_file():
        raise FileNotFoundError(f"campaign database not found: {db_path}")
    db = connect(db_path)
    meta = db.metadata
    if "objectives" not in meta:
        raise ValueError(f"{db_path}: not a design-campaign database (no objectives in metadata)")
    rows = list(db.select(sort="id"))
    if not rows:
        raise ValueError(f"{db_path}: the campaign has no evaluations yet")
    return rows, [tuple(o) for o in meta["objectives"]], list(meta.get("constraints", []))


def _objective_matrix(rows: list[Any], objectives: list[tuple[str, str]]) -> np.ndarray:
    """(n, m) minimisation objectives, NaN where missing."""
    y = np.full((len(rows), len(objectives)), np.nan)
    for i, r in enumerate(rows):
        for j, (name, goal) in enumerate(objectives):
            v = r.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                y[i, j] = -float(v) if goal == "max" else float(v)
    return y


def _ranking(rows: list[Any], y: np.ndarray) -> list[int]:
    """Feasible rows first, best (equal-weight ParEGO score) first; then the rest."""
    ok = ~np.isnan(y).any(1)
    feas = np.array([bool(r.get("feasible", False)) for r in rows]) & ok
    score = np.full(len(rows), np.inf)
    if ok.any():
        score[ok] = chebyshev_scalarise(y[ok], np.ones(y.shape[1]) / y.shape[1])
    return sorted(range(len(rows)), key=lambda i: (not feas[i], not ok[i], score[i], i))


def _plot_best_so_far(rows: list[Any], y: np.ndarray, objectives: list[tuple[str, str]],
                      out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feas = np.array([bool(r.get("feasible", False)) for r in rows])
    fig, axes = plt.subplots(1, len(objectives), figsize=(4.5 * len(objectives), 3.5),
                             squeeze=False)
    for j, (name, goal) in enumerate(objectives):
        vals = np.where(feas & ~np.isnan(y[:, j]), y[:, j], np.inf)
        best = np.minimum.accumulate(vals)
        sign = -1.0 if goal == "max" else 1.0
        shown = np.where(np.isfinite(best), sign * best, np.nan)
        ax = axes[0, j]
        ax.plot(np.arange(1, len(rows) + 1), shown, "-o", ms=3)
        ax.set_xlabel("evaluation")
        ax.set_ylabel(f"best feasible {name} ({goal})")
    fig.tight_layout()
    fig.savefig(out / "best_so_far.png", dpi=100)
    plt.close(fig)
    return "best_so_far.png"


def _plot_pareto(rows: list[Any], y: np.ndarray, objectives: list[tuple[str, str]],
                 out: Path) -> str | None:
    import matplotlib.pyplot as plt

    feas = np.array([bool(r.get("feasible", False)) for r in rows]) & ~np.isnan(y).any(1)
    if len(objectives) < 2 or not feas.any():
        return None
    idx = np.flatnonzero(feas)
    front = idx[pareto_mask(y[idx])]
    sign = np.array([-1.0 if g == "max" else 1.0 for _, g in objectives])
    fig, ax = plt.subplots(figsize=(5, 4))
    vals = y * sign
    ax.scatter(vals[idx, 0], vals[idx, 1], c="0.6", s=12, label="feasible")
    order = front[np.argsort(vals[front, 0])]
    ax.plot(vals[order, 0], vals[order, 1], "o-", c="tab:red", label="Pareto front")
    ax.set_xlabel(objectives[0][0])
    ax.set_ylabel(objectives[1][0])
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=100)
    plt.close(fig)
    return "pareto.png"


def _plot_phonons(rows: list[Any], ranked: list[int], out: Path, top: int) -> list[str]:
    """Phonon figures of the ``top`` ranked rows from the stored phonon data (no recompute).

    Rows with a stored band structure get a band structure + DOS plot
    (``phonon_bands_<id>.png``); older rows with only high-symmetry-point frequencies get
    those points (``phonon_<id>.png``); rows without phonon data (phonons off, gated out or
    failed) are skipped.
    """
    from matdesign.properties.phonon import plot_band_data

    names = []
    for i in ranked[:top]:
        phonon = rows[i].data.get("phonon") or {}
        title = f"{rows[i].get('candidate_key')} ({rows[i].formula})"
        band = phonon.get("band_structure") or {}
        if band.get("segments"):
            name = f"phonon_bands_{rows[i].id}.png"
            plot_band_data(band, phonon.get("dos"), out / name, title=title)
            names.append(name)
        elif phonon.get("high_symmetry_points"):
            names.append(_plot_points(phonon["high_symmetry_points"], title, out,
                                      f"phonon_{rows[i].id}.png"))
    return names


def _plot_points(points: list[dict[str, Any]], title: str, out: Path, name: str) -> str:
    """Fallback: frequencies at the high-symmetry points only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k, p in enumerate(points):
        f = p.get("frequencies_thz", [])
        ax.plot([k] * len(f), f, "_", ms=18, c="tab:blue")
    ax.axhline(0, c="0.3", lw=0.5, ls="--")
    ax.set_xticks(range(len(points)), [str(p.get("label", "")) for p in points])
    ax.set_ylabel("frequency (THz)")
    ax.set_title(f"{title}: high-symmetry points")
    fig.tight_layout()
    fig.savefig(out / name, dpi=100)
    plt.close(fig)
    return name


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v)) if v is not None else "–"


#: Per-atom energies whose committee spread is the row's ``energy_std_ev_per_atom``.
_ENERGY_COLUMNS = ("energy_per_atom_ev", "formation_energy_ev_per_atom",
                   "e_above_hull_ev_per_atom")


def _with_sigma(row: Any, column: str) -> str:
    """The value, and ± the committee σ (eV/atom) beside an energy-per-atom column."""
    sigma = row.get("energy_std_ev_per_atom")
    if column in _ENERGY_COLUMNS and isinstance(sigma, float) and row.get(column) is not None:
        return f"{_fmt(row.get(column))} ± {sigma:.2g}"
    return _fmt(row.get(column))


def _table(rows: list[Any], ranked: list[int], objectives: list[tuple[str, str]],
           cifs: dict[int, str]) -> str:
    cols = [o for o, _ in objectives] + [c for c in _SHOWN if c not in {o for o, _ in objectives}]
    cols = [c for c in cols if any(r.get(c) is not None for r in rows)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in
                   ["rank", "candidate", "formula", "status", "feasible", "uncertain", *cols,
                    "CIF"])
    body = []
    for rank, i in enumerate(ranked, 1):
        r = rows[i]
        cls = "uncertain" if r.get("uncertain") else ("feasible" if r.get("feasible") else "")
        cells = [str(rank), _fmt(r.get("candidate_key")), _fmt(r.formula), _fmt(r.get("status")),
                 _fmt(bool(r.get("feasible"))),
                 "⚠ yes" if r.get("uncertain") else "no", *[_with_sigma(r, c) for c in cols]]
        link = f'<a href="{cifs[r.id]}">{cifs[r.id]}</a>' if r.id in cifs else "–"
        body.append(f'<tr class="{cls}">' + "".join(f"<td>{c}</td>" for c in cells)
                    + f"<td>{link}</td></tr>")
    return f'<table id="ranking"><tr>{head}</tr>{"".join(body)}</table>'


def build_report(db_path: str | Path, out_dir: str | Path, top: int = 10) -> ReportResult:
    """Write ``index.html``, figures and CIF files of the ``top`` ranked candidates.

    Raises:
        FileNotFoundError / ValueError: naming the database when it is missing or not a
            campaign database.
    """
    from ase.io import write

    rows, objectives, constraints = _load(str(db_path))
    out = Path(out_dir)
    (out / "cif").mkdir(parents=True, exist_ok=True)
    y = _objective_matrix(rows, objectives)
    ranked = _ranking(rows, y)
    figures = [_plot_best_so_far(rows, y, objectives, out)]
    pareto = _plot_pareto(rows, y, objectives, out)
    figures += [pareto] if pareto else []
    phonons = _plot_phonons(rows, ranked, out, min(top, 3))
    cifs = {}
    for i in ranked[:top]:
        name = f"cif/{rows[i].id}_{rows[i].formula}.cif"
        write(out / name, rows[i].toatoms(), format="cif")
        cifs[rows[i].id] = name
    n_feas = sum(bool(r.get("feasible")) for r in rows)
    n_unc = sum(bool(r.get("uncertain")) for r in rows)
    has_spread = any(r.get("energy_std_ev_per_atom") is not None for r in rows)
    unc_text = (f"{n_unc} flagged uncertain (committee spread above threshold)" if has_spread
                else "no committee spread available (single-model potential): uncertainty "
                     "could not be judged")
    obj_text = ", ".join(f"{g}imise {html.escape(o)}" for o, g in objectives)
    cons_text = ", ".join(html.escape(c) for c in constraints) or "none"
    imgs = "".join(f'<p><img src="{f}" alt="{f}"></p>' for f in figures)
    phon = ("".join(f'<img src="{f}" alt="{f}">' for f in phonons) if phonons else
            "<p>No phonon data in this campaign (phonons off, or gated out).</p>")
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<title>Design campaign report</title><style>
body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #bbb;padding:3px 6px}} tr.feasible{{background:#eaf7ea}}
tr.uncertain{{background:#fff3cd}}</style></head><body>
<h1>Design campaign report</h1>
<p>Database: {html.escape(str(db_path))} — {len(rows)} evaluations, {n_feas} feasible,
{unc_text}.</p>
<p>Objectives: {obj_text}. Constraints: {cons_text}.</p>
<h2>Best so far</h2>{imgs}
<h2>Ranked proposals</h2>{_table(rows, ranked, objectives, cifs)}
<h2>Phonons of the top candidates</h2>{phon}
</body></html>"""
    path = out / "index.html"
    path.write_text(page)
    return ReportResult(str(path), len(rows), n_feas, len(cifs), tuple(figures + phonons))
