"""Pareto fronts and exact hypervolume, computed by moocore (non-dominated sorting and the
hypervolume itself), with the conventions the search needs around them.

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

What stays here, because no library does it: mixed directions and ``log10`` objectives mapped
to one minimisation space, NaN rows (failed evaluations) kept off fronts, normalisation between
fixed, recorded bounds (so hypervolumes compare across runs and samplers), and the
hypervolume-over-trials history of a study. The algorithms are moocore's
(``moocore.is_nondominated``, ``moocore.hypervolume``: exact, in C; Optuna's own hypervolume is
private API).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import moocore
import numpy as np

__all__ = [
    "hypervolume",
    "hypervolume_history",
    "normalize",
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
    # weakly: exact duplicates of a non-dominated point all stay on the front
    mask[idx] = moocore.is_nondominated(pts[idx], keep_weakly=True)
    return mask


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
    return float(moocore.hypervolume(pts, ref=ref))


def normalize(
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
    pts = normalize(values, directions, lower, upper, log)
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
    pts = normalize(values_in_trial_order, directions, lower, upper, log)
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
            current = min(1.0, float(moocore.hypervolume(front, ref=ref)))
        out[i] = current
    return out
