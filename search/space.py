"""The joint co-design space (define-by-run, dotted knob names) and the objective.

A trial proposes:
- hardware knobs first (``hw.accel.rows``, ``hw.accel.cols``, when an accelerator is enabled);
- then the number of stages;
- then, per stage i, ``stage{i}.model``, ``stage{i}.target`` and ``stage{i}.engines``, and
  ``stage{i}.shrink_log2`` for i >= 2.

Stage i+1 ranks ``items_i >> shrink`` items, never fewer than the final ``keep``. An accelerator
chip is partitioned among the stages mapped to it. Its embedding SRAM is split evenly per engine,
half static and half dynamic.

The evaluation is a pure function of the design and the run's seed:
- cost: per-stage service times from the analytical model; area and provisioned peak power
  (``power_w``: CPU engines' share of the socket TDP, GPU engines' device TDP, and each
  accelerator chip's synthesis power at the PEs its partitions use);
- load: the pipeline simulated at the run's QPS (and, when ``max_qps`` is an objective, the
  highest QPS whose p95 meets the SLA);
- quality: from the configured source.

Designs that cannot exist (over the chip, over the CPU's cores, or a funnel that does not
connect) fail with their reason.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from codesign.config import RunConfig
from codesign.errors import CodesignError


class InfeasibleDesign(CodesignError):
    """A proposed design that cannot be built; the trial fails with this reason."""


def suggest_design(trial: Any, cfg: RunConfig) -> dict[str, Any]:
    """Propose a pipeline design with Optuna's define-by-run API; returns a pipeline dict."""
    accel = [t for t in cfg.targets if _kind(t) == "accel"]
    hw: dict[str, Any] = {}
    if accel:
        hw["rows"] = trial.suggest_categorical("hw.accel.rows", list(cfg.accel_rows))
        hw["cols"] = trial.suggest_categorical("hw.accel.cols", list(cfg.accel_cols))
    n = trial.suggest_int("stages", 1, cfg.max_stages)
    stages = []
    items = cfg.candidates
    for i in range(1, n + 1):
        if i > 1:
            shrink = trial.suggest_int(f"stage{i}.shrink_log2", *cfg.shrink_log2)
            items = max(cfg.keep, items >> shrink)
        stages.append(
            {
                "name": f"stage{i}",
                "model": trial.suggest_categorical(f"stage{i}.model", list(cfg.models)),
                "target": trial.suggest_categorical(f"stage{i}.target", list(cfg.targets)),
                "engines": trial.suggest_categorical(f"stage{i}.engines", list(cfg.engines)),
                "items": items,
            }
        )
    return design_from(stages, hw, cfg)


def search_space(cfg: RunConfig) -> dict[str, Any]:
    """The space :func:`suggest_design` draws from, flattened (every stage's knobs up to
    ``max_stages``, as Optuna distributions): for samplers that need a fixed space (skopt) and
    for the hardware loop of the two-level strategy. A trial only uses the knobs of its
    ``stages`` stages."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    space: dict[str, Any] = {}
    if any(_kind(t) == "accel" for t in cfg.targets):
        space["hw.accel.rows"] = CategoricalDistribution(list(cfg.accel_rows))
        space["hw.accel.cols"] = CategoricalDistribution(list(cfg.accel_cols))
    space["stages"] = IntDistribution(1, cfg.max_stages)
    for i in range(1, cfg.max_stages + 1):
        if i > 1:
            space[f"stage{i}.shrink_log2"] = IntDistribution(*cfg.shrink_log2)
        space[f"stage{i}.model"] = CategoricalDistribution(list(cfg.models))
        space[f"stage{i}.target"] = CategoricalDistribution(list(cfg.targets))
        space[f"stage{i}.engines"] = CategoricalDistribution(list(cfg.engines))
    return space


def hardware_knobs(cfg: RunConfig) -> list[str]:
    """The ``hw.*`` knobs of the space (the outer loop of the two-level strategy)."""
    return [name for name in search_space(cfg) if name.startswith("hw.")]


def design_from(stages: list[dict], hw: dict[str, Any], cfg: RunConfig) -> dict[str, Any]:
    """Complete per-stage fields: keep (next stage's items or the final keep) and knobs."""
    out = []
    accel_engines = sum(s["engines"] for s in stages if _kind(s["target"]) == "accel")
    for i, st in enumerate(stages):
        keep = stages[i + 1]["items"] if i + 1 < len(stages) else cfg.keep
        if keep > st["items"]:
            raise InfeasibleDesign(f"{st['name']} keeps {keep} of {st['items']} items")
        knobs: dict[str, Any] = {}
        kind = _kind(st["target"])
        if kind == "cpu":
            knobs["cores"] = 1
        elif kind == "accel":
            from codesign.plugins import load_target

            defaults = load_target(st["target"]).design_space().defaults()
            cache = defaults["static_cache_bytes"] + defaults["dynamic_cache_bytes"]
            share = cache // max(1, accel_engines)
            knobs.update(
                rows=hw["rows"],
                cols=hw["cols"],
                static_cache_bytes=share // 2,
                dynamic_cache_bytes=share - share // 2,
            )
        out.append({**st, "keep": keep, "knobs": knobs})
    return {
        "version": 1,
        "kind": "pipeline",
        "name": "design",
        "cost_model": cfg.cost_model,
        "stages": out,
        "load": {"queries": cfg.queries, "warmup": cfg.warmup, "seed": cfg.seed},
    }


@lru_cache(maxsize=1024)
def _kind(target: str) -> str:
    from codesign.plugins import load_target

    return getattr(load_target(target), "kind", "")


def enumerate_stages(cfg: RunConfig):
    """Every stage list of the space (for exhaustive ground truth on small instances)."""
    for n in range(1, cfg.max_stages + 1):
        per_stage = list(itertools.product(cfg.models, cfg.targets, cfg.engines))
        shrinks = list(
            itertools.product(range(cfg.shrink_log2[0], cfg.shrink_log2[1] + 1), repeat=n - 1)
        )
        for combo in itertools.product(per_stage, repeat=n):
            for shrink in shrinks:
                items, stages = cfg.candidates, []
                for i, (model, target, engines) in enumerate(combo):
                    if i:
                        items = max(cfg.keep, items >> shrink[i - 1])
                    stages.append(
                        {
                            "name": f"stage{i + 1}",
                            "model": model,
                            "target": target,
                            "engines": engines,
                            "items": items,
                        }
                    )
                yield stages


def design_key(design: dict[str, Any]) -> str:
    """Canonical key: identical designs (re-proposed by a sampler) share one evaluation."""
    return json.dumps(design["stages"], sort_keys=True)


# --- quality -----------------------------------------------------------------------------------


def table_quality(
    stages: list[tuple[str, int, int]], metric: str, table: str | None = None
) -> float:
    """An *estimate* from a single-stage quality table (``table``: a CSV in the format of
    :mod:`codesign.quality.tables`; default RecPipe's published Criteo table): the last stage's
    model at the stage-1 pool size, interpolated in log2(items) between measured pool sizes.
    BACKGROUND §1.5 (derived): the stage-1 pool sets quality almost entirely, and a cheap front
    filter loses at most 0.1 point."""
    name, _, k_text = metric.partition("@")
    row = quality_table(table).lookup(stages[-1][0], stages[0][1], int(k_text), name)
    return row.value


def quality_table(path: str | None = None) -> Any:
    """The :class:`codesign.quality.tables.QualityTable` at ``path`` (default: RecPipe's)."""
    from codesign.quality.tables import cached_table

    return cached_table(path)


# --- evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    design: dict[str, Any]


def evaluate_design(
    design: dict[str, Any], cfg: RunConfig, quality: Callable[[list[tuple[str, int, int]]], float]
) -> Evaluation:
    """Cost, load and quality of one design. Raises InfeasibleDesign with the reason."""
    from codesign.cost_models.queueing import stability_limit_qps
    from codesign.pipeline import _knobs_key as knobs_key
    from codesign.pipeline import load_pipeline, simulate, stage_cost

    try:
        pipeline = load_pipeline(design)
    except CodesignError as exc:
        raise InfeasibleDesign(str(exc).removeprefix("pipeline: ")) from None
    report, table = simulate(pipeline, cfg.qps, seed=cfg.seed)
    energy = 0.0
    power = 0.0
    pes: dict[str, int] = {}
    for st in pipeline.stages:
        keep = st.keep if st.keep < st.items else None
        energy += stage_cost(
            st.model, st.target, knobs_key(st.knobs), st.items, keep, st.cost_model
        ).energy_j
        kind = _kind(st.target)
        if kind == "accel":
            used = st.engines * st.knobs["rows"] * st.knobs["cols"]
            pes[st.target] = pes.get(st.target, 0) + used
        elif kind in ("cpu", "gpu"):
            power += st.engines * _engine_power_w(st.target, int(st.knobs.get("cores", 1)))
    # one chip per accelerator target, partitioned among its stages
    area = sum(_chip_cost(target, used)[0] for target, used in pes.items())
    power += sum(_chip_cost(target, used)[1] for target, used in pes.items())
    stages = [(st.model, st.items, st.keep) for st in pipeline.stages]
    metrics = {
        "quality": float(quality(stages)),
        "p50_latency_s": report.p50_latency_s,
        "p95_latency_s": report.p95_latency_s,
        "p99_latency_s": report.p99_latency_s,
        "area_mm2": area,
        "energy_j": energy,
        "unloaded_latency_s": float(sum(table.unloaded_s)),
        "stability_limit_qps": float(
            stability_limit_qps(table.service_s.mean(axis=0), table.servers)
        ),
        "max_utilization": float(max(report.utilization)),
        "power_w": power,
    }
    if "max_qps" in cfg.objectives and cfg.sla_ms is not None:
        metrics["max_qps"] = max_qps(pipeline, table, cfg.sla_ms / 1e3, seed=cfg.seed)
    return Evaluation(metrics, design)


def max_qps(pipeline: Any, table: Any, sla_s: float, *, seed: int) -> float:
    """Highest Poisson arrival rate whose simulated p95 meets ``sla_s`` (0 when even a nearly
    idle pipeline misses it): the bracket-and-bisect of ``codesign pipeline evaluate``
    (:func:`codesign.cost_models.queueing.max_qps_under_sla`, 2 % relative tolerance, the same
    service table and seeds), capped just below the stability limit."""
    from codesign.cost_models.queueing import max_qps_under_sla, stability_limit_qps
    from codesign.pipeline import simulate

    limit = stability_limit_qps(table.service_s.mean(axis=0), table.servers)
    result = max_qps_under_sla(
        lambda q, s: simulate(pipeline, q, seed=s, table=table)[0],
        sla_s=sla_s,
        percentile=95,
        qps_low=max(limit * 1e-3, 1e-3),
        qps_high=0.999 * limit,
        seed=seed,
    )
    return float(result.qps)


@lru_cache(maxsize=1024)
def _chip_cost(target: str, pes: int) -> tuple[float, float]:
    """Area and power of one accelerator chip whose partitions hold ``pes`` PEs in all:
    PE-proportional parts (PEs, SIMD, crossbars) scale with them; SRAM and top-k units are the
    chip's own. Power is the synthesis power of those components (all active)."""
    from codesign.plugins import load_target

    tgt = load_target(target)
    point = tgt.design_space().defaults()
    point.update(rows=1, cols=pes, arrays=1, area_budget_mm2=0.0)
    cost = tgt.hw_cost(point)
    return cost.area_mm2 or 0.0, float(cost.power_w)


@lru_cache(maxsize=256)
def _engine_power_w(target: str, cores: int) -> float:
    """Peak power one engine provisions: a CPU engine's share of the socket's TDP
    (``cores`` of its cores), a GPU engine's whole device TDP."""
    from codesign.plugins import load_target

    tgt = load_target(target)
    defaults = tgt.design_space().defaults()
    tdp = float(tgt.hw_cost(defaults).power_w)
    if _kind(target) == "cpu":
        return tdp * cores / int(defaults["cores"])
    return tdp
