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
   or a quality table that follows the funnel's models and pools). A design whose funnel the
   table cannot answer is infeasible (:class:`NoQuality`), not guessed; the other designs of
   the batch are still priced.
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
from codesign.targets.accel import host_sort_s
from codesign.targets.base import (
    filters_on_device,
    streams_sub_batches,
    target_capacity,
    target_chip_cost,
    target_partition,
    target_resources,
)


class Infeasible(CodesignError):
    """A design the evaluator cannot price; ``kind`` prefixes the reason a search records."""

    kind = "infeasible"


class Unbuildable(Infeasible):
    """A design that cannot be built (over a chip's or socket's capacity)."""

    kind = "unbuildable"


class NoQuality(Infeasible):
    """A design whose funnel the quality table cannot answer (the message names the funnel and
    the fix)."""

    kind = "quality"


@lru_cache(maxsize=256)
def _target(name: str) -> Any:
    return load_target(name)


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
    pools: tuple[PoolMetrics, ...] = ()
    #: The quality is a quality table's interpolation, not a measured row.
    quality_estimate: bool = False

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
            **({"quality_estimate": 1.0} if self.quality_estimate else {}),
        }


# --- designs as arrays -------------------------------------------------------------------------


@dataclass(frozen=True)
class Skeleton:
    """What designs priced together share: per stage the model, target, cost model and name,
    the server pools (runs of stages fused by sub-batch pipelining), and the knob names set per
    stage and per chip."""

    models: tuple[str, ...]
    targets: tuple[str, ...]
    cost_models: tuple[str, ...]
    names: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]
    stage_knobs: tuple[tuple[str, ...], ...]
    chip_knobs: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass
class DesignArrays:
    """N designs of one skeleton: per stage items, keep, batch (0: all items) and engines as
    (N, S) integer arrays; per stage and per chip, knob values as scalars (shared) or (N,)
    arrays. Built by :func:`stack`, or directly (benchmarks, vectorized proposals)."""

    skeleton: Skeleton
    items: np.ndarray
    keep: np.ndarray
    batch: np.ndarray
    engines: np.ndarray
    knobs: tuple[dict[str, Any], ...]
    chips: dict[str, dict[str, Any]]

    @property
    def n(self) -> int:
        return self.items.shape[0]


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
    return streams_sub_batches(_target(st.target)) and int(st.knobs.get("sub_batch", 0) or 0) > 0


def skeleton_of(pipeline: Pipeline) -> Skeleton:
    st = pipeline.stages
    return Skeleton(
        models=tuple(s.model for s in st),
        targets=tuple(s.target for s in st),
        cost_models=tuple(stage_cost_model(s.target, s.cost_model) for s in st),
        names=tuple(s.name for s in st),
        groups=tuple(tuple(g) for g in fused_groups(pipeline)),
        stage_knobs=tuple(tuple(sorted(s.knobs)) for s in st),
        chip_knobs=tuple((t, tuple(sorted(k))) for t, k in sorted(pipeline.chips)),
    )


def stack(pipelines: Sequence[Pipeline], skeleton: Skeleton | None = None) -> DesignArrays:
    """Designs of one skeleton as arrays."""
    skeleton = skeleton or skeleton_of(pipelines[0])
    s = len(skeleton.models)

    def column(values: list[Any]) -> Any:
        first = values[0]
        if all(v == first for v in values):
            return first
        return np.array(values, dtype=object if isinstance(first, str) else None)

    def matrix(attr: str) -> np.ndarray:
        return np.array([[getattr(st, attr) for st in p.stages] for p in pipelines], np.int64)

    knobs = tuple(
        {name: column([p.stages[i].knobs[name] for p in pipelines]) for name in names}
        for i, names in zip(range(s), skeleton.stage_knobs, strict=True)
    )
    chips = {
        target: {name: column([dict(p.chips)[target][name] for p in pipelines]) for name in names}
        for target, names in skeleton.chip_knobs
    }
    return DesignArrays(
        skeleton, matrix("items"), matrix("keep"), matrix("batch"), matrix("engines"), knobs, chips
    )


def _row(values: Mapping[str, Any], i: int) -> dict[str, Any]:
    return {
        k: (v[i].item() if hasattr(v[i], "item") else v[i]) if np.ndim(v) else v
        for k, v in values.items()
    }


def _hook(target: Any, fn: Any, n: int, *points: Mapping[str, Any]) -> dict[str, Any]:
    """A resource hook on arrays of points: at once when the target says its hooks are
    vectorized, else design by design."""
    if getattr(target, "vectorized_hooks", False) or not any(
        np.ndim(v) for p in points for v in p.values()
    ):
        return fn(target, *points)
    rows = [fn(target, *(_row(p, i) for p in points)) for i in range(n)]
    keys = rows[0].keys() if rows else ()
    return {k: np.array([r[k] for r in rows]) for k in keys}


# --- placement ----------------------------------------------------------------------------------


@dataclass
class Placement:
    """Engine points per stage and chip points per target (scalars or (N,) arrays), which
    designs fit their chips (and why not), and the chips' area and power."""

    points: list[dict[str, Any]]
    chips: dict[str, dict[str, Any]]
    buildable: np.ndarray
    area_mm2: np.ndarray
    power_w: np.ndarray
    #: Per unbuildable design: (stage, target, resource, amount used, one chip's capacity)
    #: where its chip first overflowed (formatted on demand by :meth:`reason`).
    overflow: dict[int, tuple[int, str, str, float, float]] = field(default_factory=dict)

    def reason(self, row: int) -> str:
        stage, target, name, used, cap = self.overflow[row]
        return (
            f"stages[{stage}].engines: stages on {target} use {_amount(used)} {name} (engines x "
            f"per-engine {name}) but one chip has {_amount(cap)} (fix: fewer engines, or a "
            "smaller share per engine, or a larger chip)"
        )


def place_arrays(d: DesignArrays) -> Placement:
    sk, n = d.skeleton, d.n
    chips: dict[str, dict[str, Any]] = {}
    for target in sk.targets:
        if target not in chips:
            chips[target] = {**_target(target).design_space().defaults(), **d.chips.get(target, {})}
    points: list[dict[str, Any]] = []
    for i, target in enumerate(sk.targets):
        points.append(_compose(_target(target), chips[target], d.knobs[i], n))
    buildable = np.ones(n, dtype=bool)
    overflow: dict[int, tuple[int, str, str, float, float]] = {}
    area = np.zeros(n)
    power = np.zeros(n)
    for target in dict.fromkeys(sk.targets):
        tgt, chip = _target(target), chips[target]
        capacity = _hook(tgt, target_capacity, n, chip)
        used: dict[str, Any] = {}
        on_chip = [i for i, t in enumerate(sk.targets) if t == target]
        for i in on_chip:
            for name, amount in _hook(tgt, target_resources, n, points[i]).items():
                used[name] = used.get(name, 0.0) + amount * d.engines[:, i]
                if name not in capacity:
                    continue
                over = np.broadcast_to(used[name] > capacity[name] * (1 + 1e-9), (n,))
                new = np.flatnonzero(over & buildable)
                if new.size:
                    amounts = np.broadcast_to(used[name], (n,))[new].tolist()
                    caps = np.broadcast_to(capacity[name], (n,))[new].tolist()
                    for row, amount, cap in zip(new.tolist(), amounts, caps, strict=True):
                        overflow[row] = (i, target, name, amount, cap)
                buildable &= ~over
        stages = [(points[i], d.engines[:, i]) for i in on_chip]
        if getattr(tgt, "vectorized_hooks", False):
            cost = target_chip_cost(tgt, stages, chip)
            area += np.nan_to_num(
                np.asarray(cost.area_mm2 if cost.area_mm2 is not None else 0.0, dtype=np.float64)
            )
            power += np.asarray(cost.power_w, dtype=np.float64)
        else:
            for row in range(n):
                cost = target_chip_cost(
                    tgt, [(_row(p, row), int(e[row])) for p, e in stages], _row(chip, row)
                )
                area[row] += cost.area_mm2 or 0.0
                power[row] += float(cost.power_w)
    return Placement(points, chips, buildable, area, power, overflow)


def _amount(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _compose(target: Any, chip: Mapping[str, Any], knobs: Mapping[str, Any], n: int) -> dict:
    """The knob point of a stage's engines (values scalars or (n,) arrays): the chip's knobs,
    its share of the chip (:meth:`~codesign.targets.base.BaseTarget.partition`), then the
    stage's own knobs."""
    part = _hook(target, target_partition, n, chip, {**chip, **knobs})
    return {**chip, **part, **knobs}


def engine_point(target: Any, chip: Mapping[str, Any], knobs: Mapping[str, Any]) -> dict:
    """The knob point of one engine (:func:`_compose`), validated."""
    return target.design_space().resolve(_compose(target, chip, knobs, 1))


@dataclass(frozen=True)
class PlacedDesign:
    """One design's engine points, chip points and silicon cost."""

    points: tuple[dict[str, Any], ...]
    chips: dict[str, dict[str, Any]]
    area_mm2: float
    power_w: float


def place(pipeline: Pipeline) -> PlacedDesign:
    """Engine points, chip points, fit and silicon cost of ``pipeline``; raises
    :class:`Unbuildable` naming the stage, the resource and the fix."""
    placement = place_arrays(stack([pipeline]))
    if not placement.buildable[0]:
        raise Unbuildable(placement.reason(0))
    return PlacedDesign(
        tuple(
            _row(p, 0) if any(np.ndim(v) for v in p.values()) else dict(p) for p in placement.points
        ),
        placement.chips,
        float(placement.area_mm2[0]),
        float(placement.power_w[0]),
    )


def pool_energy_j(pipeline: Pipeline) -> list[float]:
    """Energy of a full query in each server pool of ``pipeline`` (fused stages are one pool);
    their sum is :attr:`Metrics.energy_j`."""
    arrays = stack([pipeline])
    placement = place_arrays(arrays)
    if not placement.buildable[0]:
        raise Unbuildable(placement.reason(0))
    return [
        float(np.asarray(_pool_service(arrays, placement, group, arrays.items[:, 0])[1])[0])
        for group in arrays.skeleton.groups
    ]


# --- stage costs --------------------------------------------------------------------------------


def _price(
    model: str, target: str, cost_model: str, batch: np.ndarray, keep: np.ndarray, point: dict
) -> tuple[np.ndarray, np.ndarray]:
    """(latency_s, energy_j) of one inference batch per design: the compiled, vectorized
    analytical model, or the calibrated or measured model design by design."""
    if batch.size == 0:
        return np.zeros(0), np.zeros(0)
    if cost_model == "analytical":
        from codesign.cost_models.compiled import compile_model

        cost = compile_model(model, _target(target)).evaluate(batch=batch, keep=keep, knobs=point)
        return cost.latency_s, cost.energy_j
    lat = np.empty(batch.size)
    energy = np.empty(batch.size)
    source = _cost_source(cost_model)
    for i in range(batch.size):
        row = _freeze(_row(point, i) if any(np.ndim(v) for v in point.values()) else point)
        lat[i], energy[i] = _scalar_stage_cost(
            model, target, cost_model, int(batch[i]), int(keep[i]), row, source
        )
    return lat, energy


def _cost_source(cost_model: str) -> tuple:
    """What a calibrated price depends on beyond its arguments: the calibration file as it is
    on disk now (path, modification time, size), so that a refitted calibration (``codesign
    measure report``, ``plan run --calibrate``) is not answered from the cache."""
    if cost_model != "calibrated":
        return ()
    from codesign.cost_models.calibration import CALIBRATION_FILE
    from codesign.cost_models.measure_db import default_path

    path = default_path().parent / CALIBRATION_FILE
    try:
        stat = path.stat()
    except OSError:
        return (str(path),)
    return (str(path), stat.st_mtime_ns, stat.st_size)


def _freeze(point: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(point.items()))


@lru_cache(maxsize=16384)
def _scalar_stage_cost(
    model: str,
    target: str,
    cost_model: str,
    batch: int,
    keep: int,
    point: tuple,
    source: tuple = (),
) -> tuple[float, float]:
    """One inference batch by the calibrated or TVM-measured model (measured kernels are kept
    in the measurement database: a batch size is compiled and timed once per machine);
    ``source`` (:func:`_cost_source`) is part of the cache key only."""
    from codesign.cost_models.select import estimate_with
    from codesign.ir.frontends.lower import lower

    graph = lower(model, batch=batch, keep=keep or None)
    report = estimate_with(cost_model, graph, _target(target), dict(point), None)
    return float(report.latency_s), float(report.energy_j)


def _select(point: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    return {k: (v[rows] if np.ndim(v) else v) for k, v in point.items()}


def stage_terms(
    d: DesignArrays, placement: Placement, i: int, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(model seconds, host sort seconds, energy) of stage ``i`` for queries of ``items``."""
    sk = d.skeleton
    model, target, cost_model = sk.models[i], sk.targets[i], sk.cost_models[i]
    point = placement.points[i]
    total = d.items[:, i]
    it = np.clip(items, 1, total)
    keep = np.maximum(1, np.round(d.keep[:, i] * it / total)).astype(np.int64)
    batch = np.minimum(np.where(d.batch[:, i] > 0, d.batch[:, i], total), it)
    full, rest = np.divmod(it, batch)
    on_device = filters_on_device(_target(target))
    k_graph = np.where(on_device & (keep < it), keep, 0)
    lat, energy = _price(model, target, cost_model, batch, np.minimum(k_graph, batch), point)
    model_s = full * lat
    energy_j = full * energy
    part = np.flatnonzero(rest > 0)
    if part.size:
        r = rest[part]
        lat_r, energy_r = _price(
            model, target, cost_model, r, np.minimum(k_graph[part], r), _select(point, part)
        )
        model_s[part] += lat_r
        energy_j[part] += energy_r
    sort_s = np.where(~np.asarray(on_device) & (keep < it), host_sort_s(it), 0.0)
    return model_s, sort_s, energy_j


def _pool_service(
    d: DesignArrays, placement: Placement, group: tuple[int, ...], n_items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(service seconds, energy) of one pool for queries whose stage-1 size is ``n_items``."""
    first = d.items[:, 0]
    if len(group) == 1:
        i = group[0]
        scaled = np.maximum(1, np.round(d.items[:, i] * n_items / first)).astype(np.int64)
        model_s, sort_s, energy = stage_terms(d, placement, i, scaled)
        return model_s + sort_s, energy
    sk = d.skeleton
    head = group[0]
    sub = np.asarray(np.broadcast_to(placement.points[head]["sub_batch"], (d.n,)), np.int64)
    # sub-batches of the group's own input (the first stage of the group, at this query size)
    head_items = np.maximum(1, np.round(d.items[:, head] * n_items / first)).astype(np.int64)
    count = -(-head_items // sub)
    per_sub, energies = [], []
    for i in group:
        share = np.maximum(1, np.round(sub * d.items[:, i] / d.items[:, head])).astype(np.int64)
        keep = np.maximum(1, np.round(share * d.keep[:, i] / d.items[:, i])).astype(np.int64)
        point = {**placement.points[i], "sub_batch": 0}
        lat, energy = _price(
            sk.models[i],
            sk.targets[i],
            sk.cost_models[i],
            share,
            np.where(keep < share, keep, 0),
            point,
        )
        per_sub.append(lat)
        energies.append(energy)
    lat = np.array(per_sub)
    return lat.sum(axis=0) + (count - 1) * lat.max(axis=0), count * np.sum(energies, axis=0)


@dataclass
class Priced:
    """Pool service times on a grid of stage-1 sizes (N, pools, sizes; the last size is the
    full query), servers per pool (N, pools) and energy per full query (N,)."""

    service_s: np.ndarray
    servers: np.ndarray
    energy_j: np.ndarray


def price(d: DesignArrays, placement: Placement, grid: Sequence[int] = ()) -> Priced:
    """Service times of every pool at each stage-1 size of ``grid`` and of the full query, and
    the energy of a full query (the same graphs as its service time)."""
    sk, n = d.skeleton, d.n
    sizes = [np.full(n, int(g), dtype=np.int64) for g in grid] + [d.items[:, 0]]
    service = np.empty((n, len(sk.groups), len(sizes)))
    energy = np.zeros(n)
    for p, group in enumerate(sk.groups):
        for j, size in enumerate(sizes):
            service[:, p, j], e = _pool_service(d, placement, group, size)
        energy += e  # the last size: the full query
    servers = np.stack([d.engines[:, list(g)].min(axis=1) for g in sk.groups], axis=1)
    return Priced(service, servers.astype(np.int64), energy)


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
    point = _target(target).design_space().resolve(knobs)
    b = np.asarray(batches, dtype=np.int64).reshape(-1)
    return _price(
        model,
        target,
        stage_cost_model(target, cost_model),
        b,
        np.full(b.size, keep, dtype=np.int64),
        point,
    )


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


# --- tail latency of the designs that can reach the front --------------------------------------


def front_tail_latency_s(
    service_s: np.ndarray,
    servers: np.ndarray,
    exact: np.ndarray,
    context: Context,
    *,
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """The context's percentile latency of the designs that can reach the Pareto front of
    (percentile latency, ``exact`` objectives), simulating only those.

    ``service_s`` (N, pools) constant service seconds, ``servers`` (N, pools), ``exact`` (N, M)
    objectives already known exactly (area, power, energy; minimised). A design's latency is at
    least its total service time (:func:`codesign.cost_models.queueing.latency_lower_bound_s`),
    and above the stability limit its tail grows without bound; designs are simulated in
    order of that bound, ``chunk`` at a time, and those whose optimistic vector (bound, exact)
    is dominated by the front of the designs simulated so far are never simulated
    (:func:`codesign.cost_models.queueing.screen`). Returns (latency, simulated mask);
    unsimulated designs get NaN."""
    from codesign.cost_models import queueing as q
    from codesign.search.pareto import pareto_mask

    n = service_s.shape[0]
    latency = np.full(n, math.nan)
    simulated = np.zeros(n, dtype=bool)
    limit = q.stability_limit_batch_qps(service_s, servers)
    bound = q.latency_lower_bound_s(service_s)
    stable = np.flatnonzero(limit > context.qps)
    order = stable[np.argsort(bound[stable], kind="stable")]
    stream = load_for(context, 1)[0]
    arrivals = stream.arrivals_s(context.qps)
    front = np.zeros((0, 1 + exact.shape[1]))
    for lo in range(0, order.size, chunk):
        rows = order[lo : lo + chunk]
        optimistic = np.column_stack([bound[rows], exact[rows]])
        rows = rows[q.screen(optimistic, front)]
        if rows.size == 0:
            continue
        lat = q.simulate_batch(arrivals, service_s[rows], servers[rows])
        pct = {50: 0, 95: 1, 99: 2}[context.percentile]
        latency[rows] = q.tail_latency_batch(lat, warmup=context.warmup)[:, pct]
        simulated[rows] = True
        points = np.vstack([front, np.column_stack([latency[rows], exact[rows]])])
        front = points[pareto_mask(points, ["minimize"] * points.shape[1])]
    return latency, simulated


# --- service spread -----------------------------------------------------------------------------


def _pool_spreads(sk: Skeleton) -> list[dict[str, Any]]:
    """Per server pool, what its model knows of deployed service beyond the mean (empty where
    nothing): ``shape``, the per-query service's quantiles over its mean (``None``: constant);
    ``cold_s``, ``cold_tau_s``: ``cold_s`` x exp(-rate x ``cold_tau_s``) more service per
    query where each engine receives ``rate`` queries per second (a lightly loaded engine runs
    slower); ``handoff_s``: more per query where the pool hands its top-k on to another pool;
    ``shared_s``: more per query where the pool has more than one server (engines sharing
    its queue, side by side); ``ingress_s`` (the first pool's): the delay from a query's
    arrival to its reaching the first pool, added to its latency;
    ``frontend``: the frontend's CPU (``frontend_cores`` + ``frontend_cores_per_qps`` x qps),
    which stretches the service where the engines take every core of the host. Known for the
    calibrated host model after ``plan run --calibrate``
    (:func:`codesign.cost_models.calibration.fit_stage_overhead`)."""
    out: list[dict[str, Any]] = []
    for grp in sk.groups:
        if all(sk.cost_models[i] == "calibrated" for i in grp):
            out.append(_calibrated_spread(_cost_source("calibrated")))
        else:
            out.append({})
    return out


@lru_cache(maxsize=8)
def _calibrated_spread(source: tuple) -> dict[str, Any]:
    """The calibration's fitted service terms (``source``: its file state, a cache key)."""
    from codesign.cost_models.calibration import CalibrationError, load_default

    try:
        fit = load_default().stage_overhead
    except CalibrationError:
        return {}
    quantiles = fit.get("service_quantiles")
    return {
        "shape": np.asarray(quantiles, dtype=np.float64) if quantiles else None,
        "cold_s": float(fit.get("cold_s", 0.0)),
        "cold_tau_s": float(fit.get("cold_tau_s", 0.0)),
        "handoff_s": float(fit.get("handoff_s", 0.0)),
        "shared_s": float(fit.get("shared_s", 0.0)),
        "ingress_s": float(fit.get("ingress_s", 0.0)),
        "frontend": {
            k: float(fit.get(k, 0.0)) for k in ("frontend_cores", "frontend_cores_per_qps")
        },
    }


def _frontend_stretch(g: _Group, frontend: dict, qps: float) -> np.ndarray:
    """Per design of ``g``: the factor by which the frontend's CPU at ``qps`` stretches the
    measured host's engines (:func:`codesign.cost_models.calibration.frontend_inflation`)
    where they take every core of its chip, 1 elsewhere."""
    from codesign.cost_models.calibration import frontend_inflation
    from codesign.cost_models.select import MEASURED_TARGETS

    sk = g.arrays.skeleton
    used = np.zeros(g.arrays.n)
    for i, target in enumerate(sk.targets):
        if target in MEASURED_TARGETS:
            used += g.arrays.engines[:, i] * np.asarray(g.placement.points[i]["cores"])
    out = np.ones(g.arrays.n)
    for target in {t for t in sk.targets if t in MEASURED_TARGETS}:
        cores = np.broadcast_to(np.asarray(g.placement.chips[target]["cores"]), (g.arrays.n,))
        for r in np.flatnonzero(used >= cores):
            out[r] = frontend_inflation(frontend, qps, cores[r])
    return out


def _spread_draws(spread: np.ndarray, context: Context, pool: int) -> np.ndarray:
    """Each query's service multiplier in ``pool``: the shape's inverse CDF at common random
    numbers (the same for every design at this load seed), rescaled to mean 1 so that the
    pool's mean service is the model's."""
    u = _uniforms(context.queries, context.seed, pool)
    from codesign.cost_models.calibration import spread_probabilities

    draws = np.interp(u, spread_probabilities(spread.size), spread)
    return draws / draws.mean()


@lru_cache(maxsize=32)
def _uniforms(queries: int, seed: int, pool: int) -> np.ndarray:
    return np.random.default_rng([seed, 0x5E7, pool]).random(queries)


# --- the load -----------------------------------------------------------------------------------


def load_for(context: Context, first_items: int):
    """The load's arrival stream and stage-1 query sizes (common random numbers)."""
    key = (context.queries, context.seed, context.arrival, context.query_size)
    return _load(key, first_items)


@lru_cache(maxsize=64)
def _load(context_key: tuple, first_items: int):
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
    """(N, queries, pools) service seconds from (N, pools, grid) values, interpolated between
    grid sizes (one query size stream for all designs)."""
    if len(grid) == 1:
        return np.broadcast_to(
            values[:, None, :, 0], (values.shape[0], sizes.size, values.shape[1])
        ).copy()
    j = np.clip(np.searchsorted(grid, sizes, side="right") - 1, 0, len(grid) - 2)
    lo, hi = grid[j], grid[j + 1]
    w = np.clip((sizes - lo) / (hi - lo), 0.0, 1.0)
    a = values[:, :, j]
    b = values[:, :, j + 1]
    return np.transpose(a + (b - a) * w, (0, 2, 1))


# --- quality ------------------------------------------------------------------------------------


def funnel_quality(pipeline: Pipeline, spec: QualitySpec) -> tuple[float, bool]:
    """(quality, estimate) of a design's funnel from the spec's source; ``estimate``: a quality
    table interpolated it. Raises :class:`NoQuality` where the table cannot answer."""
    stages = [(st.model, st.items, st.keep) for st in pipeline.stages]
    if spec.source == "none":
        return math.nan, False
    if spec.source == "table":
        from codesign.quality.errors import QualityTableError
        from codesign.quality.tables import cached_table, funnel_table_quality

        cached_table(spec.table)  # a missing or malformed table fails the run, not the design
        try:
            row = funnel_table_quality(stages, spec.metric, spec.table)
        except QualityTableError as exc:
            raise NoQuality(str(exc)) from None
        return row.value, row.estimate
    from codesign.quality.api import funnel_quality as replay
    from codesign.quality.datasets import DataOptions

    options = DataOptions(
        samples=spec.samples, val_samples=spec.val_samples, seed=spec.seed, max_rows=spec.max_rows
    )
    return float(replay(stages, spec.metric, dataset=spec.dataset, options=options)), False


# --- the evaluator ------------------------------------------------------------------------------


def evaluate(design: Pipeline, context: Context) -> Metrics:
    """Cost, load, and quality of one design (a thin wrapper over :func:`evaluate_batch`).
    Raises :class:`Unbuildable` when the design does not fit its chips, :class:`NoQuality`
    when the quality table cannot answer its funnel."""
    result = evaluate_batch([design], context)[0]
    if isinstance(result, Infeasible):
        raise result
    return result


@dataclass
class _Group:
    rows: list[int]
    arrays: DesignArrays
    placement: Placement
    priced: Priced | None = None


def evaluate_batch(designs: Sequence[Pipeline], context: Context) -> list[Metrics | Infeasible]:
    """Metrics of every design (or why it is :class:`Infeasible`: :class:`Unbuildable`,
    :class:`NoQuality`), priced together: designs are grouped by skeleton, each group placed
    and priced as arrays, then every feasible design is simulated at the context's load in one
    batch."""
    from codesign.cost_models import queueing as q

    out: list[Metrics | Infeasible | None] = [None] * len(designs)
    # with varying query sizes the size grid follows the stage-1 pool: one group per pool
    by_key: dict[tuple[Skeleton, int], list[int]] = {}
    for d, design in enumerate(designs):
        pool = design.stages[0].items if context.query_size else 0
        by_key.setdefault((skeleton_of(design), pool), []).append(d)
    groups: list[_Group] = []
    for (skeleton, _), rows in by_key.items():
        arrays = stack([designs[r] for r in rows], skeleton)
        placement = place_arrays(arrays)
        for local in placement.overflow:
            out[rows[local]] = Unbuildable(placement.reason(local))
        groups.append(_Group(rows, arrays, placement))
    quality = _qualities(designs, [r for g in groups for r in g.rows if out[r] is None], context)
    for d, answer in quality.items():
        if isinstance(answer, NoQuality):
            out[d] = answer
    live = []
    for g in groups:
        keep = np.flatnonzero([out[r] is None for r in g.rows])
        if keep.size == 0:
            continue
        if keep.size < g.arrays.n:
            g.rows = [g.rows[k] for k in keep]
            g.arrays = _subset(g.arrays, keep)
            g.placement = _subset_placement(g.placement, keep)
        live.append(g)
    if not live:
        return out  # type: ignore[return-value]
    stream = load_for(context, 1)[0]
    spreads = [_pool_spreads(g.arrays.skeleton) for g in live]
    constant = not context.query_size and not any(
        sp.get("shape") is not None for pools in spreads for sp in pools
    )
    width = max(len(g.arrays.skeleton.groups) for g in live)
    total = sum(g.arrays.n for g in live)
    shape = (total, width) if constant else (total, context.queries, width)
    service = np.zeros(shape)
    server = np.full((total, width), context.queries, dtype=np.int64)  # padding: never waits
    unloaded = np.zeros((total, width))
    extra = np.zeros((total, width))  # per-query service terms of the deployed host
    ingress = np.zeros(total)  # the deployed frontend's delay before the first pool
    start = 0
    for gi, g in enumerate(live):
        n, pools = g.arrays.n, len(g.arrays.skeleton.groups)
        sizes = load_for(context, int(g.arrays.items[0, 0]))[1]
        grid = size_grid(sizes) if not constant else np.zeros(0, dtype=np.int64)
        g.priced = price(g.arrays, g.placement, grid)
        rows = slice(start, start + n)
        if constant:
            service[rows, :pools] = g.priced.service_s[:, :, -1]
        elif not context.query_size:
            service[rows, :, :pools] = g.priced.service_s[:, None, :, -1]
        else:
            service[rows, :, :pools] = service_per_query(g.priced.service_s[:, :, :-1], grid, sizes)
        if spreads[gi] and spreads[gi][0]:
            ingress[rows] = spreads[gi][0]["ingress_s"]
        for j, sp in enumerate(spreads[gi]):
            if not sp:
                continue
            # each engine of the pool receives qps / engines queries per second
            rate = context.qps / g.priced.servers[:, j]
            extra[rows, j] = sp["cold_s"] * np.exp(-rate * sp["cold_tau_s"])
            if j + 1 < pools:
                extra[rows, j] += sp["handoff_s"]
            extra[rows, j] += sp["shared_s"] * (g.priced.servers[:, j] > 1)
            stretch = np.ones(n)
            if any(sp["frontend"].values()):
                stretch = _frontend_stretch(g, sp["frontend"], context.qps)
            if constant:
                service[rows, j] = (service[rows, j] + extra[rows, j]) * stretch
            else:
                service[rows, :, j] = (service[rows, :, j] + extra[rows, j][:, None]) * stretch[
                    :, None
                ]
            if sp["shape"] is not None:
                service[rows, :, j] *= _spread_draws(sp["shape"], context, j)[None, :]
        server[rows, :pools] = g.priced.servers
        unloaded[rows, :pools] = g.priced.service_s[:, :, -1]
        start += n
    arrivals = stream.arrivals_s(context.qps)
    latency = q.simulate_batch(arrivals, service, server) + ingress[:, None]
    tails = q.tail_latency_batch(latency, warmup=context.warmup)
    per_query = service if not constant else service[:, None, :]
    mean_service = per_query.mean(axis=1)
    limit = q.stability_limit_batch_qps(mean_service, server)
    max_qps = np.full(total, math.nan)
    if context.max_qps and context.sla_s is not None:
        max_qps = q.max_qps_batch(
            stream,
            service,
            server,
            sla_s=context.sla_s - ingress,
            percentile=context.percentile,
            warmup=context.warmup,
        )
    w = context.warmup
    span = (arrivals[w:][None, :] + latency[:, w:]).max(axis=1) - arrivals[w]
    busy = per_query[:, w:, :].sum(axis=1) if not constant else service * (context.queries - w)
    start = 0
    for g in live:
        sk = g.arrays.skeleton
        pools = len(sk.groups)
        names = ["+".join(sk.names[i] for i in grp) for grp in sk.groups]
        for local, d in enumerate(g.rows):
            i = start + local
            c = server[i, :pools].astype(np.float64)
            util = busy[i, :pools] / (c * span[i]) if span[i] > 0 else np.full(pools, math.nan)
            value, estimate = quality[d]  # type: ignore[misc]
            out[d] = Metrics(
                quality=value,
                quality_estimate=estimate,
                p50_latency_s=float(tails[i, 0]),
                p95_latency_s=float(tails[i, 1]),
                p99_latency_s=float(tails[i, 2]),
                area_mm2=float(g.placement.area_mm2[local]),
                energy_j=float(g.priced.energy_j[local]),
                power_w=float(g.placement.power_w[local]),
                # at this load's cold term (the engines' speed at the priced load)
                unloaded_latency_s=float(
                    ingress[i] + unloaded[i, :pools].sum() + extra[i, :pools].sum()
                ),
                stability_limit_qps=float(limit[i]),
                max_utilization=float(np.max(util)),
                max_qps=float(max_qps[i]),
                pools=tuple(
                    PoolMetrics(
                        name=names[j],
                        servers=int(c[j]),
                        service_s_full_query=float(unloaded[i, j]),
                        mean_service_s=float(mean_service[i, j]),
                        utilization=float(util[j]),
                    )
                    for j in range(pools)
                ),
            )
        start += g.arrays.n
    return out  # type: ignore[return-value]


def _qualities(
    designs: Sequence[Pipeline], rows: list[int], context: Context
) -> dict[int, tuple[float, bool] | NoQuality]:
    """(quality, estimate) of each design in ``rows``, or why the table cannot answer it; one
    lookup per distinct funnel."""
    by_funnel: dict[tuple, tuple[float, bool] | NoQuality] = {}
    out: dict[int, tuple[float, bool] | NoQuality] = {}
    for d in rows:
        funnel = tuple((st.model, st.items, st.keep) for st in designs[d].stages)
        if funnel not in by_funnel:
            try:
                by_funnel[funnel] = funnel_quality(designs[d], context.quality)
            except NoQuality as exc:
                by_funnel[funnel] = exc
        out[d] = by_funnel[funnel]
    return out


def _subset(d: DesignArrays, rows: np.ndarray) -> DesignArrays:
    return DesignArrays(
        d.skeleton,
        d.items[rows],
        d.keep[rows],
        d.batch[rows],
        d.engines[rows],
        tuple(_select(k, rows) for k in d.knobs),
        {t: _select(k, rows) for t, k in d.chips.items()},
    )


def _subset_placement(p: Placement, rows: np.ndarray) -> Placement:
    return Placement(
        points=[_select(x, rows) for x in p.points],
        chips={t: _select(c, rows) for t, c in p.chips.items()},
        buildable=p.buildable[rows],
        area_mm2=p.area_mm2[rows],
        power_w=p.power_w[rows],
    )
