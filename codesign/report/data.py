"""What the report's plots are drawn from, shared by the HTML page, the SVG and PNG files and
the two-run comparison.

The page carries this data as JSON (``<script type="application/json" id="codesign-report">``),
so ``codesign report RUN --png`` and ``--compare`` redraw exactly what the page shows, from the
page itself, without reopening the study.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError

__all__ = [
    "DATA_ID",
    "constraint_lines",
    "display_unit",
    "embed",
    "read_report_data",
]

#: The id of the JSON element in report.html; its ``"version"`` says the layout of the data.
DATA_ID = "codesign-report"
DATA_VERSION = 1

#: Units shown on an axis in place of the stored SI unit, and the factor from one to the other:
#: latencies of recommendation inference read as milliseconds.
_DISPLAY = {"s": ("ms", 1e3)}


def display_unit(objective: dict[str, Any]) -> tuple[str, float]:
    """The unit an objective's axis shows and the factor from its stored (SI) values."""
    unit = objective.get("unit") or ""
    return _DISPLAY.get(unit, (unit, 1.0))


def constraint_lines(cfg: Any) -> list[dict[str, Any]]:
    """The run's constraints as lines on the axis of the objective each one bounds: the SLA on
    p95 latency, the area budget on area, the quality floor on quality (values in the stored
    units: seconds, mm2, the quality metric), from a :class:`codesign.config.RunConfig`."""
    out = []
    if cfg.sla_ms is not None:
        out.append(
            {
                "objective": "p95_latency_s",
                "value": cfg.sla_ms / 1e3,
                "label": "SLA",
                "bound": "max",
            }
        )
    if cfg.area_budget_mm2 is not None:
        out.append(
            {
                "objective": "area_mm2",
                "value": cfg.area_budget_mm2,
                "label": "area budget",
                "bound": "max",
            }
        )
    if cfg.quality_floor is not None:
        out.append(
            {
                "objective": "quality",
                "value": cfg.quality_floor,
                "label": "quality floor",
                "bound": "min",
            }
        )
    return out


def _clean(value: Any) -> Any:
    """JSON without NaN or infinities (JavaScript's JSON.parse rejects them): they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def embed(data: dict[str, Any]) -> str:
    """``data`` as a JSON element of the page. ``<``, ``>`` and ``&`` are written as JSON
    escapes, so no text from a run can close the element or start markup."""
    text = json.dumps(_clean({"version": DATA_VERSION, **data}), default=str, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{DATA_ID}">{text}</script>'


_DATA_RE = re.compile(
    r'<script type="application/json" id="' + DATA_ID + r'">(.*?)</script>', re.DOTALL
)


def read_report_data(path: Path) -> dict[str, Any]:
    """The data a report page was drawn from: the keyword arguments of
    :func:`codesign.report.render_report` (less ``compare``)."""
    try:
        page = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CodesignError(f"{path}: cannot read the report ({exc.strerror or exc})") from exc
    match = _DATA_RE.search(page)
    if match is None:
        raise CodesignError(
            f"{path}: no plot data in this report (written by an older codesign; fix: run "
            "`codesign report` on its run directory)"
        )
    try:
        data = json.loads(match.group(1))
    except ValueError as exc:
        raise CodesignError(f"{path}: the report's plot data is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.pop("version", None) != DATA_VERSION:
        raise CodesignError(
            f"{path}: plot data of another version (fix: run `codesign report` on its run "
            "directory to rewrite it)"
        )
    return data
