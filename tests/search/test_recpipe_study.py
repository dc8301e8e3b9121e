"""A RecPipe-style accelerator study small enough to enumerate: RM-small/med/large over 4096
candidates keeping 64, partitions of one 128x128-PE RPAccel (each with its share of the chip's
DRAM bandwidth), a p95 SLA and a quality floor. The default `codesign optimize` strategy must
find the design with the highest max QPS that the enumeration finds (the evaluator is the
same and seed-independent, so the numbers are comparable exactly)."""

from __future__ import annotations

import pytest

from codesign.config import parse_run_config
from codesign.search.results import constraint_values
from codesign.search.space import enumerate_designs, evaluate_designs
from codesign.search.study import resolve_strategy, run_study

STUDY = {
    "version": 1,
    "kind": "run",
    "name": "recpipe-study",
    "workload": {
        "models": ["rm-small", "rm-med", "rm-large"],
        "candidates": 4096,
        "keep": 64,
        "qps": 100,
        "queries": 600,
        "warmup": 100,
    },
    "quality": {"metric": "ndcg_recpipe@64", "source": "table"},
    "space": {
        "max_stages": 2,
        "targets": ["accel/rpaccel"],
        "engines": [1, 2, 4],
        "shrink_log2": [2, 3],
        "batch_split_log2": [0, 0],
        "hw": {
            "accel/rpaccel": {
                "pe_budget": 16384,  # one 128x128-PE chip
                "rows": [32, 64],
                "cols": [32, 64],
                "static_cache_bytes": 2**20,
                "dynamic_cache_bytes": 2**20,
                "topk_units": 64,
                "sub_batch": 0,
            }
        },
    },
    "objectives": {"names": ["quality", "max_qps"]},
    "constraints": {"sla_ms": 25, "quality_floor": 0.9},
    "search": {"trials": 60, "seed": 0},
}


def test_default_search_finds_the_highest_max_qps_design(tmp_path):
    cfg = parse_run_config(STUDY, origin="recpipe-study")
    assert resolve_strategy(cfg) == "two-level"  # enumerable: searched exactly
    best = 0.0
    for result in evaluate_designs(list(enumerate_designs(cfg)), cfg):
        if hasattr(result, "metrics") and all(
            v <= 0 for v in constraint_values(cfg, result.metrics).values()
        ):
            best = max(best, result.metrics["max_qps"])
    assert best > 0
    found = run_study(cfg, run_dir=tmp_path, storage="memory", write_outputs_after=False)
    assert found.finished <= cfg.trials
    assert max(row["objectives"]["max_qps"] for row in found.front) == pytest.approx(
        best, rel=1e-12
    )
