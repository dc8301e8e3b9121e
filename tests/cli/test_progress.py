"""Progress on stderr (issue 14, Deliver 5): before training, what will be trained and about how
long; while training and searching, plain progress lines when stderr is not a terminal (logs,
pipes, CI) and rich bars when it is. CliRunner's stderr is not a terminal."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.cli._common import err
from codesign.cli.quality import PlainLines

runner = CliRunner()
ESCAPE = "\x1b"
#: A tiny synthetic training run: 10 steps of 1,024 for rm-small.
TINY = ["--family", "rm-small", "--samples", "10240", "--val-samples", "4096", "--max-rows", "20"]


def _train(cache, *extra: str):
    result = runner.invoke(app, ["quality", "train", *TINY, "--cache-dir", str(cache), *extra])
    assert result.exit_code == 0, result.output
    return result


def test_plain_lines_every_ten_percent_and_the_estimate_first(tmp_path):
    pytest.importorskip("torch")
    result = _train(tmp_path)
    lines = result.stderr.splitlines()
    assert ESCAPE not in result.stderr
    plan = next(i for i, line in enumerate(lines) if line.startswith("quality: training rm-small"))
    assert (
        "synthetic Criteo-like data (10,240 training / 4,096 validation samples, 1 epoch"
        in (lines[plan])
    )
    assert re.search(
        r"10 steps of 1,024 per model, \d+ threads?\): about [\d.]+ (s|min) on this machine",
        lines[plan],
    )
    progress = [line for line in lines if line.startswith("training rm-small: ")]
    # 10 steps: one line per 10 % (a slow step may add a line, never remove one)
    percents = [int(re.match(r"training rm-small: (\d+) %", line).group(1)) for line in progress]
    assert {10, 20, 30, 40, 50, 60, 70, 80, 90, 100} <= set(percents)
    assert percents == sorted(percents)
    assert all("loss 0." in line for line in progress)
    first = lines.index(progress[0])
    assert plan < first  # the estimate comes before training starts
    assert any(line.startswith("trained rm-small in ") for line in lines[first:])


def test_cached_models_print_no_estimate(tmp_path):
    pytest.importorskip("torch")
    _train(tmp_path)
    again = _train(tmp_path, "--json")
    assert "about" not in again.stderr and "training rm-small:" not in again.stderr
    import json

    assert json.loads(again.stdout)["estimate_s"] is None


def test_terminal_gets_rich_bars_not_lines(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(err, "_force_terminal", True)
    result = _train(tmp_path)
    assert ESCAPE in result.stderr  # a live display redraws with cursor escapes
    assert "trained rm-small" in result.stderr
    assert not re.search(r"^training rm-small: \d+ %", result.stderr, re.M)


def test_plain_lines_policy():
    printed: list[str] = []
    lines = PlainLines("work", 20)
    lines.line = lambda extra="": printed.append(f"{lines.done} {extra}")  # type: ignore[method-assign]
    for done in range(1, 21):
        lines.update(done, "x")
    assert [p.split()[0] for p in printed] == [str(n) for n in range(2, 21, 2)]
    few = PlainLines("few", 3)
    shown: list[int] = []
    few.line = lambda extra="": shown.append(few.done)  # type: ignore[method-assign]
    for done in (1, 2, 3):
        few.update(done)
    assert shown == [1, 2, 3]  # each step passes at least one 10 % mark


OPTIMIZE = """version = 1
kind = "run"
name = "progress"
[workload]
models = ["rm-small", "rm-large"]
candidates = 4096
keep = 64
qps = 150
queries = 200
warmup = 20
[quality]
metric = "ndcg_recpipe@64"
source = "table"
[space]
max_stages = 2
targets = ["cpu/cascadelake"]
engines = [1, 4]
shrink_log2 = [1, 4]
batch_split_log2 = [0, 0]
[objectives]
names = ["quality", "p95_latency_s"]
[search]
trials = 10
sampler = "random"
strategy = "joint"
seed = 0
"""


def test_optimize_prints_plain_trial_lines(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(OPTIMIZE)
    result = runner.invoke(app, ["optimize", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert ESCAPE not in result.stderr
    trial_lines = [line for line in result.stderr.splitlines() if ": trials: " in line]
    assert trial_lines, result.stderr
    assert trial_lines[-1].startswith("progress (random, seed 0): trials: 100 % (10 of 10)")
    assert "feasible" in trial_lines[-1]
    assert len(trial_lines) == len(set(trial_lines))  # the final count is not printed twice
