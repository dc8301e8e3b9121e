"""Pareto mask and exact hypervolume against hand-computed volumes and brute force."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codesign.search.pareto import (
    hypervolume,
    hypervolume_history,
    normalized_hypervolume,
    pareto_mask,
    to_minimization,
)

HYP = settings(derandomize=True, max_examples=150, deadline=None)


def grid_volume(points: np.ndarray, reference) -> float:
    """Exact volume by brute force: split space on every coordinate and test each cell's lower
    corner against every point (O(n^(k+1)); tiny inputs only)."""
    ref = np.asarray(reference, dtype=float)
    pts = np.asarray(points, dtype=float).reshape(-1, ref.size)
    pts = pts[np.all(pts < ref, axis=1)]
    if pts.shape[0] == 0:
        return 0.0
    axes = [np.unique(np.append(pts[:, d], ref[d])) for d in range(ref.size)]
    lows = np.meshgrid(*[a[:-1] for a in axes], indexing="ij")
    sizes = np.meshgrid(*[np.diff(a) for a in axes], indexing="ij")
    corner = np.stack([g.ravel() for g in lows], axis=1)
    vol = np.prod(np.stack([g.ravel() for g in sizes], axis=1), axis=1)
    covered = np.zeros(corner.shape[0], dtype=bool)
    for p in pts:
        covered |= np.all(p <= corner, axis=1)
    return float(vol[covered].sum())


def brute_mask(values: np.ndarray, directions) -> np.ndarray:
    """The textbook O(n^2) definition."""
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    v = values * sign
    n = len(v)
    out = np.zeros(n, dtype=bool)
    for i in range(n):
        if np.isnan(v[i]).any():
            continue
        dominated = False
        for j in range(n):
            if j == i or np.isnan(v[j]).any():
                continue
            if np.all(v[j] <= v[i]) and np.any(v[j] < v[i]):
                dominated = True
                break
        out[i] = not dominated
    return out


@st.composite
def point_sets(draw, max_k: int = 4, max_n: int = 8):
    k = draw(st.integers(1, max_k))
    n = draw(st.integers(0, max_n))
    # A small integer grid makes ties and duplicates common; the offset keeps floats in play.
    grid = draw(
        st.lists(st.lists(st.integers(0, 6), min_size=k, max_size=k), min_size=n, max_size=n)
    )
    pts = np.array(grid, dtype=float).reshape(n, k) * 0.5 + 0.25
    ref = np.array(draw(st.lists(st.integers(1, 8), min_size=k, max_size=k)), dtype=float) * 0.5
    return pts, ref


# --- hand examples ---------------------------------------------------------------------------


def test_hypervolume_1d():
    assert hypervolume([[3.0], [1.0], [5.0]], [4.0]) == pytest.approx(3.0)


def test_hypervolume_2d_staircase():
    # Strips x in [1,2),[2,3),[3,4) have heights 1, 2, 3.
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]) == pytest.approx(6.0)
    # A dominated point and a point outside the reference change nothing.
    assert hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]], [4, 4]) == pytest.approx(6.0)


def test_hypervolume_3d_inclusion_exclusion():
    # Three unit-offset boxes to (2,2,2): 3*4 - 3*2 + 1 = 7.
    pts = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert hypervolume(pts, [2, 2, 2]) == pytest.approx(7.0)
    assert hypervolume([[0, 0, 0]], [1, 2, 3]) == pytest.approx(6.0)


def test_hypervolume_4d_inclusion_exclusion():
    pts = [[1, 0, 0, 0], [0, 1, 0, 0]]  # each 1*2*2*2 = 8, overlap 1*1*2*2 = 4
    assert hypervolume(pts, [2, 2, 2, 2]) == pytest.approx(12.0)


def test_points_on_or_beyond_reference_are_ignored():
    assert hypervolume([[1.0, 4.0], [4.0, 1.0], [5.0, 5.0]], [4.0, 4.0]) == 0.0
    assert hypervolume(np.empty((0, 3)), [1, 1, 1]) == 0.0
    assert hypervolume([[np.nan, 0.0], [0.5, 0.5]], [1, 1]) == pytest.approx(0.25)


def test_hypervolume_rejects_bad_input():
    with pytest.raises(ValueError):
        hypervolume([[0.0, 0.0]], [1.0, np.inf])
    with pytest.raises(ValueError):
        hypervolume([[0.0, 0.0, 0.0]], [1.0, 1.0])
    with pytest.raises(ValueError):
        hypervolume([[-np.inf, 0.0]], [1.0, 1.0])


# --- brute force and Monte Carlo -------------------------------------------------------------


@HYP
@given(point_sets())
def test_hypervolume_equals_brute_force_grid(case):
    pts, ref = case
    assert hypervolume(pts, ref) == pytest.approx(grid_volume(pts, ref), rel=1e-9, abs=1e-12)


@HYP
@given(point_sets(max_k=3, max_n=6), st.integers(0, 5))
def test_adding_dominated_points_changes_nothing(case, n_extra):
    pts, ref = case
    if pts.shape[0] == 0:
        return
    rng = np.random.default_rng(n_extra)
    base = pts[rng.integers(0, pts.shape[0], size=n_extra)]
    extra = base + rng.uniform(0.0, 1.0, size=base.shape)  # weakly worse in every coordinate
    both = np.vstack([pts, extra])
    assert hypervolume(both, ref) == pytest.approx(hypervolume(pts, ref), rel=1e-9, abs=1e-12)
    dirs = ["minimize"] * pts.shape[1]
    assert np.array_equal(
        pareto_mask(both, dirs)[: len(pts)] | ~pareto_mask(pts, dirs), np.ones(len(pts), dtype=bool)
    )


@pytest.mark.parametrize("k", [2, 3, 4])
def test_hypervolume_matches_monte_carlo(k):
    rng = np.random.default_rng(k)
    pts = rng.uniform(0.0, 1.0, size=(30, k)) ** 2
    ref = np.ones(k)
    samples = rng.uniform(0.0, 1.0, size=(200_000, k))
    hit = np.zeros(len(samples), dtype=bool)
    for p in pts:
        hit |= np.all(p <= samples, axis=1)
    est = hit.mean()
    sd = np.sqrt(est * (1 - est) / len(samples))
    assert abs(hypervolume(pts, ref) - est) < 5 * sd + 1e-9


# --- pareto mask -----------------------------------------------------------------------------


@HYP
@given(
    st.integers(1, 4).flatmap(
        lambda k: st.tuples(
            st.lists(st.sampled_from(["minimize", "maximize"]), min_size=k, max_size=k),
            st.lists(
                st.lists(
                    st.one_of(st.integers(0, 4).map(float), st.just(np.nan)), min_size=k, max_size=k
                ),
                max_size=25,
            ),
        )
    )
)
def test_pareto_mask_equals_definition(case):
    directions, rows = case
    values = np.array(rows, dtype=float).reshape(len(rows), len(directions))
    assert np.array_equal(pareto_mask(values, directions), brute_mask(values, directions))


def test_pareto_mask_keeps_duplicates_and_drops_nan():
    values = np.array([[1.0, 5.0], [1.0, 5.0], [2.0, 6.0], [np.nan, 0.0], [0.0, 4.0]])
    # maximize the second objective: (2, 6) and (0, 4)/(1, 5) trade off.
    mask = pareto_mask(values, ["minimize", "maximize"])
    assert mask.tolist() == [True, True, True, False, True]
    assert pareto_mask(np.empty((0, 2)), ["minimize", "minimize"]).shape == (0,)


def test_study_direction_enum_is_accepted():
    optuna = pytest.importorskip("optuna")
    d = [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    assert pareto_mask([[1, 1], [2, 2]], d).tolist() == [True, True]
    with pytest.raises(ValueError):
        pareto_mask([[1, 1]], ["min", "max"])


# --- transforms, normalisation and history ---------------------------------------------------


def test_to_minimization_flips_and_logs():
    out = to_minimization(
        [[100.0, 0.5, 10.0], [0.0, 2.0, -1.0]],
        ["minimize", "maximize", "maximize"],
        log=[True, False, True],
    )
    assert out[0].tolist() == pytest.approx([2.0, -0.5, -1.0])
    assert np.isnan(out[1, 0]) and out[1, 1] == -2.0 and np.isnan(out[1, 2])


def test_normalized_hypervolume_log_space_and_maximize():
    dirs, lower, upper = ["minimize"], [1e-4], [10.0]
    # log10: best -4, worst 1, 1e-2 sits at 2/5 of the way: 0.6 of the unit interval remains.
    assert normalized_hypervolume(
        [[1e-2]], dirs, lower=lower, upper=upper, log=[True]
    ) == pytest.approx(0.6)
    # A maximised objective: lower is the best (larger) value.
    assert normalized_hypervolume(
        [[0.75]], ["maximize"], lower=[1.0], upper=[0.0]
    ) == pytest.approx(0.75)
    both = normalized_hypervolume(
        [[1e-3, 0.5]],
        ["minimize", "maximize"],
        lower=[1e-4, 1.0],
        upper=[10.0, 0.0],
        log=[True, False],
    )
    assert both == pytest.approx(0.8 * 0.5)
    # Better than the best bound is clipped: the result never exceeds 1; worse than worst is 0.
    assert normalized_hypervolume([[1e-9]], dirs, lower=lower, upper=upper, log=[True]) == 1.0
    assert normalized_hypervolume([[100.0]], dirs, lower=lower, upper=upper, log=[True]) == 0.0
    assert normalized_hypervolume(np.empty((0, 1)), dirs, lower=lower, upper=upper) == 0.0
    with pytest.raises(ValueError):
        normalized_hypervolume([[1.0]], dirs, lower=[2.0], upper=[1.0])


def test_hypervolume_history_is_monotone_and_ends_at_the_total():
    rng = np.random.default_rng(0)
    n = 200
    values = np.column_stack(
        [10 ** rng.uniform(-4, 1, n), rng.uniform(0, 1, n), 10 ** rng.uniform(-1, 3, n)]
    )
    values[rng.integers(0, n, 10)] = np.nan  # failed trials
    feasible = rng.uniform(size=n) < 0.7
    dirs = ["minimize", "maximize", "minimize"]
    kw = dict(lower=[1e-4, 1.0, 0.1], upper=[10.0, 0.0, 1000.0], log=[True, False, True])
    hist = hypervolume_history(values, feasible, dirs, **kw)
    assert hist.shape == (n,)
    assert np.all(np.diff(hist) >= 0) and 0 < hist[-1] <= 1
    assert hist[-1] == pytest.approx(normalized_hypervolume(values[feasible], dirs, **kw))
    for i in (10, 57, 150):
        sub = values[: i + 1][feasible[: i + 1]]
        assert hist[i] == pytest.approx(normalized_hypervolume(sub, dirs, **kw))
    # Infeasible rows never move the curve.
    none = hypervolume_history(values, np.zeros(n, dtype=bool), dirs, **kw)
    assert np.all(none == 0)


@pytest.mark.parametrize("k", [2, 3])
def test_hypervolume_is_fast_on_a_1000_point_front(k):
    rng = np.random.default_rng(k)
    pts = np.abs(rng.normal(size=(1000, k)))
    pts = pts / np.linalg.norm(pts, axis=1, keepdims=True)  # all mutually non-dominated
    assert pareto_mask(pts, ["minimize"] * k).all()
    start = time.perf_counter()
    value = hypervolume(pts, np.full(k, 1.1))
    assert time.perf_counter() - start < 1.0
    # Outside the quarter (eighth) sphere; the sampled front covers slightly less.
    outside_sphere = {2: 1.21 - np.pi / 4, 3: 1.331 - np.pi / 6}[k]
    assert outside_sphere - 0.05 < value < outside_sphere
    if k == 3:  # independently: slices along z, each slice's area by the 2-D sweep
        z = np.sort(pts[:, 2])
        order = np.argsort(pts[:, 2])
        slices = sum(
            hypervolume(pts[order[: i + 1], :2], [1.1, 1.1]) * (nz - z[i])
            for i, nz in enumerate(np.append(z[1:], 1.1))
        )
        assert value == pytest.approx(slices, rel=1e-9)
    start = time.perf_counter()
    hypervolume_history(
        pts, np.ones(len(pts), dtype=bool), ["minimize"] * k, lower=[0.0] * k, upper=[1.1] * k
    )
    assert time.perf_counter() - start < 15.0
