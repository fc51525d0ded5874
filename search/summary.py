"""What a screening run reports: counts, the best candidates by hull energy, failures.

``run_screen`` (:mod:`matdesign.search.screen`) returns a :class:`ScreenSummary`;
:func:`format_summary` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from matdesign.search.database import ResultsDB


@dataclass(frozen=True)
class ScreenSummary:
    """Outcome of ``run_screen`` (this run's counts; ``best`` spans the whole database)."""

    n_candidates: int
    n_skipped: int
    n_done: int
    n_failed: int
    elapsed_s: float
    best: list[dict[str, Any]] = field(default_factory=list)  # lowest e_above_hull first
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    n_by_others: int = 0  # candidates of this run finished by other processes meanwhile

    def to_dict(self) -> dict[str, Any]:
        return {"n_candidates": self.n_candidates, "n_skipped": self.n_skipped,
                "n_done": self.n_done, "n_failed": self.n_failed,
                "n_by_others": self.n_by_others, "elapsed_s": float(self.elapsed_s),
                "best": list(self.best), "failures_by_reason": dict(self.failures_by_reason)}


def best_rows(db: ResultsDB, settings_hash: str, n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` done rows with the lowest energy above the hull."""
    rows = [r for r in db.rows(status="done", settings_hash=settings_hash)
            if "e_above_hull_ev_per_atom" in r]
    rows.sort(key=lambda r: (r.e_above_hull_ev_per_atom, r.formation_energy_ev_per_atom))
    return [{"id": int(r.id), "source": r.source, "formula": r.formula,
             "e_above_hull_ev_per_atom": float(r.e_above_hull_ev_per_atom),
             "formation_energy_ev_per_atom": float(r.formation_energy_ev_per_atom)}
            for r in rows[:n]]


def format_summary(summary: ScreenSummary) -> str:
    """A plain-text table: counts, best candidates by hull energy, failures by reason."""
    others = (f", done by other processes {summary.n_by_others}" if summary.n_by_others
              else "")
    lines = [f"candidates {summary.n_candidates}: done {summary.n_done}, failed "
             f"{summary.n_failed}{others}, skipped (already in the database) "
             f"{summary.n_skipped}; {summary.elapsed_s:.1f} s"]
    if summary.best:
        lines += ["", f"{'id':>5}  {'formula':<14} {'E_hull eV/at':>12} {'E_form eV/at':>12}  "
                  "source"]
        for b in summary.best:
            lines.append(f"{b['id']:>5}  {b['formula']:<14} {b['e_above_hull_ev_per_atom']:>12.4f} "
                         f"{b['formation_energy_ev_per_atom']:>12.4f}  {b['source']}")
    if summary.failures_by_reason:
        lines += ["", "failures by reason:"]
        lines += [f"  {n:>5}  {reason}" for reason, n in
                  sorted(summary.failures_by_reason.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)
