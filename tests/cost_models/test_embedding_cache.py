"""Embedding-cache hit-rate models: closed forms against exact sums, Che's LRU approximation
against exact LRU simulation of seeded Zipf traces, and the trace tools against each other."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from codesign.cost_models.embedding_cache import (
    DEFAULT_ZIPF_ALPHA,
    CacheHitRates,
    generalized_harmonic,
    hit_rates_from_trace,
    lru_hit_rate,
    miss_ratio_curve,
    simulate_lru,
    simulate_static,
    stack_distances,
    static_hit_rate,
    static_plus_lru_hit_rate,
    zipf_pmf,
    zipf_trace,
)

ALPHAS = (0.8, DEFAULT_ZIPF_ALPHA, 1.2)
ACCEPT_ROWS = 100_000
ACCEPT_CAPACITIES = np.array([100, 300, 1_000, 3_000, 10_000])  # 0.1 % .. 10 % of the rows
# 500k measured lookups after a 100k warm-up: the largest cache (10k rows) fills within ~40k
# lookups even at alpha = 0.8, and the sampling noise of a hit rate is below 0.2 pp.
ACCEPT_LENGTH = 600_000
ACCEPT_WARMUP = 100_000
TOLERANCE_PP = 0.03  # the brief's acceptance bound: 3 percentage points


def zipf_probabilities(rows: int, alpha: float, first: int = 1) -> np.ndarray:
    """Materialised Zipf popularity of ranks ``first..rows``, renormalised."""
    p = np.arange(first, rows + 1, dtype=np.float64) ** -alpha
    return p / p.sum()


def che_reference(p: np.ndarray, capacity: float) -> float:
    """Che's approximation by plain bisection on fully materialised probabilities."""
    lo, hi = math.log(capacity), math.log(-math.log1p(-capacity / p.size) / p.min())
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if np.sum(-np.expm1(-p * math.exp(mid))) < capacity:
            lo = mid
        else:
            hi = mid
    return float(np.sum(p * -np.expm1(-p * math.exp(0.5 * (lo + hi)))))


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("alpha", [0.3, 0.8, 1.0, DEFAULT_ZIPF_ALPHA, 2.0, 5.0])
def test_generalized_harmonic_matches_direct_sum(alpha: float) -> None:
    ns = np.array([0, 1, 2, 31, 32, 33, 100, 12_345, 1_000_000])
    exact = np.array([np.sum(np.arange(1, n + 1, dtype=np.float64) ** -alpha) for n in ns])
    vector = generalized_harmonic(ns, alpha)
    np.testing.assert_allclose(vector, exact, rtol=1e-12, atol=0)
    scalars = [generalized_harmonic(int(n), alpha) for n in ns]
    np.testing.assert_allclose(scalars, exact, rtol=1e-12, atol=0)


def test_zipf_pmf_sums_to_one() -> None:
    ranks = np.arange(1, 5_001)
    p = zipf_pmf(5_000, DEFAULT_ZIPF_ALPHA, ranks)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert zipf_pmf(5_000, DEFAULT_ZIPF_ALPHA, 1) == pytest.approx(p[0])
    with pytest.raises(ValueError, match="ranks"):
        zipf_pmf(10, 1.0, [0, 1])


@pytest.mark.parametrize("alpha", ALPHAS)
def test_static_hit_rate_exact_for_small_tables(alpha: float) -> None:
    rows = 1_000
    exact = np.concatenate([[0.0], np.cumsum(zipf_probabilities(rows, alpha))])
    capacities = np.arange(rows + 1)
    np.testing.assert_allclose(static_hit_rate(rows, capacities, alpha), exact, atol=1e-13)
    assert static_hit_rate(rows, 37, alpha) == pytest.approx(exact[37], abs=1e-13)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_static_hit_rate_large_table_matches_exact_summation(alpha: float) -> None:
    rows = 1_000_000
    cumulative = np.cumsum(zipf_probabilities(rows, alpha))
    capacities = np.array([1, 10, 1_000, 54_321, 100_000, 999_999])
    approx = static_hit_rate(rows, capacities, alpha)
    np.testing.assert_allclose(approx, cumulative[capacities - 1], atol=1e-10)


@pytest.mark.parametrize("alpha", [0.5, *ALPHAS, 2.0])
def test_lru_hit_rate_matches_materialised_che(alpha: float) -> None:
    """The head-plus-quadrature sums reproduce Che's approximation on all N probabilities."""
    rows = 200_000
    p = zipf_probabilities(rows, alpha)
    capacities = [1, 50, 2_000, 100_000, 199_999]
    approx = lru_hit_rate(rows, np.array(capacities), alpha)
    exact = [che_reference(p, c) for c in capacities]
    np.testing.assert_allclose(approx, exact, atol=1e-7)


# --------------------------------------------------------------------------- acceptance


@pytest.mark.parametrize("alpha", ALPHAS)
def test_lru_approximation_within_3pp_of_exact_simulation(alpha: float) -> None:
    trace = zipf_trace(ACCEPT_ROWS, alpha, ACCEPT_LENGTH, seed=7)
    simulated = 1.0 - miss_ratio_curve(trace, ACCEPT_CAPACITIES, warmup=ACCEPT_WARMUP)
    analytical = lru_hit_rate(ACCEPT_ROWS, ACCEPT_CAPACITIES, alpha)
    # Measured (seed 7): every gap is below 0.15 pp.
    np.testing.assert_allclose(analytical, simulated, atol=TOLERANCE_PP, rtol=0)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_static_hit_rate_matches_simulated_true_hottest_rows(alpha: float) -> None:
    trace = zipf_trace(ACCEPT_ROWS, alpha, 200_000, seed=3, permute=False)
    for capacity in (100, 1_000, 10_000):
        simulated = simulate_static(trace, capacity, profile=np.arange(capacity))
        assert simulated == pytest.approx(static_hit_rate(ACCEPT_ROWS, capacity, alpha), abs=0.01)


@pytest.mark.parametrize("alpha", [0.8, DEFAULT_ZIPF_ALPHA])
@pytest.mark.parametrize(("static_rows", "dynamic_rows"), [(300, 3_000), (1_000, 1_000)])
def test_static_plus_lru_simulation_agrees_with_analysis(
    alpha: float, static_rows: int, dynamic_rows: int
) -> None:
    trace = zipf_trace(ACCEPT_ROWS, alpha, 400_000, seed=11, permute=False)
    analytical = static_plus_lru_hit_rate(ACCEPT_ROWS, static_rows, dynamic_rows, alpha)
    # Pinning the true hottest rows (ids 0..s-1 without the permutation) ...
    true_hot = hit_rates_from_trace(
        trace, static_rows, dynamic_rows, warmup=50_000, profile=np.arange(static_rows)
    )
    # ... and the oracle: the trace's own most frequent rows.
    oracle = hit_rates_from_trace(trace, static_rows, dynamic_rows, warmup=50_000)
    for simulated in (true_hot, oracle):
        assert simulated.total == pytest.approx(simulated.static + simulated.dynamic)
        assert simulated.static == pytest.approx(analytical.static, abs=TOLERANCE_PP)
        assert simulated.dynamic == pytest.approx(analytical.dynamic, abs=TOLERANCE_PP)
        assert simulated.total == pytest.approx(analytical.total, abs=TOLERANCE_PP)


# --------------------------------------------------------------------------- model properties


@pytest.mark.parametrize("alpha", [0.5, *ALPHAS, 3.0])
def test_static_dominates_lru_and_both_are_monotone(alpha: float) -> None:
    rows = 50_000
    capacities = np.unique(np.geomspace(1, rows, 40).astype(int))
    static = static_hit_rate(rows, capacities, alpha)
    lru = lru_hit_rate(rows, capacities, alpha)
    assert np.all(static >= lru - 1e-12)  # static pinning is optimal under IRM
    assert np.all(np.diff(static) >= 0)
    assert np.all(np.diff(lru) >= 0)
    for model in (static_hit_rate, lru_hit_rate):
        assert model(rows, 0, alpha) == 0.0
        assert model(rows, rows, alpha) == 1.0
        assert model(rows, 10 * rows, alpha) == 1.0
        assert model(rows, 1_000.9, alpha) == model(rows, 1_000, alpha)  # whole rows


def test_simulated_static_dominates_lru_within_noise() -> None:
    """A static cache profiled on past lookups beats LRU on the next ones (IRM)."""
    trace = zipf_trace(ACCEPT_ROWS, DEFAULT_ZIPF_ALPHA, 300_000, seed=5)
    past, future = trace[:150_000], trace[150_000:]
    for capacity in (100, 1_000, 10_000):
        static = simulate_static(future, capacity, profile=past)
        lru = simulate_lru(trace, capacity, warmup=150_000)
        assert static >= lru - 0.005


def test_simulation_endpoints() -> None:
    trace = zipf_trace(50, 0.5, 20_000, seed=1)
    assert simulate_lru(trace, 0) == 0.0
    assert simulate_static(trace, 0) == 0.0
    assert np.unique(trace[:5_000]).size == 50  # every row seen during the warm-up
    assert simulate_lru(trace, 50, warmup=5_000) == 1.0
    assert simulate_static(trace, 50) == 1.0
    np.testing.assert_array_equal(miss_ratio_curve(trace, [0, 50, 1_000], warmup=5_000), [1, 0, 0])


def test_static_plus_lru_decomposition() -> None:
    rows, alpha = 1_000_000, DEFAULT_ZIPF_ALPHA
    rates = static_plus_lru_hit_rate(rows, 5_000, 20_000, alpha)
    assert rates.total == pytest.approx(rates.static + rates.dynamic, abs=1e-15)
    assert rates.static == pytest.approx(static_hit_rate(rows, 5_000, alpha))
    assert 0 < rates.dynamic < 1 - rates.static
    # Same rows split static/dynamic beat all-LRU, lose to all-static (IRM).
    assert lru_hit_rate(rows, 25_000, alpha) < rates.total < static_hit_rate(rows, 25_000, alpha)
    # The LRU's own hit rate is Che on the renormalised tail, materialised here.
    tail = zipf_probabilities(rows, alpha, first=5_001)
    conditional = rates.dynamic / (1 - rates.static)
    assert conditional == pytest.approx(che_reference(tail, 20_000), abs=1e-7)

    no_static = static_plus_lru_hit_rate(rows, 0, 20_000, alpha)
    assert no_static.static == 0.0
    assert no_static.dynamic == pytest.approx(lru_hit_rate(rows, 20_000, alpha), abs=1e-12)
    no_dynamic = static_plus_lru_hit_rate(rows, 5_000, 0, alpha)
    assert (no_dynamic.dynamic, no_dynamic.total) == (0.0, rates.static)
    assert static_plus_lru_hit_rate(rows, rows, 10, alpha) == CacheHitRates(1.0, 0.0, 1.0)
    assert static_plus_lru_hit_rate(rows, rows - 10, 10, alpha).total == pytest.approx(1.0)


def test_cache_hit_rates_is_frozen() -> None:
    rates = CacheHitRates(static=0.5, dynamic=0.25, total=0.75)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rates.total = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------- traces


@pytest.mark.parametrize(
    ("rows", "alpha"), [(1_000_000, DEFAULT_ZIPF_ALPHA), (100_000_000, 0.8), (10**8, 1.0)]
)
def test_zipf_trace_frequencies_match_pmf(rows: int, alpha: float) -> None:
    """Chi-square over the 30 top ranks and log-spaced rank bins, across the exact-head /
    continuous-tail boundary at rank 16384."""
    length = 1_000_000
    ranks = zipf_trace(rows, alpha, length, seed=2024, permute=False) + 1
    assert ranks.min() >= 1 and ranks.max() <= rows
    edges = np.unique(
        np.concatenate([np.arange(0, 31), [100, 1_000, 8_000, 16_384, 40_000, 10**5], [rows]])
    )
    edges = edges[edges <= rows]
    counts = np.histogram(ranks, bins=edges + 0.5)[0]  # bins (e_k, e_k+1] of ranks
    cumulative = generalized_harmonic(edges, alpha) / generalized_harmonic(rows, alpha)
    expected = length * np.diff(cumulative)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    dof = expected.size - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof), (chi2, dof)
    top = np.bincount(ranks[ranks <= 5], minlength=6)[1:]
    p_top = zipf_pmf(rows, alpha, np.arange(1, 6))
    sigma = np.sqrt(length * p_top * (1 - p_top))
    assert np.all(np.abs(top - length * p_top) < 5 * sigma)


def test_zipf_trace_is_seeded() -> None:
    a = zipf_trace(10**8, DEFAULT_ZIPF_ALPHA, 10_000, seed=42)
    b = zipf_trace(10**8, DEFAULT_ZIPF_ALPHA, 10_000, seed=42)
    c = zipf_trace(10**8, DEFAULT_ZIPF_ALPHA, 10_000, seed=43)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64 and a.shape == (10_000,)
    assert a.min() >= 0 and a.max() < 10**8
    assert np.mean(a != c) > 0.5
    assert zipf_trace(10, 1.0, 0, seed=0).shape == (0,)


def test_zipf_trace_permutation_is_a_seeded_bijection() -> None:
    rows = 50
    ranks = zipf_trace(rows, 0.3, 20_000, seed=9, permute=False)
    ids = zipf_trace(rows, 0.3, 20_000, seed=9)
    pairs = np.unique(np.stack([ranks, ids]), axis=1)
    assert pairs.shape[1] == rows  # one id per rank, every rank drawn
    assert np.unique(pairs[1]).size == rows and set(pairs[1]) == set(range(rows))
    hottest = np.argsort(-np.bincount(zipf_trace(10**6, 1.2, 50_000, seed=9)))[:10]
    assert set(hottest.tolist()) != set(range(10))  # hot rows are scattered


# --------------------------------------------------------------------------- trace tools


def test_stack_distances_hand_example() -> None:
    trace = np.array([7, 8, 9, 7, 8, 8, 1, 9, 7])
    np.testing.assert_array_equal(stack_distances(trace), [-1, -1, -1, 2, 2, 0, -1, 3, 3])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_miss_ratio_curve_equals_lru_replay(seed: int) -> None:
    rng = np.random.default_rng(seed)
    trace = zipf_trace(2_000, float(rng.uniform(0.3, 1.5)), 30_000, seed=seed)
    capacities = [0, 1, 2, 7, 100, 640, 1_999, 5_000]
    curve = miss_ratio_curve(trace, capacities, warmup=1_000)
    replay = [1 - simulate_lru(trace, c, warmup=1_000) for c in capacities]
    np.testing.assert_allclose(curve, replay, atol=1e-15)
    np.testing.assert_allclose(1 - curve[4], simulate_lru(trace, 100.5, warmup=1_000))


def test_hit_rates_from_trace_reduces_to_single_caches() -> None:
    trace = zipf_trace(5_000, DEFAULT_ZIPF_ALPHA, 40_000, seed=4)
    lru_only = hit_rates_from_trace(trace, 0, 300, warmup=2_000)
    assert (lru_only.static, lru_only.dynamic) == (0.0, simulate_lru(trace, 300, warmup=2_000))
    static_only = hit_rates_from_trace(trace, 300, 0, warmup=2_000, profile=trace)
    assert static_only.dynamic == 0.0
    pinned = simulate_static(trace[2_000:], 300, profile=trace)
    assert static_only.static == pytest.approx(pinned)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: static_hit_rate(0, 10), "rows must be a positive integer"),
        (lambda: lru_hit_rate(-5, 10), "rows must be a positive integer"),
        (lambda: lru_hit_rate(10.5, 1), "rows must be a positive integer"),
        (lambda: lru_hit_rate(True, 1), "rows must be a positive integer"),
        (lambda: static_hit_rate(100, -1), "capacity_rows must be a finite non-negative"),
        (lambda: lru_hit_rate(100, [1, -1]), "capacity_rows must be a finite non-negative"),
        (lambda: lru_hit_rate(100, float("nan")), "capacity_rows must be a finite non-negative"),
        (lambda: static_hit_rate(100, 10, 0.0), "alpha must be a positive finite number"),
        (lambda: lru_hit_rate(100, 10, -1.09), "alpha must be a positive finite number"),
        (lambda: lru_hit_rate(100, 10, float("inf")), "alpha must be a positive finite number"),
        (lambda: static_plus_lru_hit_rate(100, -1, 5), "static_rows must be a finite"),
        (lambda: static_plus_lru_hit_rate(100, 5, [1, 2]), "single numbers of rows"),
        (lambda: zipf_trace(0, 1.0, 10, seed=0), "rows must be a positive integer"),
        (lambda: zipf_trace(10, 0, 10, seed=0), "alpha must be a positive finite number"),
        (lambda: zipf_trace(10, 1.0, -1, seed=0), "length must be a non-negative integer"),
        (lambda: zipf_trace(10, 1.0, 10, seed=-3), "seed must be a non-negative integer"),
        (lambda: simulate_lru(np.arange(5), -1), "capacity_rows must be a finite"),
        (lambda: simulate_lru(np.arange(5), 2, warmup=5), r"warmup \(5\) must be shorter"),
        (lambda: simulate_lru(np.array([], dtype=int), 2), "at least one lookup"),
        (lambda: simulate_lru(np.ones(5), 2), "1-D array of integer row ids"),
        (lambda: simulate_static(np.arange(5), 1, profile=np.ones((2, 2), int)), "profile must"),
        (lambda: miss_ratio_curve(np.arange(5), [-1]), "capacities must be a finite"),
    ],
)
def test_invalid_arguments_raise_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
