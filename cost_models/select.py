"""Which cost model prices a stage: the analytical model everywhere, or on this machine's CPU
(``cpu/host``) the calibrated or TVM-measured one. Lives in ``cost_models`` so that the library
entry (``codesign.api``), pipelines and the search all reach it without importing each other."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codesign.errors import CodesignError

if TYPE_CHECKING:
    from codesign.ir.graph import Graph

COST_MODELS = ("analytical", "calibrated", "tvm")

#: The targets whose cost a non-analytical cost model replaces: TVM measures, and calibration
#: fits, this machine's CPU. Every other target keeps the analytical model.
MEASURED_TARGETS = ("cpu/host",)


def stage_cost_model(target: str, cost_model: str) -> str:
    """The cost model that actually prices a stage on ``target`` under ``cost_model``."""
    return cost_model if target in MEASURED_TARGETS else "analytical"


def estimate_with(
    cost_model: str,
    graph: Graph,
    target: Any,
    overrides: Mapping[str, Any] | None,
    db: str | Path | None = None,
) -> Any:
    """The analytical model, the calibrated one (fitted knobs from `codesign measure report`),
    or TVM measurements (on demand, cached in the measurement database)."""
    from codesign.cost_models.analytical import estimate

    if cost_model == "analytical":
        return estimate(graph, target, overrides)
    if cost_model not in COST_MODELS:
        raise CodesignError(f"--cost-model {cost_model!r}: use one of {', '.join(COST_MODELS)}")
    from codesign.cost_models import calibration
    from codesign.cost_models.measure_db import MeasureDB, default_path

    path = Path(db) if db else default_path()
    if cost_model == "calibrated":
        cal = calibration.Calibration.load(path.parent / "calibration.json")
        report = calibration.calibrated_estimate(graph, target, cal, overrides)
        return _with_fallback(report, _calibration_fallbacks(graph, cal))
    with MeasureDB(path) as database:
        report = calibration.measured_estimate(graph, target, database, overrides)
        return _with_fallback(report, _measured_fallbacks(graph, report, database))


# --- where the chosen model fell back to the analytical one --------------------------------------
#
# The calibrated model prices an op at the analytical defaults when its op class has no fitted
# knobs (too few measurements of it); the TVM one keeps the analytical estimate of an op that has
# no TVM lowering or whose kernel failed to build, run or match. ``estimate_with`` records those
# ops in the report's provenance (``fallback``), so that plans can say which model priced what.


def fallback_record(
    model: str, ops: Mapping[str, tuple[int, str]], total: int
) -> dict[str, Any] | None:
    """``{"model", "ops", "of", "reasons": [{"op", "count", "reason"}]}``: ``ops`` maps an op
    kind to (ops of that kind that fell back, why), ``total`` counts the graph's ops. ``None``
    when nothing fell back."""
    count = sum(n for n, _ in ops.values())
    if not count:
        return None
    reasons = [{"op": op, "count": n, "reason": why} for op, (n, why) in sorted(ops.items())]
    return {"model": model, "ops": count, "of": total, "reasons": reasons}


def priced_by(cost_model: str, fallback: Mapping[str, Any] | None) -> str:
    """``"tvm"``, or ``"tvm (fallback: analytical for 3 of 27 ops: embedding_bag: ...)"``."""
    if not fallback:
        return cost_model
    why = "; ".join(f"{r['op']}{_times(r['count'])}: {r['reason']}" for r in fallback["reasons"])
    return (
        f"{cost_model} (fallback: {fallback['model']} for {fallback['ops']} of "
        f"{fallback['of']} ops: {why})"
    )


def _times(count: int) -> str:
    return f" x{count}" if count > 1 else ""


def _with_fallback(report: Any, fallback: dict[str, Any] | None) -> Any:
    if fallback is None:
        return report
    import dataclasses

    return dataclasses.replace(report, provenance={**report.provenance, "fallback": fallback})


def _ops(graph: Graph) -> list[Any]:
    return [n for n in graph.nodes if n.op not in ("input", "output")]


def _tally(found: dict[str, tuple[int, str]], op: str, why: str) -> None:
    n, first = found.get(op, (0, why))
    found[op] = (n + 1, first)  # the first reason of each op kind stands for the others


def _calibration_fallbacks(graph: Graph, cal: Any) -> dict[str, Any] | None:
    from codesign.cost_models.calibration import _class_of

    found: dict[str, tuple[int, str]] = {}
    for node in _ops(graph):
        op_class = _class_of(node.op, node.attrs)
        if op_class not in cal.knobs:
            _tally(
                found,
                node.op,
                f"no fitted knobs for the {op_class} class (too few measurements of it; "
                "`codesign measure sweep` then `codesign measure report`)",
            )
    return fallback_record("analytical", found, len(_ops(graph)))


def _measured_fallbacks(graph: Graph, report: Any, database: Any) -> dict[str, Any] | None:
    from codesign.cost_models import calibration
    from codesign.cost_models import tvm_measured as tm

    fell = {e.name for e in report.ops if e.detail.get("source") == "analytical"}
    if not fell:
        return None
    key = calibration.host_key(tm.TimingConfig().threads)
    nodes = {n.name: n for n in _ops(graph)}
    found: dict[str, tuple[int, str]] = {}
    for name, spec, why in tm.specs_for_graph(graph):
        if name not in fell:
            continue
        if spec is None:
            reason = f"no TVM lowering ({why})" if why else "no TVM lowering"
        else:
            row = database.get(spec.signature(), **key)
            if row is None:
                reason = "not measured"
            else:
                error = " ".join(str(row.error or "").split())
                reason = f"kernel {row.status}" + (f": {error[:160]}" if error else "")
        _tally(found, nodes[name].op if name in nodes else name, reason)
    return fallback_record("analytical", found, len(nodes))
