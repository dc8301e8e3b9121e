"""Embedding-cache model benchmark: speed of the analytical models, and their accuracy.

Prints (1) the time per call of ``static_hit_rate``, ``lru_hit_rate`` and
``static_plus_lru_hit_rate`` for tables of 10**3..10**8 rows, with the speed-up over Che's
approximation solved on materialised probabilities (the naive peer) where that fits in memory;
(2) Che's approximation against exact LRU simulation of seeded Zipf traces.

Run: ``python bench/bench_cache.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from codesign.cost_models.embedding_cache import (
    DEFAULT_ZIPF_ALPHA,
    lru_hit_rate,
    miss_ratio_curve,
    simulate_lru,
    stack_distances,
    static_hit_rate,
    static_plus_lru_hit_rate,
    zipf_trace,
)


def per_call_s(fn: Callable[[], object], *, min_total_s: float = 0.2) -> float:
    fn()  # warm caches
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        if (elapsed := time.perf_counter() - start) >= min_total_s:
            return elapsed / calls


def materialised_che(rows: int, capacity: int, alpha: float) -> float:
    p = np.arange(1, rows + 1, dtype=np.float64) ** -alpha
    p /= p.sum()
    lo, hi = math.log(capacity), math.log(-math.log1p(-capacity / rows) / p[-1])
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.sum(-np.expm1(-p * math.exp(mid))) < capacity:
            lo = mid
        else:
            hi = mid
    return float(np.sum(p * -np.expm1(-p * math.exp(lo))))


def bench_speed(alpha: float) -> None:
    print(f"analytical models, alpha={alpha}, cache = 1% of rows (per call)")
    print(
        f"{'rows':>11} {'static':>9} {'lru':>9} {'static+lru':>11} {'naive lru':>10} {'ratio':>7}"
    )
    for rows in (10**3, 10**4, 10**5, 10**6, 10**7, 10**8):
        cap = max(1, rows // 100)
        t_static = per_call_s(lambda r=rows, c=cap: static_hit_rate(r, c, alpha))
        t_lru = per_call_s(lambda r=rows, c=cap: lru_hit_rate(r, c, alpha))
        t_both = per_call_s(lambda r=rows, c=cap: static_plus_lru_hit_rate(r, c // 2, c, alpha))
        naive, ratio = "-", "-"
        if rows <= 10**6:
            t_naive = per_call_s(lambda r=rows, c=cap: materialised_che(r, c, alpha), min_total_s=0)
            naive, ratio = f"{t_naive * 1e3:8.2f}ms", f"{t_naive / t_lru:6.0f}x"
        print(
            f"{rows:>11} {t_static * 1e6:7.1f}us {t_lru * 1e3:7.3f}ms {t_both * 1e3:9.3f}ms"
            f" {naive:>10} {ratio:>7}"
        )


def bench_accuracy(rows: int, length: int, warmup: int) -> None:
    capacities = np.array([100, 300, 1_000, 3_000, 10_000])
    print(f"\nChe vs exact LRU: rows={rows}, {length} lookups, first {warmup} warm the cache")
    print(f"{'alpha':>6} {'capacity':>9} {'exact':>8} {'che':>8} {'gap pp':>7} {'static':>8}")
    for alpha in (0.8, DEFAULT_ZIPF_ALPHA, 1.2):
        trace = zipf_trace(rows, alpha, length, seed=7)
        exact = 1 - miss_ratio_curve(trace, capacities, warmup=warmup)
        che = lru_hit_rate(rows, capacities, alpha)
        static = static_hit_rate(rows, capacities, alpha)
        for c, e, a, s in zip(capacities, exact, che, static, strict=True):
            print(f"{alpha:>6} {c:>9} {e:8.4f} {a:8.4f} {100 * (a - e):+7.2f} {s:8.4f}")


def bench_simulation(length: int) -> None:
    trace = zipf_trace(10**8, DEFAULT_ZIPF_ALPHA, length, seed=1)
    print(f"\ntrace tools, {length} lookups into 10**8 rows")
    for name, fn in (
        ("zipf_trace", lambda: zipf_trace(10**8, DEFAULT_ZIPF_ALPHA, length, seed=1)),
        ("simulate_lru", lambda: simulate_lru(trace, 10_000)),
        ("stack_distances", lambda: stack_distances(trace)),
    ):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        print(f"{name:>16}: {elapsed:6.2f} s ({elapsed / length * 1e9:5.0f} ns/lookup)")


if __name__ == "__main__":
    bench_speed(DEFAULT_ZIPF_ALPHA)
    bench_accuracy(100_000, 2_100_000, 100_000)
    bench_simulation(1_000_000)
