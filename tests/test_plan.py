"""Deployment plans (issue 13, Deliver 1-2): the frozen Plan type, its JSON Schema, and
`codesign plan show|evaluate|schema`. Every plan `codesign optimize` writes for the shipped
examples loads back, conforms to the schema, and re-prices to its own prediction exactly."""

from __future__ import annotations

import json
import math
import tomllib

import jsonschema
import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.config import default_run_path, parse_run_config
from codesign.plan import SCHEMA, Plan, PlanError, evaluate_plan, load_plan, validate
from codesign.search.study import run_study

runner = CliRunner()
EXAMPLES = ["recpipe-criteo", "accel-sweep", "deeprecinfra-cpu-gpu"]


def _example(name: str, trials: int = 12):
    """A shipped example with its quality from the published table (no training here)."""
    path = default_run_path().parent / f"{name}.toml"
    data = tomllib.loads(path.read_text())
    quality = data.get("quality", {})
    wanted = "quality" in data.get("objectives", {}).get("names", ["quality"])
    if wanted and quality.get("source", "replay") == "replay":
        data["quality"] = {"metric": quality.get("metric", "ndcg_recpipe@64"), "source": "table"}
    data.setdefault("search", {})["trials"] = trials
    return parse_run_config(data, origin=str(path))


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory):
    runs = {}
    for name in EXAMPLES:
        run_dir = tmp_path_factory.mktemp(name)
        run_study(_example(name), run_dir=run_dir)
        runs[name] = run_dir
    return runs


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_plan_loads_validates_and_reprices_exactly(example_runs, name):
    plans = sorted((example_runs[name] / "plans").glob("plan-*.json"))
    assert plans, f"{name}: no plans written"
    for path in plans:
        data = json.loads(path.read_text())
        assert validate(data) == []
        plan = load_plan(path)
        assert plan.to_dict() == data  # round trip
        metrics = evaluate_plan(plan).as_dict()
        for key, value in plan.predicted.items():
            now = metrics.get(key)
            assert (value is None and (now is None or math.isnan(now))) or _same(now, value), (
                path.name,
                key,
                value,
                now,
            )
        # the full configuration: every knob of the target for every stage and chip
        for stage in plan.resolved["stages"]:
            from codesign.plugins import load_target

            names = set(load_target(stage["target"]).design_space().names())
            assert names <= set(stage["point"]), (stage["target"], names - set(stage["point"]))
        # per-pool predictions add up to the design's energy
        assert sum(p["energy_j"] for p in plan.pools) == pytest.approx(plan.predicted["energy_j"])
        assert plan.provenance["config_hash"] and plan.provenance["model_spec_hashes"]


def test_plan_evaluate_reprices_at_another_load(example_runs):
    path = sorted((example_runs["recpipe-criteo"] / "plans").glob("plan-*.json"))[0]
    plan = load_plan(path)
    higher = evaluate_plan(plan, qps=plan.context["qps"] * 4)
    base = evaluate_plan(plan)
    # the same design at four times the load: the same service, no less waiting
    assert higher.unloaded_latency_s == base.unloaded_latency_s
    assert higher.p95_latency_s >= base.p95_latency_s
    assert higher.max_utilization == pytest.approx(4 * base.max_utilization, rel=0.25)


def test_plan_is_frozen(example_runs):
    path = sorted((example_runs["accel-sweep"] / "plans").glob("plan-*.json"))[0]
    plan = load_plan(path)
    with pytest.raises((AttributeError, TypeError)):
        plan.trial = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.predicted["p95_latency_s"] = 0.0  # type: ignore[index]


def test_schema_is_a_valid_json_schema_and_the_cli_prints_it():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    result = runner.invoke(app, ["plan", "schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["properties"]["version"] == {"const": 2}


def test_show_and_evaluate_cli(example_runs):
    path = sorted((example_runs["recpipe-criteo"] / "plans").glob("plan-*.json"))[0]
    shown = runner.invoke(app, ["plan", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "stages" in shown.stdout and "predicted per server pool" in shown.stdout
    as_json = runner.invoke(app, ["plan", "show", str(path), "--json"])
    assert json.loads(as_json.stdout) == json.loads(path.read_text())
    again = runner.invoke(app, ["plan", "evaluate", str(path), "--json"])
    assert again.exit_code == 0, again.output
    metrics = json.loads(again.stdout)["metrics"]
    predicted = json.loads(path.read_text())["predicted"]
    assert metrics["p95_latency_s"] == predicted["p95_latency_s"]


def _one_line_error(args) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_bad_plans_get_one_line(example_runs, tmp_path):
    path = sorted((example_runs["recpipe-criteo"] / "plans").glob("plan-*.json"))[0]
    data = json.loads(path.read_text())
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**data, "version": 1}))
    assert "version 1" in _one_line_error(["plan", "show", str(old)])
    missing = tmp_path / "missing-target.json"
    stages = [{**st, "target": "nmp/no-such-target"} for st in data["design"]["stages"]]
    missing.write_text(json.dumps({**data, "design": {**data["design"], "stages": stages}}))
    assert "no-such-target" in _one_line_error(["plan", "evaluate", str(missing)])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "not JSON" in _one_line_error(["plan", "show", str(broken)])
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({**data, "context": {**data["context"], "qps": -1}}))
    assert "context.qps" in _one_line_error(["plan", "evaluate", str(invalid)])
    assert "not found" in _one_line_error(["plan", "show", str(tmp_path / "nope.json")])
    with pytest.raises(PlanError, match="not a plan"):
        Plan.from_dict({"kind": "pipeline"})


def test_plans_name_the_technology_table_that_priced_their_accelerators(example_runs):
    """An accelerator plan's provenance names its technology table and the digest of the
    figures (which the target hash, over knob defaults only, does not cover)."""
    from codesign.plugins import load_target

    plans = sorted((example_runs["accel-sweep"] / "plans").glob("plan-*.json"))
    assert plans
    for path in plans:
        plan = load_plan(path)
        accels = {st["target"] for st in plan.design["stages"] if st["target"].startswith("accel")}
        assert accels
        tech = plan.provenance["tech_tables"]
        assert set(tech) == accels
        for target, entry in tech.items():
            table = load_target(target).tech
            assert entry == {"name": table.name, "digest": table.digest}
            assert len(entry["digest"]) == 16
