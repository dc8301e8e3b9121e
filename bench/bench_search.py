"""Sampler benchmark on an enumerable co-design instance: hypervolume vs trials for every
sampler over several seeds, and the trials each needs to reach random search's 100-trial
hypervolume (SEARCH.md §4). Not a test; run: python bench/bench_search.py [--seeds 10]
[--trials 100] [--samplers random,tpe,nsga2,gp]."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from codesign.config import OBJECTIVES, parse_run_config
from codesign.search.pareto import hypervolume_history, normalized_hypervolume
from codesign.search.space import (
    InfeasibleDesign,
    design_from,
    enumerate_stages,
    evaluate_design,
    table_quality,
)
from codesign.search.study import objective_bounds, run_study

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
        "accel_rows": [64],
        "accel_cols": [64],
    },
    "objectives": {"names": ["quality", "p95_latency_s"]},
    "constraints": {"sla_ms": 50},
    "search": {"trials": 100, "sampler": "random", "seed": 0},
}


def config(sampler: str, seed: int, trials: int):
    data = json.loads(json.dumps(INSTANCE))
    data["search"].update(sampler=sampler, seed=seed, trials=trials)
    return parse_run_config(data, origin="bench")


def exhaustive(cfg) -> float:
    quality = lambda stages: table_quality(stages, cfg.quality_metric)  # noqa: E731
    values, seen = [], set()
    for stages in enumerate_stages(cfg):
        try:
            design = design_from(stages, {"rows": 64, "cols": 64}, cfg)
            key = json.dumps(design["stages"], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            m = evaluate_design(design, cfg, quality).metrics
        except InfeasibleDesign:
            continue
        if m["p95_latency_s"] <= cfg.sla_ms / 1e3:
            values.append([m[o] for o in cfg.objectives])
    lower, upper = objective_bounds(cfg)
    print(f"enumerated {len(seen)} designs, {len(values)} feasible")
    return normalized_hypervolume(
        np.array(values),
        cfg.directions(),
        lower=lower,
        upper=upper,
        log=[OBJECTIVES[o][1] for o in cfg.objectives],
    )


def run_one(sampler: str, seed: int, trials: int, exhaustive_hv: float) -> np.ndarray:
    """Normalised HV after each trial, as a fraction of the exhaustive front's HV."""
    import optuna

    from codesign.search import study as study_mod

    cfg = config(sampler, seed, trials)
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
            values.append([np.nan, np.nan])
            feasible.append(False)
            continue
        values.append([r["metrics"][o] for o in cfg.objectives])
        feasible.append(all(v <= 0 for v in (t.constraints or {}).values()))
    lower, upper = objective_bounds(cfg)
    hv = hypervolume_history(
        np.array(values),
        np.array(feasible),
        cfg.directions(),
        lower=lower,
        upper=upper,
        log=[OBJECTIVES[o][1] for o in cfg.objectives],
    )
    return np.asarray(hv) / exhaustive_hv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--samplers", default="random,tpe,nsga2,gp")
    args = parser.parse_args()
    ex = exhaustive(config("random", 0, args.trials))
    curves: dict[str, list[np.ndarray]] = {}
    for sampler in args.samplers.split(","):
        start = time.perf_counter()
        curves[sampler] = [run_one(sampler, seed, args.trials, ex) for seed in range(args.seeds)]
        print(f"{sampler}: {time.perf_counter() - start:.1f} s for {args.seeds} seeds")
    marks = [m for m in (10, 25, 50, 100, 200) if m <= args.trials]
    target = np.mean([c[-1] for c in curves.get("random", [])]) if "random" in curves else None
    print(f"\nhypervolume / exhaustive, mean (std) over {args.seeds} seeds")
    print("sampler  " + "  ".join(f"HV@{m:<4d}      " for m in marks) + "  trials to random@N")
    for sampler, runs in curves.items():
        cells = []
        for m in marks:
            at = [r[min(m, len(r)) - 1] for r in runs]
            cells.append(f"{np.mean(at):.3f} ({np.std(at):.3f})")
        reach = "-"
        if target is not None:
            hits = [int(np.argmax(r >= target)) + 1 if (r >= target).any() else None for r in runs]
            ok = [h for h in hits if h is not None]
            reach = (
                f"median {int(np.median(ok))} ({len(ok)}/{len(runs)} reached)" if ok else "never"
            )
        print(f"{sampler:8s} " + "  ".join(cells) + f"  {reach}")


if __name__ == "__main__":
    main()
