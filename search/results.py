"""What a finished trial recorded (its result and feasibility) and the fixed hypervolume bounds:
shared by the study runner and the two-level strategy."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from codesign.config import OBJECTIVES, RunConfig


def result_of(trial: Any) -> dict[str, Any] | None:
    """What the objective recorded: worker, design, design_key and metrics."""
    return trial.user_attrs.get("result")


def is_feasible(trial: Any) -> bool:
    return all(v <= 0 for v in (trial.constraints or {}).values())


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
    each trial records with ``trial.set_constraint``."""
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
