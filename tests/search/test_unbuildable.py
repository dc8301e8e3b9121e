"""Feasible by construction: in every shipped example and in a RecPipe-style accelerator study,
fewer than 5 % of trials propose a design that cannot be built (the run summary prints the
share). The shipped RecPipe example replays trained models for quality; here it uses the
published table instead, which changes nothing about buildability."""

from __future__ import annotations

import tomllib

import pytest

from codesign.config import default_run_path, parse_run_config
from codesign.search.study import run_study

EXAMPLES = ("recpipe-criteo", "accel-sweep", "deeprecinfra-cpu-gpu")

#: RecPipe's accelerator study (BACKGROUND §1.7): up to 3 stages of RM-S/M/L partitioning one
#: 128x128-PE RPAccel, many engines per stage, a p95 SLA of 25 ms and a quality floor.
RECPIPE_ACCEL = {
    "version": 1,
    "kind": "run",
    "name": "recpipe-accel",
    "workload": {
        "models": ["rm-small", "rm-med", "rm-large"],
        "candidates": 4096,
        "keep": 64,
        "qps": 500,
        "queries": 1000,
        "warmup": 100,
    },
    "quality": {"metric": "ndcg_recpipe@64", "source": "table"},
    "space": {
        "max_stages": 3,
        "targets": ["accel/rpaccel"],
        "engines": [1, 2, 4, 8, 16],
        "shrink_log2": [1, 5],
        "hw": {
            "accel/rpaccel": {
                "pe_budget": 16384,
                "rows": [16, 32, 64, 128],
                "cols": [16, 32, 64, 128],
            }
        },
    },
    "objectives": {"names": ["quality", "max_qps"]},
    "constraints": {"sla_ms": 25, "quality_floor": 0.9},
    "search": {"trials": 60, "sampler": "tpe", "seed": 0},
}


def _example(name: str):
    path = default_run_path().parent / f"{name}.toml"
    data = tomllib.loads(path.read_text())
    quality = data.get("quality", {})
    wanted = "quality" in data.get("objectives", {}).get("names", ["quality"])
    if wanted and quality.get("source", "replay") == "replay":
        data["quality"] = {"metric": quality.get("metric", "ndcg_recpipe@64"), "source": "table"}
    return parse_run_config(data, origin=str(path))


@pytest.mark.parametrize("name", [*EXAMPLES, "recpipe-accel-study"])
def test_unbuildable_trials_are_under_5_percent(name, tmp_path):
    cfg = (
        parse_run_config(RECPIPE_ACCEL, origin="recpipe-accel")
        if name == "recpipe-accel-study"
        else _example(name)
    )
    result = run_study(cfg, run_dir=tmp_path)
    assert result.finished == cfg.trials
    assert result.unbuildable / result.finished < 0.05, result.unbuildable
