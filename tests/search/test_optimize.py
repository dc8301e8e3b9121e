"""`codesign optimize`: configs, reproducibility, resume, workers, and search quality against an
exhaustively enumerated instance."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.config import OBJECTIVES, parse_run_config
from codesign.errors import SpecError
from codesign.search.pareto import normalized_hypervolume, pareto_mask
from codesign.search.space import (
    InfeasibleDesign,
    design_from,
    enumerate_designs,
    evaluate_design,
    evaluate_designs,
    table_quality,
)
from codesign.search.study import is_counted, objective_bounds, run_study

runner = CliRunner()

SMALL = {
    "version": 1,
    "kind": "run",
    "name": "small",
    "workload": {
        "models": ["rm-small", "rm-med", "rm-large"],
        "candidates": 4096,
        "keep": 64,
        "qps": 150,
        "queries": 300,
        "warmup": 50,
    },
    "quality": {"metric": "ndcg_recpipe@64", "source": "table"},
    "space": {
        "max_stages": 2,
        "targets": ["cpu/cascadelake", "gpu/nvidia/t4"],
        "engines": [1, 4, 14],
        "shrink_log2": [1, 4],
        "batch_split_log2": [0, 0],
        "hw": {"cpu/cascadelake": {"cores": 1}},
    },
    "objectives": {"names": ["quality", "p95_latency_s"]},
    "constraints": {"sla_ms": 100},
    # joint: these tests are about the sampler's study (resume, workers, seeds); an enumerable
    # space like this one would otherwise be searched exactly (strategy auto)
    "search": {"trials": 20, "sampler": "tpe", "seed": 0, "strategy": "joint"},
}


def small(**search) -> object:
    data = json.loads(json.dumps(SMALL))
    data["search"].update(search)
    return parse_run_config(data, origin="small")


def test_bad_configs_report_every_field():
    data = json.loads(json.dumps(SMALL))
    data["workload"]["models"] = ["rm-tiny"]
    data["workload"]["qps"] = -1
    data["search"]["sampler"] = "sa"
    data["objectives"]["names"] = ["quality", "latency"]
    data["space"]["targets"] = ["cpu/epyc"]
    with pytest.raises(SpecError) as info:
        parse_run_config(data, origin="run.toml")
    paths = {p.path for p in info.value.problems}
    assert {"workload.qps", "search.sampler", "objectives.names[1]"} <= paths
    assert "\n" not in str(info.value)
    data = json.loads(json.dumps(SMALL))
    data["workload"]["models"] = ["rm-tiny"]
    with pytest.raises(SpecError, match=r"workload.models\[0\]"):
        parse_run_config(data)


def test_cli_bad_config_exits_1_and_starts_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'version = 1\nkind = "run"\n[workload]\nmodels = ["rm-small"]\n'
        "candidates = 0\nkeep = 4\nqps = 10\n"
    )
    result = runner.invoke(app, ["optimize", str(bad), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "workload.candidates" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "search",
    [
        {"sampler": "tpe"},
        {"sampler": "skopt"},
        {"sampler": "tpe", "strategy": "two-level", "inner_trials": 5},
    ],
    ids=["tpe", "skopt", "two-level"],
)
def test_same_seed_same_front(tmp_path, search):
    data = json.loads(json.dumps(SMALL))
    data["search"].update(search, trials=16)
    if search.get("strategy") == "two-level":  # hardware knobs for the outer loop
        data["space"].update(
            targets=["cpu/cascadelake", "accel/rpaccel"], accel_rows=[32, 64], accel_cols=[32, 64]
        )
    cfg = parse_run_config(data)
    a = run_study(cfg, run_dir=tmp_path / "a")
    b = run_study(cfg, run_dir=tmp_path / "b")
    assert [r["trial"] for r in a.front] == [r["trial"] for r in b.front]
    assert [r["objectives"] for r in a.front] == [r["objectives"] for r in b.front]
    assert a.front, "expected feasible plans"
    import optuna

    params = [
        [t.params for t in optuna.load_study(study_name="small", storage=r.storage).trials]
        for r in (a, b)
    ]
    assert params[0] == params[1]
    other = run_study(
        parse_run_config({**data, "search": {**data["search"], "seed": 1}}), run_dir=tmp_path / "c"
    )
    other_params = [
        t.params for t in optuna.load_study(study_name="small", storage=other.storage).trials
    ]
    assert other_params != params[0]


def test_resume_grows_without_losing_trials(tmp_path):
    cfg = small(trials=8)
    first = run_study(cfg, run_dir=tmp_path)
    rows_before = list(csv.DictReader((tmp_path / "trials.csv").open()))
    second = run_study(small(trials=14), run_dir=tmp_path)
    rows_after = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert first.finished == 8 and second.finished == 14
    numbers = [r["number"] for r in rows_after]
    assert len(numbers) == len(set(numbers))
    before = {r["number"]: r for r in rows_before}
    for number, row in before.items():
        assert {k: v for k, v in row.items()} == next(
            r for r in rows_after if r["number"] == number
        )
    plans = sorted((tmp_path / "plans").glob("plan-*.json"))
    assert plans and json.loads(plans[0].read_text())["provenance"]["cost_model"] == "analytical"
    assert (tmp_path / "report.html").read_text().count("<svg") >= 2


def test_two_workers_share_the_budget(tmp_path):
    run_dir = tmp_path / "run"
    run_study(small(trials=16), run_dir=run_dir, create_only=True, write_outputs_after=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "codesign", "worker", str(run_dir), "--worker-id", str(k)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in (1, 2)
    ]
    for p in procs:
        _, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr.decode()[-2000:]
    import optuna

    study = optuna.load_study(study_name="small", storage=f"sqlite:///{run_dir / 'study.sqlite3'}")
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    counted = [t for t in study.trials if is_counted(t)]
    # each trial takes a budget slot before it proposes a design: exactly 16, however the two
    # workers interleave; a trial that found every slot taken is pruned, uncounted
    assert len(counted) == 16
    assert all(
        t.user_attrs.get("not_counted") == "over budget" for t in study.trials if not is_counted(t)
    )
    workers = {(t.user_attrs.get("result") or t.user_attrs).get("worker") for t in counted}
    assert workers == {1, 2}


def test_search_reaches_90_percent_of_exhaustive_hypervolume(tmp_path):
    cfg = small(trials=100, sampler="tpe", seed=0)
    values, feasible = [], []
    designs = list(enumerate_designs(cfg))
    seen = len(designs)
    for result in evaluate_designs(designs, cfg):
        if isinstance(result, InfeasibleDesign):
            continue
        m = result.metrics
        values.append([m[o] for o in cfg.objectives])
        feasible.append(m["p95_latency_s"] <= cfg.sla_ms / 1e3)
    values, feasible = np.array(values), np.array(feasible)
    lower, upper = objective_bounds(cfg)
    log = [OBJECTIVES[o][1] for o in cfg.objectives]
    exhaustive = normalized_hypervolume(
        values[feasible], cfg.directions(), lower=lower, upper=upper, log=log
    )
    assert seen > 300 and exhaustive > 0
    result = run_study(cfg, run_dir=tmp_path)
    found = np.array([[r["objectives"][o] for o in cfg.objectives] for r in result.front])
    achieved = normalized_hypervolume(found, cfg.directions(), lower=lower, upper=upper, log=log)
    assert achieved >= 0.9 * exhaustive, (achieved, exhaustive)
    assert pareto_mask(found, cfg.directions()).all()


def test_replay_quality_comes_from_trained_models(tmp_path, monkeypatch):
    """source = "replay": the workload's models are trained on the quality dataset first, and
    every design's quality is the replay of their cached scores through its funnel."""
    from codesign.quality.api import clear_replayers, funnel_quality
    from codesign.quality.datasets import DataOptions

    monkeypatch.setenv("CODESIGN_CACHE_DIR", str(tmp_path / "cache"))
    clear_replayers()
    data = json.loads(json.dumps(SMALL))
    data["workload"].update(candidates=1024, keep=32)
    data["quality"] = {
        "metric": "ndcg@32",
        "source": "replay",
        "samples": 6000,
        "val_samples": 4096,
        "seed": 3,
    }
    data["search"]["trials"] = 8
    cfg = parse_run_config(data, origin="replay")
    result = run_study(cfg, run_dir=tmp_path / "run")
    import optuna

    study = optuna.load_study(study_name="small", storage=result.storage)
    aucs = study.user_attrs["quality_models"]
    assert set(aucs) == {"rm-small", "rm-med", "rm-large"}
    assert all(0.0 < v["auc"] < 1.0 for v in aucs.values())
    options = DataOptions(samples=6000, val_samples=4096, seed=3)
    assert result.front
    for row in result.front:
        stages = [(s["model"], s["items"], s["keep"]) for s in row["design"]["stages"]]
        expected = funnel_quality(stages, "ndcg@32", dataset="synthetic", options=options)
        assert row["metrics"]["quality"] == pytest.approx(expected)
    plan = json.loads(next((tmp_path / "run" / "plans").glob("plan-*.json")).read_text())
    assert plan["provenance"]["quality_source"] == "replay"
    assert set(plan["provenance"]["quality_models"]) == set(aucs)
    clear_replayers()


def test_replay_config_errors_name_the_field():
    data = json.loads(json.dumps(SMALL))
    data["quality"] = {
        "metric": "ndcg_recpipe@128",
        "source": "replay",
        "dataset": "imagenet",
        "val_samples": 1000,
    }
    with pytest.raises(SpecError) as info:
        parse_run_config(data, origin="run.toml")
    paths = {p.path for p in info.value.problems}
    assert {"quality.metric", "quality.dataset", "quality.val_samples"} <= paths


def test_cost_model_prices_host_stages_and_is_recorded(tmp_path, monkeypatch):
    """[search] cost_model = "calibrated": stages on cpu/host are priced with the fitted knobs
    (here a calibration that halves GEMM throughput), every other target stays analytical, and
    plans say which model priced each stage."""
    from codesign import api
    from codesign.cost_models.calibration import Calibration
    from codesign.evaluate import _scalar_stage_cost as stage_cost

    monkeypatch.setenv("CODESIGN_CACHE_DIR", str(tmp_path))
    Calibration(
        knobs={"gemm": {"compute_efficiency": 0.25}},
        target="cpu/host",
        threads=1,
        cpu_model="test",
        tvm_version="test",
    ).save(tmp_path / "calibration.json")
    stage_cost.cache_clear()

    def cfg(cost_model: str):
        data = json.loads(json.dumps(SMALL))
        data["space"]["targets"] = ["cpu/host", "gpu/nvidia/t4"]
        data["space"]["hw"] = {"cpu/host": {"cores": 1}}
        data["search"].update(cost_model=cost_model, trials=8)
        return parse_run_config(data, origin="cost-model")

    def unloaded(target: str, cost_model: str) -> float:
        c = cfg(cost_model)
        stages = [{"name": "stage1", "model": "rm-med", "target": target, "engines": 1}]
        design = design_from([{**stages[0], "items": 4096}], {}, c)
        return evaluate_design(design, c).metrics["unloaded_latency_s"]

    gpu = unloaded("gpu/nvidia/t4", "analytical")
    assert unloaded("gpu/nvidia/t4", "calibrated") == gpu
    host_a, host_c = unloaded("cpu/host", "analytical"), unloaded("cpu/host", "calibrated")
    # the host sort after the model is the same under both: the difference is the model's
    by_api = {
        m: api.cost_model("rm-med", "cpu/host", batch=4096, overrides={"cores": 1}, cost_model=m)[
            "latency_s"
        ]
        for m in ("analytical", "calibrated")
    }
    assert by_api["calibrated"] > by_api["analytical"]
    assert host_c - host_a == pytest.approx(by_api["calibrated"] - by_api["analytical"], rel=1e-9)

    run_study(cfg("calibrated"), run_dir=tmp_path / "run")
    plans = [json.loads(p.read_text()) for p in (tmp_path / "run" / "plans").glob("plan-*.json")]
    assert plans
    for plan in plans:
        assert plan["provenance"]["cost_model"] == "calibrated"
        expected = [
            "calibrated" if s["target"] == "cpu/host" else "analytical" for s in plan["stages"]
        ]
        assert plan["provenance"]["stage_cost_models"] == expected
    stage_cost.cache_clear()


def test_table_source_uses_the_shipped_csv_or_the_users(tmp_path):
    """RecPipe's published figures (codesign/quality/data, fractions) or a user CSV; models the
    table cannot answer are a config error naming the model, before anything runs."""
    assert table_quality([("rm-large", 4096, 64)], "ndcg_recpipe@64") == pytest.approx(0.9247)
    # between measured pools: linear in log2(items), halfway from 2048 (0.8799) to 4096
    assert table_quality([("rm-large", 2896, 64)], "ndcg_recpipe@64") == pytest.approx(
        0.8799 + (0.9247 - 0.8799) * (np.log2(2896) - 11), abs=1e-6
    )
    # a funnel: its own row (RecPipe's S>L 4096>128, 92.40), not rm-large at 4096
    funnel = [("rm-small", 4096, 128), ("rm-large", 128, 64)]
    assert table_quality(funnel, "ndcg_recpipe@64") == pytest.approx(0.9240)
    data = json.loads(json.dumps(SMALL))
    data["workload"]["models"] = ["rm-small", "dlrm-rmc1"]
    with pytest.raises(SpecError, match=r"workload.models\[1\]"):
        parse_run_config(data, origin="run.toml")
    table = tmp_path / "measured.csv"
    table.write_text(
        "model,items,k,metric,value\n"
        "rm-small,4096,64,ndcg_recpipe,0.5\n"
        "dlrm-rmc1,4096,64,ndcg_recpipe,0.75\n"
    )
    run = tmp_path / "run.toml"
    run.write_text(
        'version = 1\nkind = "run"\n[workload]\nmodels = ["rm-small", "dlrm-rmc1"]\n'
        "candidates = 4096\nkeep = 64\nqps = 10\n"
        '[quality]\nsource = "table"\ntable = "measured.csv"\n'
    )
    from codesign.config import load_run_config

    cfg = load_run_config(run)
    assert cfg.quality_table == str(table)
    assert table_quality([("dlrm-rmc1", 4096, 64)], "ndcg_recpipe@64", cfg.quality_table) == 0.75
