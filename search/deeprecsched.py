"""DeepRecSched baseline (Gupta et al., ISCA 2020; BACKGROUND §2.4): two hill-climbs against a
tail-latency target for one single-stage model, as a reference the co-design search must beat.

Serving model (DeepRecSys):
- Each query of ``n`` candidates is split into ``ceil(n / batch)`` sub-requests, which a pool of
  single-core CPU engines serves FIFO. A query finishes when its last sub-request does
  (fork-join).
- With an accelerator, queries of at least ``threshold`` items go to it whole, on one server.

Climb 1 raises the per-core batch size through ``batch_configs`` while the highest QPS meeting
the SLA improves. Climb 2 then walks the accelerator offload threshold the same way. Each
candidate's capacity comes from :func:`codesign.cost_models.queueing.bisect_max_qps` on the
same seeded arrivals and query sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codesign.cost_models.queueing import (
    LoadReport,
    SizeDistribution,
    bisect_max_qps,
    poisson_arrivals,
    query_sizes,
    simulate_pipeline,
)
from codesign.errors import CodesignError

#: run_DeepRecInfra.sh: normal(256, 32) items per query, at most 1024
DEFAULT_QUERY_SIZE = {"kind": "normal", "mean": 256, "std": 32, "max_items": 1024}
DEFAULT_BATCHES = (32, 64, 128, 256, 512, 1024)  # DeepRecSys batch_configs default
DEFAULT_THRESHOLDS = (96, 128, 192, 256, 384, 512)  # run scripts' accel_configs


@dataclass(frozen=True, kw_only=True)
class DeepRecSchedSettings:
    model: str
    cpu_target: str = "cpu/cascadelake"
    accel_target: str | None = None
    engines: int | None = None  # single-core CPU engines; default: all the target's cores
    sla_ms: float = 25.0  # run_DeepRecSys.sh target_latency
    percentile: int = 95
    batch_configs: tuple[int, ...] = DEFAULT_BATCHES
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    query_size: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_QUERY_SIZE))
    queries: int = 2000
    warmup: int = 200
    seed: int = 0


@dataclass(frozen=True)
class DeepRecSchedResult:
    batch: int
    threshold: int | None
    max_qps: float
    p_latency_s: float
    history: tuple[dict[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "offload_threshold_items": self.threshold,
            "max_qps": self.max_qps,
            "p_latency_s": self.p_latency_s,
            "history": list(self.history),
        }


class _Server:
    """Service times of one model on one target as a function of batch size (cached), priced
    by the evaluator (:func:`codesign.evaluate.batch_latency_s`)."""

    def __init__(self, model: str, target: str, knobs: dict[str, Any]) -> None:
        self._target = target
        self._knobs = knobs
        self._model = model
        self._cache: dict[int, float] = {}

    def _price(self, sizes: list[int]) -> None:
        from codesign.evaluate import batch_latency_s

        new = sorted({int(n) for n in sizes} - set(self._cache))
        if new:
            values = batch_latency_s(self._model, self._target, self._knobs, new)
            self._cache.update(zip(new, (float(v) for v in values), strict=True))

    def latency_s(self, items: int) -> float:
        self._price([items])
        return self._cache[int(items)]

    def batched_s(self, items: np.ndarray) -> np.ndarray:
        grid = np.unique(np.round(np.geomspace(max(1, items.min()), items.max(), 12)).astype(int))
        self._price(list(grid))
        values = np.array([self._cache[int(n)] for n in grid])
        return np.interp(items, grid, values) if len(grid) > 1 else np.full(items.shape, values[0])


def _report(latency: np.ndarray, arrivals: np.ndarray, warmup: int) -> LoadReport:
    order = np.argsort(arrivals, kind="stable")[warmup:]
    lat = latency[order]
    span = float((arrivals[order] + lat).max() - arrivals[order].min()) or math.nan
    p50, p95, p99 = np.percentile(lat, (50, 95, 99))
    return LoadReport(
        queries=int(lat.size),
        warmup=warmup,
        p50_latency_s=float(p50),
        p95_latency_s=float(p95),
        p99_latency_s=float(p99),
        mean_latency_s=float(lat.mean()),
        max_latency_s=float(lat.max()),
        throughput_qps=lat.size / span,
        utilization=(),
        mean_wait_s=(),
        p95_wait_s=(),
    )


def make_server_model(settings: DeepRecSchedSettings) -> Callable[..., LoadReport]:
    """``run(batch, threshold, qps, seed) -> LoadReport`` for the DeepRecSys serving model."""
    from codesign.plugins import load_target

    cpu_space = load_target(settings.cpu_target).design_space()
    engines = settings.engines or cpu_space.defaults()["cores"]
    cpu = _Server(settings.model, settings.cpu_target, {"cores": 1})
    accel = _Server(settings.model, settings.accel_target, {}) if settings.accel_target else None
    dist = SizeDistribution.from_dict(settings.query_size)

    def run(batch: int, threshold: int | None, qps: float, seed: int) -> LoadReport:
        sizes = query_sizes(settings.queries, dist, seed=seed)
        arrivals = poisson_arrivals(settings.queries, qps=qps, seed=seed)
        latency = np.empty(settings.queries)
        to_accel = (sizes >= threshold) if (accel and threshold) else np.zeros(sizes.size, bool)
        cpu_q = np.flatnonzero(~to_accel)
        if cpu_q.size:
            jobs_per = -(-sizes[cpu_q] // batch)
            owner = np.repeat(cpu_q, jobs_per)
            first = np.repeat(np.cumsum(jobs_per) - jobs_per, jobs_per)
            index_in_query = np.arange(owner.size) - first
            job_items = np.minimum(batch, sizes[owner] - index_in_query * batch)
            service = cpu.batched_s(job_items)[:, None]
            run_ = simulate_pipeline(arrivals[owner], service, [engines])
            done = np.zeros(settings.queries)
            np.maximum.at(done, owner, run_.departure_s[:, -1])
            latency[cpu_q] = done[cpu_q] - arrivals[cpu_q]
        acc_q = np.flatnonzero(to_accel)
        if acc_q.size:
            service = accel.batched_s(sizes[acc_q])[:, None]
            run_ = simulate_pipeline(arrivals[acc_q], service, [1])
            latency[acc_q] = run_.latency_s
        return _report(latency, arrivals, min(settings.warmup, settings.queries // 2))

    def limit_qps(batch: int, threshold: int | None) -> float:
        """Stability limit: the most loaded pool's servers over its work per query."""
        sizes = query_sizes(settings.queries, dist, seed=settings.seed)
        to_accel = (sizes >= threshold) if (accel and threshold) else np.zeros(sizes.size, bool)
        limits = []
        cpu_sizes = sizes[~to_accel]
        if cpu_sizes.size:
            full, rest = np.divmod(cpu_sizes, batch)
            work = full * cpu.latency_s(batch) + np.where(
                rest > 0, cpu.batched_s(np.maximum(rest, 1)), 0.0
            )
            limits.append(engines / (work.sum() / sizes.size))
        if to_accel.any():
            limits.append(1.0 / (accel.batched_s(sizes[to_accel]).sum() / sizes.size))
        return min(limits)

    run.engines = engines  # type: ignore[attr-defined]
    run.limit_qps = limit_qps  # type: ignore[attr-defined]
    return run


def deeprecsched(
    settings: DeepRecSchedSettings, progress: Callable[[str], None] | None = None
) -> DeepRecSchedResult:
    """Hill-climb batch size, then offload threshold; returns the best configuration."""
    if settings.sla_ms <= 0:
        raise CodesignError(f"sla_ms must be positive, got {settings.sla_ms}")
    run = make_server_model(settings)
    history: list[dict[str, Any]] = []

    def capacity(batch: int, threshold: int | None) -> tuple[float, float]:
        sla_s = settings.sla_ms / 1e3

        def meets(_rows: np.ndarray, qps: np.ndarray) -> np.ndarray:
            # one arrival stream (the settings' seed) at every load: common random numbers
            return np.array(
                [
                    run(batch, threshold, float(q), settings.seed).latency_percentile_s(
                        settings.percentile
                    )
                    <= sla_s
                    for q in qps
                ],
                dtype=bool,
            )

        qps = float(bisect_max_qps(meets, [run.limit_qps(batch, threshold)])[0])
        p_latency = (
            run(batch, threshold, qps, settings.seed).latency_percentile_s(settings.percentile)
            if qps > 0
            else math.inf
        )
        history.append(
            {
                "batch": batch,
                "offload_threshold_items": threshold,
                "max_qps": qps,
                "feasible": bool(qps > 0),
            }
        )
        if progress:
            progress(f"batch {batch}, threshold {threshold}: {qps:.1f} QPS")
        return qps, p_latency

    best_batch, (best_qps, best_p) = (
        settings.batch_configs[0],
        capacity(settings.batch_configs[0], None),
    )
    for batch in settings.batch_configs[1:]:
        qps, p = capacity(batch, None)
        if qps <= best_qps:
            break  # hill-climb: stop when capacity stops improving
        best_batch, best_qps, best_p = batch, qps, p
    best_threshold = None
    if settings.accel_target:
        for threshold in sorted(settings.thresholds, reverse=True):
            qps, p = capacity(best_batch, threshold)
            if qps <= best_qps:
                if best_threshold is not None:
                    break
                continue
            best_threshold, best_qps, best_p = threshold, qps, p
    return DeepRecSchedResult(best_batch, best_threshold, best_qps, best_p, tuple(history))
