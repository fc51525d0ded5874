"""Design campaigns: config validation, simplex mapping, BO on a synthetic objective,
batch distinctness, and crash/resume without loss or repetition."""

from __future__ import annotations

import numpy as np
import pytest

from matdesign.checkpoint import save_potential
from matdesign.search.campaign import Campaign
from matdesign.search.config import Constraint
from matdesign.search.config import parse_campaign as _parse
from matdesign.search.evaluation import Evaluation
from matdesign.search.features import element_properties
from matdesign.search.space import round_to_counts, simplex_from_unit, unit_from_simplex
from matdesign.search.surrogate import pareto_mask, select_batch

ELEMENTS = ["Nb", "Mo", "Ta", "W"]


def parse_campaign(d: dict):
    return _parse(d, custom_evaluator=True)


def _campaign_dict(**over) -> dict:
    d = {"name": "t", "space": {"elements": ELEMENTS,
                                "ordered": [{"prototype": "B2"}, {"prototype": "L1_2"},
                                            {"prototype": "D0_3"}, {"prototype": "L2_1"}]},
         "objectives": [{"property": "score", "goal": "max"}], "constraints": ["ok"],
         "optimizer": {"batch_size": 3, "n_initial": 5, "seed": 0}, "budget": 30}
    d.update(over)
    return d


def synthetic(atoms, source: str) -> Evaluation:
    """Smooth function of composition-averaged VEC and radius; 'ok' cuts off low VEC."""
    props = np.array([element_properties(s) for s in atoms.get_chemical_symbols()])
    vec, rad = props[:, 2].mean(), props[:, 0].mean()
    score = -((vec - 5.5) ** 2) - 20.0 * (rad - 1.42) ** 2
    return Evaluation("done", {"score": float(score), "ok": bool(vec > 5.0)}, atoms)


class Crash:
    """Evaluator that raises KeyboardInterrupt on call number ``at`` (a simulated kill)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, atoms, source: str) -> Evaluation:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return synthetic(atoms, source)


# ---- configuration ------------------------------------------------------------------------
@pytest.mark.parametrize("mutate, name", [
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d["space"]["ordered"][0].update(sublatices={}), "sublatices"),
    (lambda d: d["space"]["ordered"][0].update(sublattices={"Q": ["Nb"]}), "Q"),
    (lambda d: d.update(optimizer={"batchsize": 2}), "batchsize"),
    (lambda d: d["objectives"][0].update(goal="up"), "goal"),
    (lambda d: d["space"].update(disordered=[{"lattice": "A2", "bounds": {"Nb": [0.5, 0.2]}}]),
     "bounds.Nb"),
    (lambda d: d["space"].update(elements=["Nb", "Xx"]), "Xx"),
    (lambda d: d.update(constraints=["e_above_hull <= abc"]), "abc"),
    (lambda d: d["space"]["ordered"].append({"prototype": "Z9"}), "Z9"),
])
def test_config_errors_name_the_key(mutate, name: str) -> None:
    d = _campaign_dict()
    mutate(d)
    with pytest.raises(ValueError, match=name):
        parse_campaign(d)


def test_constraints_and_gates() -> None:
    cfg = parse_campaign(_campaign_dict(constraints=["e_above_hull_ev_per_atom <= 0.05",
                                                     "born_stable"]))
    # born_stable comes from the elastic step (in the default screen properties): it gates
    # the phonons; a boolean is gated as == 1.0
    assert cfg.gates() == (("e_above_hull_ev_per_atom", "<=", 0.05), ("born_stable", "==", 1.0))
    no_elastic = parse_campaign(_campaign_dict(
        constraints=["e_above_hull_ev_per_atom <= 0.05", "born_stable", "dynamically_stable",
                     "pugh_ratio >= 1.8"], screen={"properties": ["phonon"]}))
    assert no_elastic.gates() == (("e_above_hull_ev_per_atom", "<=", 0.05),)
    both = parse_campaign(_campaign_dict(
        constraints=["born_stable == false", "dynamically_stable", "pugh_ratio >= 1.8"],
        screen={"properties": ["elastic", "phonon"]}))
    assert both.gates() == (("born_stable", "==", 0.0), ("pugh_ratio", ">=", 1.8))
    c = Constraint.parse("e_above_hull_ev_per_atom <= 0.05")
    assert c.satisfied({"e_above_hull_ev_per_atom": 0.01})
    assert not c.satisfied({"e_above_hull_ev_per_atom": 0.2})
    assert not c.satisfied({})  # a missing value never counts as feasible
    assert not Constraint.parse("born_stable").satisfied({"born_stable": False})


# ---- the simplex --------------------------------------------------------------------------
def test_fractions_sum_to_one_and_respect_bounds() -> None:
    rng = np.random.default_rng(1)
    for _ in range(3000):
        k = int(rng.integers(2, 6))
        lo = rng.uniform(0, 1.0 / k, k) * rng.integers(0, 2, k)
        hi = np.maximum(lo, rng.uniform(0, 1, k))
        hi[rng.integers(k)] = 1.0  # guarantees sum(hi) >= 1
        x = simplex_from_unit(rng.uniform(0, 1, k - 1), lo, hi)
        assert abs(x.sum() - 1) < 1e-12
        assert np.all(x >= lo - 1e-12) and np.all(x <= hi + 1e-12)
        n = int(rng.integers(8, 65))
        try:
            c = round_to_counts(x, n, lo, hi)
        except ValueError:
            # only allowed when no integer composition exists at all
            ilo, ihi = np.ceil(lo * n - 1e-6), np.floor(hi * n + 1e-6)
            assert ilo.sum() > n or ihi.sum() < n or np.any(ilo > ihi)
            continue
        assert c.sum() == n and np.all(c >= 0)
        assert np.all(c / n >= lo - 1e-6) and np.all(c / n <= hi + 1e-6)
        free = round_to_counts(x, n, np.zeros(k), np.ones(k))
        assert free.sum() == n and np.all(np.abs(free - x * n) < 1)  # largest remainder


def test_unbounded_map_is_uniform_on_simplex() -> None:
    """Against the Dirichlet(1,...,1) moments: mean 1/k, variance (k-1)/(k²(k+1))."""
    k, rng = 4, np.random.default_rng(2)
    xs = np.array([simplex_from_unit(u, np.zeros(k), np.ones(k))
                   for u in rng.uniform(size=(20000, k - 1))])
    assert np.allclose(xs.mean(0), 1 / k, atol=0.01)
    assert np.allclose(xs.var(0), (k - 1) / (k**2 * (k + 1)), rtol=0.05)


def test_unit_from_simplex_inverts_and_compositions_are_all_listed() -> None:
    rng = np.random.default_rng(4)
    lo, hi = np.array([0.1, 0.0, 0.2, 0.0]), np.array([0.6, 0.5, 0.7, 1.0])
    for u in rng.uniform(size=(500, 3)):
        x = simplex_from_unit(u, lo, hi)
        np.testing.assert_allclose(simplex_from_unit(unit_from_simplex(x, lo, hi), lo, hi), x,
                                   atol=1e-12)
    # 16-atom bcc, four elements each 2..8 atoms: C(11,3) - 4 C(4,3) = 149 (inclusion-exclusion)
    d = _campaign_dict()
    d["space"] = {"elements": ELEMENTS, "disordered": [
        {"lattice": "A2", "supercell": [2, 2, 2], "bounds": {e: [0.125, 0.5] for e in ELEMENTS}}]}
    space = parse_campaign(d).space
    vecs, complete = space.enumerate_disordered(limit=1000)
    counts = {space.decode(x).counts for x in vecs}
    assert len(vecs) == len(counts) == 149 and complete == {"disordered:A2#0"}
    assert all(sum(c) == 16 and min(c) >= 2 and max(c) <= 8 for c in counts)
    assert space.enumerate_disordered(limit=100) == ([], set())  # too many: left to sampling


def test_disordered_candidates_exact_counts() -> None:
    d = _campaign_dict()
    d["space"]["disordered"] = [{"lattice": "A2", "supercell": [2, 2, 2], "realisations": 2,
                                 "bounds": {"W": [0.25, 0.5]}}]
    space = parse_campaign(d).space
    rng = np.random.default_rng(3)
    for _ in range(12):
        x = ["disordered:A2#0", *([0.5] * space.n_slots), *rng.uniform(size=space.n_unit)]
        c = space.decode(x)
        assert sum(c.counts) == 16 and 4 <= c.counts[ELEMENTS.index("W")] <= 8
        structures = space.structures(c)
        assert len(structures) == 2
        for atoms in structures:
            syms = atoms.get_chemical_symbols()
            assert [syms.count(e) for e in ELEMENTS] == list(c.counts)


# ---- optimisation -------------------------------------------------------------------------
def _evals_to_best(tmp_path, strategy: str, seed: int, best: float) -> int:
    d = _campaign_dict(optimizer={"batch_size": 3, "n_initial": 5, "seed": seed})
    camp = Campaign(parse_campaign(d), str(tmp_path / f"{strategy}{seed}.db"), synthetic)
    camp.run(strategy=strategy)
    scores = [r.properties["score"] for r in camp.store.records()]
    hits = [i for i, s in enumerate(scores) if s >= best - 1e-12]
    keys = [r.key for r in camp.store.records()]
    assert len(keys) == len(set(keys)) == 30  # never a repeat
    return hits[0] + 1 if hits else 10**3


def test_bo_finds_known_optimum_faster_than_random(tmp_path) -> None:
    space = parse_campaign(_campaign_dict()).space
    pool = [space.decode(x) for x in space.enumerate_ordered()]
    best = max(synthetic(space.structures(c)[0], "").key_value_pairs["score"] for c in pool)
    bo = [_evals_to_best(tmp_path, "bo", s, best) for s in range(3)]
    rnd = [_evals_to_best(tmp_path, "random", s, best) for s in range(3)]
    assert max(bo) <= 30, f"BO missed the optimum within budget: {bo}"
    assert np.mean(bo) < np.mean(rnd), f"BO {bo} vs random {rnd}"


def test_batch_proposals_distinct() -> None:
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(40, 3))
    tx = rng.normal(size=(8, 3))
    ty = (tx**2).sum(1)
    picks = select_batch(pool, tx, ty, tx, np.ones(8, bool), 6)
    assert len(set(picks)) == 6


def test_crash_and_resume_loses_and_repeats_nothing(tmp_path) -> None:
    cfg = parse_campaign(_campaign_dict(budget=12))
    db = str(tmp_path / "c.db")
    with pytest.raises(KeyboardInterrupt):
        Campaign(cfg, db, Crash(at=8)).run()
    first = Campaign(cfg, db, synthetic).store.records()
    assert len(first) == 7  # every evaluation finished before the kill is stored
    summary = Campaign(cfg, db, synthetic).run()
    after = Campaign(cfg, db, synthetic).store.records()
    assert summary.n_new == 5 and len(after) == 12
    assert [r.key for r in after[:7]] == [r.key for r in first]
    assert len({r.key for r in after}) == 12
    Campaign(cfg, db, synthetic).run(budget=15)  # extending the budget
    assert len({r.key for r in Campaign(cfg, db, synthetic).store.records()}) == 15


def test_pareto_mask() -> None:
    y = np.array([[0, 1], [1, 0], [1, 1], [0.5, 0.5]])
    assert pareto_mask(y).tolist() == [True, True, False, True]


@pytest.mark.parametrize("over, match", [
    ({"objectives": [{"property": "pugh_ratoi"}]},
     r"objectives\[0\].property: unknown .*pugh_ratoi"),
    ({"objectives": [{"property": "pugh_ratio"}], "screen": {"properties": []}},
     r"objectives\[0\].*'pugh_ratio' comes from the elastic step; add 'elastic'"),
    ({"objectives": [{"property": "pugh_ratio"}], "constraints": ["dynamically_stable"]},
     r"constraints\[0\].*add 'phonon'"),
    ({"objectives": [{"property": "pugh_ratio"}], "constraints": ["e_above_hul <= 0.1"]},
     r"constraints\[0\]: unknown property 'e_above_hul'.*e_above_hull_ev_per_atom"),
])
def test_pipeline_property_names_are_checked(over: dict, match: str, tmp_path) -> None:
    d = _campaign_dict(constraints=[])
    d.update(over)
    with pytest.raises(ValueError, match=match):
        _parse(d)
    cfg = _parse(d, custom_evaluator=True)  # a custom evaluator may produce anything...
    with pytest.raises(ValueError, match=match):  # ...but not the default pipeline
        Campaign(cfg, str(tmp_path / "c.db"))
    ok = _campaign_dict(objectives=[{"property": "min_frequency_thz"}],
                        constraints=["e_above_hull_ev_per_atom <= 0.1", "born_stable"],
                        screen={"properties": ["elastic", "phonon"]})
    _parse(ok)


def test_random_streams_of_different_seeds_are_independent(tmp_path) -> None:
    """Seeding a round by seed + n_done made seed 2's first batch replay seed 0's second."""
    batches = {}
    for seed in (0, 2):
        cfg = parse_campaign(_campaign_dict(budget=4, optimizer={"batch_size": 2, "seed": seed}))
        camp = Campaign(cfg, str(tmp_path / f"s{seed}.db"), synthetic)
        camp.run(strategy="random")
        keys = [r.key for r in camp.store.records()]
        batches[seed] = (set(keys[:2]), set(keys[2:]))
    assert batches[2][0] != batches[0][1]
    assert batches[2][0] != batches[0][0]


def test_uncertain_evaluation_enters_the_surrogate_as_noisy():
    """An outlier flagged as uncertain is not interpolated; unflagged, it is."""
    from matdesign.search.surrogate import FeatureGP, select_batch

    x = np.linspace(0, 1, 11)[:, None]
    y = x[:, 0].copy()
    y[5] = -5.0  # an over-optimistic number from outside the potential's domain
    flags = np.zeros(11, bool)
    flags[5] = True
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern

    kernel = ConstantKernel(1.0) * Matern(0.3, nu=2.5)  # fixed: the test compares noise only
    sd = float(np.std(y))
    plain = FeatureGP()
    plain._mu, plain._sd = np.zeros(1), np.ones(1)  # a fixed kernel skips the feature scaling
    plain.fit(x, y, kernel=kernel)
    noisy = FeatureGP()
    noisy._mu, noisy._sd = np.zeros(1), np.ones(1)
    noisy.fit(x, y, kernel=kernel, noise=flags * (0.5 * sd) ** 2)
    assert plain.predict(x[5:6])[0][0] == pytest.approx(-5.0, abs=0.05)
    assert noisy.predict(x[5:6])[0][0] > -4.0
    # With the flag, EI's incumbent is the best trusted value, so the pick moves off the outlier.
    pool = np.linspace(0.02, 0.98, 25)[:, None]
    picks = select_batch(pool, x, y, x, np.ones(11, bool), 1, seed=0, uncertain=flags)
    assert len(picks) == 1


def test_uncertainty_threshold_comes_from_the_checkpoint(tmp_path):
    from matdesign.search.config import FALLBACK_UNCERTAINTY_EV_PER_ATOM, calibrated_threshold
    from tests.helpers import make_model

    path = tmp_path / "m.pt"
    save_potential(make_model(), path, metadata={"uncertainty_threshold_ev_per_atom": 0.042})
    assert calibrated_threshold(str(path)) == 0.042
    save_potential(make_model(), path)  # no calibration stored
    assert calibrated_threshold(str(path)) == FALLBACK_UNCERTAINTY_EV_PER_ATOM
    assert calibrated_threshold("emt") == FALLBACK_UNCERTAINTY_EV_PER_ATOM
    with pytest.raises(ValueError, match="uncertainty_energy_std_ev_per_atom"):
        parse_campaign(_campaign_dict(uncertainty_energy_std_ev_per_atom="x"))


def test_campaign_rows_keep_their_schema(tmp_path) -> None:
    """Existing campaign databases resume only if rows and metadata keep their keys."""
    from ase.db import connect

    from matdesign.search.connection import WRITER_KEY

    camp = Campaign(parse_campaign(_campaign_dict(budget=2)), str(tmp_path / "c.db"), synthetic)
    camp.run(strategy="random")
    db = connect(str(tmp_path / "c.db"))
    for row in db.select():
        assert set(row.key_value_pairs) == {
            "score", "ok", "n_realisations", "candidate_key", "kind", "prototype", "family",
            "status", "strategy", "round", "feasible", "uncertain"}
        assert set(row.data) == {"x", "error"} and row.data["x"][0].startswith("ordered:")
    assert db.metadata[WRITER_KEY] == "design" and {"campaign", "objectives", "constraints",
                                                    "space"} <= set(db.metadata)
