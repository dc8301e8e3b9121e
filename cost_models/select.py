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
        return calibration.calibrated_estimate(graph, target, cal, overrides)
    with MeasureDB(path) as database:
        return calibration.measured_estimate(graph, target, database, overrides)
