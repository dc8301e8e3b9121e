"""The evolutionary inner loop of the two-level search: pymoo's NSGA-II over the software space
at one hardware point, for spaces too large to enumerate.

A design is an integer vector, one gene per software parameter of the flattened space
(:func:`codesign.search.space.search_space` without the ``hw.*`` knobs): the index of its
value among the parameter's choices. A vector proposes a design through the same
define-by-run code as every trial (:func:`codesign.search.space.suggest_design`, genes of
parameters a design does not use are ignored), so it is repaired to fit its chips like any
proposal. Each generation is priced in one batch by the vectorized evaluator
(:func:`codesign.search.space.evaluate_designs`), and a design met again costs nothing.
Objectives are minimised as the study searches them (log10 where the run says so, maximised
ones negated); the run's constraints are pymoo's inequality constraints; unbuildable designs
violate a constraint of their own. The feasible Pareto front of every design evaluated goes
back to the study as trials (``study.enqueue_trial`` with the parameters that propose them).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from codesign.config import OBJECTIVES, RunConfig

#: NSGA-II population and generations per hardware point (a few thousand designs, about a
#: second of evaluation with the vectorized evaluator).
POPULATION = 48
GENERATIONS = 25


class _Genes:
    """A stand-in trial answering the space's questions from one integer vector."""

    def __init__(self, index: dict[str, int], x: np.ndarray, fixed: dict[str, Any]) -> None:
        self.index, self.x, self.fixed = index, x, fixed
        self.params: dict[str, Any] = {}

    def _pick(self, name: str, options: list[Any]) -> Any:
        value = (
            self.fixed[name]
            if name in self.fixed
            else options[int(self.x[self.index[name]]) % len(options)]
        )
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return self._pick(name, list(choices))

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self._pick(name, list(range(low, high + 1)))


def evolve_front(
    cfg: RunConfig,
    hw: dict[str, Any],
    *,
    seed: int,
    population: int = POPULATION,
    generations: int = GENERATIONS,
    stats: dict[str, int] | None = None,
) -> list[tuple[dict[str, Any], str]]:
    """(parameters, design key) of the feasible Pareto-front designs NSGA-II found at hardware
    point ``hw`` (over every design it evaluated); ``stats["priced"]``: the distinct designs it
    priced."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    from codesign.search.pareto import pareto_mask
    from codesign.search.results import constraint_names, constraint_values
    from codesign.search.space import (
        InfeasibleDesign,
        design_key,
        evaluate_designs,
        search_space,
        suggest_design,
    )

    space = {k: d for k, d in search_space(cfg).items() if not k.startswith("hw.")}
    names = list(space)
    sizes = np.array(
        [len(d.choices) if hasattr(d, "choices") else d.high - d.low + 1 for d in space.values()]
    )
    index = {name: i for i, name in enumerate(names)}
    n_constraints = 1 + len(constraint_names(cfg))  # and one for designs over their chips
    seen: dict[str, tuple[dict[str, Any], list[float], list[float], bool]] = {}

    def searched(metrics: dict[str, float]) -> list[float]:
        out = []
        for name in cfg.objectives:
            value = metrics[name]
            if OBJECTIVES[name][1]:
                value = math.log10(max(value, 1e-3 if name == "max_qps" else 1e-12))
            out.append(-value if OBJECTIVES[name][0] == "maximize" else value)
        return out

    class Software(Problem):
        def __init__(self) -> None:
            super().__init__(
                n_var=len(names),
                n_obj=len(cfg.objectives),
                n_ieq_constr=n_constraints,
                xl=np.zeros(len(names)),
                xu=(sizes - 1).astype(float),
                vtype=int,
            )

        def _evaluate(self, x: np.ndarray, out: dict, *args: Any, **kwargs: Any) -> None:
            genes = [_Genes(index, row, hw) for row in np.asarray(x)]
            designs = [suggest_design(g, cfg) for g in genes]
            keys = [design_key(d) for d in designs]
            new = [i for i, k in enumerate(keys) if k not in seen]
            unique = {keys[i]: i for i in new}
            results = evaluate_designs([designs[i] for i in unique.values()], cfg)
            for (key, i), result in zip(unique.items(), results, strict=True):
                if isinstance(result, InfeasibleDesign):
                    bad = [1e9] * len(cfg.objectives)
                    seen[key] = (genes[i].params, bad, [1.0] * n_constraints, False)
                    continue
                g = [0.0, *constraint_values(cfg, result.metrics).values()]
                ok = all(v <= 0 for v in g)
                seen[key] = (genes[i].params, searched(result.metrics), g, ok)
            out["F"] = np.array([seen[k][1] for k in keys])
            out["G"] = np.array([seen[k][2] for k in keys])

    algorithm = NSGA2(
        pop_size=population,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    minimize(Software(), algorithm, ("n_gen", generations), seed=seed, verbose=False)
    if stats is not None:
        stats["priced"] = len(seen)
    feasible = [(k, p, f) for k, (p, f, _, ok) in seen.items() if ok]
    if not feasible:
        return []
    values = np.array([f for _, _, f in feasible])
    mask = pareto_mask(values, ["minimize"] * values.shape[1])
    return [(p, k) for (k, p, _), on in zip(feasible, mask, strict=True) if on]
