"""Bad input at the CLI boundary: one line on stderr naming the field or option and the fix,
exit 1 for bad values and files, 2 for usage errors, never a traceback (issue 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codesign.cli import app

runner = CliRunner()
PIPELINE = str(
    Path(__file__).resolve().parents[2] / "examples/pipelines/recpipe-criteo-1stage-cpu.yaml"
)
RUN = (
    'version = 1\nkind = "run"\nname = "b"\n'
    '[workload]\nmodels = ["rm-small"]\ncandidates = 1024\nkeep = 64\nqps = {qps}\n'
    "queries = 300\nwarmup = 50\n"
    '[space]\nmax_stages = 1\ntargets = ["cpu/cascadelake"]\n'
    '[objectives]\nnames = ["p95_latency_s", "power_w"]\n'
    "[constraints]\n{constraints}\n"
    '[search]\nstrategy = "joint"\n'
)


def run_config(tmp_path: Path, *, qps: str = "50", constraints: str = "") -> str:
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(qps=qps, constraints=constraints))
    return str(path)


def one_line(args: list[str], code: int, *names: str) -> str:
    """Invoke; the exit code is ``code`` and stderr is one line naming every one of ``names``."""
    result = runner.invoke(app, args)
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# --- 1. non-finite numbers in a run config ------------------------------------------------------


@pytest.mark.parametrize(
    ("qps", "constraints", "field"),
    [
        ("nan", "", "workload.qps"),
        ("inf", "", "workload.qps"),
        ("50", "sla_ms = nan", "constraints.sla_ms"),
        ("50", "sla_ms = inf", "constraints.sla_ms"),
        ("50", "quality_floor = nan", "constraints.quality_floor"),
        ("50", "area_budget_mm2 = -inf", "constraints.area_budget_mm2"),
    ],
)
def test_non_finite_config_numbers_fail_validation(tmp_path, qps, constraints, field):
    line = one_line(["optimize", run_config(tmp_path, qps=qps, constraints=constraints)], 1, field)
    assert "finite" in line


# --- 2. numeric options --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_pipeline_evaluate_rejects_bad_sla(value):
    one_line(["pipeline", "evaluate", PIPELINE, "--qps", "100", "--sla-ms", value], 1, "--sla-ms")


@pytest.mark.parametrize(
    ("option", "value", "code"),
    [
        ("--queries", "1e30", 2),
        ("--queries", str(10**30), 1),
        ("--seed", "-1", 1),
        ("--seed", "1e30", 2),
        ("--qps", "nan", 1),
    ],
)
def test_pipeline_evaluate_rejects_bad_numbers(option, value, code):
    args = ["pipeline", "evaluate", PIPELINE, "--qps", "100", option, value]
    one_line(args, code, option)


@pytest.mark.parametrize(
    ("option", "value", "code"),
    [
        ("--seed", "-1", 1),
        ("--seed", "1e30", 2),
        ("--seed", str(2**40), 1),
        ("--trials", "1e30", 2),
        ("--trials", str(10**20), 1),
        ("--inner-trials", "0", 1),
        ("--time-budget", "inf", 1),
    ],
)
def test_optimize_rejects_bad_numbers(tmp_path, option, value, code):
    one_line(["optimize", run_config(tmp_path), option, value], code, option)


def test_unknown_option_is_one_usage_line(tmp_path):
    line = one_line(["optimize", run_config(tmp_path), "--bogus"], 2, "--bogus")
    assert "--help" in line


# --- 3. --out --------------------------------------------------------------------------------


def test_out_that_cannot_be_a_run_directory(tmp_path):
    config = run_config(tmp_path)
    (tmp_path / "afile").write_text("x")
    for out in (str(tmp_path / "afile" / "run"), "/proc/x", "/dev/null", "/"):
        one_line(["optimize", config, "--trials", "1", "--out", out], 1, "--out")
    assert not (tmp_path / "afile").is_dir()


# --- 4. --storage ----------------------------------------------------------------------------


def test_storage_urls_that_cannot_work(tmp_path):
    config = run_config(tmp_path)
    notdb = tmp_path / "notdb.sqlite"
    notdb.write_text("not a database\n")
    urls = {
        "mysql://user@host/db": "unsupported",
        "journal:": "no journal file",
        f"journal:{tmp_path / 'missing' / 'j.log'}": "does not exist",
        f"sqlite:///{notdb}": "not an SQLite database",
        f"journal:{notdb}": "not an Optuna journal",
        "sqlite:///:memory:": "in-memory",
    }
    for url, why in urls.items():
        line = one_line(["optimize", config, "--trials", "1", "--storage", url], 1, "--storage")
        assert why in line, line


def test_postgresql_without_its_driver_says_install(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg2" else real(name, *a)
    )
    url = "postgresql://user:secret@localhost/db"
    line = one_line(["optimize", run_config(tmp_path), "--storage", url], 1, "--storage")
    assert "pip install psycopg2" in line and "secret" not in line


def test_journal_storage_still_runs(tmp_path):
    journal = tmp_path / "j.log"
    args = ["optimize", run_config(tmp_path), "--trials", "1", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, "--storage", f"journal:{journal}"])
    assert result.exit_code == 0, result.output
    assert journal.stat().st_size > 0


# --- 5. --set --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["rows=abc", "rows=32"], ("'rows'", "twice")),
        (["rows=32", "rows=32"], ("'rows'", "twice")),
        (["rows=abc"], ("rows", "not a number")),
    ],
)
def test_set_twice_or_not_a_number_is_an_error(sets, words):
    args = ["cost", "rm-small", "--target", "accel/rpaccel"]
    for item in sets:
        args += ["--set", item]
    one_line(args, 1, *words)


# --- 6. input files that are not regular files, or too large -------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "dir", "dev"])
@pytest.mark.parametrize("command", [["optimize"], ["pipeline", "validate"]])
def test_non_regular_input_files_are_refused_unread(tmp_path, kind, command):
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif kind == "dir":
        path = tmp_path / "adir"
        path.mkdir()
    else:
        path = Path("/dev/zero")
    line = one_line([*command, str(path)], 1, str(path))
    assert ("directory" if kind == "dir" else "not a regular file") in line


def test_oversized_input_file_is_refused_unread(tmp_path):
    big = tmp_path / "big.toml"
    with big.open("wb") as fh:
        fh.truncate(10 * 1000 * 1000 + 1)  # sparse: no 10 MB written
    line = one_line(["optimize", str(big)], 1, str(big), "limit")
    assert "bytes" in line
