"""A deployment plan: one design of a search's front, frozen with everything needed to read it,
re-price it and trust it (issue 13).

A :class:`Plan` holds
- ``design``: the design as the search built it (stages with their knob overrides, the chips'
  knobs, the cost model, the load settings): what :func:`codesign.search.space.to_pipeline`
  turns back into a :class:`~codesign.design.Pipeline`;
- ``context``: the load and questions it was priced with (:class:`codesign.evaluate.Context`,
  with its quality spec), so that :func:`evaluate_plan` reproduces ``predicted`` exactly;
- ``resolved``: the full configuration of every stage's engine and every chip (every knob of
  the target, not only the overrides);
- ``pools``: per server pool (a stage, or stages fused by sub-batch pipelining) its servers,
  predicted service time of a full query, mean service time, utilisation and energy;
- ``predicted`` (every metric) and ``objectives`` (the run's);
- ``provenance``: package versions, seed, config hash, the targets' and models' hashes, the cost
  model and the calibration it read, and the host for host-timed targets and measured models.

Plans are JSON (``to_json``/``from_json``), validated against :data:`SCHEMA` (``codesign plan
schema``). Plans of another format version fail to load with one line saying what to do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError

#: The plan format this code writes and reads. Version 1 plans (before this module) lack the
#: context and the resolved configuration and cannot be re-priced exactly.
PLAN_VERSION = 2


class PlanError(CodesignError):
    """A plan that cannot be read or used (the message names the field and the fix)."""


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python numbers, NaN and infinities to null."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Plan:
    """A frozen deployment plan (see the module docstring). Build one with :func:`build_plan`,
    read one with :meth:`from_json` or :func:`load_plan`."""

    run: str
    trial: int
    design: Mapping[str, Any]
    context: Mapping[str, Any]
    resolved: Mapping[str, Any]
    pools: tuple[Mapping[str, Any], ...]
    predicted: Mapping[str, Any]
    objectives: Mapping[str, Any]
    provenance: Mapping[str, Any]
    version: int = PLAN_VERSION
    kind: str = "plan"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _freeze(getattr(self, f.name)))

    # --- JSON --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return _plain(
            {
                "kind": self.kind,
                "version": self.version,
                "run": self.run,
                "trial": self.trial,
                # the design's stages and chips at the top level too, as version 1 had them
                "stages": _thaw(self.design["stages"]),
                "chips": _thaw(self.design.get("chips", {})),
                "design": _thaw(self.design),
                "context": _thaw(self.context),
                "resolved": _thaw(self.resolved),
                "pools": _thaw(self.pools),
                "predicted": _thaw(self.predicted),
                "objectives": _thaw(self.objectives),
                "provenance": _thaw(self.provenance),
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "plan") -> Plan:
        if not isinstance(data, Mapping) or data.get("kind") != "plan":
            raise PlanError(f"{origin}: not a plan (kind must be 'plan'; write one with optimize)")
        version = data.get("version")
        if version != PLAN_VERSION:
            raise PlanError(
                f"{origin}: plan format version {version!r}, this codesign reads version "
                f"{PLAN_VERSION} (fix: run `codesign optimize` again on the run directory to "
                "rewrite its plans)"
            )
        problems = validate(data)
        if problems:
            raise PlanError(f"{origin}: {problems[0]}")
        _check_consistent(data, origin)
        return cls(
            run=data["run"],
            trial=int(data["trial"]),
            design=data["design"],
            context=data["context"],
            resolved=data["resolved"],
            pools=tuple(data["pools"]),
            predicted=data["predicted"],
            objectives=data["objectives"],
            provenance=data["provenance"],
        )

    @classmethod
    def from_json(cls, text: str, *, origin: str = "plan") -> Plan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(
                f"{origin}: not JSON ({exc.msg} at line {exc.lineno}); a plan is a "
                "plans/plan-NNNNN.json file of a run directory"
            ) from None
        except (RecursionError, ValueError) as exc:  # nested too deep; a 4,300-digit integer
            why = "nested too deep" if isinstance(exc, RecursionError) else "a number too long"
            raise PlanError(
                f"{origin}: not a plan ({why}); a plan is a plans/plan-NNNNN.json file of a "
                "run directory"
            ) from None
        return cls.from_dict(data, origin=origin)

    # --- use ---------------------------------------------------------------------------------

    def pipeline(self, *, cost_model: str | None = None) -> Any:
        """The plan's design as a :class:`~codesign.design.Pipeline` (optionally priced with
        another cost model)."""
        from codesign.search.space import to_pipeline

        design = _thaw(self.design)
        if cost_model is not None:
            design["cost_model"] = cost_model
        return to_pipeline(design)

    def evaluation_context(self, *, qps: float | None = None, queries: int | None = None) -> Any:
        """The :class:`~codesign.evaluate.Context` the plan was priced with (at ``qps``; with
        ``queries`` simulated queries, the warm-up scaled in proportion)."""
        from codesign.evaluate import Context, QualitySpec

        values = _thaw(self.context)
        quality = QualitySpec(**values.pop("quality"))
        values["query_size"] = tuple((k, v) for k, v in values.get("query_size") or [])
        if qps is not None:
            values["qps"] = float(qps)
        if queries is not None:
            values["warmup"] = round(values["warmup"] * queries / values["queries"])
            values["queries"] = int(queries)
        return Context(**values, quality=quality)


def context_dict(context: Any) -> dict[str, Any]:
    """A :class:`~codesign.evaluate.Context` as plain data (what a plan stores)."""
    values = dataclasses.asdict(context)
    values["query_size"] = [list(p) for p in context.query_size]
    return values


def evaluate_plan(
    plan: Plan,
    *,
    qps: float | None = None,
    cost_model: str | None = None,
    queries: int | None = None,
) -> Any:
    """Re-price ``plan`` through the search's evaluator (:func:`codesign.evaluate.evaluate`):
    at its own load and seed this reproduces ``plan.predicted``; ``qps``, ``cost_model`` and
    ``queries`` (simulated queries: more for a tighter percentile) price it at another load,
    with another model or more precisely. Returns the evaluator's Metrics."""
    from codesign.evaluate import Infeasible, evaluate

    context = plan.evaluation_context(qps=qps, queries=queries)
    try:
        return evaluate(plan.pipeline(cost_model=cost_model), context)
    except Infeasible as exc:
        raise PlanError(f"plan of trial {plan.trial}: {exc}") from None


def _check_consistent(data: Mapping[str, Any], origin: str) -> None:
    """What the schema cannot say: the design is a valid pipeline (models, targets, knob values,
    funnel), the resolved stages match its stages, and the load's numbers are finite. A plan
    edited by hand fails here in one line instead of deep in the evaluator."""
    from codesign.errors import SpecError
    from codesign.pipeline import parse_pipeline

    try:
        parse_pipeline(data["design"], origin=f"{origin}: design")
    except SpecError as exc:
        raise PlanError(str(exc)) from None
    stages, resolved = data["design"]["stages"], data["resolved"]["stages"]
    if len(resolved) != len(stages):
        raise PlanError(
            f"{origin}: resolved.stages: {len(resolved)} stages for the design's {len(stages)} "
            "(fix: rewrite the plan with `codesign report RUN_DIR`)"
        )
    for key in ("qps", "sla_s"):
        value = data["context"].get(key)
        if value is not None and not math.isfinite(value):
            raise PlanError(f"{origin}: context.{key}: must be finite, got {value}")


def load_plan(path: str | Path) -> Plan:
    """Read a plan file: a regular file within the input size cap
    (:func:`codesign.ir.frontends.spec.read_input_text`), one line naming it otherwise."""
    from codesign.ir.frontends.spec import read_input_text

    text = read_input_text(path, what="plan", fix="pass a plan-NNNNN.json from RUN_DIR/plans/")
    return Plan.from_json(text, origin=str(path))


# --- building -------------------------------------------------------------------------------


def build_plan(
    *,
    run: str,
    trial: int,
    design: Mapping[str, Any],
    context: Any,
    objectives: Mapping[str, float],
    provenance: Mapping[str, Any],
) -> Plan:
    """Price ``design`` at ``context`` with the evaluator and freeze it with its full
    configuration, per-pool predictions and ``provenance`` (completed with the versions, the
    targets' and models' hashes, the calibration and the host where they matter)."""
    from codesign import evaluate as ev
    from codesign.search.space import to_pipeline

    pipeline = to_pipeline(dict(design))
    try:
        metrics = ev.evaluate(pipeline, context)
        placed = ev.place(pipeline)
    except ev.Infeasible as exc:
        raise PlanError(f"trial {trial}: {exc}") from None
    energies = ev.pool_energy_j(pipeline)
    groups = ev.fused_groups(pipeline)
    pools = [
        {
            "name": pool.name,
            "stages": [pipeline.stages[i].name for i in group],
            "servers": pool.servers,
            "service_s_full_query": pool.service_s_full_query,
            "mean_service_s": pool.mean_service_s,
            "utilization": pool.utilization,
            "energy_j": energy,
        }
        for pool, group, energy in zip(metrics.pools, groups, energies, strict=True)
    ]
    resolved = {
        "stages": [
            {"name": st.name, "target": st.target, "engines": st.engines, "point": point}
            for st, point in zip(pipeline.stages, placed.points, strict=True)
        ],
        "chips": {t: dict(point) for t, point in placed.chips.items()},
    }
    full = {**_provenance(pipeline, placed.points), **dict(provenance)}
    return Plan(
        run=run,
        trial=trial,
        design=_plain(dict(design)),
        context=_plain(context_dict(context)),
        resolved=_plain(resolved),
        pools=tuple(_plain(pools)),
        predicted=_plain(metrics.as_dict()),
        objectives=_plain(dict(objectives)),
        provenance=_plain(full),
    )


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(_plain(data), sort_keys=True).encode()).hexdigest()[:16]


def _provenance(pipeline: Any, points: Any = ()) -> dict[str, Any]:
    """What the prediction depends on beyond the design: versions, the targets' presets (hash of
    every knob's default), the models' specs, the calibration read and the host; where a stage
    is priced by the calibrated or TVM model, which of its ops that model left to the analytical
    one (``stage_fallbacks``, and ``stage_pricing`` in words)."""
    import numpy as np

    from codesign import __version__
    from codesign.cost_models.select import priced_by, stage_cost_model
    from codesign.ir.frontends.zoo import resolve
    from codesign.plugins import load_target

    targets = sorted({st.target for st in pipeline.stages})
    models = sorted({st.model for st in pipeline.stages})
    cost_models = [stage_cost_model(st.target, st.cost_model) for st in pipeline.stages]
    out: dict[str, Any] = {
        "codesign_version": __version__,
        "python": platform.python_version(),
        "numpy_version": np.__version__,
        "target_hashes": {t: _digest(load_target(t).design_space().defaults()) for t in targets},
        "model_spec_hashes": {m: resolve(m).spec_hash() for m in models},
        "stage_cost_models": cost_models,
    }
    # the technology table that priced each accelerator's silicon (area, power, DRAM energy):
    # its name and the digest of its figures, which the target hash does not cover
    tech = {
        t: {"name": table.name, "digest": table.digest}
        for t in targets
        if (table := getattr(load_target(t), "tech", None)) is not None
    }
    if tech:
        out["tech_tables"] = tech
    if any(m != "analytical" for m in cost_models):
        fallbacks = [
            stage_fallback(st, cm, point) if cm != "analytical" else None
            for st, cm, point in zip(
                pipeline.stages, cost_models, list(points) or [{}] * len(cost_models), strict=True
            )
        ]
        out["stage_fallbacks"] = fallbacks
        out["stage_pricing"] = [
            priced_by(cm, fb) for cm, fb in zip(cost_models, fallbacks, strict=True)
        ]
    if "calibrated" in cost_models:
        out["calibration"] = _calibration_identity()
    if any(t.startswith("cpu/host") for t in targets) or "tvm" in cost_models:
        out["host"] = host_fingerprint()
    return out


def fallback_lines(plan: Plan) -> list[str]:
    """``"STAGE priced by tvm (fallback: analytical for ...)"`` for each stage of ``plan`` whose
    cost model left ops to the analytical one (``plan show``, the report's plan table)."""
    prov = plan.provenance
    names = [st.get("name", "?") for st in plan.design.get("stages", ())]
    return [
        f"{name} priced by {pricing}"
        for name, fallback, pricing in zip(
            names, prov.get("stage_fallbacks") or (), prov.get("stage_pricing") or (), strict=False
        )
        if fallback
    ]


def stage_fallback(stage: Any, cost_model: str, point: Any) -> dict[str, Any] | None:
    """The ops of ``stage``'s inference batch (as the evaluator prices it: its batch, with the
    top-k filter where the target filters on the device) that ``cost_model`` left to the
    analytical model (:func:`codesign.cost_models.select.fallback_record`), or ``None``."""
    from codesign.cost_models.select import estimate_with
    from codesign.ir.frontends.lower import lower
    from codesign.plugins import load_target
    from codesign.targets.base import filters_on_device

    target = load_target(stage.target)
    batch = min(stage.batch_items, stage.items)
    keep = stage.keep if filters_on_device(target) and stage.keep < batch else 0
    graph = lower(stage.model, batch=batch, keep=keep or None)
    report = estimate_with(cost_model, graph, target, dict(point))
    return report.provenance.get("fallback")


def _calibration_identity() -> dict[str, Any]:
    from codesign.cost_models.calibration import CALIBRATION_FILE
    from codesign.cost_models.measure_db import default_path

    path = default_path().parent / CALIBRATION_FILE
    if not path.exists():
        return {"path": str(path), "sha256": None}
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}


def host_fingerprint() -> dict[str, Any]:
    """The machine host-timed targets and measured models were priced on."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "system": platform.system(),
    }


# --- schema ---------------------------------------------------------------------------------

_NUMBER_OR_NULL = {"type": ["number", "null"]}

#: JSON Schema (draft 2020-12) of a plan file (``codesign plan schema`` prints it).
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://codesign.dev/schemas/plan-v2.json",
    "title": "codesign deployment plan",
    "type": "object",
    "required": [
        "kind",
        "version",
        "run",
        "trial",
        "design",
        "context",
        "resolved",
        "pools",
        "predicted",
        "objectives",
        "provenance",
    ],
    "properties": {
        "kind": {"const": "plan"},
        "version": {"const": PLAN_VERSION},
        "run": {"type": "string"},
        "trial": {"type": "integer", "minimum": 0},
        "stages": {"type": "array"},
        "chips": {"type": "object"},
        "design": {
            "type": "object",
            "required": ["stages"],
            "properties": {
                "stages": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "model", "target", "items", "keep", "engines"],
                        "properties": {
                            "name": {"type": "string"},
                            "model": {"type": "string"},
                            "target": {"type": "string"},
                            "items": {"type": "integer", "minimum": 1},
                            "keep": {"type": "integer", "minimum": 1},
                            "engines": {"type": "integer", "minimum": 1},
                            "batch": {"type": "integer", "minimum": 0},
                            "knobs": {"type": "object"},
                        },
                    },
                },
                "chips": {"type": "object"},
                "cost_model": {"type": "string"},
                "load": {"type": "object"},
            },
        },
        "context": {
            "type": "object",
            "required": ["qps", "queries", "warmup", "seed", "arrival", "quality"],
            "additionalProperties": False,
            "properties": {
                "qps": {"type": "number", "exclusiveMinimum": 0},
                "queries": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
                "warmup": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
                "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                "arrival": {"enum": ["exponential", "recpipe"]},
                "query_size": {"type": "array", "items": {"type": "array"}},
                "sla_s": {"type": ["number", "null"], "exclusiveMinimum": 0},
                "percentile": {"type": "integer", "minimum": 1, "maximum": 100},
                "max_qps": {"type": "boolean"},
                "quality": {
                    "type": "object",
                    "required": ["metric", "source"],
                    "additionalProperties": False,
                    "properties": {
                        "metric": {"type": "string", "pattern": "^[A-Za-z_]+@[1-9][0-9]{0,5}$"},
                        "source": {"enum": ["replay", "table", "none"]},
                        "table": {"type": ["string", "null"]},
                        "dataset": {"type": "string"},
                        "seed": {"type": "integer", "minimum": 0},
                        "samples": {"type": ["integer", "null"], "minimum": 1},
                        "val_samples": {"type": ["integer", "null"], "minimum": 1},
                        "max_rows": {"type": ["integer", "null"], "minimum": 1},
                    },
                },
            },
        },
        "resolved": {
            "type": "object",
            "required": ["stages", "chips"],
            "properties": {
                "stages": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "target", "point"],
                        "properties": {"point": {"type": "object"}},
                    },
                },
                "chips": {"type": "object", "additionalProperties": {"type": "object"}},
            },
        },
        "pools": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "stages", "servers", "service_s_full_query", "energy_j"],
                "properties": {
                    "name": {"type": "string"},
                    "stages": {"type": "array", "items": {"type": "string"}},
                    "servers": {"type": "integer", "minimum": 1},
                    "service_s_full_query": {"type": "number", "minimum": 0},
                    "mean_service_s": _NUMBER_OR_NULL,
                    "utilization": _NUMBER_OR_NULL,
                    "energy_j": _NUMBER_OR_NULL,
                },
            },
        },
        "predicted": {"type": "object", "additionalProperties": _NUMBER_OR_NULL},
        "objectives": {"type": "object", "additionalProperties": _NUMBER_OR_NULL},
        "provenance": {
            "type": "object",
            "required": ["codesign_version", "config_hash", "seed", "cost_model"],
            "properties": {
                "stage_cost_models": {"type": "array", "items": {"type": "string"}},
                "stage_pricing": {"type": "array", "items": {"type": "string"}},
                "tech_tables": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["name", "digest"],
                        "properties": {
                            "name": {"type": "string"},
                            "digest": {"type": "string"},
                        },
                    },
                },
                "stage_fallbacks": {
                    "type": "array",
                    "items": {
                        "oneOf": [
                            {"type": "null"},
                            {
                                "type": "object",
                                "required": ["model", "ops", "of", "reasons"],
                                "properties": {
                                    "model": {"type": "string"},
                                    "ops": {"type": "integer", "minimum": 1},
                                    "of": {"type": "integer", "minimum": 1},
                                    "reasons": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["op", "count", "reason"],
                                        },
                                    },
                                },
                            },
                        ]
                    },
                },
            },
        },
    },
}


def validate(data: Any) -> list[str]:
    """Problems of ``data`` against :data:`SCHEMA` (``jsonschema``), each one line naming the
    field; empty when it conforms."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.append(f"{where}: {error.message}")
    return problems
