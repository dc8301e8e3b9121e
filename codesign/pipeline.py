"""Multi-stage ranking pipelines (RecPipe): specs, validation, per-stage service times, and
evaluation under load.

A pipeline is an ordered list of stages. Each stage ranks ``items`` candidates with a model and
keeps the top ``keep`` for the next stage. It runs on a target (with knob overrides) on
``engines`` identical servers, each processing one query at a time in inference batches of
``batch`` items.

Service time of a query at a stage:
- ``ceil(items / batch)`` back-to-back batches costed by the analytical model at the stage's
  design point.
- On CPU and GPU stages, plus RecPipe's measured host top-k sort. Accelerators cost their own
  top-k through the graph.
- Consecutive accelerator stages on the same target that set ``sub_batch`` are *fused*. Their
  candidates stream through in sub-batches, so later stages overlap earlier ones (RPAccel's
  sub-batch pipelining, with a streaming filter between stages). Latency = fill + (n - 1) x the
  slowest stage's sub-batch time.

When query sizes vary, each stage's latency is costed on a grid of sizes and interpolated.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from codesign.cost_models.select import MEASURED_TARGETS, stage_cost_model  # noqa: F401
from codesign.errors import CodesignError, SpecError
from codesign.ir.frontends.checker import Checker, join
from codesign.ir.frontends.spec import read_yaml

PIPELINE_VERSION = 1
STAGE_KEYS = ("model", "items", "keep", "target", "knobs", "engines", "batch", "name")
LOAD_KEYS = ("queries", "warmup", "arrival", "query_size", "sla_ms", "percentile", "seed")


@dataclass(frozen=True)
class Stage:
    model: str
    items: int
    keep: int
    target: str
    knobs: dict[str, Any] = field(default_factory=dict)
    engines: int = 1
    batch: int = 0  # 0: all items in one inference batch
    name: str = ""
    cost_model: str = "analytical"  # the pipeline's; see stage_cost

    @property
    def batch_items(self) -> int:
        return self.batch or self.items


@dataclass(frozen=True)
class LoadSettings:
    queries: int = 2000
    warmup: int = 256
    arrival: str = "exponential"
    query_size: dict[str, Any] | None = None
    sla_ms: float | None = None
    percentile: int = 95
    seed: int = 0


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: tuple[Stage, ...]
    load: LoadSettings = LoadSettings()
    description: str = ""
    source: str = ""
    path: str | None = None


# --- loading and validation ---------------------------------------------------------------------


def load_pipeline(source: str | Path | Mapping[str, Any]) -> Pipeline:
    """A validated pipeline from a YAML file or a dict; every problem reported at once."""
    if isinstance(source, Mapping):
        return parse_pipeline(source, origin="pipeline")
    path = Path(source)
    data = read_yaml(path, what="pipeline")
    return parse_pipeline(data, origin=str(path), base_dir=path.parent)


def parse_pipeline(
    data: Any, *, origin: str = "pipeline", base_dir: Path | None = None
) -> Pipeline:
    chk = Checker(source=origin)
    top = chk.mapping(data, "", what="a mapping (version, kind, name, stages, load)")
    if top is None:
        raise SpecError(chk.problems, source=origin)
    if type(top.get("version")) is not int or top.get("version") != PIPELINE_VERSION:
        chk.add(
            "version",
            f"must be {PIPELINE_VERSION}, got {top.get('version')!r}",
            f"set 'version: {PIPELINE_VERSION}'",
        )
    if top.get("kind") != "pipeline":
        chk.add("kind", f"must be 'pipeline', got {top.get('kind')!r}", "set 'kind: pipeline'")
    chk.no_extra(
        top,
        ("version", "kind", "name", "description", "source", "cost_model", "stages", "load"),
        "",
    )
    from codesign.cost_models.select import COST_MODELS

    cost_model = chk.choice(top, "cost_model", "", COST_MODELS, default="analytical")
    name = chk.text(top, "name", "", default="pipeline")
    description = chk.text(top, "description", "", default="")
    source = chk.text(top, "source", "", default="")
    raw_stages = top.get("stages")
    stages: list[Stage] = []
    if not isinstance(raw_stages, list) or not raw_stages:
        chk.add(
            "stages",
            f"must be a non-empty list of stages, got {raw_stages!r}",
            "list the stages, each with model, items, keep, target",
        )
    else:
        for i, raw in enumerate(raw_stages):
            stage = _stage(chk, raw, f"stages[{i}]", base_dir)
            if stage is not None:
                stages.append(stage)
    load = _load_settings(chk, top.get("load"), stages)
    chk.raise_if_any()
    _check_funnel(chk, stages)
    chk.raise_if_any()
    _check_resources(chk, stages)
    chk.raise_if_any()
    if cost_model and cost_model != "analytical":
        stages = [dataclasses.replace(st, cost_model=cost_model) for st in stages]
    return Pipeline(
        name or "pipeline",
        tuple(stages),
        load,
        description or "",
        source or "",
        path=origin if base_dir is not None else None,
    )


def _stage(chk: Checker, raw: Any, path: str, base_dir: Path | None) -> Stage | None:
    data = chk.mapping(raw, path, what="a stage mapping (model, items, keep, target, ...)")
    if data is None:
        return None
    n = len(chk.problems)
    chk.no_extra(data, STAGE_KEYS, path)
    model = chk.text(data, "model", path)
    if model and base_dir is not None and model.endswith((".yaml", ".yml")):
        model = str((base_dir / model).resolve())
    items = chk.integer(
        data, "items", path, maximum=2**24, fix="set how many items this stage ranks"
    )
    keep = chk.integer(data, "keep", path, maximum=2**24, fix="set how many items it keeps (top-k)")
    target = chk.text(data, "target", path)
    if target and base_dir is not None and target.endswith((".yaml", ".yml")):
        target = str((base_dir / target).resolve())
    knobs = data.get("knobs") or {}
    if not isinstance(knobs, Mapping):
        chk.add(
            join(path, "knobs"),
            f"must be a mapping of knob: value, got {knobs!r}",
            "write e.g. knobs: {cores: 16}",
        )
        knobs = {}
    engines = chk.integer(
        data,
        "engines",
        path,
        maximum=4096,
        default=1,
        fix="set the number of servers for this stage",
    )
    batch = chk.integer(
        data,
        "batch",
        path,
        minimum=0,
        maximum=2**24,
        default=0,
        fix="items per inference batch (0: the whole stage input)",
    )
    label = chk.text(data, "name", path, default="")
    if items and keep and keep > items:
        chk.add(
            join(path, "keep"), f"keeps {keep} items but ranks only {items}", f"set keep <= {items}"
        )
    if items and batch and batch > items:
        chk.add(
            join(path, "batch"),
            f"is {batch}, larger than the {items} items ranked",
            f"set batch <= {items} (or 0 for one batch)",
        )
    if len(chk.problems) > n:
        return None
    return Stage(
        model, items, keep, target, dict(knobs), engines, batch, label or f"stage{path[7:-1]}"
    )


def _load_settings(chk: Checker, raw: Any, stages: list[Stage]) -> LoadSettings:
    if raw is None:
        return LoadSettings()
    data = chk.mapping(raw, "load", what="a mapping of load settings")
    if data is None:
        return LoadSettings()
    chk.no_extra(data, LOAD_KEYS, "load")
    queries = chk.integer(data, "queries", "load", maximum=10**7, default=2000)
    warmup = chk.integer(data, "warmup", "load", minimum=0, maximum=10**7, default=256)
    if queries and warmup is not None and warmup >= queries:
        chk.add(
            "load.warmup",
            f"is {warmup}, not below queries ({queries})",
            "exclude fewer warm-up queries than you simulate",
        )
    arrival = chk.choice(data, "arrival", "load", ("exponential", "recpipe"), default="exponential")
    sla = data.get("sla_ms")
    if sla is not None and (isinstance(sla, bool) or not isinstance(sla, int | float) or sla <= 0):
        chk.add(
            "load.sla_ms",
            f"must be a positive number of milliseconds, got {sla!r}",
            "e.g. sla_ms: 25",
        )
        sla = None
    percentile = chk.choice(data, "percentile", "load", (50, 95, 99), default=95)
    seed = chk.integer(data, "seed", "load", minimum=0, maximum=2**32 - 1, default=0)
    size = data.get("query_size")
    if size is not None:
        from codesign.cost_models.queueing import LoadSpecError, SizeDistribution

        try:
            SizeDistribution.from_dict(size)
        except LoadSpecError as exc:
            chk.add("load.query_size", str(exc), "see docs/pipelines.md for the distributions")
        if stages and isinstance(size, Mapping) and size.get("max_items", 0) > stages[0].items:
            chk.add(
                "load.query_size.max_items",
                f"{size['max_items']} exceeds stage 1's items ({stages[0].items})",
                "stage 1's items is the largest query the pipeline is provisioned for",
            )
    return LoadSettings(
        queries or 2000,
        warmup if warmup is not None else 256,
        arrival or "exponential",
        size,
        float(sla) if sla else None,
        int(percentile or 95),
        seed or 0,
    )


def _check_funnel(chk: Checker, stages: list[Stage]) -> None:
    for i in range(len(stages) - 1):
        if stages[i].keep != stages[i + 1].items:
            chk.add(
                f"stages[{i + 1}].items",
                f"is {stages[i + 1].items} but stage {i} keeps {stages[i].keep}",
                f"set stages[{i + 1}].items to {stages[i].keep} (the funnel must connect)",
            )


def _check_resources(chk: Checker, stages: list[Stage]) -> None:
    """Models and targets exist, knobs are valid, and stages fit their targets' capacity."""
    from codesign.ir.frontends.zoo import resolve
    from codesign.plugins import load_target

    cores_used: dict[str, int] = {}
    pes_used: dict[str, int] = {}
    sram_used: dict[str, int] = {}
    for i, st in enumerate(stages):
        path = f"stages[{i}]"
        try:
            spec = resolve(st.model)
        except CodesignError as exc:
            chk.add(join(path, "model"), str(exc), "use a zoo name or a spec .yaml path")
            continue
        try:
            target = load_target(st.target)
        except CodesignError as exc:
            chk.add(join(path, "target"), str(exc), "run 'codesign targets list'")
            continue
        space = target.design_space()
        try:
            point = space.resolve(st.knobs)
        except CodesignError as exc:
            chk.add(join(path, "knobs"), str(exc), "run 'codesign targets show NAME'")
            continue
        if st.keep < st.items and (scores := _score_width(spec)) != 1:
            chk.add(
                join(path, "keep"),
                f"needs a model with one score per item; "
                f"{spec.name} outputs {scores} values per item",
                "rank with a single-score model, or keep every item",
            )
        kind = getattr(target, "kind", "")
        defaults = space.defaults()
        if kind == "cpu":
            cores_used[st.target] = cores_used.get(st.target, 0) + st.engines * point["cores"]
            if cores_used[st.target] > defaults["cores"]:
                chk.add(
                    join(path, "engines"),
                    f"stages on {st.target} use {cores_used[st.target]} cores "
                    f"(engines x cores) but it has {defaults['cores']}",
                    "use fewer engines or fewer cores per engine",
                )
        elif kind == "accel":
            pes = point["rows"] * point["cols"] * point["arrays"] * st.engines
            pes_used[st.target] = pes_used.get(st.target, 0) + pes
            budget = defaults["rows"] * defaults["cols"] * defaults["arrays"]
            if pes_used[st.target] > budget:
                chk.add(
                    join(path, "engines"),
                    f"stages on {st.target} need {pes_used[st.target]} PEs "
                    f"(engines x arrays x rows x cols) but the chip has {budget}",
                    "partition the array: fewer/smaller arrays or engines per stage",
                )
            sram = (point["static_cache_bytes"] + point["dynamic_cache_bytes"]) * st.engines
            sram_used[st.target] = sram_used.get(st.target, 0) + sram
            sram_budget = defaults["static_cache_bytes"] + defaults["dynamic_cache_bytes"]
            if sram_used[st.target] > sram_budget:
                chk.add(
                    join(path, "knobs"),
                    f"stages on {st.target} use {sram_used[st.target]} B of embedding "
                    f"cache but the chip has {sram_budget} B",
                    "split static_cache_bytes/dynamic_cache_bytes between the stages",
                )


_SCORE_WIDTH: dict[str, int] = {}


def _score_width(spec: Any) -> int:
    """Values per item the model outputs (cached by spec hash)."""
    key = spec.spec_hash()
    if key not in _SCORE_WIDTH:
        from codesign.ir.frontends.lower import lower

        graph = lower(spec, batch=1)
        _SCORE_WIDTH[key] = sum(math.prod(n.shape) for n in graph.inputs_of(graph.output))
    return _SCORE_WIDTH[key]


# --- service times ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageCost:
    latency_s: float
    energy_j: float
    area_mm2: float


@lru_cache(maxsize=8192)
def stage_cost(
    model: str,
    target: str,
    knobs_key: tuple,
    batch: int,
    keep: int | None,
    cost_model: str = "analytical",
) -> StageCost:
    """Cost of one inference batch (cached: searches re-visit the same stages): the analytical
    model, or on ``cpu/host`` the calibrated or TVM-measured one (measured kernels are kept in
    the measurement database, so a batch size is compiled and timed once per machine)."""
    from codesign.cost_models.select import estimate_with
    from codesign.ir.frontends.lower import lower
    from codesign.plugins import load_target

    graph = lower(model, batch=batch, keep=keep)
    used = stage_cost_model(target, cost_model)
    report = estimate_with(used, graph, load_target(target), dict(knobs_key), None)
    return StageCost(report.latency_s, report.energy_j, report.hardware.area_mm2 or 0.0)


def _latency_s(
    model: str, target: str, knobs_key: tuple, batch: int, keep: int | None, cost_model: str
) -> float:
    return stage_cost(model, target, knobs_key, batch, keep, cost_model).latency_s


def _knobs_key(knobs: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in knobs.items()))


def target_kind(stage: Stage) -> str:
    from codesign.plugins import load_target

    return getattr(load_target(stage.target), "kind", "")


def stage_service_s(stage: Stage, items: int) -> dict[str, float]:
    """Service time of one query of ``items`` candidates at ``stage`` (and its parts)."""
    from codesign.targets.accel import host_sort_s

    items = max(1, min(items, stage.items))
    keep = max(1, round(stage.keep * items / stage.items))
    batch = min(stage.batch_items, items)
    full, rest = divmod(items, batch)
    knobs = _knobs_key(stage.knobs)
    accel = target_kind(stage) == "accel"
    # the top-k runs in the graph on accelerators (on-chip filter units or host sort per knob)
    k_in_graph = keep if accel and keep < items else None
    model_s = full * _latency_s(
        stage.model,
        stage.target,
        knobs,
        batch,
        min(k_in_graph, batch) if k_in_graph else None,
        stage.cost_model,
    )
    if rest:
        model_s += _latency_s(
            stage.model,
            stage.target,
            knobs,
            rest,
            min(k_in_graph, rest) if k_in_graph else None,
            stage.cost_model,
        )
    sort_s = host_sort_s(items) if (not accel and keep < items) else 0.0
    return {"model_s": model_s, "sort_s": sort_s, "service_s": model_s + sort_s}


def _fused_groups(stages: tuple[Stage, ...]) -> list[list[int]]:
    """Runs of consecutive accelerator stages on one target that all set sub_batch > 0."""
    groups: list[list[int]] = []
    for i, st in enumerate(stages):
        prev = stages[groups[-1][-1]] if groups else None
        if prev is not None and _streams(prev) and _streams(st) and prev.target == st.target:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _streams(st: Stage) -> bool:
    """An accelerator stage that pipelines sub-batches (``knobs.sub_batch`` > 0)."""
    return target_kind(st) == "accel" and int(st.knobs.get("sub_batch", 0) or 0) > 0


def _fused_service_s(stages: list[Stage], items: int) -> float:
    """Sub-batch pipelining across stages: sub-batches of stage 1's input stream through."""
    first = stages[0]
    sub = int(first.knobs["sub_batch"])
    count = math.ceil(items / sub)
    per_sub = []
    for st in stages:
        share = max(1, round(sub * st.items / first.items))  # this stage's part of a sub-batch
        knobs = {k: v for k, v in st.knobs.items() if k != "sub_batch"}
        keep = max(1, round(share * st.keep / st.items))
        per_sub.append(
            _latency_s(
                st.model,
                st.target,
                _knobs_key(knobs),
                share,
                keep if keep < share else None,
                st.cost_model,
            )
        )
    return sum(per_sub) + (count - 1) * max(per_sub)


@dataclass(frozen=True)
class ServiceTable:
    """Per-query service times of each server pool (fused groups count as one pool)."""

    service_s: np.ndarray  # (queries, pools)
    servers: tuple[int, ...]
    pool_names: tuple[str, ...]
    unloaded_s: tuple[float, ...]  # service time of a full-size query per pool


def service_table(pipeline: Pipeline, sizes: np.ndarray) -> ServiceTable:
    """Service times for queries whose stage-1 sizes are ``sizes``."""
    groups = _fused_groups(pipeline.stages)
    first_items = pipeline.stages[0].items
    columns, servers, names, unloaded = [], [], [], []
    grid = _size_grid(sizes)
    for group in groups:
        stages = [pipeline.stages[i] for i in group]

        def service(n: int, stages: list[Stage] = stages) -> float:
            if len(stages) > 1:
                return _fused_service_s(stages, n)
            st = stages[0]
            scaled = max(1, round(st.items * n / first_items))
            return stage_service_s(st, scaled)["service_s"]

        values = np.array([service(int(n)) for n in grid])
        columns.append(
            np.interp(sizes, grid, values) if len(grid) > 1 else np.full(sizes.shape, values[0])
        )
        servers.append(min(st.engines for st in stages))
        names.append("+".join(st.name for st in stages))
        unloaded.append(service(first_items))
    return ServiceTable(np.column_stack(columns), tuple(servers), tuple(names), tuple(unloaded))


def _size_grid(sizes: np.ndarray) -> np.ndarray:
    lo, hi = int(sizes.min()), int(sizes.max())
    if lo == hi:
        return np.array([lo])
    return np.unique(np.round(np.geomspace(lo, hi, 12)).astype(int))


# --- evaluation --------------------------------------------------------------------------------


def query_size_samples(pipeline: Pipeline, queries: int, seed: int) -> np.ndarray:
    from codesign.cost_models.queueing import SizeDistribution, query_sizes

    if pipeline.load.query_size is None:
        return np.full(queries, pipeline.stages[0].items, dtype=np.int64)
    dist = SizeDistribution.from_dict(pipeline.load.query_size)
    return query_sizes(queries, dist, seed=seed)


def simulate(
    pipeline: Pipeline,
    qps: float,
    *,
    seed: int | None = None,
    queries: int | None = None,
    table: ServiceTable | None = None,
):
    """One load run: returns (LoadReport, ServiceTable)."""
    from codesign.cost_models.queueing import poisson_arrivals, simulate_pipeline, summarize

    load = pipeline.load
    seed = load.seed if seed is None else seed
    queries = queries or load.queries
    if table is None:
        table = service_table(pipeline, query_size_samples(pipeline, queries, seed))
    arrivals = poisson_arrivals(queries, qps=qps, seed=seed, convention=load.arrival)
    run = simulate_pipeline(arrivals, table.service_s, table.servers)
    return summarize(run, warmup=min(load.warmup, queries // 2)), table


def evaluate(
    pipeline: Pipeline, qps: float, *, sla_ms: float | None = None, seed: int | None = None
) -> dict[str, Any]:
    """Per-stage service times, latency percentiles and utilisation at ``qps``, and the
    highest QPS whose p95 (or the configured percentile) meets the SLA."""
    from codesign.cost_models.queueing import max_qps_under_sla, stability_limit_qps

    if not (isinstance(qps, int | float) and math.isfinite(qps) and qps > 0):
        raise CodesignError(f"--qps must be a positive number, got {qps!r}")
    seed = pipeline.load.seed if seed is None else seed
    report, table = simulate(pipeline, qps, seed=seed)
    mean_service = table.service_s.mean(axis=0)
    limit = stability_limit_qps(mean_service, table.servers)
    stages = []
    for j, name in enumerate(table.pool_names):
        stages.append(
            {
                "name": name,
                "servers": table.servers[j],
                "service_s_full_query": table.unloaded_s[j],
                "mean_service_s": float(mean_service[j]),
                "utilization": float(report.utilization[j]),
                "mean_wait_s": float(report.mean_wait_s[j]),
                "p95_wait_s": float(report.p95_wait_s[j]),
            }
        )
    out: dict[str, Any] = {
        "pipeline": pipeline.name,
        "qps": qps,
        "queries": pipeline.load.queries,
        "seed": seed,
        "arrival": pipeline.load.arrival,
        "unloaded_latency_s": float(sum(table.unloaded_s)),
        "stability_limit_qps": float(limit),
        "stages": stages,
        **{k: v for k, v in report.as_dict().items() if k.endswith("_latency_s")},
        "throughput_qps": report.throughput_qps,
    }
    sla = sla_ms if sla_ms is not None else pipeline.load.sla_ms
    if sla is not None:
        pct = pipeline.load.percentile
        sizes = query_size_samples(pipeline, pipeline.load.queries, seed)
        table = service_table(pipeline, sizes)

        def run_at(q: float, s: int):
            return simulate(pipeline, q, seed=s, table=table)[0]

        result = max_qps_under_sla(
            run_at,
            sla_s=sla / 1e3,
            percentile=pct,
            qps_low=max(limit * 1e-3, 1e-3),
            qps_high=0.999 * limit,
            seed=seed,
        )
        out["sla"] = {
            "sla_s": sla / 1e3,
            "percentile": pct,
            "max_qps": result.qps,
            "feasible": result.feasible,
            "capped": result.capped,
            f"p{pct}_latency_s_at_max_qps": result.p_latency_s,
            "evaluations": len(result.evaluations),
        }
    return out


def with_stage_knobs(pipeline: Pipeline, index: int, **changes: Any) -> Pipeline:
    """A copy with one stage's fields changed (used by searches)."""
    stages = list(pipeline.stages)
    stages[index] = Stage(**{**stages[index].__dict__, **copy.deepcopy(changes)})
    return Pipeline(
        pipeline.name,
        tuple(stages),
        pipeline.load,
        pipeline.description,
        pipeline.source,
        pipeline.path,
    )
