"""Search benchmark on an enumerable co-design instance: hypervolume vs trials for every
joint sampler and the two-level strategy over several seeds, and the trials each needs to reach
random search's final hypervolume (SEARCH.md §4). Not a test; run:

    python bench/bench_search.py [--seeds 10] [--trials 100] [--jobs 2]
        [--methods random,tpe,nsga2,gp,skopt,two-level] [--quick]

``two-level`` is the HASCO-style strategy with the default inner sampler; ``two-level:NAME``
picks the inner sampler. The instance: up to 2 stages of RM-S/M/L, each on the CPU socket
(2 or 8 cores per engine) or on RPAccel partitions (32 or 128 rows of 128 columns), 1 or 4
engines, one inference batch per stage; the RPAccel chip holds 4096 or 16384 PEs (a hardware
knob, so the two-level strategy has an outer loop: power is an objective). It has about 1,400
distinct designs, walked exhaustively (:func:`~codesign.search.space.enumerate_designs`) and
priced as one batch (:func:`~codesign.search.space.evaluate_designs`); the front is cached
under /tmp.

Every design is simulated with the load's own seed, ``[workload] seed`` (fixed at 0 here), not
the search seed: a design's objectives do not depend on the run, so the runs of every search
seed are judged against the same exhaustive front. (The benchmark used to simulate each run
with its search seed but compute the front for seed 0 only.)"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from codesign.config import OBJECTIVES, RunConfig, parse_run_config
from codesign.search.pareto import hypervolume_history, normalized_hypervolume, pareto_mask
from codesign.search.space import InfeasibleDesign, enumerate_designs, evaluate_designs
from codesign.search.study import run_study

INSTANCE = {
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


def config(method: str, seed: int, trials: int) -> RunConfig:
    """``method``: a sampler name (joint search) or ``two-level[:SAMPLER]``; ``seed`` is the
    search seed only (the load's seed stays ``INSTANCE["workload"]["seed"]``)."""
    data = json.loads(json.dumps(INSTANCE))
    strategy, _, inner = method.partition(":")
    if strategy == "two-level":
        data["search"].update(strategy="two-level", sampler=inner or "auto")
    else:
        data["search"].update(strategy="joint", sampler=method)
    data["search"].update(seed=seed, trials=trials)
    return parse_run_config(data, origin="bench")


def feasible(cfg: RunConfig, metrics: dict[str, float]) -> bool:
    """The run's constraints, as the study sets them."""
    return (
        (cfg.sla_ms is None or metrics["p95_latency_s"] <= cfg.sla_ms / 1e3)
        and (cfg.quality_floor is None or metrics["quality"] >= cfg.quality_floor)
        and (cfg.area_budget_mm2 is None or metrics["area_mm2"] <= cfg.area_budget_mm2)
    )


def exhaustive_front(cfg: RunConfig) -> tuple[list[dict], np.ndarray, dict[str, int]]:
    """Every design of ``cfg``'s space, evaluated as one batch: the feasible Pareto front's
    designs and objective values, and the counts (designs, unbuildable, feasible)."""
    designs = list(enumerate_designs(cfg))
    points, values = [], []
    unbuildable = 0
    for result in evaluate_designs(designs, cfg):
        if isinstance(result, InfeasibleDesign):
            unbuildable += 1
        elif feasible(cfg, result.metrics):
            points.append(result.design)
            values.append([result.metrics[o] for o in cfg.objectives])
    values = np.array(values, dtype=float).reshape(-1, len(cfg.objectives))
    mask = pareto_mask(values, cfg.directions()) if len(values) else np.zeros(0, dtype=bool)
    front = [d for d, keep in zip(points, mask, strict=True) if keep]
    counts = {"designs": len(designs), "unbuildable": unbuildable, "feasible": len(points)}
    return front, values[mask], counts


CACHE = Path("/tmp/codesign-bench")
SLOW = {"gp", "two-level:gp"}


def exhaustive(cfg: RunConfig) -> dict:
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
    problem = {k: v for k, v in INSTANCE.items() if k != "search"}
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
        f"{counts['feasible']} feasible), front of {len(front)}, load seed {cfg.load_seed}, "
        f"in {time.perf_counter() - start:.1f} s"
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(out))
    return out


def run_one(method: str, seed: int, trials: int, ex: dict) -> tuple[np.ndarray, float]:
    """Normalised HV after each trial, as a fraction of the exhaustive front's HV, and the
    run's wall time."""
    import optuna

    from codesign.search import study as study_mod

    start = time.perf_counter()
    cfg = config(method, seed, trials)
    captured = {}
    original = study_mod.open_storage

    def capture(url):
        captured["storage"] = original(url)
        return captured["storage"]

    study_mod.open_storage = capture
    try:
        run_study(
            cfg, run_dir=Path("/tmp/codesign-bench"), storage="memory", write_outputs_after=False
        )
    finally:
        study_mod.open_storage = original
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
    lower, upper = ex["lower"], ex["upper"]
    hv = hypervolume_history(
        np.array(values),
        np.array(mask),
        cfg.directions(),
        lower=lower,
        upper=upper,
        log=[OBJECTIVES[o][1] for o in cfg.objectives],
    )
    return np.asarray(hv) / ex["hv"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
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
    ex = exhaustive(config("random", 0, args.trials))
    methods = args.methods.split(",")
    n_seeds = {m: min(args.seeds, args.slow_seeds) if m in SLOW else args.seeds for m in methods}
    jobs = [(m, seed) for m in methods for seed in range(n_seeds[m])]
    # import and warm every lazily loaded module before forking, so that the workers all run
    # the code the exhaustive front was computed with
    import codesign.search.skopt_sampler  # noqa: F401
    import codesign.search.two_level  # noqa: F401
    from codesign.plugins import load_target

    for target in INSTANCE["space"]["targets"]:
        load_target(target)
    for method in ("two-level", "skopt"):
        if any(m.partition(":")[0] == method for m in methods):
            run_one(method, 0, 3, ex)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {job: pool.submit(run_one, job[0], job[1], args.trials, ex) for job in jobs}
        results = {job: f.result() for job, f in futures.items()}
    curves = {m: [results[(m, s)][0] for s in range(n_seeds[m])] for m in methods}
    times = {m: [results[(m, s)][1] for s in range(n_seeds[m])] for m in methods}
    if args.save:
        Path(args.save).write_text(
            json.dumps({m: [c.tolist() for c in runs] for m, runs in curves.items()})
        )
    marks = sorted({m for m in (10, 25, 50, 75, 100, 200) if m < args.trials} | {args.trials})
    target = np.mean([c[-1] for c in curves["random"]]) if "random" in curves else None
    print(
        f"\nhypervolume / exhaustive front's ({ex['front']} points of {ex['designs']} designs), "
        f"mean (std) over the seeds; "
        f"target = random@{args.trials} = {target if target is None else round(target, 3)}\n"
    )
    print(
        "| method | seeds | "
        + " | ".join(f"HV@{m}" for m in marks)
        + f" | trials to random@{args.trials} | s per run |"
    )
    print("|---" * (len(marks) + 4) + "|")
    for method, runs in curves.items():
        cells = []
        for m in marks:
            at = [r[min(m, len(r)) - 1] for r in runs]
            cells.append(f"{np.mean(at):.3f} ({np.std(at):.3f})")
        reach = "-"
        if target is not None and target > 0:
            hits = [int(np.argmax(r >= target)) + 1 if (r >= target).any() else None for r in runs]
            ok = [h for h in hits if h is not None]
            reach = f"{int(np.median(ok))} ({len(ok)}/{len(runs)} reached)" if ok else "never"
        label = method if method.startswith("two-level") else f"joint {method}"
        wall = np.mean(times[method])
        print(f"| {label} | {len(runs)} | " + " | ".join(cells) + f" | {reach} | {wall:.1f} |")


if __name__ == "__main__":
    main()
