"""Every shipped example runs (issue 14): each run config under codesign/examples/ (and any run
config under examples/) goes through `codesign optimize` with a small trial budget and writes
plans/, trials.csv and report.html; each pipeline spec under examples/pipelines/ goes through
`codesign pipeline evaluate`.

Examples that replay trained models for quality train them once per session, on a small
training set, into a temporary cache (a clean CI clone has no trained models, and the full
training set takes minutes): the copy run here adds ``samples``, ``val_samples`` and
``max_rows`` to its ``[quality]`` table and is otherwise the shipped file. ``pytest -m slow
tests/test_examples.py`` runs the shipped files as they are, with their own budgets."""

from __future__ import annotations

import csv
import importlib.util
import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.config import default_run_path

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
TRIALS = 4
#: The training set the replaying examples use here: 2,048 samples, tables capped at 1,000
#: rows, and validation pools as large as the largest example's candidates (4,096).
SMALL_TRAINING = {"samples": 2048, "val_samples": 4096, "max_rows": 1000}
#: Targets that come from a plugin: an example naming one runs only when it is installed.
PLUGINS = {"nmp/": "codesign_recnmp"}


def shipped_examples() -> list[Path]:
    """Run configs (``kind = "run"``) shipped in codesign/examples/ and under examples/."""
    found = sorted(default_run_path().parent.glob("*.toml"))
    found += sorted(p for p in (ROOT / "examples").rglob("*.toml") if p.name != "pyproject.toml")
    return [p for p in found if tomllib.loads(p.read_text()).get("kind") == "run"]


EXAMPLES = shipped_examples()


def _skip_without_plugins(data: dict) -> None:
    for target in data.get("space", {}).get("targets", []):
        for prefix, module in PLUGINS.items():
            if target.startswith(prefix) and importlib.util.find_spec(module) is None:
                pytest.skip(f"{target} needs the plugin {module} (pip install -e examples/...)")


def _replays(data: dict) -> bool:
    quality = data.get("quality", {})
    wanted = "quality" in data.get("objectives", {}).get("names", ["quality"])
    return wanted and quality.get("source", "replay") == "replay"


def _small_training_copy(path: Path, folder: Path) -> Path:
    """The example with :data:`SMALL_TRAINING` added to its ``[quality]`` table (a text edit:
    the shipped file's every other line is kept)."""
    text = path.read_text()
    assert "\n[quality]\n" in text, f"{path.name}: replays quality without a [quality] table?"
    quality = tomllib.loads(text)["quality"]
    assert not set(SMALL_TRAINING) & set(quality), f"{path.name} sets its training set"
    extra = "".join(f"{key} = {value}\n" for key, value in SMALL_TRAINING.items())
    copy = folder / path.name
    copy.write_text(text.replace("\n[quality]\n", f"\n[quality]\n{extra}", 1))
    return copy


@pytest.fixture(scope="session")
def quality_cache(tmp_path_factory) -> Path:
    """One cache of small trained models for every example of the session."""
    return tmp_path_factory.mktemp("quality-cache")


def _check_outputs(run_dir: Path, trials: int) -> None:
    plans = sorted((run_dir / "plans").glob("plan-*.json"))
    assert plans, "no plans written"
    assert (run_dir / "report.html").stat().st_size > 1000
    with open(run_dir / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == trials
    # every trial finished; a design the run cannot price (e.g. a funnel the quality table has
    # no row for) fails with its reason
    for row in rows:
        assert row["state"] in ("COMPLETE", "FAIL"), row
        assert row["state"] == "COMPLETE" or row["infeasible_reason"], row


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(path, tmp_path, monkeypatch, quality_cache):
    from codesign.quality.api import clear_replayers

    data = tomllib.loads(path.read_text())
    _skip_without_plugins(data)
    config = path
    if _replays(data):
        monkeypatch.setenv("CODESIGN_CACHE_DIR", str(quality_cache))
        config = _small_training_copy(path, tmp_path)
    clear_replayers()
    try:
        result = runner.invoke(
            app, ["optimize", str(config), "--out", str(tmp_path / "run"), "--trials", str(TRIALS)]
        )
    finally:
        clear_replayers()
    assert result.exit_code == 0, result.output
    assert "Pareto front:" in result.stdout
    _check_outputs(tmp_path / "run", TRIALS)


PIPELINES = sorted((ROOT / "examples" / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_example_pipeline_evaluates(path):
    """The shipped pipeline specs run through `codesign pipeline evaluate` (a light load)."""
    result = runner.invoke(
        app, ["pipeline", "evaluate", str(path), "--qps", "50", "--queries", "500", "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["stages"] and info["queries"] == 500
    assert 0 < info["unloaded_latency_s"] <= info["p95_latency_s"] * (1 + 1e-9)
    assert info["stability_limit_qps"] > 50


def test_the_examples_are_found():
    names = {p.stem for p in EXAMPLES}
    assert {"recpipe-criteo", "accel-sweep", "deeprecinfra-cpu-gpu", "host-cpu"} <= names
    assert len(PIPELINES) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_as_shipped(path, tmp_path, request):
    """The shipped file as it is: its own trial budget and training set (minutes on a clean
    clone: the models are trained into the default cache once)."""
    markexpr = request.config.option.markexpr or ""
    if "slow" not in markexpr or "not slow" in markexpr:
        pytest.skip("the examples' full budgets and training: run with -m slow")
    data = tomllib.loads(path.read_text())
    _skip_without_plugins(data)
    result = runner.invoke(app, ["optimize", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    _check_outputs(tmp_path / "run", data.get("search", {}).get("trials", 60))


def test_an_example_given_to_the_wrong_command_says_which_command_takes_it(tmp_path):
    """A run config passed to `pipeline validate` (or a pipeline spec to `optimize`) is named as
    what it is, with the command that takes it, instead of a syntax error of the other
    format."""
    example = default_run_path().parent / "deeprecinfra-cpu-gpu.toml"
    for command, hint in (
        (["pipeline", "validate", str(example)], "a run config (.toml), not a pipeline spec"),
        (["pipeline", "evaluate", str(example), "--qps", "10"], "codesign optimize"),
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, result.output
        assert hint in result.stderr and "malformed" not in result.stderr
    spec = ROOT / "examples" / "pipelines" / "recpipe-criteo-1stage-cpu.yaml"
    result = runner.invoke(app, ["optimize", str(spec), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert "a YAML file, not a run config (.toml)" in result.stderr
    assert "codesign pipeline evaluate" in result.stderr
