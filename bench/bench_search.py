"""Search benchmark on enumerable co-design instances: hypervolume vs evaluations for every
joint sampler and the two-level strategy over several seeds, and the evaluations each needs to
reach random search's final hypervolume (SEARCH.md §4). Not a test; run:

    python bench/bench_search.py [--instance recpipe|small] [--seeds 10] [--trials 150]
        [--jobs 2] [--methods random,tpe,nsga2,gp,skopt,two-level] [--quick]

``two-level`` is the HASCO-style strategy with the default inner sampler; ``two-level:NAME``
picks the inner sampler. Instances:

- ``recpipe`` (default; issue 12's acceptance instance): a RecPipe-style study of one RPAccel
  chip. Up to 2 stages of RM-S/M/L ranking 4096 candidates down to 64 (stage 2 ranks 256 or
  128), each stage a partition of the chip whose array rows (32 or 128 of 128 columns), static
  and dynamic embedding caches (0 or 2 MiB each: the cache split), and sub-batch (whole batch or
  256 items) are searched, with its share of the chip; the chip's PE budget (16,384 or 65,536),
  embedding-SRAM budget (4 or 16 MiB) and clock (125 or 250 MHz) are the hardware knobs (8
  points). Objectives quality (replayed from the trained RM-S/M/L models), p95 latency at 200
  QPS and power; p95 <= 25 ms. About 12,000 distinct designs.
- ``small``: up to 2 stages of RM-S/M/L on the CPU socket (2 or 8 cores per engine) or on
  RPAccel partitions (32 or 128 rows), 1 or 4 engines, a chip of 4096 or 16384 PEs; quality
  from RecPipe's published table (a funnel it cannot answer is infeasible). 1,641 designs.

Each instance is walked exhaustively (:func:`~codesign.search.space.enumerate_designs`) and
priced as one batch (:func:`~codesign.search.space.evaluate_designs`); the front is cached under
/tmp. Every design is simulated with the load's own seed, ``[workload] seed`` (fixed at 0), not
the search seed, so the runs of every search seed are judged against the same exhaustive front.

The x axis is evaluations: trials of the study for the joint samplers, and for the two-level
strategy both its trials and its *outer evaluations* (hardware points searched; each prices that
point's whole software space in one batch, which the table reports as designs priced)."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from codesign.config import OBJECTIVES, RunConfig, parse_run_config
from codesign.search.pareto import hypervolume_history, normalized_hypervolume, pareto_mask
from codesign.search.results import constraint_values
from codesign.search.space import InfeasibleDesign, enumerate_designs, evaluate_designs
from codesign.search.study import run_study

RECPIPE = {
    "version": 1,
    "kind": "run",
    "name": "bench",
    "workload": {
        "models": ["rm-small", "rm-med", "rm-large"],
        "candidates": 4096,
        "keep": 64,
        "qps": 200,
        "queries": 300,
        "warmup": 50,
        "seed": 0,
    },
    "quality": {"metric": "ndcg_recpipe@64", "source": "replay"},
    "space": {
        "max_stages": 2,
        "targets": ["accel/rpaccel"],
        "engines": [1, 1],
        "shrink_log2": [4, 5],
        "batch_split_log2": [0, 0],
        "hw": {
            "accel/rpaccel": {
                # chip knobs (power is an objective): the two-level outer loop, 8 points
                "pe_budget": [16384, 65536],
                "embedding_sram_budget_bytes": [2**22, 2**24],
                "clock_hz": [125e6, 250e6],
                # stage knobs: array size, cache split, sub-batch
                "rows": [32, 128],
                "cols": 128,
                "static_cache_bytes": [0, 2**21],
                "dynamic_cache_bytes": [0, 2**21],
                "sub_batch": [0, 256],
                "topk_units": 64,
            },
        },
    },
    "objectives": {"names": ["quality", "p95_latency_s", "power_w"]},
    "constraints": {"sla_ms": 25},
    "search": {"trials": 150, "sampler": "random", "seed": 0},
}

SMALL = {
    "version": 1,
    "kind": "run",
    "name": "bench",
    "workload": {
        "models": ["rm-small", "rm-med", "rm-large"],
        "candidates": 4096,
        "keep": 64,
        "qps": 400,
        "queries": 300,
        "warmup": 50,
        # the load's seed: every search seed's designs are simulated on this one load
        "seed": 0,
    },
    "quality": {"metric": "ndcg_recpipe@64", "source": "table"},
    "space": {
        "max_stages": 2,
        "targets": ["cpu/cascadelake", "accel/rpaccel"],
        "engines": [1, 4],
        "shrink_log2": [1, 4],
        "batch_split_log2": [0, 0],
        "hw": {
            "accel/rpaccel": {
                # chip knob, searched (power is an objective): the two-level outer loop
                "pe_budget": [4096, 16384],
                "embedding_sram_budget_bytes": 2**24,
                "clock_hz": 125e6,
                # stage knobs: a short grid, the rest pinned
                "rows": [32, 128],
                "cols": 128,
                "static_cache_bytes": 0,
                "dynamic_cache_bytes": 2**20,
                "topk_units": 64,
                "sub_batch": 0,
            },
            "cpu/cascadelake": {"cores": [2, 8]},
        },
    },
    "objectives": {"names": ["quality", "p95_latency_s", "power_w"]},
    "constraints": {"sla_ms": 50},
    "search": {"trials": 100, "sampler": "random", "seed": 0},
}
INSTANCES = {"recpipe": RECPIPE, "small": SMALL}


def config(method: str, seed: int, trials: int, instance: str = "recpipe") -> RunConfig:
    """``method``: a sampler name (joint search) or ``two-level[:SAMPLER]``; ``seed`` is the
    search seed only (the load's seed stays the instance's ``[workload] seed``)."""
    data = json.loads(json.dumps(INSTANCES[instance]))
    strategy, _, inner = method.partition(":")
    if strategy == "two-level":
        data["search"].update(strategy="two-level", sampler=inner or "auto")
    else:
        data["search"].update(strategy="joint", sampler=method)
    data["search"].update(seed=seed, trials=trials)
    return parse_run_config(data, origin="bench")


def feasible(cfg: RunConfig, metrics: dict[str, float]) -> bool:
    """The run's constraints, as the study sets them."""
    return all(v <= 0 for v in constraint_values(cfg, metrics).values())


def exhaustive_front(cfg: RunConfig) -> tuple[list[dict], np.ndarray, dict[str, int]]:
    """Every design of ``cfg``'s space, evaluated as one batch: the feasible Pareto front's
    designs and objective values, and the counts (designs, unbuildable, feasible)."""
    designs = list(enumerate_designs(cfg))
    points, values = [], []
    unbuildable = no_quality = 0
    for result in evaluate_designs(designs, cfg):
        if isinstance(result, InfeasibleDesign):
            if str(result).startswith("quality:"):
                no_quality += 1  # a funnel the quality table cannot answer
            else:
                unbuildable += 1
        elif feasible(cfg, result.metrics):
            points.append(result.design)
            values.append([result.metrics[o] for o in cfg.objectives])
    values = np.array(values, dtype=float).reshape(-1, len(cfg.objectives))
    mask = pareto_mask(values, cfg.directions()) if len(values) else np.zeros(0, dtype=bool)
    front = [d for d, keep in zip(points, mask, strict=True) if keep]
    counts = {
        "designs": len(designs),
        "unbuildable": unbuildable,
        "no_quality": no_quality,
        "feasible": len(points),
    }
    return front, values[mask], counts


CACHE = Path("/tmp/codesign-bench")
SLOW = {"gp", "two-level:gp"}


def exhaustive(cfg: RunConfig, instance: str) -> dict:
    """The exhaustive feasible front's hypervolume, and the normalisation it defines (SEARCH.md
    §2.9: log space, the true front's ideal to 10 % beyond its nadir). Cached per instance
    (all but its search settings), codesign version and cost-model sources."""
    import codesign
    from codesign import __version__

    # the cost models' sources: a front computed with other costs is a different ground truth
    root = Path(codesign.__file__).resolve().parent.parent
    sources = sorted(
        p
        for pattern in (
            "targets/*.py",
            "targets/presets/*.yaml",
            "cost_models/*.py",
            "codesign/*.py",
            "search/*.py",
        )
        for p in root.glob(pattern)
    )
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    problem = {k: v for k, v in INSTANCES[instance].items() if k != "search"}
    key = hashlib.sha256(
        json.dumps([problem, __version__, digest.hexdigest()], sort_keys=True).encode()
    ).hexdigest()[:12]
    cached = CACHE / f"exhaustive-{key}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    start = time.perf_counter()
    _, front, counts = exhaustive_front(cfg)
    log = [OBJECTIVES[o][1] for o in cfg.objectives]
    lower, upper = [], []
    for j, name in enumerate(cfg.objectives):
        col = np.log10(front[:, j]) if log[j] else front[:, j]
        maximize = OBJECTIVES[name][0] == "maximize"
        ideal, nadir = (col.max(), col.min()) if maximize else (col.min(), col.max())
        ref = nadir + 0.1 * (nadir - ideal)
        lower.append(float(10**ideal if log[j] else ideal))
        upper.append(float(10**ref if log[j] else ref))
    hv = normalized_hypervolume(front, cfg.directions(), lower=lower, upper=upper, log=log)
    out = {"hv": hv, "lower": lower, "upper": upper, **counts, "front": len(front)}
    print(
        f"enumerated {counts['designs']} designs ({counts['unbuildable']} unbuildable, "
        f"{counts['no_quality']} with a funnel the quality table cannot answer, "
        f"{counts['feasible']} feasible), front of {len(front)}, load seed {cfg.load_seed}, "
        f"in {time.perf_counter() - start:.1f} s"
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(out))
    return out


def _timed(sampler):
    """``sampler`` with the CPU seconds of its work (search-space inference, relative and
    independent sampling, the before/after-trial hooks where model-based samplers such as the
    skopt baseline fit) added up in ``sampler.cpu_s``. The two-level strategy's outer GP runs
    outside the study's sampler and is not counted."""
    import optuna

    class Timed(optuna.samplers.BaseSampler):
        def __init__(self, inner):
            self.inner = inner
            self.cpu_s = 0.0

        def _time(self, name, *args, **kwargs):
            start = time.process_time()
            try:
                return getattr(self.inner, name)(*args, **kwargs)
            finally:
                self.cpu_s += time.process_time() - start

        def infer_relative_search_space(self, study, trial):
            return self._time("infer_relative_search_space", study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._time("sample_relative", study, trial, search_space)

        def sample_independent(self, study, trial, name, distribution):
            return self._time("sample_independent", study, trial, name, distribution)

        def before_trial(self, study, trial):
            self._time("before_trial", study, trial)

        def after_trial(self, study, trial, state, values):
            self._time("after_trial", study, trial, state, values)

        def reseed_rng(self):
            self.inner.reseed_rng()

    return Timed(sampler)


def run_one(method: str, seed: int, trials: int, ex: dict, instance: str) -> dict:
    """One run: ``hv`` the normalised HV after each trial (a fraction of the exhaustive front's
    HV), ``outer_hv`` the same after each outer evaluation (two-level only: the HV of the trials
    finished when that round ended), ``priced`` designs priced by its inner loops, ``wall_s`` and
    ``sampler_cpu_s`` (per trial)."""
    import optuna

    from codesign.search import study as study_mod
    from codesign.search.two_level import outer_rounds

    start = time.perf_counter()
    cfg = config(method, seed, trials, instance)
    captured = {}
    samplers = []
    original, original_sampler = study_mod.open_storage, study_mod.make_sampler

    def capture(url):
        captured["storage"] = original(url)
        return captured["storage"]

    def timed_sampler(*args, **kwargs):
        samplers.append(_timed(original_sampler(*args, **kwargs)))
        return samplers[-1]

    study_mod.open_storage = capture
    study_mod.make_sampler = timed_sampler
    try:
        run_study(
            cfg, run_dir=Path("/tmp/codesign-bench"), storage="memory", write_outputs_after=False
        )
    finally:
        study_mod.open_storage = original
        study_mod.make_sampler = original_sampler
    study = optuna.load_study(study_name="bench", storage=captured["storage"])
    values, mask = [], []
    for t in study.trials:
        r = t.user_attrs.get("result")
        if r is None:
            values.append([np.nan] * len(cfg.objectives))
            mask.append(False)
            continue
        values.append([r["metrics"][o] for o in cfg.objectives])
        mask.append(all(v <= 0 for v in (t.constraints or {}).values()))
    hv = (
        np.asarray(
            hypervolume_history(
                np.array(values).reshape(-1, len(cfg.objectives)),
                np.array(mask, dtype=bool),
                cfg.directions(),
                lower=ex["lower"],
                upper=ex["upper"],
                log=[OBJECTIVES[o][1] for o in cfg.objectives],
            )
        )
        / ex["hv"]
    )
    rounds = outer_rounds(study)
    outer_hv, told = [], 0
    for r in rounds:  # the rounds' trials follow each other in the study (one worker)
        told += r["new"]
        if r["inner"] != "pending":  # a pending round tells designs found before: no search
            outer_hv.append(float(hv[min(told, len(hv)) - 1]) if told else 0.0)
    return {
        "hv": hv,
        "outer_hv": np.array(outer_hv),
        "priced": int(sum(r["priced"] for r in rounds)),
        "wall_s": time.perf_counter() - start,
        "sampler_cpu_s": sum(t.cpu_s for t in samplers) / max(1, len(study.trials)),
    }


def _cells(runs: list[np.ndarray], marks: list[int]) -> list[str]:
    """Median [25th, 75th percentile] over the runs at each mark; a run that stopped earlier
    (its front complete) keeps its last value."""
    cells = []
    for m in marks:
        at = [r[min(m, len(r)) - 1] if len(r) else 0.0 for r in runs]
        q25, q50, q75 = np.percentile(at, (25, 50, 75))
        cells.append(f"{q50:.3f} [{q25:.3f}, {q75:.3f}]")
    return cells


def _reach(runs: list[np.ndarray], target: float | None) -> str:
    """The median number of evaluations to reach ``target`` over all runs, a run that never
    does counting as never."""
    if target is None or target <= 0:
        return "-"
    hits = [float(np.argmax(r >= target)) + 1 if (r >= target).any() else math.inf for r in runs]
    median = float(np.median(hits))
    reached = sum(math.isfinite(h) for h in hits)
    shown = f"{median:.0f}" if math.isfinite(median) else "never"
    return f"{shown} ({reached}/{len(runs)} reached)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instance", choices=sorted(INSTANCES), default="recpipe")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--jobs", type=int, default=1, help="parallel runs (processes)")
    parser.add_argument("--methods", default="random,tpe,nsga2,gp,skopt,two-level")
    parser.add_argument(
        "--slow-seeds",
        type=int,
        default=5,
        help="seeds for GPSampler (about 2 s of sampler CPU per trial on this space)",
    )
    parser.add_argument("--save", default="", help="write every run's HV curve to this JSON")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 2 seeds, 30 trials, random, tpe and two-level (unless given)",
    )
    args = parser.parse_args()
    if args.quick:
        given = {a.split("=")[0] for a in sys.argv[1:]}
        if "--seeds" not in given:
            args.seeds = 2
        if "--trials" not in given:
            args.trials = 30
        if "--methods" not in given:
            args.methods = "random,tpe,two-level"
    from codesign.search.study import prepare_quality

    base = config("random", 0, args.trials, args.instance)
    prepare_quality(base)  # trains the instance's models once, unless cached
    ex = exhaustive(base, args.instance)
    methods = args.methods.split(",")
    n_seeds = {m: min(args.seeds, args.slow_seeds) if m in SLOW else args.seeds for m in methods}
    jobs = [(m, seed) for m in methods for seed in range(n_seeds[m])]
    # import and warm every lazily loaded module before forking, so that the workers all run
    # the code the exhaustive front was computed with
    import codesign.search.skopt_sampler  # noqa: F401
    import codesign.search.two_level  # noqa: F401
    from codesign.plugins import load_target

    for target in INSTANCES[args.instance]["space"]["targets"]:
        load_target(target)
    for method in ("two-level", "skopt"):
        if any(m.partition(":")[0] == method for m in methods):
            run_one(method, 0, 3, ex, args.instance)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {
            job: pool.submit(run_one, job[0], job[1], args.trials, ex, args.instance)
            for job in jobs
        }
        results = {job: f.result() for job, f in futures.items()}
    runs = {m: [results[(m, s)] for s in range(n_seeds[m])] for m in methods}
    curves = {m: [r["hv"] for r in rs] for m, rs in runs.items()}
    if args.save:
        Path(args.save).write_text(
            json.dumps(
                {
                    m: [{"hv": r["hv"].tolist(), "outer_hv": r["outer_hv"].tolist()} for r in rs]
                    for m, rs in runs.items()
                }
            )
        )
    marks = sorted({m for m in (10, 25, 50, 75, 100, 150, 200) if m < args.trials} | {args.trials})
    target = np.median([c[-1] for c in curves["random"]]) if "random" in curves else None
    print(
        f"\ninstance {args.instance}: hypervolume / exhaustive front's ({ex['front']} points of "
        f"{ex['designs']} designs, {ex['feasible']} feasible): median [25th, 75th percentile] "
        f"over the seeds; target = random@{args.trials} (median) = "
        f"{target if target is None else round(target, 3)}; evaluations to it: the median over "
        "all seeds, a seed that never reaches it counting as never\n"
    )
    print("By trials (designs the study evaluated):\n")
    print(
        "| method | seeds | "
        + " | ".join(f"HV@{m}" for m in marks)
        + f" | trials to random@{args.trials} | sampler CPU s/trial | s per run |"
    )
    print("|---" * (len(marks) + 5) + "|")
    for method, rs in runs.items():
        label = method if method.startswith("two-level") else f"joint {method}"
        wall = np.median([r["wall_s"] for r in rs])
        cpu = np.median([r["sampler_cpu_s"] for r in rs])
        print(
            f"| {label} | {len(rs)} | "
            + " | ".join(_cells(curves[method], marks))
            + f" | {_reach(curves[method], target)} | {cpu:.4f} | {wall:.1f} |"
        )
    two = [m for m in methods if m.startswith("two-level")]
    if two:
        outer_marks = [1, 2, 3, 5, 10, 25, 50, 100, 150]
        print(
            "\nTwo-level by outer evaluations (hardware points searched; a joint sampler's "
            "evaluation is one trial):\n"
        )
        print(
            "| method | "
            + " | ".join(f"HV@{m}" for m in outer_marks)
            + f" | outer evaluations to random@{args.trials} | outer evaluations run "
            "| designs priced per run |"
        )
        print("|---" * (len(outer_marks) + 4) + "|")
        for method in two:
            outer = [r["outer_hv"] for r in runs[method]]
            print(
                f"| {method} | "
                + " | ".join(_cells(outer, outer_marks))
                + f" | {_reach(outer, target)} | {np.median([len(o) for o in outer]):.0f} "
                f"| {np.median([r['priced'] for r in runs[method]]):,.0f} |"
            )


if __name__ == "__main__":
    main()
