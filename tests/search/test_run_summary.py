"""`codesign optimize`'s run summary: evaluated, cached, infeasible and feasible counts, and for
the two-level strategy its outer rounds and reference point (issue 12)."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from codesign.cli import app

runner = CliRunner()

RUN = """version = 1
kind = "run"
name = "summary"
[workload]
models = ["rm-small"]
candidates = 1024
keep = 64
qps = 100
queries = 300
warmup = 50
[quality]
source = "table"
[space]
max_stages = 1
targets = ["accel/rpaccel"]
engines = [1, 2]
[space.hw."accel/rpaccel"]
pe_budget = [4096, 16384]
rows = [32, 128]
cols = 128
sub_batch = 0
static_cache_bytes = 0
dynamic_cache_bytes = 1048576
topk_units = 64
embedding_sram_budget_bytes = 4194304
clock_hz = 125e6
[objectives]
names = ["p95_latency_s", "power_w"]
[constraints]
sla_ms = 50
[search]
trials = 30
strategy = "two-level"
"""


def test_summary_counts_and_two_level_rounds(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(RUN)
    result = runner.invoke(app, ["optimize", str(toml), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    counts = re.search(
        r"(\d+) trials: (\d+) evaluated, (\d+) cached \(a design already evaluated\), "
        r"(\d+) infeasible \(of them (\d+) unbuildable, [\d.]+ % of the trials\), (\d+) feasible",
        text,
    )
    assert counts, text
    finished, evaluated, cached, infeasible, unbuildable, feasible = map(int, counts.groups())
    assert evaluated + cached + unbuildable == finished
    assert infeasible + feasible == finished and unbuildable <= infeasible
    # two hardware points (PE budgets), each software space (2 row counts x 2 engine counts)
    # walked exactly: the run stops when both are searched, with fewer trials than its budget
    rounds = re.search(r"two-level: (\d+) hardware points? searched \((\d+) exact\)", text)
    assert rounds and rounds.groups() == ("2", "2"), text
    assert finished < 30
    assert "outer reference point: p95_latency_s 0.05, power_w 10000" in text
