"""Table quality in a search: each design's quality follows its funnel, and a design whose funnel
the quality table cannot answer is infeasible with a "quality:" reason (never guessed, never on
the front) while the other designs of its batch are priced."""

from __future__ import annotations

import csv
import json
import tomllib

import optuna
from typer.testing import CliRunner

from codesign.cli import app
from codesign.config import parse_run_config
from codesign.search.space import InfeasibleDesign, design_from, evaluate_designs
from codesign.search.study import load_existing

runner = CliRunner()

#: Two stages on one CPU socket over the shipped RecPipe tables: stage 2 ranks 2048, 1024, 512,
#: 256 or 128 of the 4096 candidates. S>L 4096>512 and 4096>128 are measured, 4096>256 lies
#: between them; 4096>2048 and 4096>1024, and every L>S funnel, have no rows.
RUN_TOML = """\
version = 1
kind = "run"
name = "table-funnels"

[workload]
models = ["rm-small", "rm-large"]
candidates = 4096
keep = 64
qps = 20
queries = 300
warmup = 50

[quality]
metric = "ndcg_recpipe@64"
source = "table"

[space]
max_stages = 2
targets = ["cpu/cascadelake"]
engines = [1, 2]
shrink_log2 = [1, 5]
batch_split_log2 = [0, 0]
hw = { "cpu/cascadelake" = { cores = 2 } }

[objectives]
names = ["quality", "p95_latency_s"]

[constraints]
sla_ms = 1000

[search]
trials = 40
sampler = "random"
seed = 0
strategy = "joint"
"""
RUN = tomllib.loads(RUN_TOML)


def _funnel(stages: list[dict]) -> tuple[str, str]:
    return ">".join(s["model"] for s in stages), ">".join(str(s["items"]) for s in stages)


def _two_stage(cfg, pool: int, first: str = "rm-small", second: str = "rm-large") -> dict:
    stages = [
        {"name": "s1", "model": first, "target": "cpu/cascadelake", "engines": 2, "items": 4096},
        {"name": "s2", "model": second, "target": "cpu/cascadelake", "engines": 2, "items": pool},
    ]
    return design_from(stages, {}, cfg)


def test_evaluate_designs_marks_unanswerable_funnels_infeasible_and_prices_the_rest():
    cfg = parse_run_config(RUN, origin="table-funnels")
    designs = [_two_stage(cfg, 512), _two_stage(cfg, 1024), _two_stage(cfg, 256)]
    designs.append(_two_stage(cfg, 128, "rm-large", "rm-small"))
    measured, missing, between, backwards = evaluate_designs(designs, cfg)
    for bad, funnel in ((missing, "rm-small>rm-large 4096>1024"), (backwards, "rm-large>rm-small")):
        assert isinstance(bad, InfeasibleDesign)
        assert str(bad).startswith("quality: ") and funnel in str(bad)
        assert 'source = "replay"' in str(bad) and "\n" not in str(bad)
    assert measured.metrics["quality"] == 0.9246  # RecPipe: S>L 4096>512, 92.46
    assert "quality_estimate" not in measured.metrics
    assert between.metrics["quality_estimate"] == 1.0
    assert 0.9240 < between.metrics["quality"] < 0.9246
    assert measured.metrics["p95_latency_s"] > 0 and between.metrics["p95_latency_s"] > 0


def test_optimize_fails_trials_the_table_cannot_answer_and_keeps_them_off_the_front(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(RUN_TOML)
    out = tmp_path / "run"
    result = runner.invoke(app, ["optimize", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    study, cfg, _ = load_existing(str(out))
    failed = [
        t
        for t in study.get_trials(deepcopy=False)
        if str(t.user_attrs.get("infeasible", "")).startswith("quality: ")
    ]
    assert failed, "the space holds funnels the table cannot answer"
    assert all(t.state == optuna.trial.TrialState.FAIL for t in failed)
    assert all("the quality table cannot answer" in t.user_attrs["infeasible"] for t in failed)
    # the summary counts them as infeasible, not as unbuildable
    assert f"{len(failed)} infeasible (of them 0 unbuildable" in " ".join(result.stdout.split())
    rows = list(csv.DictReader((out / "trials.csv").open()))
    reasons = [r["infeasible_reason"] for r in rows if r["state"] == "FAIL"]
    assert len(reasons) == len(failed) and all(r.startswith("quality: ") for r in reasons)
    # every plan on the front is a funnel the table answers, with the quality it answers
    from codesign.quality.tables import recpipe_criteo_table

    table = recpipe_criteo_table()
    plans = sorted((out / "plans").glob("plan-*.json"))
    assert plans
    for path in plans:
        plan = json.loads(path.read_text())
        stages = [(s["model"], s["items"], s["keep"]) for s in plan["stages"]]
        row = table.lookup_funnel(stages, 64, "ndcg_recpipe")
        assert plan["predicted"]["quality"] == row.value, _funnel(plan["stages"])
    assert cfg.quality_source == "table"
