"""Pipeline evaluation under load: the RecPipe effect, seeds, fork-join serving, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.pipeline import evaluate, load_pipeline, service_table, stage_service_s
from codesign.search.deeprecsched import DeepRecSchedSettings, deeprecsched, make_server_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
runner = CliRunner()


def test_recpipe_effect_on_the_host_cpu():
    """2-stage S->L beats 1-stage L at equal stage-1 items (4096) under high load."""
    one = load_pipeline(EXAMPLES / "recpipe-criteo-1stage-host.yaml")
    two = load_pipeline(EXAMPLES / "recpipe-criteo-2stage-host.yaml")
    assert one.stages[0].items == two.stages[0].items == 4096
    # about 86 % utilisation of the 1-stage pipeline's two engines (cpu/host is this machine:
    # its speed, hence the load, is measured, not fixed)
    qps = 0.86 * evaluate(one, 1.0)["stability_limit_qps"]
    a, b = evaluate(one, qps), evaluate(two, qps)
    assert a["stages"][0]["utilization"] > 0.7
    assert b["p95_latency_s"] < a["p95_latency_s"] / 3
    assert b["sla"]["max_qps"] > 2 * a["sla"]["max_qps"]


def test_same_seed_same_percentiles_other_seeds_close():
    p = load_pipeline(EXAMPLES / "recpipe-criteo-2stage-cpu.yaml")
    x, y = evaluate(p, 4000, seed=1), evaluate(p, 4000, seed=1)
    assert x["p95_latency_s"] == y["p95_latency_s"] and x["p99_latency_s"] == y["p99_latency_s"]
    z = evaluate(p, 4000, seed=2)
    assert z["p95_latency_s"] != x["p95_latency_s"]
    assert z["p95_latency_s"] == pytest.approx(x["p95_latency_s"], rel=0.25)


def test_service_time_is_batches_plus_host_sort():
    p = load_pipeline(
        {
            "version": 1,
            "kind": "pipeline",
            "stages": [
                {
                    "model": "rm-small",
                    "items": 1000,
                    "keep": 100,
                    "target": "cpu/cascadelake",
                    "knobs": {"cores": 1},
                    "batch": 300,
                    "engines": 1,
                }
            ],
        }
    )
    st = p.stages[0]
    parts = stage_service_s(st, 1000)
    whole = stage_service_s(
        load_pipeline(
            {
                "version": 1,
                "kind": "pipeline",
                "stages": [
                    {
                        "model": "rm-small",
                        "items": 300,
                        "keep": 300,
                        "target": "cpu/cascadelake",
                        "knobs": {"cores": 1},
                    }
                ],
            }
        ).stages[0],
        300,
    )
    rest = stage_service_s(
        load_pipeline(
            {
                "version": 1,
                "kind": "pipeline",
                "stages": [
                    {
                        "model": "rm-small",
                        "items": 100,
                        "keep": 100,
                        "target": "cpu/cascadelake",
                        "knobs": {"cores": 1},
                    }
                ],
            }
        ).stages[0],
        100,
    )
    # 1000 items in batches of 300: three full batches and one of 100, then RecPipe's host sort
    assert parts["model_s"] == pytest.approx(3 * whole["model_s"] + rest["model_s"])
    assert parts["sort_s"] == 0.07e-3


def test_fused_accelerator_stages_pipeline_sub_batches():
    p = load_pipeline(EXAMPLES / "recpipe-criteo-3stage-accel.yaml")
    table = service_table(p, __import__("numpy").array([4096]))
    assert table.pool_names == ("S+M+L",)
    separate = sum(stage_service_s(st, st.items)["service_s"] for st in p.stages)
    assert table.unloaded_s[0] < separate


def test_deeprecsched_fork_join_and_hill_climb():
    fixed = {"kind": "fixed", "value": 256}
    s4 = DeepRecSchedSettings(
        model="rm-small",
        engines=4,
        query_size=fixed,
        queries=200,
        warmup=10,
        batch_configs=(64, 128, 256),
    )
    run4 = make_server_model(s4)
    run1 = make_server_model(
        DeepRecSchedSettings(model="rm-small", engines=1, query_size=fixed, queries=200, warmup=10)
    )
    # at negligible load a 256-item query is 4 sub-requests of 64: parallel on 4 engines,
    # back to back on one
    lat4 = run4(64, None, 0.01, 0).p50_latency_s
    lat1 = run1(64, None, 0.01, 0).p50_latency_s
    assert lat1 == pytest.approx(4 * lat4)
    result = deeprecsched(s4)
    assert result.max_qps == max(h["max_qps"] for h in result.history)
    assert result.batch in (64, 128, 256)


def test_pipeline_cli_json_and_errors(tmp_path):
    path = str(EXAMPLES / "recpipe-criteo-2stage-host.yaml")
    result = runner.invoke(app, ["pipeline", "evaluate", path, "--qps", "40", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert {"p50_latency_s", "p95_latency_s", "p99_latency_s"} <= set(info)
    assert [s["name"] for s in info["stages"]] == ["S", "L"]
    assert info["sla"]["max_qps"] > 40
    table = runner.invoke(app, ["pipeline", "evaluate", path, "--qps", "40"])
    assert "p95 latency" in table.stdout and "max QPS" in table.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nkind: pipeline\nstages:\n  - {model: rm-small, items: 10, "
        "keep: 20, target: cpu/host}\n"
    )
    result = runner.invoke(app, ["pipeline", "evaluate", str(bad), "--qps", "5"])
    assert result.exit_code == 1
    assert "stages[0].keep" in result.stderr and result.stderr.strip().count("\n") == 0
    result = runner.invoke(app, ["pipeline", "evaluate", path, "--qps", "-3"])
    assert result.exit_code == 1 and "--qps" in result.stderr
    ok = runner.invoke(app, ["pipeline", "validate", path])
    assert ok.exit_code == 0 and "ok" in ok.stdout


def test_deeprecsched_cli_json():
    result = runner.invoke(
        app, ["pipeline", "deeprecsched", "rm-small", "--queries", "300", "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["max_qps"] == max(h["max_qps"] for h in info["history"]) > 0
    assert all(h["feasible"] is True for h in info["history"])
