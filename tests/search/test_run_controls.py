"""Run controls: a time budget that stops cleanly with the front so far, the summary's trial
counts (evaluated, cached, unbuildable, feasible), and the load's arrival convention."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.config import parse_run_config
from codesign.errors import SpecError
from codesign.search.space import context, design_from, evaluate_design
from codesign.search.study import run_study

runner = CliRunner()

RUN = {
    "version": 1,
    "kind": "run",
    "name": "controls",
    "workload": {
        "models": ["rm-small", "rm-large"],
        "candidates": 1024,
        "keep": 64,
        "qps": 200,
        "queries": 300,
        "warmup": 50,
    },
    "quality": {"metric": "ndcg_recpipe@64", "source": "table"},
    "space": {
        "max_stages": 1,
        "targets": ["cpu/cascadelake"],
        "engines": [1, 2],
        "batch_split_log2": [0, 0],
        "hw": {"cpu/cascadelake": {"cores": 1}},
    },
    "objectives": {"names": ["p95_latency_s", "power_w"]},
    "constraints": {"sla_ms": 100},
    "search": {"trials": 12, "sampler": "random", "seed": 0, "strategy": "joint"},
}


def cfg(**changes):
    data = json.loads(json.dumps(RUN))
    for section, values in changes.items():
        data[section].update(values)
    return parse_run_config(data, origin="controls")


def test_repeated_designs_are_counted_as_cached(tmp_path):
    """Four distinct designs (2 models x 2 engine counts): 12 trials price each once."""
    result = run_study(cfg(), run_dir=tmp_path)
    assert result.finished == 12
    assert result.evaluated == 4 and result.cached == 8 and result.unbuildable == 0
    assert result.evaluated + result.cached == result.feasible == 12


def test_time_budget_stops_cleanly_and_writes_the_front(tmp_path):
    out = tmp_path / "run"
    args = ["optimize", "--out", str(out), "--trials", "100000", "--time-budget", "2"]
    toml = tmp_path / "run.toml"
    toml.write_text(
        'version = 1\nkind = "run"\nname = "tb"\n'
        '[workload]\nmodels = ["rm-small"]\ncandidates = 1024\nkeep = 64\nqps = 50\n'
        "queries = 300\nwarmup = 50\n"
        '[space]\nmax_stages = 1\ntargets = ["cpu/cascadelake"]\n'
        '[objectives]\nnames = ["p95_latency_s", "power_w"]\n'
        '[search]\nstrategy = "joint"\n'
    )
    result = runner.invoke(app, [args[0], str(toml), *args[1:]])
    assert result.exit_code == 0, result.output
    assert "stopped at the time budget" in result.stdout
    assert list((out / "plans").glob("plan-*.json")) and (out / "report.html").exists()
    bad = runner.invoke(app, [args[0], str(toml), "--time-budget", "-1"])
    assert bad.exit_code == 1 and "--time-budget" in bad.stderr


def test_arrival_convention_reaches_the_load():
    exp, rec = cfg(), cfg(workload={"arrival": "recpipe"})
    assert context(exp).arrival == "exponential" and context(rec).arrival == "recpipe"
    assert exp.config_hash() != rec.config_hash()  # another problem, not another run of one
    stage = {
        "name": "stage1",
        "model": "rm-small",
        "target": "cpu/cascadelake",
        "engines": 1,
        "items": 1024,
        "knobs": {"cores": 1},
    }
    a = evaluate_design(design_from([stage], {}, exp), exp).metrics
    b = evaluate_design(design_from([stage], {}, rec), rec).metrics
    assert a["unloaded_latency_s"] == b["unloaded_latency_s"]
    assert a["p95_latency_s"] != b["p95_latency_s"]  # other arrivals, same service
    with pytest.raises(SpecError, match="workload.arrival"):
        cfg(workload={"arrival": "uniform"})
