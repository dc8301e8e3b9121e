"""Quality tables: measured single-stage quality imported from CSV, for users who measured
elsewhere, and RecPipe's published Criteo table shipped as example data.

CSV format (UTF-8, a header row, one measurement per row)::

    model,items,k,metric,value[,estimate][,source]
    rm-large,4096,64,ndcg_recpipe,0.9247,false,harvard-acc/RecPipe ... figure3.out

``model``: a name (as in ``--stages``); ``items``: candidates the model ranks (one stage);
``k``: the metric's cut-off; ``metric``: ``ndcg_recpipe``, ``ndcg``, ``hr`` or ``precision``
(see :mod:`codesign.quality.replay`); ``value``: a fraction in [0, 1] (write 0.9247, not 92.47);
``estimate``: true where the value is itself an estimate (default false); ``source``: where it
comes from (optional). Lines starting with ``#`` are comments.

:meth:`QualityTable.lookup` answers measured points exactly and interpolates between the two
nearest measured pool sizes, linearly in log2(items), marking the answer ``estimate``; it does not
extrapolate.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from codesign.quality.errors import QualityTableError
from codesign.quality.replay import METRICS

COLUMNS = ("model", "items", "k", "metric", "value")
OPTIONAL = ("estimate", "source")
RECPIPE_CRITEO = "recpipe_criteo_single_stage.csv"
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")


@dataclass(frozen=True)
class QualityRow:
    model: str
    items: int
    k: int
    metric: str
    value: float
    estimate: bool = False
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class QualityTable:
    """Rows of measured (or estimated) single-stage quality."""

    def __init__(self, rows: list[QualityRow], *, source: str = "") -> None:
        self.rows = list(rows)
        self.source = source
        self._index = {(r.model, r.items, r.k, r.metric): r for r in self.rows}

    def __len__(self) -> int:
        return len(self.rows)

    def models(self) -> list[str]:
        return sorted({r.model for r in self.rows})

    def lookup(self, model: str, items: int, k: int, metric: str) -> QualityRow:
        """The row at (model, items, k, metric), or an interpolated estimate between the
        nearest measured pool sizes (linear in log2(items))."""
        exact = self._index.get((model, items, k, metric))
        if exact is not None:
            return exact
        same = sorted(
            (r for r in self.rows if (r.model, r.k, r.metric) == (model, k, metric)),
            key=lambda r: r.items,
        )
        what = f"{metric}@{k} of {model}"
        if not same:
            raise QualityTableError(
                f"the table has no {what} (models: {', '.join(self.models()) or 'none'})"
            )
        lower = [r for r in same if r.items < items]
        upper = [r for r in same if r.items > items]
        if not lower or not upper:
            raise QualityTableError(
                f"{what} at {items} items lies outside the measured {same[0].items}.."
                f"{same[-1].items} items; the table does not extrapolate"
            )
        a, b = lower[-1], upper[0]
        t = (math.log2(items) - math.log2(a.items)) / (math.log2(b.items) - math.log2(a.items))
        return QualityRow(
            model=model,
            items=items,
            k=k,
            metric=metric,
            value=a.value + t * (b.value - a.value),
            estimate=True,
            source=f"interpolated in log2(items) between {a.items} and {b.items} items "
            f"({a.source or self.source})",
        )


def parse_csv(text: str, *, origin: str = "quality table") -> QualityTable:
    """Parse the CSV format of the module docstring; errors name the line."""
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise QualityTableError(f"{origin}: no rows (write a header: {','.join(COLUMNS)})")
    reader = csv.reader(io.StringIO("\n".join(lines)))
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise QualityTableError(
            f"{origin}: header lacks {', '.join(missing)} (columns: {','.join(COLUMNS)}"
            f"[,{','.join(OPTIONAL)}])"
        )
    unknown = [h for h in header if h not in COLUMNS + OPTIONAL]
    if unknown:
        raise QualityTableError(f"{origin}: unknown column {unknown[0]!r}")
    rows: list[QualityRow] = []
    seen: set[tuple] = set()
    # Data rows are numbered among the non-comment, non-empty lines; report the file's line.
    numbers = [
        i
        for i, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for number, fields in zip(numbers[1:], reader, strict=False):
        where = f"{origin} line {number}"
        if len(fields) != len(header):
            raise QualityTableError(f"{where}: {len(fields)} fields for {len(header)} columns")
        rec = {h: f.strip() for h, f in zip(header, fields, strict=True)}
        try:
            items, k = int(rec["items"]), int(rec["k"])
            value = float(rec["value"])
        except ValueError:
            raise QualityTableError(
                f"{where}: items and k must be integers and value a number"
            ) from None
        metric = rec["metric"].lower()
        if metric not in METRICS:
            raise QualityTableError(
                f"{where}: unknown metric {rec['metric']!r} (use {', '.join(METRICS)})"
            )
        if items < 1 or not 1 <= k <= items:
            raise QualityTableError(f"{where}: need items >= 1 and 1 <= k <= items")
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            hint = " (values are fractions: write 0.9247, not 92.47)" if value > 1 else ""
            raise QualityTableError(f"{where}: value {value} is not in [0, 1]{hint}")
        flag = rec.get("estimate", "").lower()
        if flag not in _TRUE + _FALSE:
            raise QualityTableError(f"{where}: estimate must be true or false, got {flag!r}")
        if not rec["model"]:
            raise QualityTableError(f"{where}: model is empty")
        key = (rec["model"], items, k, metric)
        if key in seen:
            raise QualityTableError(
                f"{where}: duplicate row for {metric}@{k} of {key[0]} at {items}"
            )
        seen.add(key)
        rows.append(
            QualityRow(
                model=rec["model"],
                items=items,
                k=k,
                metric=metric,
                value=value,
                estimate=flag in _TRUE,
                source=rec.get("source", ""),
            )
        )
    return QualityTable(rows, source=origin)


def load_csv(path: str | Path) -> QualityTable:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QualityTableError(f"quality table {path} not found (check the path)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QualityTableError(
            f"quality table {path}: cannot read ({exc.__class__.__name__})"
        ) from None
    return parse_csv(text, origin=str(path))


def recpipe_criteo_table() -> QualityTable:
    """RecPipe's published single-stage Criteo quality (BACKGROUND §1.5; see the CSV header)."""
    text = (resources.files("codesign.quality") / "data" / RECPIPE_CRITEO).read_text("utf-8")
    return parse_csv(text, origin=f"codesign.quality/data/{RECPIPE_CRITEO}")


def to_csv(rows: list[QualityRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS + OPTIONAL)
    for r in rows:
        writer.writerow(
            [r.model, r.items, r.k, r.metric, f"{r.value:.6g}", str(r.estimate).lower(), r.source]
        )
    return buf.getvalue()


@functools.lru_cache(maxsize=16)
def cached_table(path: str | None = None) -> QualityTable:
    """The table at ``path`` (default: RecPipe's published Criteo table), read once."""
    return load_csv(path) if path else recpipe_criteo_table()


def funnel_table_quality(
    stages: list[tuple[str, int, int]], metric: str, table: str | None = None
) -> float:
    """An *estimate* from a single-stage quality table (``table``: a CSV in this module's
    format; default RecPipe's published Criteo table): the last stage's model at the stage-1
    pool size, interpolated in log2(items) between measured pool sizes. BACKGROUND §1.5
    (derived): the stage-1 pool sets quality almost entirely, and a cheap front filter loses at
    most 0.1 point."""
    name, _, k_text = metric.partition("@")
    return cached_table(table).lookup(stages[-1][0], stages[0][1], int(k_text), name).value
