"""HASCO-style two-level search (SEARCH.md §1): hardware outside, software inside.

- **Outer loop** (hardware): the ``hw.*`` knobs (accelerator array rows and cols), each as an
  ordinal index over its sorted choices, proposed by Optuna's ``GPSampler`` (3 random starts,
  then log-EI) on an in-memory study. A hardware point scores the normalised hypervolume
  (log space, the report's fixed bounds) of the feasible designs evaluated with it so far.
- **Inner loop** (software): ``inner_trials`` trials of the run's own sampler (TPE by default)
  in the *main* study, with the hardware knobs pinned by ``PartialFixedSampler``. The inner
  sampler learns from every trial of the study, so software knowledge carries over between
  hardware points.

Every evaluated design is a trial of the one study in storage, so the budget counts inner
trials, and resume, workers and the report work as for the joint search. The outer study is
rebuilt from the main study before each round (every visited hardware point with its current
score), so resuming or joining a run needs no other state. With a fixed seed and one worker the
sequence of trials is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from codesign.config import OBJECTIVES, RunConfig

#: Random hardware points before the outer GP models them (HASCO's testbenches used 5 Sobol).
OUTER_STARTUP = 3


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
    """The outer loop's next hardware point, from a GP over the points visited so far."""
    import optuna
    from optuna.distributions import IntDistribution

    from codesign.search.space import search_space

    space = search_space(cfg)
    choices = {k: sorted(space[k].choices) for k in knobs}
    dists = {k: IntDistribution(0, len(c) - 1) for k, c in choices.items()}
    outer = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=OUTER_STARTUP, deterministic_objective=False
        ),
    )
    for point, score in sorted(hardware_scores(study, cfg, knobs).items(), key=repr):
        if not all(v in choices[k] for k, v in zip(knobs, point, strict=True)):
            continue  # a point of an earlier space; the GP cannot place it
        params = {k: choices[k].index(v) for k, v in zip(knobs, point, strict=True)}
        outer.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=score))
    trial = outer.ask(dists)
    return {k: choices[k][trial.params[k]] for k in knobs}


def run_two_level(
    study: Any,
    cfg: RunConfig,
    *,
    worker: int,
    optimize: Callable[[int], None],
    finished: Callable[[], int],
) -> None:
    """Alternate outer hardware proposals and inner software rounds until the budget is spent.
    ``optimize(n)`` runs n trials of the main study with its current sampler."""
    import optuna

    from codesign.search.space import hardware_knobs

    knobs = hardware_knobs(cfg)
    base = study.sampler
    if not knobs:  # nothing to search outside: the inner loop is the whole search
        optimize(cfg.trials - finished())
        return
    try:
        while (left := cfg.trials - finished()) > 0:
            done = finished()
            hw = propose_hardware(study, cfg, knobs, seed=(cfg.seed + worker) * 100_003 + done)
            study.sampler = optuna.samplers.PartialFixedSampler(hw, base)
            optimize(min(cfg.inner_trials, left))
            if finished() == done:  # nothing finished (stopped from outside)
                break
    finally:
        study.sampler = base
