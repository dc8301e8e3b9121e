"""HASCO-style two-level search (SEARCH.md §1): hardware outside, software inside.

- **Outer loop** (hardware): the ``hw.*`` knobs (the targets' chip knobs), each as an
  ordinal index over its sorted choices. The first :data:`OUTER_STARTUP` points are drawn
  among those not visited yet; then Optuna's multi-objective ``GPSampler`` (log-EHVI, or
  log-constrained-EHVI under the run's constraints) proposes them, fitted on an in-memory study
  to every design evaluated so far at its hardware point, on the objectives as searched. The
  hypervolume it expects to improve is measured from a fixed reference point
  (:func:`reference_point`), recorded in the study (user attribute ``reference_point``) the
  first time and read back on resume; GPSampler alone would place it 10 % beyond the worst
  design seen so far, so it moved with every round.
- **Inner loop** (software), exact when it can be: when the software space at the hardware
  point holds at most :data:`EXACT_INNER_LIMIT` proposals, every design of it is priced in one
  batch by the vectorized evaluator and the feasible Pareto front (the designs the study does
  not hold yet) goes into the study as enqueued trials. Otherwise NSGA-II (pymoo) searches the
  software space at that point, each generation priced in one batch
  (:mod:`codesign.search.evolutionary`), and its feasible front is enqueued the same way. When
  neither brings a new design, ``inner_trials`` trials of the run's own sampler (TPE by
  default) run in the *main* study with the hardware pinned by ``PartialFixedSampler``.

Every evaluated design is a trial of the one study in storage, so the budget counts inner
trials, and resume, workers and the report work as for the joint search. The outer study is
rebuilt from the main study before each round (every visited hardware point with its current
score), so resuming or joining a run needs no other state. With a fixed seed and one worker the
sequence of trials is reproducible.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from codesign.config import OBJECTIVES, RunConfig

#: Random hardware points before the outer GP models them (HASCO's testbenches used 5 Sobol).
OUTER_STARTUP = 3
#: A hardware point whose software space holds at most this many proposals is searched
#: exactly: every design priced in one batch, and the feasible front put into the study.
EXACT_INNER_LIMIT = 100_000
#: Configs whose software space proved larger than the limit (not walked again).
_TOO_BIG: set[str] = set()


def reference_point(cfg: RunConfig) -> dict[str, float]:
    """The outer loop's fixed reference point, in objective units: each objective's worst
    normalisation bound (:func:`codesign.search.results.objective_bounds`), or the run's own
    threshold where it has one (p95 at the SLA, quality at its floor, area at its budget): a
    design beyond it adds no hypervolume."""
    from codesign.search.results import objective_bounds

    _, worst = objective_bounds(cfg)
    point = dict(zip(cfg.objectives, worst, strict=True))
    if cfg.sla_ms is not None and "p95_latency_s" in point:
        point["p95_latency_s"] = cfg.sla_ms / 1e3
    if cfg.quality_floor is not None and "quality" in point:
        point["quality"] = cfg.quality_floor
    if cfg.area_budget_mm2 is not None and "area_mm2" in point:
        point["area_mm2"] = cfg.area_budget_mm2
    return point


def recorded_reference_point(study: Any, cfg: RunConfig) -> dict[str, float]:
    """The study's recorded reference point (user attribute ``reference_point``); recorded
    from :func:`reference_point` by the first call, so a resumed run keeps its own."""
    recorded = study.user_attrs.get("reference_point")
    if isinstance(recorded, dict) and list(recorded) == list(cfg.objectives):
        return {k: float(v) for k, v in recorded.items()}
    point = reference_point(cfg)
    study.set_user_attr("reference_point", point)
    return point


@contextlib.contextmanager
def _fixed_reference(reference: np.ndarray, signs: np.ndarray) -> Iterator[bool]:
    """While open, Optuna's GP samplers measure (constrained) log-EHVI from ``reference``
    (objective values as searched) instead of their data-dependent point. Optuna 5 has no
    public argument for it, so this wraps two private functions: the standardisation of the
    objective values (to map ``reference`` into the same standardised space) and the reference
    point. Yields False, changing nothing, where those functions are missing (another Optuna);
    ``tests/search/test_reference_point.py`` fails then."""
    try:
        from optuna._gp import acqf
        from optuna.samplers._gp import sampler as gp_sampler
    except ImportError:  # pragma: no cover - another Optuna
        yield False
        return
    standardize = getattr(gp_sampler, "_standardize_values", None)
    get_reference = getattr(acqf, "_get_reference_point", None)
    eps = getattr(gp_sampler, "EPS", None)
    if standardize is None or get_reference is None or eps is None:  # pragma: no cover
        yield False
        return
    scale: dict[str, np.ndarray] = {}

    def standardize_values(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out, means, stds = standardize(values)
        # the sampler standardises the objective values first, then the constraints
        scale.setdefault("means", means)
        scale.setdefault("stds", stds)
        return out, means, stds

    def fixed(Y: Any) -> np.ndarray:
        standardized = (signs * reference - scale["means"]) / np.maximum(eps, scale["stds"])
        return np.asarray(-standardized, dtype=float)  # Optuna's losses: minimised

    gp_sampler._standardize_values = standardize_values
    acqf._get_reference_point = fixed
    try:
        yield True
    finally:
        gp_sampler._standardize_values = standardize
        acqf._get_reference_point = get_reference


def space_bound(cfg: RunConfig) -> float:
    """An upper bound on the software proposals at one hardware point: the product of every
    non-hardware parameter's choices (the define-by-run tree has at most that many leaves)."""
    from codesign.search.space import search_space

    bound = 1.0
    for name, dist in search_space(cfg).items():
        if name.startswith("hw."):
            continue
        choices = getattr(dist, "choices", None)
        bound *= len(choices) if choices is not None else dist.high - dist.low + 1
    return bound


def exact_inner_front(
    study: Any,
    cfg: RunConfig,
    hw: dict[str, Any],
    stats: dict[str, int] | None = None,
    priced: dict[str, dict[str, float]] | None = None,
) -> list[dict] | None:
    """The parameters of the feasible Pareto-front designs at hardware point ``hw`` that the
    study has not evaluated yet, from every design at that point priced in one batch
    (:func:`codesign.search.space.evaluate_designs`); None when the software space is too large
    to enumerate (the inner sampler searches it instead). ``stats["priced"]`` is set to the
    number of designs priced, and ``priced`` (design key: metrics) receives the returned
    designs' metrics, so that their trials do not price them again."""
    from codesign.search.pareto import pareto_mask
    from codesign.search.results import constraint_values, result_of
    from codesign.search.space import (
        InfeasibleDesign,
        TooManyDesigns,
        design_key,
        enumerate_proposals,
        evaluate_designs,
    )

    key = cfg.config_hash()
    if key in _TOO_BIG or space_bound(cfg) > 50 * EXACT_INNER_LIMIT:
        return None
    try:
        proposals = list(enumerate_proposals(cfg, fixed=hw, limit=EXACT_INNER_LIMIT))
    except TooManyDesigns:
        _TOO_BIG.add(key)
        return None
    if stats is not None:
        stats["priced"] = len(proposals)
    rows = []
    for (params, design), result in zip(
        proposals, evaluate_designs([d for _, d in proposals], cfg), strict=True
    ):
        if isinstance(result, InfeasibleDesign):
            continue
        m = result.metrics
        if all(v <= 0 for v in constraint_values(cfg, m).values()):
            rows.append((params, design_key(design), [m[o] for o in cfg.objectives], m))
    if not rows:
        return []
    mask = pareto_mask(np.array([r[2] for r in rows]), cfg.directions())
    known = {r["design_key"] for t in study.get_trials(deepcopy=False) if (r := result_of(t))}
    out, seen = [], set(known)
    for (params, dkey, values, metrics), on in zip(rows, mask, strict=True):
        if on and dkey not in seen:
            seen.add(dkey)
            out.append((params, values))
            if priced is not None:
                priced[dkey] = metrics
    ordered, gaining = _by_contribution(study, cfg, out)
    if stats is not None:
        stats["gaining"] = gaining
    return [params for params, _ in ordered]


def _by_contribution(
    study: Any, cfg: RunConfig, rows: list[tuple[dict, list[float]]]
) -> tuple[list[tuple[dict, list[float]]], int]:
    """``rows`` (parameters, objective values) in greedy hypervolume-contribution order: first
    the design that adds most to the study's feasible front, then the one that adds most to
    that, and so on (normalised log space, up to the recorded reference point); and how many
    of them, from the first, add any hypervolume. The order makes a budget that ends mid-front
    keep the designs that matter most."""
    import optuna

    from codesign.search.pareto import hypervolume, normalize, pareto_mask
    from codesign.search.results import is_feasible, objective_bounds, result_of

    if not rows:
        return rows, 0
    lower, _ = objective_bounds(cfg)
    upper = list(recorded_reference_point(study, cfg).values())
    log = [OBJECTIVES[o][1] for o in cfg.objectives]
    k = len(cfg.objectives)
    held = [
        [r["metrics"][o] for o in cfg.objectives]
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if (r := result_of(t)) and is_feasible(t)
    ]
    base = normalize(np.array(held).reshape(-1, k), cfg.directions(), lower, upper, log)
    base = base[pareto_mask(base, ["minimize"] * k)] if len(base) else base
    points = normalize(np.array([v for _, v in rows]), cfg.directions(), lower, upper, log)
    points = np.where(np.isfinite(points), points, 1.0)
    ref = [1.0] * k
    left, order, gaining = list(range(len(rows))), [], 0
    current = hypervolume(base, ref)
    while left:
        scores = [hypervolume(np.vstack([base, points[i : i + 1]]), ref) for i in left]
        best = left[int(np.argmax(scores))]
        if max(scores) > current * (1 + 1e-12) + 1e-15:
            gaining += 1
            current = max(scores)
        order.append(best)
        left.remove(best)
        base = np.vstack([base, points[best : best + 1]])
    return [rows[i] for i in order], gaining


def hardware_scores(study: Any, cfg: RunConfig, knobs: list[str]) -> dict[tuple, float]:
    """Normalised hypervolume of the feasible designs evaluated at each hardware point."""
    import optuna

    from codesign.search.pareto import normalized_hypervolume
    from codesign.search.results import is_feasible as _is_feasible
    from codesign.search.results import objective_bounds
    from codesign.search.results import result_of as _result

    lower, upper = objective_bounds(cfg)
    log = [OBJECTIVES[o][1] for o in cfg.objectives]
    groups: dict[tuple, list[list[float]]] = {}
    for t in study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    ):
        if not all(k in t.params for k in knobs):
            continue
        point = tuple(t.params[k] for k in knobs)
        values = groups.setdefault(point, [])
        result = _result(t)
        if t.state == optuna.trial.TrialState.COMPLETE and result and _is_feasible(t):
            values.append([result["metrics"][o] for o in cfg.objectives])
    return {
        point: (
            normalized_hypervolume(
                np.array(values), cfg.directions(), lower=lower, upper=upper, log=log
            )
            if values
            else 0.0
        )
        for point, values in groups.items()
    }


def propose_hardware(study: Any, cfg: RunConfig, knobs: list[str], *, seed: int) -> dict[str, Any]:
    """The outer loop's next hardware point: multi-objective Bayesian optimisation over the
    hardware knobs (Optuna's ``GPSampler``: log-EHVI, or log-constrained-EHVI when the run has
    constraints) on the objectives as the study searches them (log10 where the run says so),
    fitted to every evaluated design of the study, each at its hardware point."""
    import optuna
    from optuna.distributions import IntDistribution

    from codesign.search.results import constraint_values, objective_values, result_of
    from codesign.search.space import search_space

    space = search_space(cfg)
    choices = {k: sorted(space[k].choices) for k in knobs}
    dists = {k: IntDistribution(0, len(c) - 1) for k, c in choices.items()}
    outer = optuna.create_study(
        directions=cfg.directions(),
        sampler=optuna.samplers.GPSampler(
            seed=seed,
            n_startup_trials=OUTER_STARTUP,
            deterministic_objective=True,  # the evaluator is a pure function of the design
        ),
    )
    points: set[tuple] = set()
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        result = result_of(t)
        if result is None or t.state != optuna.trial.TrialState.COMPLETE:
            continue
        if not all(k in t.params and t.params[k] in choices[k] for k in knobs):
            continue  # a point of an earlier space; the GP cannot place it
        params = {k: choices[k].index(t.params[k]) for k in knobs}
        points.add(tuple(params.values()))
        outer.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                values=objective_values(cfg, result["metrics"]),
                constraints=constraint_values(cfg, result["metrics"]) or None,
            )
        )
    if len(points) < OUTER_STARTUP:  # too few hardware points to model: one not yet visited
        fresh = _unvisited(study, cfg, knobs, seed=seed)
        if fresh is not None:
            return fresh
    reference = np.array(objective_values(cfg, recorded_reference_point(study, cfg)))
    signs = np.array([1.0 if OBJECTIVES[o][0] == "maximize" else -1.0 for o in cfg.objectives])
    with _fixed_reference(reference, signs):
        trial = outer.ask(dists)
    return {k: choices[k][trial.params[k]] for k in knobs}


def _not_held(study: Any, proposals: list[dict]) -> list[dict]:
    """The proposals whose parameters no trial of the study has used yet."""
    held = {json.dumps(t.params, sort_keys=True) for t in study.get_trials(deepcopy=False)}
    return [p for p in proposals if json.dumps(p, sort_keys=True) not in held]


def _tell(study: Any, proposals: list[dict], optimize: Callable[[int], None]) -> None:
    for params in proposals:
        study.enqueue_trial(params)
    if proposals:
        optimize(len(proposals))


def _finish_pending(
    study: Any,
    cfg: RunConfig,
    knobs: list[str],
    deferred: dict[tuple, list[dict]],
    left: int,
    worker: int,
    optimize: Callable[[int], None],
    priced: dict[str, dict[str, float]] | None = None,
) -> bool:
    """Tell the front designs of one exactly searched point that are not in the study yet
    (from ``deferred``, or, after a resume, by searching the point again), as ``left`` allows;
    False when no point has any pending."""
    latest: dict[tuple, int] = {}
    for r in outer_rounds(study):
        if r["inner"] == "exact" or r["inner"] == "pending":
            latest[tuple(r["hw"].get(k) for k in knobs)] = int(r.get("pending", 0))
    points = [p for p, n in latest.items() if n > 0]
    if not points:
        return False
    point = points[0]
    hw = dict(zip(knobs, point, strict=True))
    stats: dict[str, int] = {}
    if point in deferred:
        proposals = _not_held(study, deferred.pop(point))
    else:
        proposals = exact_inner_front(study, cfg, hw, stats, priced) or []
    told = proposals[:left]
    _log_round(
        study,
        worker,
        {
            "hw": hw,
            "inner": "pending",
            "priced": stats.get("priced", 0),
            "new": len(told),
            "pending": len(proposals) - len(told),
        },
    )
    _tell(study, told, optimize)
    return True


def _searched_exactly(study: Any, cfg: RunConfig, hw: dict[str, Any], knobs: list[str]) -> bool:
    """Whether an outer round searched ``hw``'s whole software space already."""
    point = tuple(hw[k] for k in knobs)
    return any(
        r["inner"].startswith("exact") and tuple(r["hw"].get(k) for k in knobs) == point
        for r in outer_rounds(study)
    )


def evolved_front(
    study: Any,
    cfg: RunConfig,
    hw: dict[str, Any],
    *,
    seed: int,
    stats: dict[str, int] | None = None,
) -> list[dict]:
    """The parameters of the front designs NSGA-II finds at ``hw``
    (:func:`codesign.search.evolutionary.evolve_front`) that the study does not hold yet;
    ``stats["priced"]``: the designs it priced."""
    from codesign.search.evolutionary import evolve_front
    from codesign.search.results import result_of

    known = {r["design_key"] for t in study.get_trials(deepcopy=False) if (r := result_of(t))}
    out = []
    for params, key in evolve_front(cfg, hw, seed=seed, stats=stats):
        if key not in known:
            known.add(key)
            out.append(params)
    return out


def outer_rounds(study: Any) -> list[dict[str, Any]]:
    """The outer loop's rounds so far, every worker's: each ``{"worker", "hw", "inner",
    "priced", "new", "pending"}`` (the hardware point; how its software was searched:
    ``exact``, ``evolved``, ``...+sampled``, or ``pending`` for a round that tells an exactly
    searched point's remaining front designs; designs priced; designs told to the study; front
    designs of the point not told yet), recorded as the study's user attributes
    ``outer_rounds.w<K>``; in order within a worker."""
    out: list[dict[str, Any]] = []
    for key, rounds in sorted(study.user_attrs.items()):
        if key.startswith("outer_rounds.w") and isinstance(rounds, list):
            out.extend(rounds)
    return out


def _log_round(study: Any, worker: int, entry: dict[str, Any]) -> None:
    key = f"outer_rounds.w{worker}"
    rounds = list(study.user_attrs.get(key, []))
    rounds.append({"worker": worker, **entry})
    study.set_user_attr(key, rounds)


def _unvisited(study: Any, cfg: RunConfig, knobs: list[str], *, seed: int) -> dict | None:
    """A hardware point no trial of the study has used yet (seeded choice), or None."""
    import itertools

    from codesign.search.space import search_space

    space = search_space(cfg)
    visited = set(hardware_scores(study, cfg, knobs))
    visited |= {tuple(r["hw"].get(k) for k in knobs) for r in outer_rounds(study)}
    points = [
        p for p in itertools.product(*(sorted(space[k].choices) for k in knobs)) if p not in visited
    ]
    if not points:
        return None
    pick = points[np.random.default_rng(seed).integers(len(points))]
    return dict(zip(knobs, pick, strict=True))


def run_two_level(
    study: Any,
    cfg: RunConfig,
    *,
    worker: int,
    optimize: Callable[[int], None],
    finished: Callable[[], int],
    priced: dict[str, dict[str, float]] | None = None,
) -> None:
    """Alternate outer hardware proposals and inner software rounds until the budget is spent.
    ``priced`` (design key: metrics) receives what the exact inner loop priced for the designs
    it enqueues, for their trials to read instead of pricing them again.
    ``optimize(n)`` runs n trials of the main study with its current sampler."""
    import optuna

    from codesign.search.space import hardware_knobs

    knobs = hardware_knobs(cfg)
    base = study.sampler
    if not knobs:  # nothing to search outside: the inner loop is the whole search
        front = exact_inner_front(study, cfg, {}, priced=priced)
        if front is None:
            optimize(cfg.trials - finished())
        elif front:
            left = cfg.trials - finished()
            for params in front[:left]:
                study.enqueue_trial(params)
            optimize(min(len(front), left))
        return
    recorded_reference_point(study, cfg)  # fixed before the outer loop's first proposal
    # front designs of exactly searched points not told yet (added no hypervolume when found,
    # or past the budget), this run's; a resumed run finds them by searching the point again
    deferred: dict[tuple, list[dict]] = {}
    try:
        while (left := cfg.trials - finished()) > 0:
            done = finished()
            hw = propose_hardware(study, cfg, knobs, seed=(cfg.seed + worker) * 100_003 + done)
            study.sampler = optuna.samplers.PartialFixedSampler(hw, base)
            stats: dict[str, int] = {}
            if _searched_exactly(study, cfg, hw, knobs):
                # nothing new here: take a point not searched yet
                fresh = _unvisited(study, cfg, knobs, seed=cfg.seed + worker + done)
                if fresh is None:
                    # every hardware point searched exactly: the front is complete but for
                    # the designs not told yet; they go in last, as the budget allows
                    if not _finish_pending(
                        study, cfg, knobs, deferred, left, worker, optimize, priced
                    ):
                        break
                    continue
                hw = fresh
                study.sampler = optuna.samplers.PartialFixedSampler(hw, base)
            inner = "exact"
            front = exact_inner_front(study, cfg, hw, stats, priced)
            if front is None:  # too large to enumerate: NSGA-II over the software space
                inner = "evolved"
                front = evolved_front(study, cfg, hw, seed=cfg.seed + worker + done, stats=stats)
            pending = 0
            if front:  # this point's new front designs become trials
                gaining = min(left, max(1, stats.get("gaining", len(front))))
                if inner == "exact" and gaining < len(front):
                    deferred[tuple(hw[k] for k in knobs)] = front[gaining:]
                    pending = len(front) - gaining
                for params in front[:gaining]:
                    study.enqueue_trial(params)
                n = gaining
            else:  # nothing new here (or nothing feasible): the inner sampler
                inner, n = f"{inner}+sampled", min(cfg.inner_trials, left)
                if inner == "exact+sampled":
                    n = 0  # searched exactly: sampling can find nothing the walk did not
            _log_round(
                study,
                worker,
                {
                    "hw": hw,
                    "inner": inner,
                    "priced": stats.get("priced", 0),
                    "new": n,
                    "pending": pending,
                },
            )
            optimize(n)
            if finished() == done and n:  # nothing finished (stopped from outside)
                break
    finally:
        study.sampler = base
