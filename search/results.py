"""What a finished trial recorded (its result and feasibility) and the fixed hypervolume bounds:
shared by the study runner and the two-level strategy."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from codesign.config import OBJECTIVES, RunConfig


def result_of(trial: Any) -> dict[str, Any] | None:
    """What the objective recorded: worker, design, design_key and metrics."""
    return trial.user_attrs.get("result")


def is_feasible(trial: Any) -> bool:
    return all(v <= 0 for v in (trial.constraints or {}).values())


#: Where a trial's constraint values are stored: Optuna's list format (a system attribute),
#: which optuna-dashboard reads to tell feasible trials apart and Optuna's samplers and
#: ``trial.constraints`` read too (as keys "0", "1", ... in :func:`constraint_names` order).
#: Optuna 5's ``set_constraint`` keys ("constraints:NAME") are invisible to the dashboard.
CONSTRAINTS_ATTR = "constraints"


def record_constraints(trial: Any, cfg: RunConfig, metrics: dict[str, float]) -> None:
    """Store ``trial``'s constraint values in the list format (:data:`CONSTRAINTS_ATTR`), as
    Optuna's own samplers do with a ``constraints_func``."""
    values = list(constraint_values(cfg, metrics).values())
    if values:
        trial.storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_ATTR, values)


def trial_constraints(trial: Any, names: Sequence[str]) -> dict[str, float]:
    """A trial's constraint values by name: list entries (keys "0", "1", ...) take the name at
    their position in ``names``; named entries (studies written by earlier versions, with
    ``set_constraint``) keep theirs."""
    out = {}
    for key, value in (trial.constraints or {}).items():
        if key.isdigit() and int(key) < len(names):
            key = names[int(key)]
        out[key] = value
    return out


def metric_names(cfg: RunConfig) -> list[str]:
    """Names of the stored objective values, for ``study.set_metric_names`` (what
    optuna-dashboard shows): the metric, with its unit, and ``log10(...)`` where the study
    stores the log (decade-spanning quantities, :func:`objective_values`)."""
    names = []
    for name in cfg.objectives:
        label = f"quality ({cfg.quality_metric})" if name == "quality" else name
        names.append(f"log10({label})" if OBJECTIVES[name][1] else label)
    return names


def _constraints(cfg: RunConfig) -> dict[str, Callable[[dict[str, float]], float]]:
    out: dict[str, Callable[[dict[str, float]], float]] = {}
    if cfg.sla_ms is not None:
        out["sla"] = lambda m: m["p95_latency_s"] - cfg.sla_ms / 1e3
    if cfg.quality_floor is not None:
        out["quality_floor"] = lambda m: cfg.quality_floor - m["quality"]
    if cfg.area_budget_mm2 is not None:
        out["area"] = lambda m: m["area_mm2"] - cfg.area_budget_mm2
    return out


def constraint_names(cfg: RunConfig) -> list[str]:
    """The run's constraints, in the order :func:`constraint_values` gives them."""
    return list(_constraints(cfg))


def constraint_values(cfg: RunConfig, metrics: dict[str, float]) -> dict[str, float]:
    """The run's constraints on a design's metrics (feasible when every value is <= 0): what
    each trial records (:func:`record_constraints`)."""
    return {name: fn(metrics) for name, fn in _constraints(cfg).items()}


def objective_values(cfg: RunConfig, metrics: dict[str, float]) -> list[float]:
    """Objective values as searched: log10 of decade-spanning quantities (SEARCH.md §5)."""
    out = []
    for name in cfg.objectives:
        value = metrics[name]
        # a design that meets the SLA at no load has max_qps 0: floor it at 1e-3 QPS
        floor = 1e-3 if name == "max_qps" else 1e-12
        out.append(math.log10(max(value, floor)) if OBJECTIVES[name][1] else value)
    return out


def objective_bounds(cfg: RunConfig) -> tuple[list[float], list[float]]:
    """Fixed normalisation bounds (best, worst) per objective for hypervolume."""
    best = {
        "quality": 1.0,
        "p95_latency_s": 1e-4,
        "p99_latency_s": 1e-4,
        "area_mm2": 0.1,
        "energy_j": 1e-5,
        "max_qps": 1e5,
        "power_w": 1.0,
    }
    worst = {
        "quality": 0.0,
        "p95_latency_s": 10.0,
        "p99_latency_s": 10.0,
        "area_mm2": 1000.0,
        "energy_j": 100.0,
        "max_qps": 1.0,
        "power_w": 1e4,
    }
    return [best[o] for o in cfg.objectives], [worst[o] for o in cfg.objectives]
