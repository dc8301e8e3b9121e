"""`codesign plan run` (issue 13, Deliver 3; a short version at one load): a cpu/host plan runs
on this machine through TVM-compiled stages under a Poisson load, and non-CPU plans are refused
with one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.config import parse_run_config
from codesign.search.study import run_study

pytest.importorskip("tvm")
runner = CliRunner()

RUN = {
    "version": 1,
    "kind": "run",
    "name": "host",
    "workload": {
        "models": ["rm-small"],
        "candidates": 256,
        "keep": 16,
        "qps": 20,
        "queries": 300,
        "warmup": 50,
    },
    "space": {"max_stages": 1, "targets": ["cpu/host"], "engines": [1, 1]},
    "objectives": {"names": ["p95_latency_s", "energy_j"]},
    "search": {"trials": 3, "strategy": "joint"},
}


def test_plan_run_measures_a_host_plan(tmp_path):
    run_study(parse_run_config(RUN, origin="host"), run_dir=tmp_path)
    plan = sorted((tmp_path / "plans").glob("plan-*.json"))[0]
    result = runner.invoke(
        app, ["plan", "run", str(plan), "--qps", "10", "--duration", "2", "--warmup", "0.2"]
    )
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "measured").glob("*.json"))
    assert len(written) == 1
    data = json.loads(written[0].read_text())
    assert data["completed"] == data["offered"] > 0
    assert 0 < data["p50_latency_s"] <= data["p95_latency_s"] <= data["p99_latency_s"]
    # every query passed the stage once, and its service is within its latency
    stage = data["stages"][0]
    assert stage["calls"] == data["completed"]
    assert 0 < stage["mean_service_s"] <= data["p99_latency_s"]
    # the prediction at the same load is beside it (loose: the models' accuracy is issue 13's)
    assert data["predicted"]["p95_latency_s"] > 0
    assert set(data["relative_error"]) == {"p50_latency_s", "p95_latency_s", "p99_latency_s"}


def test_plan_run_refuses_other_targets(tmp_path):
    data = json.loads(json.dumps(RUN))
    data["space"]["targets"] = ["cpu/cascadelake"]
    run_study(parse_run_config(data, origin="cascadelake"), run_dir=tmp_path)
    plan = sorted((tmp_path / "plans").glob("plan-*.json"))[0]
    result = runner.invoke(app, ["plan", "run", str(plan)])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cpu/cascadelake" in lines[0] and "cpu/host" in lines[0]
