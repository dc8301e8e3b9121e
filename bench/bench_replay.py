"""Funnel-replay benchmark: configurations per second of :class:`codesign.quality.Replayer`.

Sweeps RecPipe-shaped funnels (BACKGROUND §1.4: 1 stage S/M/L, 2 stages S->L and M->L, 3 stages
S->M->L; stage-1 pools of 256..4096 candidates; the last stage keeps 64) over 128 queries of
4096 validation samples (524,288 samples, the default synthetic validation split), with three
metrics each (ndcg_recpipe@64, ndcg@64, hr@64). Scores are random but label-correlated, so no
training is needed. Prints the sweep's configurations per second, warm (per-pool orders already
computed) and cold (a fresh Replayer, so including them), and the speed-up over a per-query
loop that sorts every stage's candidates with ``np.argsort`` (how RecPipe replays a query),
checking both give the same numbers.

Run: ``python bench/bench_replay.py`` (well under a minute on 2 cores).
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np

from codesign.quality.replay import Metric, Replayer, Stage

QUERIES = 128
POOL = 4096
METRICS = [Metric("ndcg_recpipe", 64), Metric("ndcg", 64), Metric("hr", 64)]


def data(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    n = QUERIES * POOL
    labels = (rng.random(n) < 0.25).astype(np.float64)
    scores = {
        name: (labels * signal + rng.standard_normal(n)).astype(np.float32)
        for name, signal in (("S", 1.0), ("M", 1.2), ("L", 1.4))
    }
    return scores, labels


def funnels() -> list[list[Stage]]:
    out = []
    pools = (256, 512, 1024, 2048, 4096)
    for items, model in itertools.product(pools, "SML"):
        out.append([Stage(model, items, 64)])
    for items in pools:
        mids = [k for k in (128, 256, 512, 1024, 2048) if 64 < k < items]
        for first, mid in itertools.product("SM", mids):
            out.append([Stage(first, items, mid), Stage("L", mid, 64)])
        for a, b in itertools.combinations(mids, 2):
            out.append([Stage("S", items, b), Stage("M", b, a), Stage("L", a, 64)])
    return out


def per_query(scores, labels, stages, queries):
    """The naive peer: one query at a time, argsort per stage."""
    items = stages[0].items
    disc = 1.0 / np.log2(np.arange(64) + 2.0)
    totals = np.zeros(3)
    for q in range(queries):
        cand = np.arange(q * items, (q + 1) * items)
        for stage in stages:
            s = scores[stage.model][cand]
            cand = cand[np.argsort(-s, kind="stable")[: stage.keep]]
        top = labels[cand][:64]
        dcg = float(top @ disc)
        positives = int(labels[q * items : (q + 1) * items].sum())
        ideal = float(disc[: min(positives, 64)].sum())
        totals += (dcg / disc.sum(), dcg / ideal if ideal else 0.0, float(top.max() > 0))
    return totals / queries


def main() -> None:
    scores, labels = data()
    configs = funnels()
    print(
        f"{len(configs)} funnels x {len(METRICS)} metrics, {QUERIES} queries of up to {POOL} "
        f"candidates ({len(labels):,} samples, 3 models)"
    )
    start = time.perf_counter()
    replayer = Replayer(scores, labels)
    results = [replayer.evaluate(f, METRICS, queries=QUERIES) for f in configs]
    cold_s = time.perf_counter() - start
    sweeps = []
    while sum(sweeps) < 2.0:
        start = time.perf_counter()
        for f in configs:
            replayer.evaluate(f, METRICS, queries=QUERIES)
        sweeps.append(time.perf_counter() - start)
    warm_s = float(np.median(sweeps))
    for stages in (1, 2, 3):
        group = [f for f in configs if len(f) == stages]
        times = []
        for _ in range(7):
            start = time.perf_counter()
            for f in group:
                replayer.evaluate(f, METRICS, queries=QUERIES)
            times.append((time.perf_counter() - start) / len(group))
        per = float(np.median(times))
        print(
            f"  {stages}-stage funnels (warm, {len(group):2d}):    "
            f"{per * 1e3:6.3f} ms each {1 / per:9,.0f}/s"
        )
    sample = configs[:: max(1, len(configs) // 12)]
    start = time.perf_counter()
    for f in sample:
        want = per_query(scores, labels, f, QUERIES)
        got = replayer.evaluate(f, METRICS, queries=QUERIES)
        assert np.allclose(list(got.values()), want, rtol=1e-12, atol=1e-12), (f, got, want)
    naive_s = (time.perf_counter() - start) / len(sample) * len(configs)
    print(f"  cold sweep (pool orders computed): {cold_s:8.3f} s  {len(configs) / cold_s:9,.0f}/s")
    print(f"  warm sweep (median):               {warm_s:8.3f} s  {len(configs) / warm_s:9,.0f}/s")
    print(
        f"  per-query argsort loop (peer):     {naive_s:8.3f} s  {len(configs) / naive_s:9,.0f}/s"
    )
    print(f"  speed-up over the peer: warm {naive_s / warm_s:.0f}x, cold {naive_s / cold_s:.0f}x")
    best = max(zip(results, configs, strict=True), key=lambda rc: rc[0]["ndcg_recpipe@64"])
    print(
        f"  best ndcg_recpipe@64: {best[0]['ndcg_recpipe@64']:.4f} by {','.join(map(str, best[1]))}"
    )
    assert all(math.isfinite(v) for r in results for v in r.values())


if __name__ == "__main__":
    main()
