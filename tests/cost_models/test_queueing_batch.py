"""Batch queueing: simulate_batch against simulate_pipeline design by design, common random
numbers (LoadStream), batch percentiles against summarize, the screening bounds, the batch
max-QPS search (determinism, monotonicity, the SLA at and just above the answer, the exact
M/D/1 quantile), and the query-count rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from codesign.cost_models.queueing import (
    LoadStream,
    SizeDistribution,
    _percentile_meets,
    latency_lower_bound_s,
    max_qps_batch,
    max_qps_upper_bound,
    md1_sojourn_quantile_s,
    poisson_arrivals,
    quantile_rank_band,
    queries_for_tolerance,
    screen,
    simulate_batch,
    simulate_pipeline,
    stability_limit_batch_qps,
    stability_limit_qps,
    summarize,
    tail_latency_batch,
)

RTOL = 1e-12


def random_case(rng: np.random.Generator, *, per_query: bool, shared: bool) -> dict:
    """A batch of random designs: 1-3 pools, 1-16 servers, loads from light to overloaded."""
    n_designs = int(rng.integers(1, 9))
    n_pools = int(rng.integers(1, 4))
    n_queries = int(rng.integers(1, 300))
    servers = rng.integers(1, 17, (n_designs, n_pools))
    mean_s = rng.uniform(0.2e-3, 2e-3, (n_designs, n_pools)) * servers
    qps = float(rng.uniform(0.2, 1.3) / mean_s.max() * servers.min())
    convention = "recpipe" if rng.random() < 0.25 else "exponential"  # recpipe: tied arrivals
    seed = int(rng.integers(0, 2**31))
    if shared:
        arrivals = poisson_arrivals(n_queries, qps=qps, seed=seed, convention=convention)
        if rng.random() < 0.2:
            arrivals = rng.permutation(arrivals)
    else:
        arrivals = np.stack(
            [poisson_arrivals(n_queries, qps=qps, seed=seed + i) for i in range(n_designs)]
        )
        if rng.random() < 0.2:
            arrivals = arrivals[:, rng.permutation(n_queries)]
    if per_query:
        service = rng.exponential(1.0, (n_designs, n_queries, n_pools)) * mean_s[:, None, :]
        if rng.random() < 0.2:
            service = np.round(service, 3)  # ties in service and departure times
    else:
        service = mean_s
    return {"arrivals": arrivals, "service": service, "servers": servers}


@pytest.mark.parametrize("per_query", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_simulate_batch_equals_simulate_pipeline(per_query: bool, shared: bool) -> None:
    rng = np.random.default_rng([per_query, shared])
    designs = 0
    while designs < 100:  # 400 random designs over the four combinations
        case = random_case(rng, per_query=per_query, shared=shared)
        latency = simulate_batch(case["arrivals"], case["service"], case["servers"])
        n_designs, n_queries = latency.shape
        for i in range(n_designs):
            arrivals = case["arrivals"] if shared else case["arrivals"][i]
            service = case["service"][i]
            if not per_query:
                service = np.broadcast_to(service, (n_queries, service.size))
            expected = simulate_pipeline(arrivals, service, case["servers"][i]).latency_s
            np.testing.assert_allclose(latency[i], expected, rtol=RTOL, atol=0.0)
        designs += n_designs


def test_simulate_batch_edge_cases() -> None:
    arrivals = np.array([0.0, 0.0, 1e-3, 1e-3, 1e-3])
    service = np.array([[1e-3, 0.0], [2e-3, 5e-4], [0.0, 0.0]])
    servers = np.array([[1, 2], [5, 5], [9, 9]])
    latency = simulate_batch(arrivals, service, servers)
    for i in range(3):
        run = simulate_pipeline(arrivals, np.broadcast_to(service[i], (5, 2)), servers[i])
        np.testing.assert_array_equal(latency[i], run.latency_s)
    np.testing.assert_array_equal(latency[2], 0.0)  # no service: no latency
    np.testing.assert_allclose(latency[1], 2.5e-3, rtol=1e-12)  # 5 servers, 5 queries: no wait
    single = simulate_batch([0.0], [[1e-3]], [[1]])
    assert single.shape == (1, 1) and single[0, 0] == 1e-3
    assert simulate_batch(arrivals, np.zeros((0, 2)), np.zeros((0, 2), int)).shape == (0, 5)


@pytest.mark.parametrize(
    ("arrivals", "service", "servers", "match"),
    [
        ([[0.0, 1.0], [0.0, 1.0]], [[1.0]], [[1]], "designs"),
        ([0.0, 1.0], [[[1.0], [1.0], [1.0]]], [[1]], "queries"),
        ([0.0, 1.0], [[-1.0]], [[1]], "non-negative"),
        ([0.0, np.nan], [[1.0]], [[1]], "finite"),
        ([0.0, 1.0], [[1.0]], [[0]], ">= 1"),
        ([0.0, 1.0], [[1.0]], [[1.5]], "integers"),
        ([0.0, 1.0], [[1.0]], [[1, 1]], "shape"),
        ([], [[1.0]], [[1]], "shape"),
    ],
)
def test_simulate_batch_rejects_bad_input(arrivals, service, servers, match) -> None:
    with pytest.raises(ValueError, match=match):
        simulate_batch(arrivals, service, servers)


# --------------------------------------------------------------------------- percentiles


def test_tail_latency_batch_matches_summarize() -> None:
    rng = np.random.default_rng(3)
    n_queries, warmup = 500, 40
    servers = np.array([[1, 2], [3, 1], [2, 2]])
    service = rng.exponential(1.0, (3, n_queries, 2)) * np.array([0.8e-3, 1.5e-3])
    arrivals = poisson_arrivals(n_queries, qps=700.0, seed=5)
    latency = simulate_batch(arrivals, service, servers)
    table = tail_latency_batch(latency, warmup=warmup)
    shuffled = rng.permutation(n_queries)
    table_unsorted = tail_latency_batch(
        latency[:, shuffled], warmup=warmup, arrivals_s=arrivals[shuffled]
    )
    for i in range(3):
        report = summarize(simulate_pipeline(arrivals, service[i], servers[i]), warmup=warmup)
        expected = [report.p50_latency_s, report.p95_latency_s, report.p99_latency_s]
        assert table[i].tolist() == expected
        assert table_unsorted[i].tolist() == expected
    per_design = np.stack([arrivals, arrivals * 1.1, arrivals])
    assert tail_latency_batch(latency, warmup=warmup, arrivals_s=per_design).shape == (3, 3)
    with pytest.raises(ValueError, match="warmup"):
        tail_latency_batch(latency, warmup=n_queries)


@pytest.mark.parametrize("percentile", [50, 95, 99, 99.9, 0, 100, 37.3])
def test_sla_decision_equals_np_percentile(percentile: float) -> None:
    """max_qps_batch decides by counting latencies under the SLA; the decision must be exactly
    ``np.percentile(...) <= sla``, also at SLAs equal to a sample or to the percentile."""
    rng = np.random.default_rng(int(percentile * 10))
    for n in (1, 2, 7, 100, 1001):
        latency = np.round(rng.exponential(1.0, (50, n)), 1)  # many ties
        exact = np.percentile(latency, percentile, axis=1)
        for sla in (exact, latency[:, 0], np.nextafter(exact, 0.0), np.full(50, 1.0)):
            expected = exact <= sla
            assert np.array_equal(_percentile_meets(latency, percentile, sla), expected)
            assert np.array_equal(
                _percentile_meets(latency.T.copy(), percentile, sla, axis=0), expected
            )


# --------------------------------------------------------------------------- common random numbers


@pytest.mark.parametrize("convention", ["exponential", "recpipe"])
def test_load_stream_arrivals_equal_poisson_arrivals(convention: str) -> None:
    stream = LoadStream(n_queries=3000, seed=11, convention=convention)
    again = LoadStream(n_queries=3000, seed=11, convention=convention)
    for qps in (0.5, 37.0, 1234.5):
        expected = poisson_arrivals(3000, qps=qps, seed=11, convention=convention)
        np.testing.assert_array_equal(stream.arrivals_s(qps), expected)
        np.testing.assert_array_equal(again.arrivals_s(qps), expected)
    batch = stream.arrivals_batch_s([37.0, 1234.5])
    np.testing.assert_array_equal(batch[1], stream.arrivals_s(1234.5))
    assert stream.unit_gaps.shape == (2999,) and not stream.unit_gaps.flags.writeable
    if convention == "exponential":  # one pattern, rescaled in time
        np.testing.assert_allclose(stream.arrivals_s(10.0), 2.0 * stream.arrivals_s(20.0))


def test_load_stream_sizes() -> None:
    stream = LoadStream(n_queries=20_000, seed=2)
    normal = SizeDistribution(kind="normal", mean=165.0, std=16.0, max_items=1024)
    sizes = stream.sizes(normal)
    np.testing.assert_array_equal(sizes, LoadStream(n_queries=20_000, seed=2).sizes(normal))
    assert sizes.dtype == np.int64
    assert sizes.mean() == pytest.approx(165.0, abs=0.5)
    assert sizes.std() == pytest.approx(16.0, rel=0.03)
    lognormal = stream.sizes(SizeDistribution(kind="lognormal", sigma=0.5, median=100.0))
    assert np.median(lognormal) == pytest.approx(100.0, rel=0.02)
    # Monotone in the quantile: the same queries are the big ones under every distribution.
    order = np.argsort(stream.size_quantiles)
    assert np.all(np.diff(sizes[order]) >= 0) and np.all(np.diff(lognormal[order]) >= 0)
    picks = stream.sizes(SizeDistribution(kind="empirical", samples=(10.0, 20.0, 30.0)))
    assert set(np.unique(picks)) == {10, 20, 30}
    assert np.bincount(picks)[[10, 20, 30]] == pytest.approx([20_000 / 3] * 3, rel=0.05)
    ranged = stream.sizes(
        SizeDistribution(kind="empirical", samples=(50.0, 60.0), percentiles=(0.0, 100.0))
    )
    assert ranged.min() >= 50 and ranged.max() <= 60
    assert np.all(stream.sizes(SizeDistribution(kind="fixed", value=7)) == 7)
    clipped = stream.sizes(SizeDistribution(kind="normal", mean=10.0, std=50.0, max_items=20))
    assert clipped.min() == 1 and clipped.max() == 20
    with pytest.raises(ValueError, match="sizes_enabled"):
        LoadStream(n_queries=10, seed=0, sizes_enabled=False).sizes(normal)


def test_load_stream_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="n_queries"):
        LoadStream(n_queries=0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        LoadStream(n_queries=10, seed=-1)
    with pytest.raises(ValueError, match="convention"):
        LoadStream(n_queries=10, seed=0, convention="uniform")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="qps"):
        LoadStream(n_queries=10, seed=0).arrivals_s(0.0)


# --------------------------------------------------------------------------- capacity search


def constant_designs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    servers = rng.integers(1, 9, (n, 2))
    service = rng.uniform(0.3e-3, 2e-3, (n, 2)) * servers
    return service, servers


def p95_at(stream: LoadStream, qps: float, service: np.ndarray, servers, warmup: int) -> float:
    """The scalar path: simulate_pipeline + summarize."""
    if service.ndim == 1:
        service = np.broadcast_to(service, (stream.n_queries, service.size))
    run = simulate_pipeline(stream.arrivals_s(qps), service, servers)
    return summarize(run, warmup=warmup).p95_latency_s


def test_max_qps_batch_meets_sla_at_the_answer_and_misses_just_above() -> None:
    rng = np.random.default_rng(7)
    stream = LoadStream(n_queries=1500, seed=4)
    service, servers = constant_designs(rng, 40)
    sla_s = service.sum(axis=1) * rng.uniform(0.8, 6.0, 40)
    warmup = 200
    qps = max_qps_batch(stream, service, servers, sla_s=sla_s, warmup=warmup)
    caps = max_qps_upper_bound(service, servers)
    kinds = set()
    for i in range(40):
        if qps[i] == 0.0:
            kinds.add("infeasible")
            low = 1e-3 * stability_limit_batch_qps(service[i : i + 1], servers[i : i + 1])[0]
            assert p95_at(stream, low, service[i], servers[i], warmup) > sla_s[i]
            continue
        assert p95_at(stream, qps[i], service[i], servers[i], warmup) <= sla_s[i]
        if qps[i] == caps[i]:
            kinds.add("capped")
            continue
        kinds.add("bisected")
        assert p95_at(stream, qps[i] * 1.02, service[i], servers[i], warmup) > sla_s[i]
    assert kinds == {"infeasible", "capped", "bisected"}


def test_max_qps_batch_is_deterministic_and_independent_of_the_batch() -> None:
    rng = np.random.default_rng(8)
    service, servers = constant_designs(rng, 30)
    sla_s = 3.0 * service.sum(axis=1)
    first = max_qps_batch(LoadStream(n_queries=800, seed=1), service, servers, sla_s=sla_s)
    again = max_qps_batch(LoadStream(n_queries=800, seed=1), service, servers, sla_s=sla_s)
    np.testing.assert_array_equal(first, again)
    stream = LoadStream(n_queries=800, seed=1)
    for i in (0, 13, 29):  # one design alone gets what it got in the batch
        alone = max_qps_batch(
            stream, service[i : i + 1], servers[i : i + 1], sla_s=sla_s[i : i + 1]
        )
        assert alone[0] == first[i]
    other_seed = max_qps_batch(LoadStream(n_queries=800, seed=2), service, servers, sla_s=sla_s)
    assert not np.array_equal(first, other_seed)


def test_latency_is_monotone_in_qps_and_max_qps_in_the_sla() -> None:
    """Common random numbers: a max-plus pipeline's latency never falls as the load rises."""
    rng = np.random.default_rng(9)
    stream = LoadStream(n_queries=1000, seed=3)
    service, servers = constant_designs(rng, 25)
    limit = stability_limit_batch_qps(service, servers)
    previous, previous_span_s = np.zeros((25, 1000)), np.zeros((25, 1))
    for fraction in np.linspace(0.05, 1.2, 24):
        arrivals = stream.arrivals_batch_s(fraction * limit)
        latency = simulate_batch(arrivals, service, servers)
        # per query (hence per percentile), up to rounding of departure - arrival (ulps of
        # the arrival time)
        rounding_s = 8 * np.finfo(np.float64).eps * previous_span_s
        assert np.all(latency >= previous - rounding_s)
        previous, previous_span_s = latency, arrivals[:, -1:]
    base = service.sum(axis=1)
    answers = [max_qps_batch(stream, service, servers, sla_s=k * base) for k in (1.5, 2, 4, 8)]
    assert all(np.all(b >= a) for a, b in zip(answers, answers[1:], strict=False))


def test_max_qps_batch_per_query_service_and_recpipe_arrivals() -> None:
    rng = np.random.default_rng(10)
    stream = LoadStream(n_queries=600, seed=6, convention="recpipe")
    servers = np.array([[1, 1], [2, 4], [3, 1]])
    service = rng.exponential(1.0, (3, 600, 2)) * np.array([2e-3, 4e-3])
    sla_s = 4.0 * service.mean(axis=1).sum(axis=1)
    qps = max_qps_batch(stream, service, servers, sla_s=sla_s, warmup=50)
    assert np.all(qps > 0.0)
    np.testing.assert_array_equal(
        qps, max_qps_batch(stream, service, servers, sla_s=sla_s, warmup=50)
    )
    for i in range(3):
        assert p95_at(stream, qps[i], service[i], servers[i], 50) <= sla_s[i]


def test_max_qps_batch_edge_cases_and_errors() -> None:
    stream = LoadStream(n_queries=200, seed=0)
    service = np.array([[1e-3], [0.0]])
    servers = np.array([[1], [1]])
    qps = max_qps_batch(stream, service, servers, sla_s=0.5e-3)  # below the 1 ms service
    assert qps[0] == 0.0 and qps[1] == math.inf  # no service at all: any load
    assert max_qps_batch(stream, np.zeros((0, 1)), np.zeros((0, 1), int), sla_s=1.0).size == 0
    with pytest.raises(ValueError, match="percentile"):
        max_qps_batch(stream, service, servers, sla_s=1.0, percentile=101)
    with pytest.raises(ValueError, match="warmup"):
        max_qps_batch(stream, service, servers, sla_s=1.0, warmup=200)
    with pytest.raises(ValueError, match="sla_s"):
        max_qps_batch(stream, service, servers, sla_s=-1.0)
    with pytest.raises(TypeError, match="LoadStream"):
        max_qps_batch(None, service, servers, sla_s=1.0)  # type: ignore[arg-type]


def md1_qps_at_sla(sla_s: float, q: float, service_s: float) -> float:
    """The arrival rate at which the exact M/D/1 sojourn q-quantile equals ``sla_s``."""
    lo, hi = 1e-6 / service_s, (1.0 - 1e-9) / service_s
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if md1_sojourn_quantile_s(q, mid, service_s) < sla_s:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def test_max_qps_batch_matches_the_exact_md1_quantile() -> None:
    """Single server, constant service D, Poisson arrivals: M/D/1. The exact sojourn quantile
    comes from Erlang's waiting-time distribution (md1_wait_cdf: Franx, Oper. Res. Lett. 29
    (2001), c = 1), the answer being the load where the p95 sojourn equals the SLA."""
    service_s = np.array([1e-3, 1e-3, 2e-3, 0.5e-3])
    sla_s = np.array([3e-3, 5e-3, 8e-3, 4e-3])
    stream = LoadStream(n_queries=200_000, seed=0, sizes_enabled=False)
    qps = max_qps_batch(stream, service_s[:, None], np.ones((4, 1), int), sla_s=sla_s, warmup=5_000)
    for i in range(4):
        exact = md1_qps_at_sla(sla_s[i], 0.95, service_s[i])
        assert qps[i] == pytest.approx(exact, rel=0.03)


# --------------------------------------------------------------------------- screening


def test_lower_bounds_never_exceed_simulated_percentiles() -> None:
    rng = np.random.default_rng(12)
    stream = LoadStream(n_queries=400, seed=9)
    for per_query in (False, True):
        servers = rng.integers(1, 9, (60, 3))
        mean_s = rng.uniform(0.2e-3, 2e-3, (60, 3)) * servers
        service = rng.exponential(1.0, (60, 400, 3)) * mean_s[:, None, :] if per_query else mean_s
        limit = stability_limit_batch_qps(service, servers)
        assert np.all(max_qps_upper_bound(service, servers) < limit)
        for fraction in (1e-3, 0.3, 0.9, 1.5):  # light load to overload
            latency = simulate_batch(stream.arrivals_batch_s(fraction * limit), service, servers)
            floor = latency_lower_bound_s(service)
            assert np.all(floor[:, None] <= latency)
            for pct in (50, 95, 99):
                bound = latency_lower_bound_s(service, percentile=pct, warmup=50)
                simulated = tail_latency_batch(latency, warmup=50, percentiles=(pct,))[:, 0]
                assert np.all(bound <= simulated)
                assert np.all(floor <= simulated)
        if not per_query:  # at near-zero load the bound is tight
            light = simulate_batch(stream.arrivals_batch_s(1e-6 * limit), service, servers)
            bound = latency_lower_bound_s(service)
            np.testing.assert_allclose(light.min(axis=1), bound, rtol=1e-5)
    single = stability_limit_batch_qps(np.array([[1e-3, 4e-3]]), np.array([[1, 8]]))
    assert single[0] == pytest.approx(stability_limit_qps([1e-3, 4e-3], [1, 8]))


def test_screen_drops_only_strictly_dominated_designs() -> None:
    # objectives: latency (min), area (min), max_qps (max)
    front = np.array([[1.0, 10.0, 500.0], [2.0, 5.0, 800.0]])
    optimistic = np.array(
        [
            [1.5, 11.0, 400.0],  # dominated by the first front point
            [1.0, 10.0, 500.0],  # ties the first point: kept
            [0.5, 20.0, 100.0],  # best latency: kept
            [2.0, 5.0, 900.0],  # more QPS: kept
            [3.0, 6.0, 700.0],  # dominated by the second
        ]
    )
    keep = screen(optimistic, front, maximize=[False, False, True])
    assert keep.tolist() == [False, True, True, True, False]
    assert screen(optimistic, np.zeros((0, 3))).all()
    with pytest.raises(ValueError, match="maximize"):
        screen(optimistic, front, maximize=[True])


# --------------------------------------------------------------------------- query count


def test_quantile_rank_band_covers_the_true_quantile() -> None:
    assert quantile_rank_band(1744, 95) == (1639, 1675)  # the documented default
    n, trials = 300, 4000
    lo, hi = quantile_rank_band(n, 95)
    samples = np.sort(np.random.default_rng(0).random((trials, n)), axis=1)
    covered = (samples[:, lo - 1] <= 0.95) & (samples[:, hi - 1] > 0.95)
    assert covered.mean() >= 0.94  # >= 95 % by construction, less sampling noise


def test_queries_for_tolerance_on_an_exponential_tail() -> None:
    """Exp(1) has p95 = ln 20; with the rule's query count the sample p95 lands within the
    tolerance in about 95 % of independent runs."""
    n = queries_for_tolerance(95, 0.1)
    assert n == 814
    assert queries_for_tolerance(95, 0.05, warmup=256) == 3254 + 256
    estimates = np.percentile(np.random.default_rng(1).exponential(1.0, (4000, n)), 95, axis=1)
    within = np.abs(estimates / math.log(20.0) - 1.0) <= 0.1
    assert within.mean() >= 0.93
    with pytest.raises(ValueError, match="percentile"):
        queries_for_tolerance(100, 0.1)


def _wake_reference(arrivals, service, servers, wake, tau):
    """Plain loop: per pool, queries in stage-arrival order (ties by index) take the server
    that frees first; one that arrives ``gap`` after that server freed up pays the wake-up,
    ``wake x (1 - exp(-gap / tau))`` (all of it where tau is 0)."""
    stage = np.array(arrivals, dtype=float)
    for k, c in enumerate(servers):
        free = [-math.inf] * c
        done = np.empty_like(stage)
        for n in np.argsort(stage, kind="stable"):
            j = int(np.argmin(free))
            idle = stage[n] > free[j]
            start = max(stage[n], free[j])
            gap = stage[n] - free[j]
            part = 1.0 if tau[k] == 0 or math.isinf(gap) else -math.expm1(-gap / tau[k])
            done[n] = start + service[n, k] + (wake[k] * part if idle else 0.0)
            free[j] = done[n]
        stage = done
    return stage - np.asarray(arrivals)


@pytest.mark.parametrize("tau_s", [0.0, 5e-4])
@pytest.mark.parametrize("servers", [(1,), (2,), (1, 3), (4, 1)])
def test_wake_up_matches_a_plain_loop(servers, tau_s):
    """A query that finds a server idle is served longer by the wake-up: the batch simulator
    equals a per-query loop written from that definition."""
    rng = np.random.default_rng(7)
    q, pools = 400, len(servers)
    arrivals = np.cumsum(rng.exponential(1e-3, q))
    service = rng.exponential(0.8e-3 * np.array(servers), (q, pools))
    wake = rng.uniform(1e-4, 4e-4, pools)
    tau = np.full(pools, tau_s)
    got = simulate_batch(
        arrivals, service[None], np.array([servers]), wake_s=wake[None], wake_tau_s=tau[None]
    )[0]
    want = _wake_reference(arrivals, service, servers, wake, tau)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # no wake-up is the plain simulator, bit for bit
    counts = np.array([servers])
    zero = simulate_batch(arrivals, service[None], counts, wake_s=np.zeros((1, pools)))
    np.testing.assert_array_equal(zero, simulate_batch(arrivals, service[None], counts))


def test_wake_up_is_paid_when_idle_and_not_when_queued():
    service = np.full((1, 1), 1e-3)
    lonely = np.arange(50) * 1.0  # a query a second: every one finds the server idle
    lat = simulate_batch(lonely, service, [1], wake_s=[2e-4])[0]
    np.testing.assert_allclose(lat, 1.2e-3, rtol=1e-9)
    burst = np.zeros(50)  # all at once: only the first finds it idle
    lat = simulate_batch(burst, service, [1], wake_s=[2e-4])[0]
    np.testing.assert_allclose(lat, 1.2e-3 + np.arange(50) * 1e-3, rtol=1e-9)


def test_a_longer_sleep_pays_more_of_the_wake_up():
    """With a time constant, a query after a gap of tau pays 1 - 1/e of the wake-up."""
    service = np.full((1, 1), 1e-3)
    # gaps: a server never used (all of it), about 1 s (all of it), then tau exactly
    arrivals = np.array([0.0, 1.0, 1.0 + 1.2e-3 + 5e-4])
    lat = simulate_batch(arrivals, service, [1], wake_s=[2e-4], wake_tau_s=[5e-4])[0]
    expected = 1e-3 + 2e-4 * np.array([1.0, 1.0, -math.expm1(-1.0)])
    np.testing.assert_allclose(lat, expected, rtol=1e-9)
