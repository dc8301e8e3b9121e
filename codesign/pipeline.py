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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codesign.design import LoadSettings, Pipeline, Stage
from codesign.errors import CodesignError, SpecError
from codesign.ir.frontends.checker import Checker, join, show
from codesign.ir.frontends.spec import read_yaml

PIPELINE_VERSION = 1
STAGE_KEYS = ("model", "items", "keep", "target", "knobs", "engines", "batch", "name")
LOAD_KEYS = ("queries", "warmup", "arrival", "query_size", "sla_ms", "percentile", "seed")


# --- loading and validation ---------------------------------------------------------------------


def load_pipeline(source: str | Path | Mapping[str, Any]) -> Pipeline:
    """A validated pipeline from a YAML file or a dict; every problem reported at once."""
    if isinstance(source, Mapping):
        return parse_pipeline(source, origin="pipeline")
    path = Path(source)
    if path.suffix.lower() == ".toml":  # a run config: parsed as YAML it reads as a syntax error
        chk = Checker(source=str(path))
        chk.add(
            "",
            "a run config (.toml), not a pipeline spec",
            f"search it with `codesign optimize {path}`; pipeline commands take a pipeline "
            ".yaml (kind: pipeline), e.g. examples/pipelines/",
        )
        chk.raise_if_any()
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
        (
            "version",
            "kind",
            "name",
            "description",
            "source",
            "cost_model",
            "chips",
            "stages",
            "load",
        ),
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
    chips = top.get("chips") or {}
    if not isinstance(chips, Mapping):
        chk.add(
            "chips",
            f"must map target names to knob tables, got {chips!r}",
            "e.g. chips: {accel/rpaccel: {pe_budget: 16384}}",
        )
        chips = {}
    chk.raise_if_any()
    _check_funnel(chk, stages)
    chk.raise_if_any()
    _check_resources(chk, stages, dict(chips))
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
        chips=tuple((str(k), dict(v)) for k, v in sorted(chips.items())),
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
    if sla is not None and (
        isinstance(sla, bool)
        or not isinstance(sla, int | float)
        or not 0 < sla <= 1e9
        or not math.isfinite(sla)
    ):
        chk.add(
            "load.sla_ms",
            f"must be a positive finite number of milliseconds, got {show(sla)}",
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


def _check_resources(chk: Checker, stages: list[Stage], chips: dict[str, Any]) -> None:
    """Models and targets exist, knobs are valid, and the stages fit their chips' capacity
    (what :meth:`~codesign.targets.base.BaseTarget.resources` each engine takes from what
    :meth:`~codesign.targets.base.BaseTarget.capacity` one chip offers)."""
    from codesign.evaluate import Unbuildable, place
    from codesign.ir.frontends.zoo import resolve
    from codesign.plugins import load_target

    for name, knobs in chips.items():
        try:
            target = load_target(name)
        except CodesignError as exc:
            chk.add(join("chips", name), str(exc), "name a target of the stages")
            continue
        if name not in {st.target for st in stages}:
            chk.add(join("chips", name), "no stage runs on this target", "remove it")
        if not isinstance(knobs, Mapping):
            chk.add(
                join("chips", name),
                f"must be a mapping of knob: value, got {knobs!r}",
                "e.g. {pe_budget: 16384}",
            )
            continue
        try:
            target.design_space().resolve(knobs)
        except CodesignError as exc:
            chk.add(join("chips", name), str(exc), "run 'codesign targets show NAME'")
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
        try:
            target.design_space().resolve(st.knobs)
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
    if chk.problems:
        return
    try:
        place(Pipeline("check", tuple(stages), chips=tuple(chips.items())))
    except Unbuildable as exc:
        where, _, message = str(exc).partition(": ")
        text, _, fix = message.rpartition(" (fix: ")
        chk.add(where, text, fix.rstrip(")"))


_SCORE_WIDTH: dict[str, int] = {}


def _score_width(spec: Any) -> int:
    """Values per item the model outputs (cached by spec hash)."""
    key = spec.spec_hash()
    if key not in _SCORE_WIDTH:
        from codesign.ir.frontends.lower import lower

        graph = lower(spec, batch=1)
        _SCORE_WIDTH[key] = sum(math.prod(n.shape) for n in graph.inputs_of(graph.output))
    return _SCORE_WIDTH[key]


# --- service times and load: thin wrappers over codesign.evaluate ----------------------------


@dataclass(frozen=True)
class ServiceTable:
    """Per-query service times of each server pool (fused groups count as one pool)."""

    service_s: np.ndarray  # (queries, pools)
    servers: tuple[int, ...]
    pool_names: tuple[str, ...]
    unloaded_s: tuple[float, ...]  # service time of a full-size query per pool


def service_table(pipeline: Pipeline, sizes: np.ndarray) -> ServiceTable:
    """Service times for queries whose stage-1 sizes are ``sizes`` (the evaluator's)."""
    from codesign import evaluate as ev

    sizes = np.asarray(sizes)
    arrays = ev.stack([pipeline])
    placement = ev.place_arrays(arrays)
    if not placement.buildable[0]:
        raise ev.Unbuildable(placement.reason(0))
    grid = ev.size_grid(sizes)
    priced = ev.price(arrays, placement, grid)
    values = priced.service_s[:, :, :-1]
    return ServiceTable(
        ev.service_per_query(values, grid, sizes)[0],
        tuple(int(c) for c in priced.servers[0]),
        tuple("+".join(pipeline.stages[i].name for i in g) for g in arrays.skeleton.groups),
        tuple(float(v) for v in priced.service_s[0, :, -1]),
    )


def stage_service_s(stage: Stage, items: int) -> dict[str, float]:
    """Service time of one query of ``items`` candidates at ``stage`` (and its parts)."""
    from codesign import evaluate as ev

    arrays = ev.stack([Pipeline("stage", (stage,))])
    placement = ev.place_arrays(arrays)
    model_s, sort_s, _ = ev.stage_terms(arrays, placement, 0, np.array([items]))
    return {
        "model_s": float(model_s[0]),
        "sort_s": float(sort_s[0]),
        "service_s": float(model_s[0] + sort_s[0]),
    }


def simulate(
    pipeline: Pipeline,
    qps: float,
    *,
    seed: int | None = None,
    queries: int | None = None,
    table: ServiceTable | None = None,
):
    """One load run with per-pool detail: returns (LoadReport, ServiceTable)."""
    from codesign import evaluate as ev
    from codesign.cost_models.queueing import simulate_pipeline, summarize

    load = pipeline.load
    seed = load.seed if seed is None else seed
    queries = queries or load.queries
    ctx = ev.context_for(pipeline, qps, queries=queries, seed=seed)
    stream, sizes = ev.load_for(ctx, pipeline.stages[0].items)
    if table is None:
        table = service_table(pipeline, sizes)
    run = simulate_pipeline(stream.arrivals_s(qps), table.service_s, table.servers)
    return summarize(run, warmup=min(load.warmup, queries // 2)), table


def evaluate(
    pipeline: Pipeline, qps: float, *, sla_ms: float | None = None, seed: int | None = None
) -> dict[str, Any]:
    """Per-stage service times, latency percentiles and utilisation at ``qps``, and the
    highest QPS whose p95 (or the configured percentile) meets the SLA: the evaluator's
    numbers (:func:`codesign.evaluate.evaluate`), with each pool's waits."""
    from codesign import evaluate as ev

    if not (isinstance(qps, int | float) and math.isfinite(qps) and qps > 0):
        raise CodesignError(f"--qps must be a positive number, got {qps!r}")
    seed = pipeline.load.seed if seed is None else seed
    sla = sla_ms if sla_ms is not None else pipeline.load.sla_ms
    ctx = ev.context_for(
        pipeline, qps, seed=seed, sla_s=sla / 1e3 if sla else None, max_qps=sla is not None
    )
    metrics = ev.evaluate(pipeline, ctx)
    report, table = simulate(pipeline, qps, seed=seed)
    stages = []
    for j, pool in enumerate(metrics.pools):
        stages.append(
            {
                "name": pool.name,
                "servers": pool.servers,
                "service_s_full_query": pool.service_s_full_query,
                "mean_service_s": pool.mean_service_s,
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
        "unloaded_latency_s": metrics.unloaded_latency_s,
        "stability_limit_qps": metrics.stability_limit_qps,
        "stages": stages,
        "p50_latency_s": metrics.p50_latency_s,
        "p95_latency_s": metrics.p95_latency_s,
        "p99_latency_s": metrics.p99_latency_s,
        "mean_latency_s": report.mean_latency_s,
        "max_latency_s": report.max_latency_s,
        "throughput_qps": report.throughput_qps,
        "energy_j": metrics.energy_j,
        "power_w": metrics.power_w,
        "area_mm2": metrics.area_mm2,
    }
    if sla is not None:
        pct = pipeline.load.percentile
        out["sla"] = {
            "sla_s": sla / 1e3,
            "percentile": pct,
            "max_qps": metrics.max_qps,
            "feasible": metrics.max_qps > 0,
            "capped": metrics.max_qps >= 0.99 * metrics.stability_limit_qps,
        }
    return out


def with_stage_knobs(pipeline: Pipeline, index: int, **changes: Any) -> Pipeline:
    """A copy with one stage's fields changed (used by searches)."""
    stages = list(pipeline.stages)
    stages[index] = dataclasses.replace(stages[index], **copy.deepcopy(changes))
    return dataclasses.replace(pipeline, stages=tuple(stages))
