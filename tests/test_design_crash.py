"""A campaign worker killed mid-candidate (as by the OOM killer): the candidates in flight run
again in a fresh pool instead of being stored as failed; two crashes make a failure."""

from __future__ import annotations

import os
from pathlib import Path

from matdesign.search.campaign import Campaign, Evaluation
from matdesign.search.config import parse_campaign as _parse

CFG = {"name": "crash", "space": {"elements": ["Nb", "Mo", "Ta"],
                                  "ordered": [{"prototype": "B2"}, {"prototype": "L1_2"}]},
       "objectives": [{"property": "score"}], "budget": 5,
       "optimizer": {"batch_size": 3, "n_initial": 2, "seed": 0}}


def parse_campaign(d: dict):  # noqa: ANN201 - synthetic evaluators: properties not the pipeline's
    return _parse(d, custom_evaluator=True)


class DieOnce:
    """Picklable evaluator: the first call (any process) kills its worker, or every call on
    candidates whose key contains ``always``."""

    def __init__(self, marker: str, always: str = "\0") -> None:
        self.marker, self.always = marker, always

    def __call__(self, atoms, source: str) -> Evaluation:  # noqa: ANN001
        if self.always in source:
            os._exit(1)
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)
        return Evaluation("done", {"score": float(atoms.get_masses().mean())}, atoms)


def test_worker_crash_reruns_in_flight_candidates(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    camp = Campaign(parse_campaign(CFG), str(tmp_path / "c.db"), DieOnce(str(marker)))
    summary = camp.run(strategy="random", workers=2)
    assert marker.exists()  # a worker really died
    records = camp.store.records()
    assert summary.n_evaluations == 5 == len({r.key for r in records})
    assert [r.status for r in records] == ["done"] * 5, [r.properties for r in records]


def test_candidate_crashing_twice_is_failed(tmp_path: Path) -> None:
    (tmp_path / "crashed").touch()
    camp = Campaign(parse_campaign(CFG), str(tmp_path / "c.db"),
                    DieOnce(str(tmp_path / "crashed"), always="L1_2"))
    camp.run(strategy="random", workers=2, budget=4)
    records = camp.store.records()
    assert len(records) == 4 == len({r.key for r in records})
    for r in records:
        assert r.status == ("failed" if "L1_2" in r.key else "done"), r.key
    rows = {row.candidate_key: row for row in camp.store.db.select()}
    failed = [row for key, row in rows.items() if "L1_2" in key]
    assert failed and all(row.data["error"].startswith("worker crashed twice")
                          for row in failed)
