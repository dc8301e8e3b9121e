"""The one design evaluator: ``evaluate(design, context) -> Metrics``.

Every command that prices a pipeline design goes through here (``codesign pipeline evaluate``,
the search, DeepRecSched): it is the only place where service times, energy, power, area,
tail latency, max QPS and quality are computed. It is pure (the same design and context give
the same metrics in any process), picklable (plain frozen dataclasses, no closures) and works
on batches: :func:`evaluate_batch` prices many designs at once, with every stage cost of the
batch evaluated by the compiled, vectorized cost model (:mod:`codesign.cost_models.compiled`,
one lowering per model and target) and the load simulated for all designs together
(:func:`codesign.cost_models.queueing.simulate_batch`) on common random numbers.

How a design is priced:

1. **Placement.** Each target that stages use is one chip or socket, configured at the
   target's defaults updated by the design's ``chips`` table. Every engine of a stage gets the
   chip's knobs, its share of the chip (:meth:`BaseTarget.partition`: e.g. an RPAccel partition
   holding a quarter of the PEs gets a quarter of the DRAM bandwidth and SRAM), then the
   stage's own knobs. The engines' :meth:`~BaseTarget.resources` must fit the chip's
   :meth:`~BaseTarget.capacity`; otherwise the design is *unbuildable* and says why.
2. **Service times.** A query of ``items`` candidates at a stage runs ``ceil(items / batch)``
   inference batches. Targets that filter on the device cost the top-k in their graph; the
   host sorts for the others (RecPipe's measured sort times). Consecutive stages on one target
   that pipeline sub-batches (``sub_batch`` > 0) form one pool: latency = fill +
   (n - 1) x the slowest stage's sub-batch time. With a query-size distribution, services are
   costed on a grid of sizes and interpolated.
3. **Energy per query** sums the energy of the very graphs whose latency gives the service
   time. **Power and area** are each chip's :meth:`~BaseTarget.chip_cost` for the engines on
   it (provisioned peak power: a CPU socket's TDP share, a GPU's TDP, an accelerator's
   synthesis power).
4. **Load.** The queries' arrivals come from one fixed stream per load (``seed``): unit
   exponential gaps scaled by 1 / QPS, so every design meets the same arrivals and a design's
   percentiles do not depend on who evaluated it. Designs whose lower bound on latency already
   misses the SLA by far are not simulated at the SLA search's loads.
5. **Quality** from the context's source (trained models' scores replayed through the funnel,
   or a quality table).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from codesign.cost_models.select import stage_cost_model
from codesign.design import Pipeline, Stage
from codesign.errors import CodesignError
from codesign.plugins import load_target
from codesign.targets.base import (
    filters_on_device,
    streams_sub_batches,
    target_capacity,
    target_chip_cost,
    target_partition,
    target_resources,
)


class Unbuildable(CodesignError):
    """A design that cannot be built (over a chip's or socket's capacity)."""


# --- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualitySpec:
    """Where funnel quality comes from: ``replay`` (trained models' scores on ``dataset``),
    ``table`` (a quality CSV; ``table`` None: RecPipe's published one) or ``none``."""

    metric: str = "ndcg_recpipe@64"
    source: str = "none"
    table: str | None = None
    dataset: str = "synthetic"
    seed: int = 0
    samples: int | None = None
    val_samples: int | None = None
    max_rows: int | None = None


@dataclass(frozen=True)
class Context:
    """The load and the questions asked of every design (everything but the design)."""

    qps: float
    queries: int = 2000
    warmup: int = 256
    #: The load's seed: one arrival (and query-size) stream for every design.
    seed: int = 0
    arrival: str = "exponential"
    #: A query-size distribution as a sorted tuple of (key, value) pairs (see
    #: :class:`codesign.cost_models.queueing.SizeDistribution`); empty: every query is full.
    query_size: tuple[tuple[str, Any], ...] = ()
    sla_s: float | None = None
    percentile: int = 95
    #: Also find the highest QPS whose percentile latency meets the SLA.
    max_qps: bool = False
    quality: QualitySpec = QualitySpec()

    @staticmethod
    def size_key(query_size: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
        if not query_size:
            return ()
        return tuple(
            sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in query_size.items())
        )

    def size_dict(self) -> dict[str, Any] | None:
        if not self.query_size:
            return None
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.query_size}


def context_for(pipeline: Pipeline, qps: float, **changes: Any) -> Context:
    """A context from a pipeline's ``load`` section at ``qps``."""
    load = pipeline.load
    values: dict[str, Any] = dict(
        qps=float(qps),
        queries=load.queries,
        warmup=min(load.warmup, load.queries // 2),
        seed=load.seed,
        arrival=load.arrival,
        query_size=Context.size_key(load.query_size),
        sla_s=load.sla_ms / 1e3 if load.sla_ms else None,
        percentile=load.percentile,
    )
    values.update(changes)
    return Context(**values)


# --- outputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolMetrics:
    """One server pool: a stage, or consecutive stages fused by sub-batch pipelining."""

    name: str
    servers: int
    service_s_full_query: float
    mean_service_s: float
    utilization: float = math.nan
    mean_wait_s: float = math.nan
    p95_wait_s: float = math.nan


@dataclass(frozen=True)
class Metrics:
    quality: float
    p50_latency_s: float
    p95_latency_s: float
    p99_latency_s: float
    area_mm2: float
    energy_j: float
    power_w: float
    unloaded_latency_s: float
    stability_limit_qps: float
    max_utilization: float
    max_qps: float = math.nan
    throughput_qps: float = math.nan
    pools: tuple[PoolMetrics, ...] = ()
    #: Per stage: (name, engines' knob point, cost model) as priced.
    stage_points: tuple[tuple[str, tuple[tuple[str, Any], ...], str], ...] = field(
        default=(), compare=False
    )

    def as_dict(self) -> dict[str, float]:
        """The scalar metrics (what the search stores per trial)."""
        return {
            "quality": self.quality,
            "p50_latency_s": self.p50_latency_s,
            "p95_latency_s": self.p95_latency_s,
            "p99_latency_s": self.p99_latency_s,
            "area_mm2": self.area_mm2,
            "energy_j": self.energy_j,
            "unloaded_latency_s": self.unloaded_latency_s,
            "stability_limit_qps": self.stability_limit_qps,
            "max_utilization": self.max_utilization,
            "power_w": self.power_w,
            **({"max_qps": self.max_qps} if not math.isnan(self.max_qps) else {}),
        }


# --- placement ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Knob points of every stage's engines and of every chip, and what the chips cost."""

    points: tuple[dict[str, Any], ...]
    chips: dict[str, dict[str, Any]]
    area_mm2: float
    power_w: float


def _freeze(point: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(point.items()))


def place(pipeline: Pipeline) -> Placement:
    """Engine points, chip points, fit and silicon cost of ``pipeline``; raises
    :class:`Unbuildable` naming the stage, the resource and the fix."""
    key = (
        tuple(
            (st.target, _freeze({k: str(v) for k, v in st.knobs.items()}), st.engines)
            for st in pipeline.stages
        ),
        tuple(sorted((t, _freeze({k: str(v) for k, v in c.items()})) for t, c in pipeline.chips)),
    )
    cached = _PLACED.get(key)
    if cached is None:
        if len(_PLACED) > 65536:
            _PLACED.clear()
        cached = _PLACED[key] = _place(pipeline.stages, pipeline.chips)
    if isinstance(cached, Unbuildable):
        raise cached
    return cached


#: Placements (or the reason a design is unbuildable) by the stages' targets, knobs and engines
#: and the chip tables: a design evaluated once costs nothing the next time.
_PLACED: dict[tuple, Placement | Unbuildable] = {}


def _place(
    stages: tuple[Stage, ...], chips: tuple[tuple[str, Any], ...]
) -> Placement | Unbuildable:
    try:
        return _place_unchecked(stages, chips)
    except Unbuildable as exc:
        return exc


def _place_unchecked(stages: tuple[Stage, ...], chips: tuple[tuple[str, Any], ...]) -> Placement:
    chip_knobs = dict(chips)
    chip_points: dict[str, dict[str, Any]] = {}
    points: list[dict[str, Any]] = []
    used: dict[str, dict[str, float]] = {}
    engines_on: dict[str, list[dict[str, Any]]] = {}
    for i, st in enumerate(stages):
        target = load_target(st.target)
        space = target.design_space()
        if st.target not in chip_points:
            chip_points[st.target] = space.resolve(chip_knobs.get(st.target, {}))
        chip = chip_points[st.target]
        point = engine_point(target, chip, st.knobs)
        points.append(point)
        engines_on.setdefault(st.target, []).extend([point] * st.engines)
        capacity = target_capacity(target, chip)
        total = used.setdefault(st.target, {})
        for name, amount in target_resources(target, point).items():
            total[name] = total.get(name, 0.0) + amount * st.engines
            if name in capacity and total[name] > capacity[name] * (1 + 1e-9):
                raise Unbuildable(
                    f"stages[{i}].engines: stages on {st.target} use {_amount(total[name])} "
                    f"{name} (engines x per-engine {name}) but one chip has "
                    f"{_amount(capacity[name])} (fix: fewer engines, or a smaller share per "
                    f"engine, or a larger chip)"
                )
    area = power = 0.0
    for name, engine_points in engines_on.items():
        cost = target_chip_cost(load_target(name), engine_points, chip_points[name])
        area += cost.area_mm2 or 0.0
        power += float(cost.power_w)
    return Placement(tuple(points), chip_points, area, power)


def engine_point(target: Any, chip: Mapping[str, Any], knobs: Mapping[str, Any]) -> dict:
    """The knob point of one engine: the chip's knobs, its share of the chip
    (:meth:`~codesign.targets.base.BaseTarget.partition`), then the stage's own knobs."""
    space = target.design_space()
    own = space.resolve({**chip, **knobs})
    return space.resolve({**chip, **target_partition(target, chip, own), **knobs})


def _amount(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# --- stage costs, batched -----------------------------------------------------------------------


class StageCosts:
    """Collects (model, target, cost model, batch, keep, knob point) requests from a batch of
    designs, then prices all of them at once: the analytical model through the compiled,
    vectorized path per (model, target); the calibrated or measured model point by point.
    Identical requests are priced once."""

    def __init__(self) -> None:
        self._index: dict[tuple, int] = {}
        self._requests: list[tuple] = []
        self.latency_s = np.empty(0)
        self.energy_j = np.empty(0)

    def add(
        self, model: str, target: str, cost_model: str, batch: int, keep: int, point: tuple
    ) -> int:
        key = (model, target, cost_model, int(batch), int(keep), point)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self._requests)
            self._requests.append(key)
        return index

    def run(self) -> None:
        n = len(self._requests)
        self.latency_s = np.empty(n)
        self.energy_j = np.empty(n)
        groups: dict[tuple, list[int]] = {}
        for i, (model, target, cost_model, *_rest) in enumerate(self._requests):
            groups.setdefault((model, target, cost_model), []).append(i)
        for (model, target, cost_model), rows in groups.items():
            lat, energy = _price(model, target, cost_model, [self._requests[i] for i in rows])
            self.latency_s[rows] = lat
            self.energy_j[rows] = energy


def _price(model: str, target: str, cost_model: str, requests: list[tuple]):
    if cost_model == "analytical":
        from codesign.cost_models.compiled import compile_model

        compiled = compile_model(model, load_target(target))
        batch = np.array([r[3] for r in requests], dtype=np.int64)
        keep = np.array([r[4] for r in requests], dtype=np.int64)
        names = [k for k, _ in requests[0][5]]
        knobs = {}
        for j, name in enumerate(names):
            values = [r[5][j][1] for r in requests]
            first = values[0]
            if all(v == first for v in values):
                knobs[name] = first
            elif isinstance(first, str):
                knobs[name] = np.array(values, dtype=object)
            else:
                knobs[name] = np.array(values)
        cost = compiled.evaluate(batch=batch, keep=keep, knobs=knobs)
        return cost.latency_s, cost.energy_j
    lat = np.empty(len(requests))
    energy = np.empty(len(requests))
    for i, (_, _, _, batch, keep, point) in enumerate(requests):
        lat[i], energy[i] = _scalar_stage_cost(model, target, cost_model, batch, keep, point)
    return lat, energy


@lru_cache(maxsize=16384)
def _scalar_stage_cost(
    model: str, target: str, cost_model: str, batch: int, keep: int, point: tuple
) -> tuple[float, float]:
    """One inference batch by the calibrated or TVM-measured model (measured kernels are kept
    in the measurement database: a batch size is compiled and timed once per machine)."""
    from codesign.cost_models.select import estimate_with
    from codesign.ir.frontends.lower import lower

    graph = lower(model, batch=batch, keep=keep or None)
    report = estimate_with(cost_model, graph, load_target(target), dict(point), None)
    return float(report.latency_s), float(report.energy_j)


def price_batches(
    model: str,
    target: str,
    knobs: Mapping[str, Any],
    batches: Sequence[int] | np.ndarray,
    *,
    keep: int = 0,
    cost_model: str = "analytical",
) -> tuple[np.ndarray, np.ndarray]:
    """(latency_s, energy_j) of one inference batch of each size in ``batches`` of ``model``
    (with a top-``keep`` filter when ``keep`` > 0) on one engine of ``target`` at ``knobs``:
    the evaluator's stage pricing, for `codesign cost` and for serving models that batch on
    their own (DeepRecSched)."""
    tgt = load_target(target)
    point = _freeze(tgt.design_space().resolve(knobs))
    used = stage_cost_model(target, cost_model)
    costs = StageCosts()
    rows = [costs.add(model, target, used, int(b), keep, point) for b in np.asarray(batches)]
    costs.run()
    return costs.latency_s[rows], costs.energy_j[rows]


def batch_latency_s(
    model: str,
    target: str,
    knobs: Mapping[str, Any],
    batches: Sequence[int] | np.ndarray,
    *,
    cost_model: str = "analytical",
) -> np.ndarray:
    """Latency of one inference batch of each size in ``batches`` (no top-k)."""
    return price_batches(model, target, knobs, batches, cost_model=cost_model)[0]


def host_sort_s(items: int) -> float:
    """RecPipe's measured host sort time (``codesign.targets.accel.host_sort_s``)."""
    from codesign.targets.accel import host_sort_s as sort_s

    return sort_s(items)


# --- one design's pools ------------------------------------------------------------------------


def fused_groups(pipeline: Pipeline) -> list[list[int]]:
    """Runs of consecutive stages on one target that all pipeline sub-batches."""
    groups: list[list[int]] = []
    stages = pipeline.stages
    for i, st in enumerate(stages):
        prev = stages[groups[-1][-1]] if groups else None
        if prev is not None and _streams(prev) and _streams(st) and prev.target == st.target:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _streams(st: Stage) -> bool:
    target = load_target(st.target)
    return streams_sub_batches(target) and int(st.knobs.get("sub_batch", 0) or 0) > 0


class DesignPlan:
    """The stage-cost requests of one design, and how they combine into pool services."""

    def __init__(self, pipeline: Pipeline, placement: Placement, costs: StageCosts, grid):
        self.pipeline = pipeline
        self.groups = fused_groups(pipeline)
        self.points = [_freeze(p) for p in placement.points]
        self.cost_models = [stage_cost_model(st.target, st.cost_model) for st in pipeline.stages]
        self.on_device = [filters_on_device(load_target(st.target)) for st in pipeline.stages]
        first = pipeline.stages[0].items
        #: per pool, per grid size: list of (request, multiplicity, is-max-term) and extra seconds
        self.terms: list[list[tuple[list[tuple[int, float]], float, list[int] | None, int]]] = []
        for group in self.groups:
            per_size = []
            for n in [*grid, first]:
                per_size.append(self._pool_terms(group, int(n), costs))
            self.terms.append(per_size)
        self.energy_terms = self._energy_terms(costs)

    def _request(self, costs: StageCosts, i: int, batch: int, keep: int) -> int:
        st = self.pipeline.stages[i]
        point = self.points[i]
        if st.knobs.get("sub_batch") and len(self._group_of(i)) > 1:
            point = tuple((k, v) for k, v in point if k != "sub_batch") + (("sub_batch", 0),)
            point = tuple(sorted(point))
        return costs.add(st.model, st.target, self.cost_models[i], batch, keep, point)

    def _group_of(self, i: int) -> list[int]:
        return next(g for g in self.groups if i in g)

    def stage_terms(self, i: int, items: int, costs: StageCosts):
        """(requests with multiplicity, host sort seconds) of a query of ``items``."""
        st = self.pipeline.stages[i]
        items = max(1, min(items, st.items))
        keep = max(1, round(st.keep * items / st.items))
        batch = min(st.batch_items, items)
        full, rest = divmod(items, batch)
        k_graph = keep if self.on_device[i] and keep < items else 0
        terms = [(self._request(costs, i, batch, min(k_graph, batch)), float(full))]
        if rest:
            terms.append((self._request(costs, i, rest, min(k_graph, rest)), 1.0))
        sort_s = host_sort_s(items) if (not self.on_device[i] and keep < items) else 0.0
        return terms, sort_s

    def _pool_terms(self, group: list[int], n: int, costs: StageCosts):
        stages = self.pipeline.stages
        first_items = stages[0].items
        if len(group) == 1:
            i = group[0]
            scaled = max(1, round(stages[i].items * n / first_items))
            terms, sort_s = self.stage_terms(i, scaled, costs)
            return terms, sort_s, None, 0
        head = stages[group[0]]
        sub = int(head.knobs["sub_batch"])
        count = math.ceil(n / sub)
        per_sub = []
        for i in group:
            st = stages[i]
            share = max(1, round(sub * st.items / head.items))
            keep = max(1, round(share * st.keep / st.items))
            per_sub.append(self._request(costs, i, share, keep if keep < share else 0))
        return [(r, 1.0) for r in per_sub], 0.0, per_sub, count

    def _energy_terms(self, costs: StageCosts) -> list[tuple[int, float]]:
        """Energy of a full query: the graphs whose latencies make the service times."""
        out: list[tuple[int, float]] = []
        stages = self.pipeline.stages
        for group in self.groups:
            if len(group) == 1:
                out += self.stage_terms(group[0], stages[group[0]].items, costs)[0]
                continue
            terms, _, per_sub, count = self._pool_terms(group, stages[0].items, costs)
            out += [(r, float(count)) for r in per_sub]
        return out

    def services(self, costs: StageCosts) -> np.ndarray:
        """(pools, grid sizes + 1) service seconds; the last column is the full query."""
        lat = costs.latency_s
        out = np.empty((len(self.groups), len(self.terms[0])))
        for p, per_size in enumerate(self.terms):
            for j, (terms, sort_s, per_sub, count) in enumerate(per_size):
                if per_sub is None:
                    out[p, j] = sum(m * lat[r] for r, m in terms) + sort_s
                else:
                    parts = [lat[r] for r in per_sub]
                    out[p, j] = sum(parts) + (count - 1) * max(parts)
        return out

    def energy_j(self, costs: StageCosts) -> float:
        return float(sum(m * costs.energy_j[r] for r, m in self.energy_terms))

    def servers(self) -> tuple[int, ...]:
        return tuple(min(self.pipeline.stages[i].engines for i in g) for g in self.groups)

    def pool_names(self) -> tuple[str, ...]:
        return tuple("+".join(self.pipeline.stages[i].name for i in g) for g in self.groups)


# --- the load -----------------------------------------------------------------------------------


def load_for(context: Context, first_items: int):
    """The load's arrival stream and stage-1 query sizes (common random numbers)."""
    key = (context.queries, context.seed, context.arrival, context.query_size)
    return _load(key, first_items)


@lru_cache(maxsize=64)
def _load(context_key: tuple, first_items: int):
    """Arrival stream and query sizes of a load (common random numbers)."""
    from codesign.cost_models.queueing import LoadStream, SizeDistribution

    queries, seed, arrival, query_size = context_key
    stream = LoadStream(n_queries=queries, seed=seed, convention=arrival)
    if not query_size:
        sizes = np.full(queries, first_items, dtype=np.int64)
    else:
        dist = SizeDistribution.from_dict(
            {k: list(v) if isinstance(v, tuple) else v for k, v in query_size}
        )
        sizes = stream.sizes(dist)
    return stream, sizes


def size_grid(sizes: np.ndarray) -> np.ndarray:
    lo, hi = int(sizes.min()), int(sizes.max())
    if lo == hi:
        return np.array([lo])
    return np.unique(np.round(np.geomspace(lo, hi, 12)).astype(int))


def service_per_query(values: np.ndarray, grid: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(queries, pools) service seconds, interpolated between grid sizes."""
    if len(grid) == 1:
        return np.broadcast_to(values[:, 0], (sizes.size, values.shape[0])).copy()
    return np.column_stack([np.interp(sizes, grid, v[: len(grid)]) for v in values])


# --- quality ------------------------------------------------------------------------------------


def funnel_quality(pipeline: Pipeline, spec: QualitySpec) -> float:
    stages = [(st.model, st.items, st.keep) for st in pipeline.stages]
    if spec.source == "none":
        return math.nan
    if spec.source == "table":
        from codesign.quality.tables import funnel_table_quality

        return funnel_table_quality(stages, spec.metric, spec.table)
    from codesign.quality.api import funnel_quality as replay
    from codesign.quality.datasets import DataOptions

    options = DataOptions(
        samples=spec.samples, val_samples=spec.val_samples, seed=spec.seed, max_rows=spec.max_rows
    )
    return float(replay(stages, spec.metric, dataset=spec.dataset, options=options))


# --- the evaluator ------------------------------------------------------------------------------


def evaluate(design: Pipeline, context: Context) -> Metrics:
    """Cost, load, and quality of one design (a thin wrapper over :func:`evaluate_batch`).
    Raises :class:`Unbuildable` when the design does not fit its chips."""
    result = evaluate_batch([design], context)[0]
    if isinstance(result, Unbuildable):
        raise result
    return result


def evaluate_batch(
    designs: Sequence[Pipeline], context: Context, *, screen: bool = True
) -> list[Metrics | Unbuildable]:
    """Metrics of every design (or the :class:`Unbuildable` reason), priced together."""
    from codesign.cost_models import queueing as q

    costs = StageCosts()
    plans: list[tuple[int, DesignPlan, Placement, np.ndarray, np.ndarray]] = []
    out: list[Metrics | Unbuildable | None] = [None] * len(designs)
    load_key = (context.queries, context.seed, context.arrival, context.query_size)
    for d, design in enumerate(designs):
        try:
            placement = place(design)
        except Unbuildable as exc:
            out[d] = exc
            continue
        stream, sizes = _load(load_key, design.stages[0].items)
        grid = size_grid(sizes)
        plans.append((d, DesignPlan(design, placement, costs, grid), placement, sizes, grid))
    costs.run()
    if not plans:
        return out  # type: ignore[return-value]
    # queueing: all designs at the context's load, together, on one arrival stream
    stream = _load(load_key, 1)[0]
    arrivals = stream.arrivals_s(context.qps)
    n, width = len(plans), max(len(plan.groups) for _, plan, *_ in plans)
    constant = not context.query_size
    shape = (n, width) if constant else (n, context.queries, width)
    service = np.zeros(shape)
    server = np.full((n, width), context.queries, dtype=np.int64)  # padding pools: no wait
    unloaded = []
    for i, (_, plan, _, sizes, grid) in enumerate(plans):
        values = plan.services(costs)
        pools = values.shape[0]
        if constant:
            service[i, :pools] = values[:, -1]
        else:
            service[i, :, :pools] = service_per_query(values, grid, sizes)
        server[i, :pools] = plan.servers()
        unloaded.append(values[:, -1])
    latency = q.simulate_batch(arrivals, service, server)
    tails = q.tail_latency_batch(latency, warmup=context.warmup)
    per_query = (
        service
        if not constant
        else np.broadcast_to(service[:, None, :], (n, context.queries, width))
    )
    mean_service = per_query.mean(axis=1)
    limit = q.stability_limit_batch_qps(mean_service, server)
    max_qps = np.full(n, math.nan)
    if context.max_qps and context.sla_s is not None:
        max_qps = q.max_qps_batch(
            stream,
            service,
            server,
            sla_s=context.sla_s,
            percentile=context.percentile,
            warmup=context.warmup,
        )
    w = context.warmup
    span = (arrivals[w:][None, :] + latency[:, w:]).max(axis=1) - arrivals[w]
    busy = per_query[:, w:, :].sum(axis=1)
    for i, (d, plan, placement, _, _) in enumerate(plans):
        pools = len(plan.groups)
        c = np.asarray(plan.servers(), dtype=np.float64)
        util = busy[i, :pools] / (c * span[i]) if span[i] > 0 else np.full(pools, math.nan)
        pools_out = tuple(
            PoolMetrics(
                name=name,
                servers=int(c[j]),
                service_s_full_query=float(unloaded[i][j]),
                mean_service_s=float(mean_service[i, j]),
                utilization=float(util[j]),
            )
            for j, name in enumerate(plan.pool_names())
        )
        out[d] = Metrics(
            quality=funnel_quality(plan.pipeline, context.quality),
            p50_latency_s=float(tails[i, 0]),
            p95_latency_s=float(tails[i, 1]),
            p99_latency_s=float(tails[i, 2]),
            area_mm2=placement.area_mm2,
            energy_j=plan.energy_j(costs),
            power_w=placement.power_w,
            unloaded_latency_s=float(sum(unloaded[i])),
            stability_limit_qps=float(limit[i]),
            max_utilization=float(np.max(util)),
            max_qps=float(max_qps[i]),
            pools=pools_out,
            stage_points=tuple(
                (st.name, _freeze(p), cm)
                for st, p, cm in zip(
                    plan.pipeline.stages, placement.points, plan.cost_models, strict=True
                )
            ),
        )
    return out  # type: ignore[return-value]
