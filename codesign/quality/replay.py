"""Funnel replay: the quality of a multi-stage ranking configuration, from cached scores.

A configuration is a list of stages ``model:items>keep``: stage 1 ranks a query's candidate pool
of ``items`` consecutive validation samples (RecPipe: query q takes samples
``[q*items, (q+1)*items)``) with its model and keeps the top ``keep``; each later stage re-ranks
the survivors with its own model and keeps its top ``keep``; the last stage's kept items, in its
order, are the query's result. Ties in score go to the earlier sample, in every stage.

Metrics over the result's click labels, averaged over queries (each named for what it is):

- ``ndcg_recpipe@k``: RecPipe's "NDCG" (BACKGROUND §1.5, ``utils.py: ndcg_score``): DCG of the
  top-k labels, sum of ``y_i / log2(i + 2)``, divided by the DCG of k relevant items, i.e. a
  position-weighted precision@k that assumes all k slots could be relevant. It rises with the
  pool size because a larger pool holds more clicks.
- ``ndcg@k``: textbook NDCG: the same DCG divided by the ideal DCG of the pool's own labels
  (its positives first); 0 for a pool without positives (as scikit-learn's ``ndcg_score``).
- ``hr@k``: hit rate: the fraction of queries with at least one positive in the top k (RecPipe's
  MovieLens metric, where each pool holds exactly one positive).
- ``precision@k``: the mean fraction of positives in the top k.

Everything is vectorised over queries: per (model, pool size) the pool-wise order and rank of
every sample are computed once (a stable argsort of the ``(queries, items)`` score matrix), after
which a stage is a gather plus an ``argpartition`` over the survivors, so a :class:`Replayer`
evaluates thousands of configurations per second (``bench/bench_replay.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from codesign.quality.errors import FunnelError

METRICS = {
    "ndcg_recpipe": "RecPipe's NDCG: position-weighted precision@k (ideal: k relevant items)",
    "ndcg": "textbook NDCG@k (ideal: the pool's own labels sorted)",
    "hr": "hit rate: any positive in the top k",
    "precision": "fraction of positives in the top k",
}
_STAGE_RE = re.compile(r"^\s*(?P<model>.+):\s*(?P<items>[^:>]+?)\s*>\s*(?P<keep>[^:>]+?)\s*$")
_METRIC_RE = re.compile(r"^\s*(?P<name>[a-z_]+)\s*@\s*(?P<k>\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Stage:
    """One funnel stage: ``model`` ranks ``items`` candidates and keeps the top ``keep``."""

    model: str
    items: int
    keep: int

    def __str__(self) -> str:
        return f"{self.model}:{self.items}>{self.keep}"


@dataclass(frozen=True)
class Metric:
    name: str
    k: int

    def __str__(self) -> str:
        return f"{self.name}@{self.k}"


def format_stages(stages: Sequence[Stage]) -> str:
    return ",".join(str(s) for s in stages)


def parse_stages(text: str) -> tuple[Stage, ...]:
    """``"rm-small:4096>512,rm-large:512>64"`` -> stages, checked with :func:`check_stages`."""
    if not str(text).strip():
        raise FunnelError("no stages given (write e.g. 'rm-small:4096>512,rm-large:512>64')")
    parts = str(text).split(",")
    stages = []
    for i, part in enumerate(parts, start=1):
        match = _STAGE_RE.match(part)
        if match is None:
            raise FunnelError(
                f"stage {i} {part.strip()!r}: expected MODEL:ITEMS>KEEP (e.g. rm-large:512>64)"
            )
        numbers = []
        for what in ("items", "keep"):
            raw = match.group(what)
            if not raw.isdigit() or int(raw) < 1:
                raise FunnelError(
                    f"stage {i} {part.strip()!r}: {what} must be a positive integer, got {raw!r}"
                )
            numbers.append(int(raw))
        model = match.group("model").strip()
        if not model:
            raise FunnelError(f"stage {i} {part.strip()!r}: the model name is empty")
        stages.append(Stage(model, *numbers))
    check_stages(stages)
    return tuple(stages)


def check_stages(stages: Sequence[Stage]) -> None:
    """Each stage keeps at most what it ranks; stage i+1 ranks exactly what stage i keeps."""
    if not stages:
        raise FunnelError("a funnel needs at least one stage")
    for i, stage in enumerate(stages, start=1):
        if stage.items < 1 or stage.keep < 1:
            raise FunnelError(f"stage {i} ({stage}): items and keep must be >= 1")
        if stage.keep > stage.items:
            raise FunnelError(
                f"stage {i} ({stage}) keeps {stage.keep} of {stage.items} items: keep at most "
                "the items it ranks"
            )
        if i > 1 and stage.items != stages[i - 2].keep:
            raise FunnelError(
                f"stage {i} ({stage}) ranks {stage.items} items but stage {i - 1} keeps "
                f"{stages[i - 2].keep}: they must match"
            )


def parse_metric(text: str) -> Metric:
    """``"ndcg_recpipe@64"`` -> :class:`Metric`."""
    match = _METRIC_RE.match(str(text))
    names = ", ".join(f"{n}@K" for n in METRICS)
    if match is None or match.group("name").lower() not in METRICS:
        raise FunnelError(f"unknown metric {str(text).strip()!r} (use {names})")
    k = int(match.group("k"))
    if k < 1:
        raise FunnelError(f"metric {text.strip()!r}: k must be >= 1")
    return Metric(match.group("name").lower(), k)


def parse_metrics(texts: Iterable[str]) -> list[Metric]:
    """Metrics from options that may each hold a comma list; duplicates dropped."""
    out: list[Metric] = []
    for text in texts:
        for part in str(text).split(","):
            if part.strip():
                metric = parse_metric(part)
                if metric not in out:
                    out.append(metric)
    return out


def check_metrics(stages: Sequence[Stage], metrics: Sequence[Metric]) -> None:
    keep = stages[-1].keep
    for metric in metrics:
        if metric.k > keep:
            raise FunnelError(
                f"metric {metric} needs k <= {keep}, the items the last stage "
                f"({stages[-1].model}) keeps"
            )


#: How a later stage selects its survivors (identical results; see :class:`Replayer`).
METHODS = ("auto", "partition", "prefix")


class Replayer:
    """Replays funnels over one validation set: ``scores`` maps model name -> one score per
    sample, ``labels`` are the samples' 0/1 labels. ``query_size`` fixes the pool size (MovieLens:
    one pool per user); without it any stage-1 ``items`` is a pool of consecutive samples.

    How it is fast: per (model, pool size, queries) the pool-wise order and rank of every sample
    are computed once. Stage 1 keeps a prefix of its model's order. After stage i, the survivors
    are exactly the samples whose rank under every model so far is at most a per-query threshold
    (stage i keeps the ``keep`` survivors of smallest rank, so its threshold is the rank of the
    last one kept). A later stage finds its threshold either by partitioning its model's ranks of
    the survivors (``partition``: work ~ survivors) or by walking a prefix of its model's order
    and keeping the first ``keep`` samples inside all thresholds (``prefix``: work ~ the prefix,
    short when few items are dropped); ``auto`` picks the cheaper. Both give the same result.
    """

    def __init__(
        self,
        scores: Mapping[str, Any],
        labels: Any,
        *,
        query_size: int | None = None,
        method: str = "auto",
    ) -> None:
        self.labels = np.asarray(labels)
        if self.labels.ndim != 1 or not len(self.labels):
            raise FunnelError("labels must be a non-empty 1-D array")
        if not np.isin(self.labels, (0, 1)).all():
            raise FunnelError("labels must be 0 or 1 (clicks), for every sample")
        self.labels = self.labels.astype(np.float64)
        self._orders: dict[tuple, Any] = {}
        #: evaluate()'s answers per (funnel, metrics, queries): a search asks for the same few
        #: funnels thousands of times (cleared when a model's scores change)
        self._results: dict[tuple, dict[str, float]] = {}
        self.scores: dict[str, np.ndarray] = {}
        for name, values in scores.items():
            self.add(name, values)
        if method not in METHODS:
            raise FunnelError(f"unknown replay method {method!r} (use {', '.join(METHODS)})")
        self.query_size = query_size
        self.method = method
        self._pools: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._discounts: dict[int, tuple[np.ndarray, float, np.ndarray]] = {}

    def add(self, name: str, scores: Any) -> None:
        """Add (or replace) a model's scores, one per sample."""
        arr = np.asarray(scores)
        if arr.shape != self.labels.shape:
            raise FunnelError(f"model {name!r} has {arr.size} scores for {len(self.labels)} labels")
        if not np.isfinite(arr).all():
            raise FunnelError(f"model {name!r} has non-finite scores")
        self.scores[name] = arr
        self._results.clear()
        for key in [k for k in self._orders if name in k[:3]]:
            del self._orders[key]

    # --- queries ------------------------------------------------------------------------------

    def available_queries(self, items: int) -> int:
        return len(self.labels) // items

    def queries_for(self, stages: Sequence[Stage], queries: int | None = None) -> int:
        items = stages[0].items
        if self.query_size is not None and items != self.query_size:
            raise FunnelError(
                f"stage 1 ranks {items} items, but this dataset's queries are pools of "
                f"{self.query_size} candidates (one per user): rank {self.query_size} in stage 1"
            )
        available = self.available_queries(items)
        if available == 0:
            raise FunnelError(
                f"stage 1 ranks {items} items but the validation set holds only "
                f"{len(self.labels)} samples (raise --val-samples or rank fewer)"
            )
        if queries is None:
            return available
        if not 1 <= queries <= available:
            raise FunnelError(
                f"{queries} queries of {items} candidates need {queries * items} validation "
                f"samples; there are {len(self.labels)} (at most {available} queries)"
            )
        return queries

    # --- the replay ---------------------------------------------------------------------------

    def _order(self, model: str, items: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
        """(order, rank) under ``model`` of the first ``queries`` pools of ``items``:
        ``order[q]`` holds the pool's samples best first (score descending, then sample index)
        as indices into the validation set; ``rank[i]`` is sample i's place in its pool."""
        key = (model, items, queries)
        if key not in self._orders:
            if model not in self.scores:
                known = ", ".join(sorted(self.scores)) or "none"
                raise FunnelError(f"model {model!r} has no scores here (models: {known})")
            pool = self.scores[model][: queries * items].reshape(queries, items)
            local = np.argsort(-pool, axis=1, kind="stable")
            rank = np.empty(local.shape, dtype=np.int32)
            np.put_along_axis(rank, local, np.arange(items, dtype=np.int32)[None, :], axis=1)
            order = local + (np.arange(queries, dtype=np.intp) * items)[:, None]
            self._orders[key] = (order, rank.ravel())
        return self._orders[key]

    def _pool_labels(self, items: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
        """The pools' labels (queries, items) and each pool's number of positives."""
        key = (items, queries)
        if key not in self._pools:
            labels = self.labels[: queries * items].reshape(queries, items)
            self._pools[key] = (labels, labels.sum(axis=1))
        return self._pools[key]

    def _cross(self, a: str, b: str, items: int, queries: int) -> np.ndarray:
        """(queries, items): the rank under model ``a`` of model ``b``'s j-th best sample."""
        key = ("cross", a, b, items, queries)
        if key not in self._orders:
            rank_a = self._order(a, items, queries)[1]
            self._orders[key] = rank_a.take(self._order(b, items, queries)[0])
        return self._orders[key]

    def ranking(self, stages: Sequence[Stage], *, queries: int | None = None) -> np.ndarray:
        """The final result of every query: validation-sample indices (queries, last keep),
        best first."""
        check_stages(stages)
        return self._rank(stages, self.queries_for(stages, queries))

    def _rank(self, stages: Sequence[Stage], q: int) -> np.ndarray:
        first = stages[0]
        items = first.items
        order, rank = self._order(first.model, items, q)
        survivors = order[:, : first.keep]  # stage 1's order
        limits = [(first.model, np.full((q, 1), first.keep - 1, dtype=np.int32))]
        for i, stage in enumerate(stages[1:], start=1):
            order, rank = self._order(stage.model, items, q)
            last = i == len(stages) - 1
            prefix = min(items, -(-stage.keep * items // stage.items) + 32)
            use_prefix = self.method == "prefix" or (
                self.method == "auto" and prefix * len(limits) < 8 * stage.items
            )
            if use_prefix:
                crosses = [self._cross(model, stage.model, items, q) for model, _ in limits]
                survivors, limit = _by_prefix(order, crosses, limits, stage.keep, prefix)
            else:
                if i == 1:  # the survivors are a prefix of stage 1's order: no gather
                    ranks = self._cross(stage.model, first.model, items, q)[:, : stage.items]
                else:
                    ranks = rank.take(survivors)
                survivors, limit = _by_partition(order, ranks, survivors, stage.keep, last)
            limits.append((stage.model, limit))
        return survivors

    def evaluate(
        self,
        stages: Sequence[Stage],
        metrics: Sequence[Metric | str],
        *,
        queries: int | None = None,
    ) -> dict[str, float]:
        """``{str(metric): value}`` for one funnel, averaged over its queries."""
        metrics = [m if isinstance(m, Metric) else parse_metric(m) for m in metrics]
        check_stages(stages)
        check_metrics(stages, metrics)
        q = self.queries_for(stages, queries)
        memo = (tuple((st.model, st.items, st.keep) for st in stages), tuple(map(str, metrics)), q)
        if memo in self._results:
            return dict(self._results[memo])
        out = self._evaluate(stages, metrics, q)
        self._results[memo] = dict(out)
        return out

    def _evaluate(self, stages: Sequence[Stage], metrics: Sequence[Metric], q: int) -> dict:
        final = self._rank(stages, q)
        top = self.labels.take(final)
        out = {}
        for m in metrics:
            if m.name in ("ndcg_recpipe", "ndcg"):
                discount, total, ideal_at = self._discount(m.k)
                dcg = top[:, : m.k] @ discount
                if m.name == "ndcg_recpipe":
                    out[str(m)] = float(dcg.mean() / total)
                    continue
                _, positives = self._pool_labels(stages[0].items, q)
                ideal = ideal_at[np.minimum(positives, m.k).astype(np.intp)]
                ratio = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
                out[str(m)] = float(ratio.mean())
            elif m.name == "hr":
                out[str(m)] = float((top[:, : m.k].max(axis=1) > 0).mean())
            else:
                out[str(m)] = float(top[:, : m.k].mean())
        return out

    def _discount(self, k: int) -> tuple[np.ndarray, float, np.ndarray]:
        """1/log2(i + 2) for i < k, their sum, and the ideal DCG of j positives (j = 0..k)."""
        if k not in self._discounts:
            discount = 1.0 / np.log2(np.arange(k) + 2.0)
            ideal_at = np.concatenate([[0.0], np.cumsum(discount)])
            self._discounts[k] = (discount, float(discount.sum()), ideal_at)
        return self._discounts[k]


def _by_partition(
    order: np.ndarray, ranks: np.ndarray, survivors: np.ndarray, keep: int, last: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The ``keep`` survivors of smallest ``ranks`` (ordered if ``last``) and their limit."""
    if keep < ranks.shape[1]:
        limit = np.partition(ranks, keep - 1, axis=1)[:, keep - 1 : keep]
    else:
        limit = ranks.max(axis=1, keepdims=True)
    inside = ranks <= limit  # exactly ``keep`` per row: ranks in a pool are distinct
    if last:
        kept = ranks[inside].reshape(len(ranks), keep)
        kept.sort(axis=1)
        return np.take_along_axis(order, kept.astype(np.intp), axis=1), limit
    return survivors[inside].reshape(len(ranks), keep), limit


def _by_prefix(
    order: np.ndarray,
    crosses: list[np.ndarray],
    limits: list[tuple[str, np.ndarray]],
    keep: int,
    prefix: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``keep`` samples of ``order`` within every limit (``crosses[s][q, j]``: the
    rank under stage s's model of ``order[q, j]``), walking a prefix of the order that doubles
    until every query has found ``keep``; and their limit (the rank of the last one)."""
    queries, items = order.shape
    while True:
        inside = crosses[0][:, :prefix] <= limits[0][1]
        for cross, (_, limit) in zip(crosses[1:], limits[1:], strict=True):
            inside &= cross[:, :prefix] <= limit
        counts = np.count_nonzero(inside, axis=1)
        if prefix >= items or counts.min() >= keep:
            break
        prefix = min(items, prefix * 2)
    found = np.flatnonzero(inside)  # row-major: each row's hits in the order's order
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    picked = found[starts[:, None] + np.arange(keep)]
    columns = picked - (np.arange(queries, dtype=np.intp) * prefix)[:, None]
    rows = (np.arange(queries, dtype=np.intp) * items)[:, None]
    return order.ravel().take(columns + rows), columns[:, -1:].astype(np.int32)


def replay(
    scores: Mapping[str, Any],
    labels: Any,
    stages: Sequence[Stage] | str,
    metrics: Sequence[Metric | str],
    *,
    queries: int | None = None,
    query_size: int | None = None,
    method: str = "auto",
) -> dict[str, float]:
    """One-shot :meth:`Replayer.evaluate` (build a :class:`Replayer` to evaluate many)."""
    if isinstance(stages, str):
        stages = parse_stages(stages)
    return Replayer(scores, labels, query_size=query_size, method=method).evaluate(
        stages, metrics, queries=queries
    )
