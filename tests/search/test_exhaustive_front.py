"""The search benchmark's small enumerable instance (bench/bench_search.py) has one exhaustive
front for every search seed: designs are simulated with the load's own seed (``[workload]
seed``), so the runs of all seeds are judged against the same ground truth."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from codesign.config import OBJECTIVES
from codesign.search.pareto import normalized_hypervolume
from codesign.search.results import objective_bounds
from codesign.search.space import design_key

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_search.py"
SEEDS = range(5)


@pytest.fixture(scope="module")
def bench():
    """bench/bench_search.py as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_search", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_exhaustive_front_is_the_same_for_every_run_seed(bench):
    fronts = {}
    for seed in SEEDS:
        cfg = bench.config("random", seed, 100, "small")
        assert cfg.seed == seed and cfg.load_seed == bench.SMALL["workload"]["seed"]
        designs, values, counts = bench.exhaustive_front(cfg)
        # enumerable, and non-trivial
        assert 100 <= counts["designs"] <= 5000, counts
        assert len(designs) >= 3, counts
        lower, upper = objective_bounds(cfg)
        hv = normalized_hypervolume(
            values,
            cfg.directions(),
            lower=lower,
            upper=upper,
            log=[OBJECTIVES[o][1] for o in cfg.objectives],
        )
        assert hv > 0
        fronts[seed] = ({design_key(d) for d in designs}, hv)
    keys, hv = fronts[0]
    for seed in SEEDS:
        assert fronts[seed][0] == keys, f"search seed {seed} has another front than seed 0"
        assert fronts[seed][1] == pytest.approx(hv, rel=0.005), (seed, fronts[seed][1], hv)
