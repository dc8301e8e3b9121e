"""Search benchmark on an enumerable co-design instance: hypervolume vs trials for every
joint sampler and the two-level strategy over several seeds, and the trials each needs to reach
random search's final hypervolume (SEARCH.md §4). Not a test; run:

    python bench/bench_search.py [--seeds 10] [--trials 100] [--jobs 2]
        [--methods random,tpe,nsga2,gp,skopt,two-level]

``two-level`` is the HASCO-style strategy with the default inner sampler; ``two-level:NAME``
picks the inner sampler. The instance (2 stages of RM-S/M/L on a CPU or RPAccel partitions,
3x3 accelerator array shapes) is enumerated exhaustively once and cached under /tmp."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from codesign.config import OBJECTIVES, parse_run_config
from codesign.search.pareto import hypervolume_history, normalized_hypervolume, pareto_mask
from codesign.search.space import (
    InfeasibleDesign,
    design_from,
    enumerate_stages,
    evaluate_design,
    table_quality,
)
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
    },
    "quality": {"metric": "ndcg_recpipe@64", "source": "table"},
    "space": {
        "max_stages": 2,
        "targets": ["cpu/cascadelake", "accel/rpaccel"],
        "engines": [1, 2, 4, 8, 14],
        "shrink_log2": [1, 4],
        "accel_rows": [32, 64, 128],
        "accel_cols": [32, 64, 128],
    },
    "objectives": {"names": ["quality", "p95_latency_s", "power_w"]},
    "constraints": {"sla_ms": 50},
    "search": {"trials": 100, "sampler": "random", "seed": 0},
}


def config(method: str, seed: int, trials: int):
    """``method``: a sampler name (joint search) or ``two-level[:SAMPLER]``."""
    data = json.loads(json.dumps(INSTANCE))
    strategy, _, inner = method.partition(":")
    if strategy == "two-level":
        data["search"].update(strategy="two-level", sampler=inner or "auto")
    else:
        data["search"].update(strategy="joint", sampler=method)
    data["search"].update(seed=seed, trials=trials)
    return parse_run_config(data, origin="bench")


CACHE = Path("/tmp/codesign-bench")
SLOW = {"gp", "two-level:gp"}


def exhaustive(cfg) -> dict:
    """The exhaustive feasible front's hypervolume, and the normalisation it defines (SEARCH.md
    §2.9: log space, the true front's ideal to 10 % beyond its nadir). Cached per instance,
    codesign version and cost-model sources."""
    import codesign
    from codesign import __version__

    # the cost models' sources: a front computed with other costs is a different ground truth
    root = Path(codesign.__file__).resolve().parent.parent
    sources = sorted(
        p
        for pattern in ("targets/*.py", "cost_models/*.py", "codesign/pipeline.py", "search/*.py")
        for p in root.glob(pattern)
    )
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    key = hashlib.sha256(
        json.dumps(
            [
                INSTANCE["workload"],
                INSTANCE["space"],
                INSTANCE["objectives"],
                __version__,
                digest.hexdigest(),
            ]
        ).encode()
    ).hexdigest()[:12]
    cached = CACHE / f"exhaustive-{key}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    quality = lambda stages: table_quality(stages, cfg.quality_metric)  # noqa: E731
    values, seen = [], set()
    hws = [{"rows": r, "cols": c} for r, c in itertools.product(cfg.accel_rows, cfg.accel_cols)]
    for stages in enumerate_stages(cfg):
        for hw in hws:
            try:
                design = design_from(stages, hw, cfg)
                key_ = json.dumps(design["stages"], sort_keys=True)
                if key_ in seen:
                    continue
                seen.add(key_)
                m = evaluate_design(design, cfg, quality).metrics
            except InfeasibleDesign:
                continue
            if m["p95_latency_s"] <= cfg.sla_ms / 1e3:
                values.append([m[o] for o in cfg.objectives])
    values = np.array(values)
    front = values[pareto_mask(values, cfg.directions())]
    log = [OBJECTIVES[o][1] for o in cfg.objectives]
    lower, upper = [], []
    for j, name in enumerate(cfg.objectives):
        col = np.log10(front[:, j]) if log[j] else front[:, j]
        ideal, nadir = (
            (col.max(), col.min())
            if OBJECTIVES[name][0] == "maximize"
            else (
                col.min(),
                col.max(),
            )
        )
        ref = nadir + 0.1 * (nadir - ideal)
        lower.append(float(10**ideal if log[j] else ideal))
        upper.append(float(10**ref if log[j] else ref))
    hv = normalized_hypervolume(front, cfg.directions(), lower=lower, upper=upper, log=log)
    out = {
        "hv": hv,
        "lower": lower,
        "upper": upper,
        "designs": len(seen),
        "feasible": len(values),
        "front": len(front),
    }
    print(f"enumerated {len(seen)} designs, {len(values)} feasible, front of {len(front)}")
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
    values, feasible = [], []
    for t in study.trials:
        r = t.user_attrs.get("result")
        if r is None:
            values.append([np.nan] * len(cfg.objectives))
            feasible.append(False)
            continue
        values.append([r["metrics"][o] for o in cfg.objectives])
        feasible.append(all(v <= 0 for v in (t.constraints or {}).values()))
    lower, upper = ex["lower"], ex["upper"]
    hv = hypervolume_history(
        np.array(values),
        np.array(feasible),
        cfg.directions(),
        lower=lower,
        upper=upper,
        log=[OBJECTIVES[o][1] for o in cfg.objectives],
    )
    return np.asarray(hv) / ex["hv"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
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
    args = parser.parse_args()
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
    marks = [m for m in (10, 25, 50, 60, 75, 100, 200) if m <= args.trials]
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
