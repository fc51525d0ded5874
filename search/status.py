"""``matdesign screen --status``: where a (possibly shared, multi-process) screen stands.

Counts come from the database itself, so the status is the same from any machine that reaches
it: rows ``done`` and ``failed``, claims being computed now (live heartbeats) and stale ones
(owners that died; the next run takes them over), and, when the inputs are given, candidates
still ``pending`` (no row, no live claim). Throughput is measured from the newest rows' write
times (rows per hour, all processes together); the ETA divides the remaining work by it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from matdesign.search.claims import open_claims
from matdesign.search.database import ResultsDB
from matdesign.search.pipeline import ScreenSettings

#: rows the throughput is measured over (the newest ones)
RATE_WINDOW = 200


@dataclass(frozen=True)
class ScreenStatus:
    """A snapshot of a results database.

    Counts are of one settings hash when the inputs (and so the settings) are given, else of
    every row. ``None`` marks what cannot be known: pending work without the inputs, a
    throughput from fewer than two rows, an ETA without either.
    """

    n_done: int
    n_failed: int
    n_claimed: int  # candidates being computed now (live claims)
    n_stale_claims: int  # claims of owners that stopped sending heartbeats
    n_pending: int | None  # input candidates with no row and no live claim
    n_inputs: int | None  # distinct input candidates
    rows_per_hour: float | None  # newest rows, all processes together
    mean_elapsed_s: float | None  # compute time per candidate (a row's elapsed_s), s
    eta_s: float | None  # (pending + claimed) / throughput, s
    last_row_age_s: float | None  # how long ago the newest row was written, s
    settings_hash: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(times: list[float]) -> float | None:
    """Rows per hour over write times (Unix s); None for fewer than two distinct times."""
    if len(times) < 2 or max(times) <= min(times):
        return None
    return 3600.0 * (len(times) - 1) / (max(times) - min(times))


def screen_status(db_url: str, inputs: list[str] | None = None,
                  settings: ScreenSettings | None = None,
                  claim_timeout_s: float | None = None, now: float | None = None) -> ScreenStatus:
    """Read the status of ``db_url`` (nothing is written but the claim table, if missing).

    Args:
        db_url: results database (path or ase.db URL); it must exist.
        inputs: the screen's inputs (to count pending candidates); None: not counted.
        settings: the screen's settings (needed with ``inputs``: rows of other settings do
            not finish these candidates).
        claim_timeout_s: heartbeat timeout, s (None: ``$MATDESIGN_CLAIM_TIMEOUT_S`` or 120).
        now: the current Unix time, s (default: the clock).

    Raises:
        ValueError: a missing database, or inputs without settings.
    """
    import time

    from matdesign.search.screen import expand_inputs

    now = time.time() if now is None else now
    db = ResultsDB(db_url, existing=True)
    claims = open_claims(db.sqlite_path, claim_timeout_s, url=db.url)
    settings_hash = None
    if inputs:
        if settings is None:
            raise ValueError("counting pending candidates needs the screen's settings")
        settings = replace(settings, references=tuple(str(Path(r).resolve())
                                                      for r in settings.references))
        settings_hash = settings.settings_hash()
    where = {} if settings_hash is None else {"settings_hash": settings_hash}
    live, stale = claims.counts(settings_hash)
    n_pending = n_inputs = None
    if inputs:
        own = () if "://" in db_url else (db_url, db_url + ".db")
        keys = {s.content_hash for s in expand_inputs(inputs, exclude=own)}
        finished = {structure_hash for structure_hash, row_settings_hash in db.done_keys()
                    if row_settings_hash == settings_hash}
        held = set(claims.holders(str(settings_hash)))
        n_inputs, n_pending = len(keys), len(keys - finished - held)
    recent = db.recent(RATE_WINDOW, **where)
    rate = _rate([t for t, _ in recent])
    elapsed = [e for _, e in recent if math.isfinite(e)]
    todo = None if n_pending is None else n_pending + live
    return ScreenStatus(
        n_done=db.count_where(status="done", **where),
        n_failed=db.count_where(status="failed", **where),
        n_claimed=live, n_stale_claims=stale, n_pending=n_pending, n_inputs=n_inputs,
        rows_per_hour=rate, mean_elapsed_s=sum(elapsed) / len(elapsed) if elapsed else None,
        eta_s=None if todo is None or rate is None else 3600.0 * todo / rate,
        last_row_age_s=now - recent[0][0] if recent else None, settings_hash=settings_hash,
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_status(st: ScreenStatus, url: str) -> str:
    """The status as a few lines of text."""
    scope = "all settings" if st.settings_hash is None else f"settings {st.settings_hash}"
    pending = ("pending: give the INPUT files to count them" if st.n_pending is None
               else f"pending {st.n_pending} of {st.n_inputs} input candidates")
    lines = [f"{url} ({scope})",
             f"done {st.n_done}, failed {st.n_failed}, claimed (running) {st.n_claimed}, "
             f"stale claims {st.n_stale_claims}; {pending}"]
    if st.rows_per_hour is None:
        lines.append("throughput: unknown (fewer than two rows)")
    else:
        per = ("" if st.mean_elapsed_s is None
               else f", {st.mean_elapsed_s:.3g} s of compute per candidate")
        lines.append(f"throughput {st.rows_per_hour:.4g} rows/h over the newest rows{per}; "
                     f"newest row {_duration(st.last_row_age_s)} ago")
    if st.n_pending is not None:
        eta = "done" if st.n_pending + st.n_claimed == 0 else _duration(st.eta_s)
        lines.append(f"ETA: {eta}")
    return "\n".join(lines)
