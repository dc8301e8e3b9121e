"""Where a run's outputs go and what an empty front says (issue 14, deliver 3): run names cannot
leave runs/, `codesign report` writes into the run directory whatever the current folder, paths
in a run config are relative to it, and an empty front says why and exits 3."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.cli._common import EXIT_EMPTY_FRONT
from codesign.config import parse_run_config
from codesign.errors import CodesignError
from codesign.search.study import default_run_dir, load_existing

runner = CliRunner()
PRESETS = Path(__file__).resolve().parents[2] / "targets" / "presets"
RUN = """\
version = 1
kind = "run"
name = {name}

[workload]
models = ["rm-small"]
candidates = 64
keep = 16
qps = 20
queries = 100
warmup = 10

[space]
max_stages = 1
targets = [{target}]
engines = [1, 2]
batch_split_log2 = [0, 0]

[objectives]
names = ["p95_latency_s", "power_w"]

[constraints]
sla_ms = {sla_ms}

[search]
trials = 3
sampler = "random"
strategy = "joint"
"""


def write_config(
    path: Path, *, name: str = '"tiny"', target: str = '"cpu/cascadelake"', sla_ms: float = 1000
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RUN.format(name=name, target=target, sla_ms=sla_ms))
    return path


def invoke(args: list[str], code: int = 0):
    result = runner.invoke(app, args)
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    return result


@pytest.mark.parametrize(
    "name", ['"../../x"', '"/tmp/abs-run"', '"a/b"', '".."', '"."', '""', "3", '"a\\\\b"']
)
def test_a_run_name_that_is_not_a_plain_name_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, name
):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "cfg" / "run.toml", name=name)
    result = invoke(["optimize", str(config)], code=1)
    message = " ".join(result.stderr.split())
    assert "name: must be a plain name" in message and "fix:" in message, message
    assert not (tmp_path / "runs").exists()
    if name == '"/tmp/abs-run"':
        assert not Path("/tmp/abs-run").exists()


def test_plain_run_names_are_accepted_and_their_default_folder_is_inside_runs():
    data = {
        "version": 1,
        "kind": "run",
        "name": "my-run_2.v1",
        "workload": {"models": ["rm-small"], "candidates": 64, "keep": 16, "qps": 20},
        "objectives": {"names": ["p95_latency_s", "power_w"]},
    }
    cfg = parse_run_config(data)
    assert cfg.name == "my-run_2.v1"
    assert default_run_dir(cfg.name) == Path("runs") / "my-run_2.v1"
    for bad in ("../x", "..", "/abs", "a/b", ""):
        with pytest.raises(CodesignError, match="not a folder inside runs/"):
            default_run_dir(bad)


def test_optimize_without_out_writes_under_runs_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "run.toml")
    invoke(["optimize", str(config)])
    assert (tmp_path / "runs" / "tiny" / "trials.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml", "runs"]


def test_report_of_a_storage_url_writes_into_the_run_directory_not_the_current_folder(
    tmp_path, monkeypatch
):
    config = write_config(tmp_path / "run.toml")
    run_dir = tmp_path / "run"
    invoke(["optimize", str(config), "--out", str(run_dir)])
    (run_dir / "report.html").unlink()
    (run_dir / "trials.csv").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = f"sqlite:///{run_dir / 'study.sqlite3'}"
    result = invoke(["report", url])
    assert list(elsewhere.iterdir()) == []
    assert (run_dir / "report.html").is_file() and (run_dir / "trials.csv").is_file()
    assert "report.html" in result.stdout
    # --out picks another folder
    invoke(["report", url, "--out", str(tmp_path / "copy")])
    assert (tmp_path / "copy" / "report.html").is_file()
    assert list(elsewhere.iterdir()) == []
    _, _, where = load_existing(url)
    assert where == run_dir


def test_a_preset_named_relative_to_the_config_works_from_other_folders(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "project"
    (cfg_dir / "presets").mkdir(parents=True)
    shutil.copy(PRESETS / "cpu-cascadelake.yaml", cfg_dir / "presets" / "my-cpu.yaml")
    config = write_config(cfg_dir / "run.toml", target='"presets/my-cpu.yaml"')
    run_dir = tmp_path / "run"
    first = tmp_path / "first"
    first.mkdir()
    monkeypatch.chdir(first)  # neither the config's folder nor the run's
    invoke(["optimize", str(config), "--out", str(run_dir)])
    _, cfg, _ = load_existing(str(run_dir))
    assert cfg.targets == (str((cfg_dir / "presets" / "my-cpu.yaml").resolve()),)
    assert cfg.source_path == str(config.resolve())
    second = tmp_path / "second"
    second.mkdir()
    monkeypatch.chdir(second)
    for old in (run_dir / "plans").glob("plan-*.json"):
        old.unlink()
    result = invoke(["report", str(run_dir)])
    assert "Pareto front" in result.stdout
    assert list((run_dir / "plans").glob("plan-*.json"))
    assert list(second.iterdir()) == []
    # resuming from yet another folder finds the same problem (same config hash)
    invoke(["optimize", str(config), "--out", str(run_dir), "--trials", "4"])


def test_an_empty_front_says_why_per_constraint_and_exits_3(tmp_path):
    config = write_config(tmp_path / "run.toml", sla_ms=0.001)
    run_dir = tmp_path / "run"
    result = invoke(["optimize", str(config), "--out", str(run_dir)], code=EXIT_EMPTY_FRONT)
    assert EXIT_EMPTY_FRONT == 3
    message = " ".join(result.stderr.split())
    assert "no feasible design" in message
    assert "sla_ms 0.001: the fastest design's p95 was" in message
    assert "(trial " in message and "no design met it" in message
    assert "Traceback" not in result.output
    # the outputs are still written
    rows = list(csv.DictReader((run_dir / "trials.csv").open()))
    assert len(rows) == 3 and all(r["feasible"] == "False" for r in rows)
    fastest = min(float(r["p95_latency_s"]) for r in rows)
    assert f"{fastest * 1e3:.3g} ms" in message
    assert (run_dir / "report.html").is_file()
    # report says the same and exits the same way
    again = invoke(["report", str(run_dir)], code=EXIT_EMPTY_FRONT)
    assert "sla_ms 0.001: the fastest design's p95 was" in " ".join(again.stderr.split())


def test_a_feasible_front_exits_0(tmp_path):
    config = write_config(tmp_path / "run.toml", sla_ms=1000)
    result = invoke(["optimize", str(config), "--out", str(tmp_path / "run")])
    assert "no feasible design" not in result.stderr
