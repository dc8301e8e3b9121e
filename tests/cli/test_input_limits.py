"""Regressions from the CLI fuzz (tests/reliability/test_fuzz.py, issue 14): each case once gave
a traceback, ran for minutes or named nothing; now it is one line naming the field, option or
file, exit 1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codesign.cli import app
from codesign.ir.frontends.spec import MAX_INPUT_BYTES, MAX_YAML_DEPTH
from codesign.quality.datasets import MAX_SAMPLES

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "examples/pipelines/recpipe-criteo-1stage-cpu.yaml"
RUN = (
    'version = 1\nkind = "run"\nname = "b"\n'
    '[workload]\nmodels = ["rm-small"]\ncandidates = 1024\nkeep = 64\nqps = 50\n'
    "queries = 300\nwarmup = 50\n"
    '[quality]\nsource = "table"\n{quality}\n'
    '[space]\nmax_stages = 1\ntargets = ["cpu/cascadelake"]\n'
    "[objectives]\nnames = {names}\n"
    '[search]\nstrategy = "joint"\n'
)


def config(tmp_path: Path, *, names: str = '["p95_latency_s", "power_w"]', quality: str = ""):
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(names=names, quality=quality))
    return str(path)


def one_line(args: list[str], code: int, *names: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.mark.parametrize("name", ['["a"]', "{ x = 1 }", "3"])
def test_non_string_objective_name(tmp_path, name):
    names = f'[{name}, "power_w"]'
    line = one_line(["optimize", config(tmp_path, names=names)], 1, "objectives.names[0]")
    assert "unknown objective" in line


def test_integer_too_long_to_read(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(config_text := Path(config(tmp_path)).read_text())
    path.write_text(config_text.replace("qps = 50", "qps = " + "9" * 5000))
    line = one_line(["optimize", str(path)], 1, str(path))
    assert "TOML value cannot be read" in line


def test_save_ir_to_a_missing_folder_or_a_folder(tmp_path):
    missing = tmp_path / "no" / "ir.json"
    line = one_line(["models", "show", "rm-small", "--save-ir", str(missing)], 1, "--save-ir")
    assert "does not exist" in line
    one_line(["models", "show", "rm-small", "--save-ir", str(tmp_path)], 1, "--save-ir", "folder")


@pytest.mark.parametrize(
    "command",
    [
        ["models", "show", "{long}"],
        ["targets", "show", "{long}"],
        ["cost", "rm-small", "--target", "{long}"],
        ["worker", "{long}"],
        ["report", "{long}"],
        ["optimize", "{config}", "--trials", "1", "--storage", "sqlite:///{long}"],
    ],
)
def test_path_of_5000_characters(tmp_path, command):
    long = str(tmp_path / ("p" * 5000))
    args = [a.replace("{long}", long).replace("{config}", config(tmp_path)) for a in command]
    line = one_line(args, 1, long[:100])
    assert len(line) < 600


def test_quality_samples_are_capped(tmp_path):
    quality = "samples = 1000000000"
    line = one_line(["optimize", config(tmp_path, quality=quality)], 1, "quality.samples")
    assert str(MAX_SAMPLES) in line
    line = one_line(["quality", "train", "--samples", str(10**9)], 1, "--samples")
    assert f"{MAX_SAMPLES:,}" in line


def test_yaml_over_the_byte_cap_is_refused_unread(tmp_path):
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.write(PIPELINE.read_bytes())
        fh.truncate(MAX_INPUT_BYTES + 1)
    assert MAX_INPUT_BYTES == 1_000_000
    line = one_line(["pipeline", "validate", str(big)], 1, str(big), "limit")
    assert f"{MAX_INPUT_BYTES:,}" in line


def test_yaml_alias_bomb_is_not_expanded(tmp_path):
    """Nine levels of nine aliases (9**9 strings if expanded): read as shared references,
    refused as unknown fields."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(PIPELINE.read_text() + "\n".join(lines) + "\nstages: *i\n")
    one_line(["pipeline", "validate", str(bomb)], 1, str(bomb))


def test_unknown_pass_names_the_option():
    one_line(["models", "show", "rm-small", "--passes", "inf"], 1, "--passes", "'inf'")


@pytest.mark.parametrize("keep", ["0", str(10**30)])
def test_keep_out_of_range_names_the_option(keep):
    line = one_line(["cost", "rm-small", "--target", "accel/rpaccel", "--keep", keep], 1, "--keep")
    assert "from 1 to 1" in line


def test_save_ir_to_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    line = one_line(["models", "show", "rm-small", "--save-ir", str(fifo)], 1, "--save-ir")
    assert "FIFO" in line


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_yaml_nested_50000_deep_is_refused(tmp_path, opening):
    """libyaml's composer recurses in C: 50,000 levels crashed the process (SIGSEGV)."""
    closing = "]" if opening == "[" else "}"
    deep = tmp_path / "preset.yaml"
    preset = ROOT / "targets/presets/accel-hardconf-4.yaml"
    deep.write_text(preset.read_text() + "\ndeep: " + opening * 50_000 + closing * 50_000 + "\n")
    line = one_line(["cost", "rm-small", "--target", str(deep)], 1, str(deep))
    assert f"deeper than {MAX_YAML_DEPTH} levels" in line


@pytest.mark.parametrize("command", [["optimize", "{config}", "--storage"], ["worker"], ["report"]])
def test_unreachable_database_server_is_one_line(tmp_path, command):
    """Port 1 on this machine refuses at once; the password stays out of the message."""
    import importlib.util

    if not any(importlib.util.find_spec(m) for m in ("psycopg2", "psycopg")):
        pytest.skip("no PostgreSQL driver: the missing driver is refused first")
    url = "postgresql://user:secret@127.0.0.1:1/db"
    args = [a.replace("{config}", config(tmp_path)) for a in command] + [url]
    line = one_line(args, 1, "cannot connect", "127.0.0.1")
    assert "secret" not in line


# --- plans edited by hand ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plan_text(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan")
    result = runner.invoke(
        app, ["optimize", config(folder), "--trials", "1", "--out", str(folder / "run")]
    )
    assert result.exit_code == 0, result.output
    return next((folder / "run" / "plans").glob("plan-*.json")).read_text()


def _edited(plan_text: str, edit) -> dict:
    import json

    data = json.loads(plan_text)
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d["design"]["stages"][0]["knobs"].update(cores=[4]), ("design", "knobs")),
        (lambda d: d["context"].update(bogus_key=1), ("bogus_key",)),
        (lambda d: d["resolved"]["chips"].update({"accel/rpaccel": [1]}), ("resolved.chips",)),
        (lambda d: d["resolved"]["stages"].clear(), ("resolved.stages",)),
        (lambda d: d["context"].update(qps=float("nan")), ("context.qps", "finite")),
        (lambda d: d["design"]["load"].update(bogus=1), ("design", "load")),
        (lambda d: d["context"]["quality"].update(metric="rm-small"), ("quality.metric",)),
        (lambda d: d["context"]["quality"].update(source="QUALITY"), ("quality.source",)),
    ],
)
@pytest.mark.parametrize("command", [["plan", "show"], ["plan", "evaluate"]])
def test_plan_edited_by_hand_is_one_line(tmp_path, plan_text, edit, words, command):
    import json

    path = tmp_path / "plan.json"
    path.write_text(json.dumps(_edited(plan_text, edit)))
    one_line([*command, str(path)], 1, str(path), *words)


def test_plan_nested_too_deep_is_one_line(tmp_path, plan_text):
    path = tmp_path / "plan.json"
    path.write_text('{"deep": ' + "[" * 50_000 + "]" * 50_000 + ", " + plan_text.lstrip()[1:])
    line = one_line(["plan", "show", str(path)], 1, str(path))
    assert "nested too deep" in line


@pytest.mark.parametrize("value", [10**30, 10**400])
def test_knob_integer_past_float_range_is_out_of_range(tmp_path, value):
    """Knob.parse once asked math.isnan of it: OverflowError."""
    spec = tmp_path / "pipe.yaml"
    spec.write_text(PIPELINE.read_text().replace("cores: 1", f"cores: {value}"))
    assert f"cores: {value}" in spec.read_text()
    line = one_line(["pipeline", "validate", str(spec)], 1, str(spec), "cores")
    assert "digit integer is out of range" in line


@pytest.mark.parametrize(("field", "old"), [("target", "cpu/cascadelake"), ("model", "rm-large")])
def test_name_too_long_for_a_path_is_an_unknown_name(tmp_path, field, old):
    """A 5,000-character model or target name was stat()ed as a path: ENAMETOOLONG."""
    spec = tmp_path / "pipe.yaml"
    spec.write_text(PIPELINE.read_text().replace(f"{field}: {old}", f"{field}: {'x' * 5000}"))
    line = one_line(["pipeline", "validate", str(spec)], 1, str(spec), f"stages[0].{field}")
    assert f"unknown {field}" in line and len(line) < 1000
