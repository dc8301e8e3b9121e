"""Cost-model fallbacks are recorded per stage and shown (issue 14, Deliver 2): where
`--cost-model tvm` or `calibrated` leaves ops to the analytical model (a kernel that fails to
build, an op with no lowering, an op class without fitted knobs), the estimate's provenance,
the plan's `stage_fallbacks` / `stage_pricing` and `codesign plan show` say which ops and why.

No TVM kernel is compiled here: the TVM worker entry (`measure_isolated`) is replaced by one that
"measures" every kernel but fails the embedding bags' builds, so the real measurement database
path (failures stored, rows looked up) runs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.config import parse_run_config
from codesign.cost_models import tvm_measured as tm
from codesign.cost_models.calibration import Calibration
from codesign.cost_models.select import estimate_with, fallback_record, priced_by
from codesign.ir.frontends.lower import lower
from codesign.plan import build_plan, load_plan, validate
from codesign.plugins import load_target

FORCED = "forced build failure for the test"


@pytest.fixture
def failing_bags(tmp_path, monkeypatch):
    """A fresh measurement database whose TVM 'measurements' succeed (10 us per kernel) except
    every embedding bag's, which fails to build."""
    monkeypatch.setenv("CODESIGN_CACHE_DIR", str(tmp_path / "cache"))
    measured: list[str] = []

    def fake_measure_isolated(specs, timing=None, *, timeout_s=120.0, on_result=None):
        timing = timing or tm.TimingConfig()
        out = []
        for spec in specs:
            measured.append(spec.kind)
            target = tm.target_key("cpu", threads=timing.threads)
            if spec.kind.startswith("embedding_bag"):
                m = tm.Measurement(spec=spec, target=target, status="build_error", error=FORCED)
            else:
                m = tm.Measurement(spec=spec, target=target, status="ok", latency_s=1e-5)
            out.append(m)
            if on_result is not None:
                on_result(m)
        return out

    monkeypatch.setattr(tm, "measure_isolated", fake_measure_isolated)
    return measured


def test_tvm_estimate_records_the_failed_kernels(failing_bags):
    graph = lower("rm-small", batch=256)
    report = estimate_with("tvm", graph, load_target("cpu/host"), {})
    fallback = report.provenance["fallback"]
    ops = [n for n in graph.nodes if n.op not in ("input", "output")]
    bags = [n for n in ops if n.op.startswith("embedding_bag")]
    assert bags and "dense" in failing_bags
    assert fallback["model"] == "analytical" and fallback["of"] == len(ops)
    by_op = {r["op"]: r for r in fallback["reasons"]}
    assert sum(r["count"] for r in by_op.values()) == fallback["ops"]
    assert by_op[bags[0].op]["count"] == len(bags)
    assert by_op[bags[0].op]["reason"] == f"kernel build_error: {FORCED}"
    assert "dense" not in by_op  # measured: priced by TVM
    sources = {e.name: e.detail.get("source") for e in report.ops}
    assert {sources[n.name] for n in bags} == {"analytical"}
    assert sources[next(n.name for n in ops if n.op == "dense")] == "tvm"
    label = priced_by("tvm", fallback)
    assert label.startswith(f"tvm (fallback: analytical for {fallback['ops']} of {len(ops)} ops: ")
    assert FORCED in label


def test_calibrated_estimate_records_unfitted_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESIGN_CACHE_DIR", str(tmp_path))
    Calibration(
        knobs={"gemm": {"compute_efficiency": 0.25}, "gather": {"memory_efficiency": 0.5}},
        target="cpu/host",
        threads=1,
        cpu_model="test",
        tvm_version="test",
    ).save(tmp_path / "calibration.json")
    graph = lower("rm-small", batch=64)
    fallback = estimate_with("calibrated", graph, load_target("cpu/host"), {}).provenance[
        "fallback"
    ]
    by_op = {r["op"]: r["reason"] for r in fallback["reasons"]}
    assert "dense" not in by_op and not any(op.startswith("embedding_bag") for op in by_op)
    assert by_op["interaction"].startswith("no fitted knobs for the interaction class")
    # every fitted class: nothing falls back
    Calibration(
        knobs={c: {"compute_efficiency": 0.5} for c in ("gemm", "gather", "interaction", "vector")},
        target="cpu/host",
        threads=1,
        cpu_model="test",
        tvm_version="test",
    ).save(tmp_path / "calibration.json")
    report = estimate_with("calibrated", graph, load_target("cpu/host"), {})
    assert "fallback" not in report.provenance


def test_fallback_record_and_label():
    assert fallback_record("analytical", {}, 5) is None
    assert priced_by("tvm", None) == "tvm"
    record = fallback_record("analytical", {"topk": (1, "no TVM lowering"), "concat": (2, "x")}, 9)
    assert record == {
        "model": "analytical",
        "ops": 3,
        "of": 9,
        "reasons": [
            {"op": "concat", "count": 2, "reason": "x"},
            {"op": "topk", "count": 1, "reason": "no TVM lowering"},
        ],
    }
    assert priced_by("tvm", record) == (
        "tvm (fallback: analytical for 3 of 9 ops: concat x2: x; topk: no TVM lowering)"
    )


RUN = {
    "version": 1,
    "kind": "run",
    "name": "fallback",
    "workload": {
        "models": ["rm-small", "rm-med"],
        "candidates": 512,
        "keep": 32,
        "qps": 20,
        "queries": 100,
        "warmup": 10,
    },
    "quality": {"metric": "ndcg_recpipe@32", "source": "table"},
    "space": {"max_stages": 2, "targets": ["cpu/host", "gpu/nvidia/t4"], "engines": [1]},
    "objectives": {"names": ["p95_latency_s", "energy_j"]},
    "search": {"trials": 4, "sampler": "random", "seed": 0, "cost_model": "tvm"},
}


def test_plan_says_which_stage_fell_back(failing_bags, tmp_path):
    """A TVM-priced host stage whose bags failed to build: the plan records the fallback for
    that stage only, conforms to the schema, and `codesign plan show` prints it."""
    from codesign.search.space import context, design_from

    cfg = parse_run_config(json.loads(json.dumps(RUN)), origin="fallback")
    design = design_from(
        [
            {"name": "s1", "model": "rm-small", "target": "cpu/host", "engines": 1, "items": 512},
            {"name": "s2", "model": "rm-med", "target": "gpu/nvidia/t4", "engines": 1, "items": 64},
        ],
        {},
        cfg,
    )
    plan = build_plan(
        run="fallback",
        trial=0,
        design=design,
        context=context(cfg),
        objectives={},
        provenance={"cost_model": "tvm", "seed": 0, "config_hash": cfg.config_hash()},
    )
    prov = json.loads(plan.to_json())["provenance"]
    assert prov["stage_cost_models"] == ["tvm", "analytical"]
    first, second = prov["stage_fallbacks"]
    assert second is None and prov["stage_pricing"][1] == "analytical"
    assert first["model"] == "analytical" and first["ops"] >= 1
    assert any(r["reason"] == f"kernel build_error: {FORCED}" for r in first["reasons"])
    assert prov["stage_pricing"][0].startswith("tvm (fallback: analytical for ")
    assert validate(plan.to_dict()) == []
    path = tmp_path / "plan-00000.json"
    path.write_text(plan.to_json())
    assert json.loads(load_plan(path).to_json())["provenance"] == prov
    result = CliRunner().invoke(app, ["plan", "show", str(path)])
    assert result.exit_code == 0, result.output
    shown = " ".join(result.stdout.split())
    assert "stage1 priced by tvm (fallback: analytical for" in shown
    assert FORCED in shown
    assert "stage2 priced by" not in shown
    # the report's plan table shows the same lines when the run passes them
    from codesign.plan import fallback_lines
    from codesign.report.html import render_report

    lines = fallback_lines(plan)
    assert len(lines) == 1 and lines[0].startswith("stage1 priced by tvm (fallback:")
    objectives = [{"name": "p95_latency_s"}]
    row = {"trial": 0, "file": "plans/plan-00000.json", "summary": "s", "objectives": {}}
    html = render_report(
        title="t",
        objectives=objectives,
        trials=[],
        front=[],
        hv_history=[],
        plans=[{**row, "fallbacks": lines}],
        meta={},
    )
    assert "cost-model fallback" in html and FORCED in html
    plain = render_report(
        title="t", objectives=objectives, trials=[], front=[], hv_history=[], plans=[row], meta={}
    )
    assert "cost-model fallback" not in plain


def test_analytical_plans_carry_no_fallback_fields(tmp_path):
    from codesign.search.space import context, design_from

    data = json.loads(json.dumps(RUN))
    data["search"]["cost_model"] = "analytical"
    cfg = parse_run_config(data, origin="fallback")
    design = design_from(
        [{"name": "s1", "model": "rm-small", "target": "cpu/host", "engines": 1, "items": 512}],
        {},
        cfg,
    )
    plan = build_plan(
        run="fallback",
        trial=0,
        design=design,
        context=context(cfg),
        objectives={},
        provenance={"cost_model": "analytical", "seed": 0, "config_hash": cfg.config_hash()},
    )
    assert "stage_fallbacks" not in plan.provenance and "stage_pricing" not in plan.provenance
