"""Quality tables: measured quality of single models and of funnels, imported from CSV for users
who measured elsewhere, and RecPipe's published Criteo tables shipped as example data.

CSV format (UTF-8, a header row, one measurement per row)::

    model,items,k,metric,value[,estimate][,source]
    rm-large,4096,64,ndcg_recpipe,0.9247,false,harvard-acc/RecPipe ... figure3.out
    rm-small>rm-large,4096>128,64,ndcg_recpipe,0.9240,false,harvard-acc/RecPipe ... figure7_8

``model``: a name (as in ``--stages``), or for a funnel the stages' models joined by ``>``;
``items``: the candidates the model ranks, or for a funnel each stage's pool joined by ``>``
(``4096>128``: stage 1 ranks 4096 items and keeps 128, stage 2 ranks those 128), one pool per
model, strictly decreasing; ``k``: the metric's cut-off on the final list (at most the last
pool); ``metric``: ``ndcg_recpipe``, ``ndcg``, ``hr`` or ``precision`` (see
:mod:`codesign.quality.replay`); ``value``: a fraction in [0, 1] (write 0.9247, not 92.47);
``estimate``: true where the value is itself an estimate (default false); ``source``: where it
comes from (optional). Lines starting with ``#`` are comments.

:meth:`QualityTable.lookup_funnel` follows the funnel, each stage's model and pool:
- one stage: :meth:`QualityTable.lookup`, the measured row, or between the two nearest measured
  pool sizes a linear interpolation in log2(items), marked ``estimate``; no extrapolation;
- several stages: the measured funnel row, or, between two funnel rows of the same models that
  agree on every other pool and bracket this funnel's pool at one stage, a linear
  interpolation in log2 of that pool, marked ``estimate``. Consecutive stages that run the same
  model act as one stage (they rank the same items in the same order). Anything else raises
  :class:`~codesign.quality.errors.QualityTableError` naming the funnel and the fix: the table
  does not guess.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from codesign.quality.errors import QualityTableError
from codesign.quality.replay import METRICS

COLUMNS = ("model", "items", "k", "metric", "value")
OPTIONAL = ("estimate", "source")
RECPIPE_CRITEO = "recpipe_criteo_single_stage.csv"
RECPIPE_CRITEO_FUNNELS = "recpipe_criteo_multi_stage.csv"
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")
_FIX = 'fix: add a measured row for it to the quality table, or use [quality] source = "replay"'


@dataclass(frozen=True)
class QualityRow:
    """One measurement: a model ranking ``items`` candidates, or a funnel (``model``: the
    stages' models joined by ``>``; ``pools``: each stage's pool; ``items``: the first pool)."""

    model: str
    items: int
    k: int
    metric: str
    value: float
    estimate: bool = False
    source: str = ""
    pools: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.pools:
            object.__setattr__(self, "pools", (self.items,))
        if self.pools[0] != self.items or len(self.pools) != len(self.models):
            raise ValueError(f"QualityRow {self.model} {self.pools}: one pool per model")

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.model.split(">"))

    @property
    def funnel(self) -> str:
        """``rm-small>rm-large 4096>128`` (one stage: ``rm-large 4096``)."""
        return f"{self.model} {_pools(self.pools)}"

    def to_dict(self) -> dict:
        return {**asdict(self), "pools": list(self.pools)}


def _pools(pools: Sequence[int]) -> str:
    return ">".join(str(p) for p in pools)


class QualityTable:
    """Rows of measured (or estimated) quality of single models and of funnels."""

    def __init__(self, rows: list[QualityRow], *, source: str = "") -> None:
        self.rows = list(rows)
        self.source = source
        self._index = {(r.model, r.pools, r.k, r.metric): r for r in self.rows}

    def __len__(self) -> int:
        return len(self.rows)

    def models(self) -> list[str]:
        """Every model a row names (alone or in a funnel)."""
        return sorted({m for r in self.rows for m in r.models})

    def lookup(self, model: str, items: int, k: int, metric: str) -> QualityRow:
        """The single-stage row at (model, items, k, metric), or an interpolated estimate
        between the nearest measured pool sizes (linear in log2(items))."""
        exact = self._index.get((model, (items,), k, metric))
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
        return _between(a, b, 0, (items,), a.source or self.source, "items")

    def lookup_funnel(
        self, stages: Sequence[tuple[str, int, int]], k: int, metric: str
    ) -> QualityRow:
        """Quality@``k`` of a funnel, ``stages`` = [(model, items, keep), ...] (stage i ranks
        ``items`` and keeps ``keep``, the next stage's items), following each stage's model
        and pool (see the module docstring). The row says whether it is an ``estimate``.
        Raises :class:`QualityTableError` naming the funnel and the fix where the table
        cannot answer."""
        models, pools = _collapse(stages)
        if len(models) == 1:
            try:
                return self.lookup(models[0], pools[0], k, metric)
            except QualityTableError as exc:
                raise QualityTableError(f"{exc} ({_FIX})") from None
        model = ">".join(models)
        exact = self._index.get((model, pools, k, metric))
        if exact is not None:
            return exact
        same = [r for r in self.rows if (r.model, r.k, r.metric) == (model, k, metric)]
        for j in range(len(pools)):
            line = [r for r in same if _agree_except(r.pools, pools, j)]
            lower = [r for r in line if r.pools[j] < pools[j]]
            upper = [r for r in line if r.pools[j] > pools[j]]
            if lower and upper:
                a = max(lower, key=lambda r: r.pools[j])
                b = min(upper, key=lambda r: r.pools[j])
                return _between(a, b, j, pools, a.source or self.source, f"stage {j + 1}'s pool")
        what = f"the quality table cannot answer {metric}@{k} of the funnel {model} {_pools(pools)}"
        if not same:
            raise QualityTableError(f"{what}: it has no row of {model} ({_FIX})")
        measured = ", ".join(_pools(p) for p in sorted({r.pools for r in same}, reverse=True))
        raise QualityTableError(
            f"{what}: no measured row, and no two rows of {model} that differ from it in one "
            f"pool only and bracket it (measured pools: {measured}; {_FIX})"
        )


def _collapse(stages: Sequence[tuple[str, int, int]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(models, pools) of a funnel, consecutive stages of one model merged into the first: a
    model re-ranking its own top items keeps their order, so it filters nothing."""
    models: list[str] = []
    pools: list[int] = []
    for model, items, _ in stages:
        if models and models[-1] == model:
            continue
        models.append(model)
        pools.append(int(items))
    return tuple(models), tuple(pools)


def _agree_except(a: tuple[int, ...], b: tuple[int, ...], j: int) -> bool:
    return all(x == y for i, (x, y) in enumerate(zip(a, b, strict=True)) if i != j)


def _between(
    a: QualityRow, b: QualityRow, j: int, pools: tuple[int, ...], source: str, what: str
) -> QualityRow:
    """The estimate at ``pools`` between rows ``a`` and ``b`` that differ in pool ``j`` only,
    linear in log2 of that pool."""
    lo, hi, at = math.log2(a.pools[j]), math.log2(b.pools[j]), math.log2(pools[j])
    t = (at - lo) / (hi - lo)
    between = (
        f"{a.pools[j]} and {b.pools[j]} items" if len(pools) == 1 else f"{a.funnel} and {b.funnel}"
    )
    return QualityRow(
        model=a.model,
        items=pools[0],
        k=a.k,
        metric=a.metric,
        value=a.value + t * (b.value - a.value),
        estimate=True,
        source=f"interpolated in log2({what}) between {between} ({source})",
        pools=pools,
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
        models = [m.strip() for m in rec["model"].split(">")]
        try:
            pools = tuple(int(p) for p in rec["items"].split(">"))
            k = int(rec["k"])
            value = float(rec["value"])
        except ValueError:
            raise QualityTableError(
                f"{where}: items and k must be integers (a funnel's items: pools joined by '>', "
                "e.g. 4096>128) and value a number"
            ) from None
        metric = rec["metric"].lower()
        if metric not in METRICS:
            raise QualityTableError(
                f"{where}: unknown metric {rec['metric']!r} (use {', '.join(METRICS)})"
            )
        if not all(models):
            what = "is empty" if not rec["model"] else f"{rec['model']!r} has an empty stage"
            raise QualityTableError(f"{where}: model {what} (a funnel: rm-small>rm-large)")
        if len(pools) != len(models):
            raise QualityTableError(
                f"{where}: {len(models)} model(s) {'>'.join(models)} but {len(pools)} pool(s) "
                f"{rec['items']} (write one pool per stage, e.g. rm-small>rm-large,4096>128)"
            )
        if len(pools) == 1 and (pools[0] < 1 or not 1 <= k <= pools[0]):
            raise QualityTableError(f"{where}: need items >= 1 and 1 <= k <= items")
        if len(pools) > 1 and not all(a > b for a, b in zip(pools, pools[1:], strict=False)):
            raise QualityTableError(
                f"{where}: pools {rec['items']} must strictly decrease (each stage keeps fewer "
                "items than it ranks, e.g. 4096>128)"
            )
        if len(pools) > 1 and not 1 <= k <= pools[-1]:
            raise QualityTableError(
                f"{where}: need 1 <= k <= the last pool ({pools[-1]}): k cuts the final list"
            )
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            hint = " (values are fractions: write 0.9247, not 92.47)" if value > 1 else ""
            raise QualityTableError(f"{where}: value {value} is not in [0, 1]{hint}")
        flag = rec.get("estimate", "").lower()
        if flag not in _TRUE + _FALSE:
            raise QualityTableError(f"{where}: estimate must be true or false, got {flag!r}")
        model = ">".join(models)
        key = (model, pools, k, metric)
        if key in seen:
            raise QualityTableError(
                f"{where}: duplicate row for {metric}@{k} of {model} at {_pools(pools)}"
            )
        seen.add(key)
        rows.append(
            QualityRow(
                model=model,
                items=pools[0],
                k=k,
                metric=metric,
                value=value,
                estimate=flag in _TRUE,
                source=rec.get("source", ""),
                pools=pools,
            )
        )
    return QualityTable(rows, source=origin)


def funnel_stages(model: str, items: str, k: int) -> list[tuple[str, int, int]]:
    """``[(model, items, keep), ...]`` of a funnel written as in the CSV (``rm-small>rm-large``,
    ``4096>128``; the last stage keeps ``k``), for :meth:`QualityTable.lookup_funnel`."""
    models = [m.strip() for m in model.split(">")]
    try:
        pools = [int(p) for p in str(items).split(">")]
    except ValueError:
        raise QualityTableError(
            f"items {items!r}: write a pool size, or one per stage joined by '>' (4096>128)"
        ) from None
    if not all(models) or len(models) != len(pools):
        raise QualityTableError(
            f"funnel {model} {items}: write one model and one pool per stage "
            "(e.g. --model rm-small>rm-large --items 4096>128)"
        )
    if pools[0] < 1 or any(a <= b for a, b in zip(pools, pools[1:], strict=False)):
        raise QualityTableError(
            f"pools {items}: each must be >= 1 and smaller than the one before (4096>128)"
        )
    keeps = [*pools[1:], k]
    return list(zip(models, pools, keeps, strict=True))


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
    """RecPipe's published Criteo quality (BACKGROUND §1.5; see the CSVs' headers): the
    single-stage table and the multi-stage funnels, one table."""
    rows: list[QualityRow] = []
    for name in (RECPIPE_CRITEO, RECPIPE_CRITEO_FUNNELS):
        text = (resources.files("codesign.quality") / "data" / name).read_text("utf-8")
        rows += parse_csv(text, origin=f"codesign.quality/data/{name}").rows
    names = f"{RECPIPE_CRITEO} + {RECPIPE_CRITEO_FUNNELS}"
    return QualityTable(rows, source=f"codesign.quality/data/{names}")


def to_csv(rows: list[QualityRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS + OPTIONAL)
    for r in rows:
        writer.writerow(
            [
                r.model,
                _pools(r.pools),
                r.k,
                r.metric,
                f"{r.value:.6g}",
                str(r.estimate).lower(),
                r.source,
            ]
        )
    return buf.getvalue()


@functools.lru_cache(maxsize=16)
def cached_table(path: str | None = None) -> QualityTable:
    """The table at ``path`` (default: RecPipe's published Criteo tables), read once."""
    return load_csv(path) if path else recpipe_criteo_table()


def funnel_table_quality(
    stages: Sequence[tuple[str, int, int]], metric: str, table: str | None = None
) -> QualityRow:
    """Quality ``metric`` (``name@k``) of a funnel, ``stages`` = [(model, items, keep), ...],
    from a quality table (``table``: a CSV in this module's format; default RecPipe's
    published Criteo tables), following each stage's model and pool
    (:meth:`QualityTable.lookup_funnel`): the row's ``value`` and whether it is an
    ``estimate``. Raises :class:`QualityTableError` where the table cannot answer."""
    name, _, k_text = metric.partition("@")
    return cached_table(table).lookup_funnel(stages, int(k_text), name)
