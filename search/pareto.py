"""Pareto fronts and exact hypervolume (numpy only).

Conventions used throughout:

- ``values`` is an ``(n, k)`` array, one row per design, one column per objective, in the
  objective's own units; ``directions[i]`` is ``"minimize"`` or ``"maximize"`` (an Optuna
  ``StudyDirection`` is accepted too).
- A row containing NaN is never on a front and never adds hypervolume (failed evaluations).
- Hypervolume is computed in *minimisation space*: maximised objectives are negated first
  (:func:`to_minimization`). Optionally an objective is taken as ``log10`` first, which is how
  spans of several decades (latency, area) are judged (see docs SEARCH.md section 4).
- :func:`normalized_hypervolume` maps each objective onto [0, 1] between fixed, caller-given bounds
  (``lower`` = best, ``upper`` = worst, in objective units) and measures against the fixed
  reference point (1, ..., 1). The bounds belong in the run config and must not be tuned after
  seeing results; a fixed reference is what makes numbers comparable between runs and samplers.

We write our own hypervolume instead of importing ``optuna._hypervolume`` (private API). The
algorithms: 1-D is a difference, 2-D a sort-and-sweep, 3-D a z-sweep that maintains the 2-D
staircase incrementally (O(n log n) searches, as in Beume et al.'s HV3D), and k >= 4 slices
along the last objective down to 3-D (HSO). k >= 4 is exact but meant for small n (hundreds).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "hypervolume",
    "hypervolume_history",
    "normalized_hypervolume",
    "pareto_mask",
    "to_minimization",
]


def _direction_signs(directions: Sequence[Any], k: int) -> np.ndarray:
    """+1 for minimise, -1 for maximise; accepts strings or enum members with a ``name``."""
    if len(directions) != k:
        raise ValueError(f"got {len(directions)} directions for {k} objectives")
    signs = np.empty(k)
    for i, d in enumerate(directions):
        name = str(getattr(d, "name", d)).lower()
        if name == "minimize":
            signs[i] = 1.0
        elif name == "maximize":
            signs[i] = -1.0
        else:
            raise ValueError(f"direction {i} is {d!r}; expected 'minimize' or 'maximize'")
    return signs


def _as_2d(values: Any, k: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return arr.reshape(0, k if k is not None else (arr.shape[-1] if arr.ndim == 2 else 0))
    if arr.ndim != 2:
        raise ValueError(f"expected an (n, k) array of objective values, got shape {arr.shape}")
    return arr


def to_minimization(
    values: Any, directions: Sequence[Any], *, log: Sequence[bool] | None = None
) -> np.ndarray:
    """Objective values as a minimisation problem: ``log10`` where ``log[i]``, then negate the
    maximised columns. Non-positive values in a log column become NaN (they cannot be placed on a
    log scale), so such rows drop out of fronts and hypervolumes."""
    k = len(directions)
    arr = _as_2d(values, k).copy()
    if arr.shape[1] != k:
        raise ValueError(f"values have {arr.shape[1]} objectives but {k} directions were given")
    signs = _direction_signs(directions, k)
    if log is not None:
        if len(log) != k:
            raise ValueError(f"got {len(log)} log flags for {k} objectives")
        for i, flag in enumerate(log):
            if flag:
                col = arr[:, i]
                with np.errstate(divide="ignore", invalid="ignore"):
                    arr[:, i] = np.where(col > 0, np.log10(np.where(col > 0, col, 1.0)), np.nan)
    return arr * signs


def pareto_mask(values: Any, directions: Sequence[Any]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of an ``(n, k)`` array.

    Row ``a`` dominates row ``b`` when it is at least as good in every objective and strictly
    better in one. Exact duplicates do not dominate each other, so every copy of a non-dominated
    point is kept (callers that want one representative deduplicate themselves). Rows with NaN
    are never on the front and never dominate anything. +-inf compare as ordinary numbers.
    """
    k = len(directions)
    pts = to_minimization(values, directions)
    n = pts.shape[0]
    mask = np.zeros(n, dtype=bool)
    valid = ~np.isnan(pts).any(axis=1)
    idx = np.flatnonzero(valid)
    if idx.size == 0 or k == 0:
        return mask
    sub = pts[idx]
    # In lexicographic order a row can only be dominated by rows before it, so the front found
    # so far is all a new row has to be checked against.
    order = np.lexsort(sub.T[::-1])
    front = np.empty((idx.size, k))
    size = 0
    for j in order:
        p = sub[j]
        if size:
            f = front[:size]
            if np.any(np.all(f <= p, axis=1) & np.any(f < p, axis=1)):
                continue
        front[size] = p
        size += 1
        mask[idx[j]] = True
    return mask


def _nondominated_min(pts: np.ndarray) -> np.ndarray:
    """Non-dominated rows (minimisation), duplicates collapsed to one."""
    if pts.shape[0] <= 1:
        return pts
    uniq = np.unique(pts, axis=0)
    keep = pareto_mask(uniq, ["minimize"] * pts.shape[1])
    return uniq[keep]


def _hv2d(pts: np.ndarray, ref: np.ndarray) -> float:
    """Area dominated by points that are all strictly better than ``ref`` in both coordinates."""
    if pts.shape[0] == 0:
        return 0.0
    order = np.lexsort((pts[:, 1], pts[:, 0]))
    x, y = pts[order, 0], pts[order, 1]
    prev_min = np.concatenate(([np.inf], np.minimum.accumulate(y)[:-1]))
    keep = y < prev_min
    x, y = x[keep], y[keep]
    x_next = np.append(x[1:], ref[0])
    return float(np.sum((x_next - x) * (ref[1] - y)))


class _Staircase2D:
    """A 2-D non-dominated set with its dominated area, updated by insertion."""

    def __init__(self, ref_x: float, ref_y: float) -> None:
        self.ref_x, self.ref_y = ref_x, ref_y
        self.xs: list[float] = []  # ascending
        self.ys: list[float] = []  # strictly descending, paired with xs
        self.area = 0.0

    def insert(self, x: float, y: float) -> None:
        xs, ys = self.xs, self.ys
        i = bisect.bisect_right(xs, x)
        if i > 0 and ys[i - 1] <= y:
            return  # weakly dominated: no new area
        j = bisect.bisect_left(xs, x)
        # Points dominated by (x, y) form the run xs[j:m] (x' >= x, y' >= y).
        m = j
        while m < len(xs) and ys[m] >= y:
            m += 1
        x_right = xs[m] if m < len(xs) else self.ref_x
        height = self.ref_y - ys[j - 1] if j > 0 else 0.0
        old, cursor = 0.0, x
        for r in range(j, m):
            old += (xs[r] - cursor) * height
            cursor, height = xs[r], self.ref_y - ys[r]
        old += (x_right - cursor) * height
        self.area += (x_right - x) * (self.ref_y - y) - old
        xs[j:m] = [x]
        ys[j:m] = [y]


def _hv3d(pts: np.ndarray, ref: np.ndarray) -> float:
    if pts.shape[0] == 0:
        return 0.0
    order = np.argsort(pts[:, 2], kind="stable")
    z = pts[order, 2]
    stair = _Staircase2D(float(ref[0]), float(ref[1]))
    total = 0.0
    for pos, row in enumerate(order):
        stair.insert(float(pts[row, 0]), float(pts[row, 1]))
        z_next = z[pos + 1] if pos + 1 < len(order) else ref[2]
        total += stair.area * float(z_next - z[pos])
    return total


def _hv_rec(pts: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of points strictly better than ``ref`` in every coordinate."""
    k = pts.shape[1]
    if pts.shape[0] == 0:
        return 0.0
    if k == 1:
        return float(ref[0] - pts[:, 0].min())
    if k == 2:
        return _hv2d(pts, ref)
    if k == 3:
        return _hv3d(pts, ref)
    pts = _nondominated_min(pts)
    order = np.argsort(pts[:, -1], kind="stable")
    pts = pts[order]
    total = 0.0
    for i in range(pts.shape[0]):
        z_next = pts[i + 1, -1] if i + 1 < pts.shape[0] else ref[-1]
        depth = float(z_next - pts[i, -1])
        if depth > 0:
            # The lower-dimensional call filters (k > 4) or skips dominated points itself.
            total += depth * _hv_rec(pts[: i + 1, :-1], ref[:-1])
    return total


def hypervolume(points: Any, reference: Sequence[float]) -> float:
    """Exact hypervolume dominated by ``points`` (minimisation space) and bounded by
    ``reference``.

    Points that are not strictly better than the reference in every coordinate add no volume and
    are ignored, as are rows containing NaN. A row with -inf that survives that filter makes the
    volume infinite, which is reported as a ValueError instead.
    """
    ref = np.asarray(reference, dtype=float).ravel()
    k = ref.size
    if k == 0 or not np.all(np.isfinite(ref)):
        raise ValueError(f"reference point must be finite and non-empty, got {reference!r}")
    pts = _as_2d(points, k)
    if pts.shape[1] != k:
        raise ValueError(f"points have {pts.shape[1]} objectives, reference has {k}")
    with np.errstate(invalid="ignore"):
        pts = pts[np.all(pts < ref, axis=1)]  # NaN compares False
    if pts.shape[0] == 0:
        return 0.0
    if not np.all(np.isfinite(pts)):
        raise ValueError("a point has -inf in some objective: its hypervolume is infinite")
    return _hv_rec(pts, ref)


def _normalize(
    values: Any,
    directions: Sequence[Any],
    lower: Sequence[float],
    upper: Sequence[float],
    log: Sequence[bool] | None,
) -> np.ndarray:
    k = len(directions)
    if len(lower) != k or len(upper) != k:
        raise ValueError(f"lower/upper need {k} entries each")
    pts = to_minimization(values, directions, log=log)
    best = to_minimization([list(lower)], directions, log=log)[0]
    worst = to_minimization([list(upper)], directions, log=log)[0]
    span = worst - best
    if not np.all(np.isfinite(span)) or np.any(span <= 0):
        raise ValueError(
            f"normalisation bounds must have lower (best) strictly better than upper (worst) "
            f"in every objective, and be positive where log is set; got lower={list(lower)}, "
            f"upper={list(upper)}"
        )
    with np.errstate(invalid="ignore"):
        # Better than the 'best' bound is clipped to it, so the result stays within [0, 1].
        return np.maximum((pts - best) / span, 0.0)


def normalized_hypervolume(
    values: Any,
    directions: Sequence[Any],
    *,
    lower: Sequence[float],
    upper: Sequence[float],
    log: Sequence[bool] | None = None,
) -> float:
    """Hypervolume in normalised (optionally log) space, in [0, 1].

    Each objective is mapped (after ``log10`` where ``log[i]``) linearly so that ``lower`` (its
    best value, in objective units) goes to 0 and ``upper`` (its worst) goes to 1; for a
    maximised objective ``lower`` is therefore the larger number. Values better than ``lower`` are
    clipped to 0. The reference point is (1, ..., 1): points worse than ``upper`` in any objective
    contribute nothing. Only pass the points you want counted (e.g. the feasible ones).
    """
    k = len(directions)
    pts = _normalize(values, directions, lower, upper, log)
    if pts.shape[0] == 0:
        return 0.0
    return min(1.0, hypervolume(pts, [1.0] * k))


def hypervolume_history(
    values_in_trial_order: Any,
    feasible_mask: Any,
    directions: Sequence[Any],
    *,
    lower: Sequence[float],
    upper: Sequence[float],
    log: Sequence[bool] | None = None,
) -> np.ndarray:
    """Normalised hypervolume (see :func:`normalized_hypervolume`) of the feasible points seen
    up to and including each trial; non-decreasing by construction. NaN rows (failed trials) and
    infeasible rows leave the value unchanged."""
    k = len(directions)
    pts = _normalize(values_in_trial_order, directions, lower, upper, log)
    feasible = np.asarray(feasible_mask, dtype=bool).ravel()
    if feasible.shape[0] != pts.shape[0]:
        raise ValueError(f"feasible_mask has {feasible.shape[0]} entries for {pts.shape[0]} rows")
    ref = np.ones(k)
    out = np.zeros(pts.shape[0])
    front = np.empty((0, k))
    current = 0.0
    for i in range(pts.shape[0]):
        p = pts[i]
        with np.errstate(invalid="ignore"):
            inside = bool(feasible[i]) and bool(np.all(p < ref))  # NaN -> False
        if inside and not np.any(np.all(front <= p, axis=1)):
            front = np.vstack([front[~np.all(p <= front, axis=1)], p])
            current = min(1.0, _hv_rec(front, ref))
        out[i] = current
    return out
