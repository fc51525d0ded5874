"""Campaign configuration: YAML -> frozen dataclasses; unknown keys are rejected by name.

See ``examples/refractory_hea.yaml`` for a fully commented file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matdesign.config_utils import load_yaml, typed_config, typed_float, typed_int
from matdesign.search.gates import (
    BOOLEAN_KEYS,
    CHEAP_KEYS,
    ELASTIC_KEYS,
    ENSEMBLE_KEYS,
    PHONON_KEYS,
    compare,
    parse_value,
    split_comparison,
)
from matdesign.search.pipeline import ScreenSettings
from matdesign.search.prototypes import load_prototypes
from matdesign.search.space import DesignSpace, DisorderedSpec, OrderedSpec

#: properties the screen pipeline computes before any elastic or phonon work (cheap gates).
CHEAP_PROPERTIES = CHEAP_KEYS + ENSEMBLE_KEYS
#: result key -> the ``screen.properties`` step that produces it (None: always there;
#: ``n_realisations`` is added by the campaign's averaging)
PIPELINE_RESULTS: dict[str, str | None] = {
    **dict.fromkeys((*CHEAP_PROPERTIES, "n_realisations")),
    **dict.fromkeys(ELASTIC_KEYS, "elastic"), **dict.fromkeys(PHONON_KEYS, "phonon"),
}


@dataclass(frozen=True)
class Objective:
    """One property to optimise: ``goal`` is ``"max"`` or ``"min"``."""

    property: str
    goal: str = "max"

    def sign(self) -> float:
        """+1 to minimise, -1 to maximise (the campaign minimises ``sign * value``)."""
        return -1.0 if self.goal == "max" else 1.0


@dataclass(frozen=True)
class Constraint:
    """``property op value``; a bare boolean property means ``property == True``."""

    property: str
    op: str = "=="
    value: float | bool = True

    @classmethod
    def parse(cls, text: str, where: str = "constraints") -> Constraint:
        """Parse ``"e_above_hull_ev_per_atom <= 0.05"`` or ``"born_stable"``."""
        parts = split_comparison(text)
        if parts is None:
            raise ValueError(f"{where}: cannot parse constraint '{text}' "
                             "(expected 'property <= number' or a boolean property name)")
        name, op, raw = parts
        if op is None:
            return cls(name)
        try:
            return cls(name, op, parse_value(raw))
        except ValueError as exc:
            raise ValueError(f"{where}: constraint '{text}': '{raw}' is not a number") from exc

    def satisfied(self, values: dict[str, Any]) -> bool:
        """True when the property exists, is not None and passes; a missing value fails."""
        v = values.get(self.property)
        if v is None:
            return False
        return compare(v, self.op, self.value)

    def as_gate(self) -> tuple[str, str, float]:
        """``(property, op, float value)`` as the screen pipeline's gates (True -> 1.0)."""
        return (self.property, self.op, float(self.value))

    def __str__(self) -> str:
        return self.property if (self.op, self.value) == ("==", True) else (
            f"{self.property} {self.op} {self.value}")


#: the keys a campaign's ``screen:`` section may set; the rest of the pipeline's
#: ``ScreenSettings`` is the campaign's own: its ``potential``, and ``gates`` from its constraints
CAMPAIGN_SCREEN_KEYS = ("properties", "dtype", "fmax", "max_steps", "phonon_min_length")
#: a campaign's values where they differ from the ``ScreenSettings`` defaults (those of
#: ``matdesign screen``), as campaigns have always had them: elastic constants unless told
#: otherwise, and a looser, shorter relaxation and smaller phonon supercells for the many
#: generated candidates of a search (fmax eV/Å, phonon_min_length Å)
CAMPAIGN_SCREEN_DEFAULTS: dict[str, Any] = {
    "properties": ("elastic",), "fmax": 0.02, "max_steps": 200, "phonon_min_length": 10.0,
}


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(value)


def _as_given(value: Any, key: str) -> Any:
    return value  # ScreenSettings checks it


_SCREEN_VALUES: dict[str, Callable[[Any, str], Any]] = {
    "properties": _names, "dtype": _as_given, "fmax": typed_float,
    "max_steps": typed_int, "phonon_min_length": typed_float,
}


def parse_screen(section: Any = None, potential: str = "default") -> ScreenSettings:
    """The pipeline's settings from a campaign's ``screen:`` section.

    Args:
        section: the section's mapping (None: empty); a key it omits takes
            :data:`CAMPAIGN_SCREEN_DEFAULTS`, else the ``ScreenSettings`` default.
        potential: the campaign's potential spec.

    Raises:
        ValueError: naming the key (``screen.fmax: ...``): unknown, ill-typed or refused by
            ``ScreenSettings``.
    """
    section = section or {}
    if not isinstance(section, dict):
        raise ValueError(f"'screen' must be a mapping, got {type(section).__name__}")
    unknown = sorted(set(section) - set(CAMPAIGN_SCREEN_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) in 'screen': {unknown}; "
                         f"allowed: {sorted(CAMPAIGN_SCREEN_KEYS)}")
    try:
        values = {key: _SCREEN_VALUES[key](value, key)
                  for key, value in {**CAMPAIGN_SCREEN_DEFAULTS, **section}.items()}
        return ScreenSettings(potential=potential, **values)
    except ValueError as exc:  # ScreenSettings names the field; the section names itself
        raise ValueError(f"screen.{exc}") from None


@dataclass(frozen=True)
class OptimizerConfig:
    """Bayesian-optimisation settings: batch per round, initial random points, pool size."""

    batch_size: int = 4
    n_initial: int = 6
    pool_size: int = 2000
    xi: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        typed_int(self.batch_size, "optimizer.batch_size", 1)
        typed_int(self.n_initial, "optimizer.n_initial", 0)
        typed_int(self.pool_size, "optimizer.pool_size", 1)
        typed_float(self.xi, "optimizer.xi", 0.0)
        typed_int(self.seed, "optimizer.seed", 0)  # numpy seeds are non-negative


@dataclass(frozen=True)
class CampaignConfig:
    """A whole campaign."""

    name: str
    space: DesignSpace
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()
    budget: int = 20
    potential: str = "default"
    # the pipeline's settings from the ``screen:`` section; pipeline_evaluator gives them the
    # potential it runs and the gates of ``gates()``
    screen: ScreenSettings = field(default_factory=parse_screen)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    # Calibrated committee σ above which an evaluation is "uncertain"; None: the potential's
    # own calibrated threshold (checkpoint metadata), else FALLBACK_UNCERTAINTY_EV_PER_ATOM.
    uncertainty_energy_std_ev_per_atom: float | None = None

    def gates(self) -> tuple[tuple[str, str, float], ...]:
        """Constraints the screen pipeline checks as gates, cheap properties first.

        Constraints on cheap properties are checked before elastic and phonon work; those on
        elastic results (``born_stable``, moduli, ``pugh_ratio``, ...) after the elastic step
        and before the phonons, when ``screen.properties`` has ``"elastic"``. Booleans become
        ``(key, "==", 1.0)`` for True and 0.0 for False; another operator on a boolean stays a
        constraint only. A gated-out candidate lacks the later properties, so every
        constraint on them fails: it is infeasible.
        """
        out = []
        for c in self.constraints:
            if c.property in BOOLEAN_KEYS and (c.op != "==" or float(c.value) not in (0, 1)):
                continue
            if c.property in CHEAP_PROPERTIES or (c.property in ELASTIC_KEYS
                                                  and "elastic" in self.screen.properties):
                out.append(c.as_gate())
        return tuple(out)


    def check_pipeline_properties(self) -> None:
        """Objectives and constraints must name results the screen pipeline produces with
        ``screen.properties`` (else they would be missing for every candidate: all-NaN
        objectives, nothing feasible).

        Raises:
            ValueError: naming the objective/constraint, the key and the allowed names, or the
                ``screen.properties`` entry a key needs.
        """
        named = [(f"objectives[{i}].property", o.property) for i, o in enumerate(self.objectives)]
        named += [(f"constraints[{i}]", c.property) for i, c in enumerate(self.constraints)]
        for where, key in named:
            if key not in PIPELINE_RESULTS:
                raise ValueError(f"{where}: unknown property '{key}'; the screen pipeline "
                                 f"produces {sorted(PIPELINE_RESULTS)}")
            step = PIPELINE_RESULTS[key]
            if step is not None and step not in self.screen.properties:
                raise ValueError(f"{where}: '{key}' comes from the {step} step; add '{step}' "
                                 f"to screen.properties (now {list(self.screen.properties)})")


def _keys(d: Any, allowed: set[str], where: str, required: tuple[str, ...] = ()) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    for k in required:
        if k not in d:
            raise ValueError(f"{where}: missing required key '{k}'")
    return d


def _elements(v: Any, where: str) -> tuple[str, ...]:
    from ase.data import chemical_symbols

    if not isinstance(v, (list, tuple)) or not v:
        raise ValueError(f"{where}: expected a non-empty list of element symbols")
    bad = [e for e in v if not isinstance(e, str) or e not in chemical_symbols[1:]]
    if bad:
        raise ValueError(f"{where}: unknown element symbol(s) {bad}")
    repeated = sorted({e for e in v if v.count(e) > 1})
    if repeated:
        raise ValueError(f"{where}: element(s) {repeated} listed more than once")
    return tuple(v)


def _space(d: Any, base: Path) -> DesignSpace:
    d = _keys(d, {"elements", "prototype_file", "ordered", "disordered"}, "space")
    default = _elements(d["elements"], "space.elements") if "elements" in d else None
    user = {}
    if d.get("prototype_file"):
        user = load_prototypes(base / d["prototype_file"])
    ordered = []
    for i, o in enumerate(d.get("ordered") or []):
        where = f"space.ordered[{i}]"
        o = _keys(o, {"prototype", "sublattices"}, where, ("prototype",))
        from matdesign.search.prototypes import get_prototype

        proto = get_prototype(str(o["prototype"]), user)
        subs = _keys(o.get("sublattices") or {}, set(proto.sublattices), f"{where}.sublattices")
        lists = []
        for s in proto.sublattices:
            if s in subs:
                lists.append(_elements(subs[s], f"{where}.sublattices.{s}"))
            elif default:
                lists.append(default)
            else:
                raise ValueError(f"{where}: no elements for sublattice '{s}' and no space.elements")
        ordered.append(OrderedSpec(proto.name, tuple(lists)))
    disordered = [_disordered(o, i, default) for i, o in enumerate(d.get("disordered") or [])]
    return DesignSpace(tuple(ordered), tuple(disordered), user)


def _disordered(o: Any, i: int, default: tuple[str, ...] | None) -> DisorderedSpec:
    where = f"space.disordered[{i}]"
    o = _keys(o, {"lattice", "elements", "bounds", "supercell", "method", "realisations", "seed"},
              where, ("lattice",))
    els = _elements(o["elements"], f"{where}.elements") if "elements" in o else default
    if not els or len(els) < 2:
        raise ValueError(f"{where}.elements: a disordered family needs at least two elements")
    bounds = _keys(o.get("bounds") or {}, set(els), f"{where}.bounds")
    lo, hi = [], []
    for e in els:
        b = bounds.get(e, [0.0, 1.0])
        if not (isinstance(b, (list, tuple)) and len(b) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)
                and 0 <= b[0] <= b[1] <= 1):
            raise ValueError(f"{where}.bounds.{e}: expected [lower, upper] with "
                             f"0<=lower<=upper<=1, got {b!r}")
        lo.append(float(b[0]))
        hi.append(float(b[1]))
    if sum(lo) > 1 or sum(hi) < 1:
        raise ValueError(f"{where}.bounds: infeasible (sum of lower {sum(lo)}, of upper {sum(hi)})")
    sc = o.get("supercell", [2, 2, 2])
    if not (isinstance(sc, (list, tuple)) and len(sc) == 3):
        raise ValueError(f"{where}.supercell: expected three positive integers, got {sc!r}")
    sc = tuple(typed_int(n, f"{where}.supercell[{k}]", 1) for k, n in enumerate(sc))
    method = o.get("method", "sqs")
    if method not in ("random", "sqs"):
        raise ValueError(f"{where}.method: must be 'random' or 'sqs', not {method!r}")
    reals = typed_int(o.get("realisations", 1), f"{where}.realisations", 1)
    seed = typed_int(o.get("seed", 0), f"{where}.seed", 0)
    return DisorderedSpec(str(o["lattice"]), els, tuple(lo), tuple(hi), sc, method, reals, seed)


#: Uncertainty threshold (eV/atom) for a potential without a calibrated one (EMT, a factory).
FALLBACK_UNCERTAINTY_EV_PER_ATOM = 0.01


def _optional_positive(value: Any, key: str) -> float | None:
    """None, or a positive number; the error names ``key``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected a positive number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected a positive number, got {value!r}") from None
    if not number > 0:
        raise ValueError(f"{key}: must be positive, got {number}")
    return number


def calibrated_threshold(potential: str) -> float:
    """The committee threshold (eV/atom) stored in a matdesign checkpoint ("default" or a
    path), else :data:`FALLBACK_UNCERTAINTY_EV_PER_ATOM`."""
    from matdesign.potential_spec import parse_potential

    spec = parse_potential(potential)
    if spec.kind != "checkpoint":
        return FALLBACK_UNCERTAINTY_EV_PER_ATOM
    try:
        meta = spec.info().metadata
    except (OSError, ValueError):
        return FALLBACK_UNCERTAINTY_EV_PER_ATOM  # the potential's own check reports the error
    return float(meta.get("uncertainty_threshold_ev_per_atom", FALLBACK_UNCERTAINTY_EV_PER_ATOM))


def _objectives(objs: Any) -> tuple[Objective, ...]:
    if not isinstance(objs, list) or not objs:
        raise ValueError("objectives: expected a non-empty list")
    objectives = []
    for i, o in enumerate(objs):
        o = _keys(o, {"property", "goal"}, f"objectives[{i}]", ("property",))
        if o.get("goal", "max") not in ("max", "min"):
            raise ValueError(f"objectives[{i}].goal: must be 'max' or 'min', "
                             f"not {o.get('goal')!r}")
        if not isinstance(o["property"], str):
            raise ValueError(f"objectives[{i}].property: expected a property name, "
                             f"got {o['property']!r}")
        if o["property"] in [x.property for x in objectives]:
            raise ValueError(f"objectives[{i}].property: '{o['property']}' is already an "
                             "objective")
        objectives.append(Objective(o["property"], o.get("goal", "max")))
    return tuple(objectives)


def parse_campaign(d: Any, base: Path = Path("."), *,
                   custom_evaluator: bool = False) -> CampaignConfig:
    """Validate a campaign mapping (from YAML); ``base`` resolves relative file paths.

    Args:
        d: the mapping.
        base: folder for relative file paths.
        custom_evaluator: the campaign runs its own evaluator (Python API), so objective and
            constraint names are not checked against the screen pipeline's results.
    """
    d = _keys(d, {"name", "space", "objectives", "constraints", "budget", "potential", "screen",
                  "optimizer", "uncertainty_energy_std_ev_per_atom"}, "campaign",
              ("space", "objectives"))
    cons = d.get("constraints") or []
    if not isinstance(cons, list) or not all(isinstance(c, str) for c in cons):
        raise ValueError(f"constraints: expected a list of strings, got {cons!r}")
    for key, default in (("name", "campaign"), ("potential", "default")):
        if not isinstance(d.get(key, default), str) or not d.get(key, default):
            raise ValueError(f"{key}: expected a non-empty string, got {d.get(key)!r}")
    config = CampaignConfig(
        name=d.get("name", "campaign"),
        space=_space(d["space"], base),
        objectives=_objectives(d["objectives"]),
        constraints=tuple(Constraint.parse(c, f"constraints[{i}]") for i, c in enumerate(cons)),
        budget=typed_int(d.get("budget", 20), "budget", 1),
        potential=d.get("potential", "default"),
        screen=parse_screen(d.get("screen"), d.get("potential", "default")),
        optimizer=typed_config(OptimizerConfig, d.get("optimizer"), "optimizer"),
        uncertainty_energy_std_ev_per_atom=_optional_positive(
            d.get("uncertainty_energy_std_ev_per_atom"), "uncertainty_energy_std_ev_per_atom"),
    )
    if not custom_evaluator:
        config.check_pipeline_properties()
    return config


def load_campaign(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign YAML file; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"campaign file not found: {path}")
    data = load_yaml(path)  # errors name the file (not UTF-8, bad YAML, duplicated key)
    try:
        return parse_campaign(data, path.parent)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
