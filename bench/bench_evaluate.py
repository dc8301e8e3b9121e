"""Design points per second of the evaluator (:mod:`codesign.evaluate`) on one core.

Two 2-stage pipelines, RM-small 4096 -> k then RM-large k -> 64 (RecPipe's funnel), at random
points of the full space the search draws from:

- **cpu**: both stages on a Cascade Lake socket: engines, cores per engine, batch split, the
  stage-2 pool size;
- **accel**: both stages on one RPAccel chip: per stage engines, partition rows and cols, static
  and dynamic cache bytes, top-k units, sub-batch (stages that both pipeline sub-batches are
  fused), batch split, the stage-2 pool; per chip its PE and embedding-SRAM budgets.

Two rates per pipeline, each cold (first call in the process: lowering, compiling the op
features, cache hit rates) and warm (new random points of the same space):

- **analytical**: placement (partition shares, chip fit, chip area and power) and every stage's
  service time and energy through the compiled cost model, for all points at once;
- **with queueing**: on random points that fit their chips (as the search's repaired
  proposals do), the same, then the p95 latency at the load of the designs that can reach the
  (p95, area or power) front: designs are simulated in order of their lower bound and
  screened against the front found so far
  (:func:`codesign.evaluate.front_tail_latency_s`).

In the analytical part, points over the chip are priced too, and counted. Run:
``python bench/bench_evaluate.py [--points N]`` (about a minute on 2 cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from codesign import evaluate as ev  # noqa: E402
from codesign.evaluate import Context, DesignArrays, Skeleton  # noqa: E402

ACCEL = "accel/rpaccel"
CPU = "cpu/cascadelake"
ACCEL_STAGE_KNOBS = {
    "rows": (8, 16, 32, 64, 128, 256),
    "cols": (8, 16, 32, 64, 128, 256),
    "static_cache_bytes": (0, 2**18, 2**20, 2**22, 2**24),
    "dynamic_cache_bytes": (0, 2**18, 2**20, 2**22, 2**24),
    "topk_units": (0, 16, 64, 256, 1024),
    "sub_batch": (0, 64, 256, 1024),
}
ACCEL_CHIP_KNOBS = {
    "pe_budget": (4096, 16384, 65536),
    "embedding_sram_budget_bytes": (2**22, 2**24, 2**26),
}
CPU_STAGE_KNOBS = {"cores": (1, 2, 4, 8, 16)}


def random_designs(kind: str, n: int, seed: int) -> list[DesignArrays]:
    """``n`` random points of the space as arrays (one DesignArrays per fused pattern)."""
    rng = np.random.default_rng(seed)
    items = np.empty((n, 2), dtype=np.int64)
    items[:, 0] = 4096
    items[:, 1] = 4096 >> rng.integers(1, 6, n)
    keep = np.column_stack([items[:, 1], np.full(n, 64)])
    split = rng.integers(0, 4, (n, 2))
    batch = -(-items // 2**split)
    batch = np.where(batch >= items, 0, batch)
    engines = rng.choice([1, 2, 4, 8], (n, 2))
    target = ACCEL if kind == "accel" else CPU
    grids = ACCEL_STAGE_KNOBS if kind == "accel" else CPU_STAGE_KNOBS
    knobs = tuple({k: rng.choice(v, n) for k, v in grids.items()} for _ in range(2))
    chips = (
        {ACCEL: {k: rng.choice(v, n) for k, v in ACCEL_CHIP_KNOBS.items()}}
        if kind == "accel"
        else {}
    )
    fused = (
        (knobs[0]["sub_batch"] > 0) & (knobs[1]["sub_batch"] > 0)
        if kind == "accel"
        else np.zeros(n, dtype=bool)
    )
    out = []
    for pattern in (False, True):
        rows = np.flatnonzero(fused == pattern)
        if rows.size == 0:
            continue
        skeleton = Skeleton(
            models=("rm-small", "rm-large"),
            targets=(target, target),
            cost_models=("analytical", "analytical"),
            names=("S", "L"),
            groups=((0, 1),) if pattern else ((0,), (1,)),
            stage_knobs=tuple(tuple(sorted(grids)) for _ in range(2)),
            chip_knobs=tuple((t, tuple(sorted(k))) for t, k in chips.items()),
        )
        out.append(
            DesignArrays(
                skeleton,
                items[rows],
                keep[rows],
                batch[rows],
                engines[rows],
                tuple({k: v[rows] for k, v in st.items()} for st in knobs),
                {t: {k: v[rows] for k, v in c.items()} for t, c in chips.items()},
            )
        )
    return out


def analytical(parts: list[DesignArrays]):
    results = []
    for d in parts:
        placement = ev.place_arrays(d)
        results.append((d, placement, ev.price(d, placement)))
    return results


def with_queueing(parts: list[DesignArrays], context: Context, exact_metric: str):
    results = analytical(parts)
    total = sum(p.service_s.shape[0] for _, _, p in results)
    width = max(p.service_s.shape[1] for _, _, p in results)
    padded = np.zeros((total, width))
    servers = np.full((total, width), context.queries, dtype=np.int64)
    start = 0
    for _, _, p in results:
        n, pools = p.service_s.shape[0], p.service_s.shape[1]
        padded[start : start + n, :pools] = p.service_s[:, :, -1]
        servers[start : start + n, :pools] = p.servers
        start += n
    buildable = np.concatenate([pl.buildable for _, pl, _ in results])
    exact = np.concatenate([getattr(pl, exact_metric) for _, pl, _ in results])[:, None]
    rows = np.flatnonzero(buildable)
    latency, simulated = ev.front_tail_latency_s(padded[rows], servers[rows], exact[rows], context)
    return rows.size, int(simulated.sum())


def buildable_designs(kind: str, n: int, seed: int) -> list[DesignArrays]:
    """``n`` random points that fit their chips (drawn from a larger random sample; the
    selection is not timed), as the search's repaired proposals are."""
    pool = random_designs(kind, 16 * n, seed)
    keep = [np.flatnonzero(ev.place_arrays(d).buildable) for d in pool]
    total = sum(k.size for k in keep)
    if total < n:
        raise SystemExit(f"only {total} of {16 * n} random {kind} points fit their chips")
    out, left = [], n
    for d, rows in zip(pool, keep, strict=True):
        rows = rows[:left]
        if rows.size:
            out.append(ev._subset(d, rows))
            left -= rows.size
    return out


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def run(kind: str, points: int) -> None:
    """One pipeline in this process: its first (cold) and a second (warm) call of each part."""
    context = Context(qps=200.0, queries=2000, warmup=256, seed=0, sla_s=0.025)
    cold_parts = random_designs(kind, points, seed=1)
    warm_parts = random_designs(kind, points, seed=2)
    t_cold, _ = timed(analytical, cold_parts)
    t_warm, res = timed(analytical, warm_parts)
    unbuildable = sum(int((~pl.buildable).sum()) for _, pl, _ in res)
    print(
        f"{kind:6} {'analytical (all points)':28} {points / t_cold:12,.0f} "
        f"{points / t_warm:12,.0f}  {unbuildable} of {points} points over the chip"
    )
    exact = "area_mm2" if kind == "accel" else "power_w"
    first = buildable_designs(kind, points, seed=3)
    second = buildable_designs(kind, points, seed=4)
    t_q, _ = timed(with_queueing, first, context, exact)
    t_q2, (live, simulated) = timed(with_queueing, second, context, exact)
    print(
        f"{kind:6} {'with queueing (buildable)':28} {points / t_q:12,.0f} "
        f"{points / t_q2:12,.0f}  simulated {simulated} of {live} "
        f"(front of p95 and {exact})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--kind", choices=("cpu", "accel"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kind:
        run(args.kind, args.points)
        return
    print(
        f"{args.points:,} random design points per run, one core, 200 QPS, 2000 queries; "
        "cold: the first call in a fresh process (lowering, compiling, hit-rate tables)"
    )
    print(f"{'pipe':6} {'part':28} {'cold pts/s':>12} {'warm pts/s':>12}  notes")
    for kind in ("cpu", "accel"):  # each in a fresh process, so that "cold" is cold
        subprocess.run(
            [sys.executable, __file__, "--kind", kind, "--points", str(args.points)], check=True
        )


if __name__ == "__main__":
    main()
