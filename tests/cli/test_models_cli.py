"""`codesign models ...` through typer's CliRunner and as real subprocesses (README commands)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from codesign.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_models_list_json_has_17_models():
    result = run("models", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 17
    rmc1 = next(r for r in rows if r["name"] == "dlrm-rmc1")
    assert rmc1["macs_per_item"] == 100_416 and rmc1["embedding_bytes_per_item"] == 81_920


def test_models_list_table():
    result = run("models", "list")
    assert result.exit_code == 0
    for name in ("dlrm-rmc1", "rm-small", "neumf-ml20m-large", "dien"):
        assert name in result.stdout


def test_models_show_json_keys_carry_units():
    result = run("models", "show", "rm-small", "--batch", "4096", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    totals = info["totals"]
    assert totals["macs_per_item_by_op"]["dense"] == 23_872  # BACKGROUND §1.3
    assert totals["embedding_bytes_per_item"] == 416
    assert totals["model_size_bytes"] > totals["embedding_table_bytes"] > 0
    assert totals["macs_per_batch"] == 4096 * totals["macs_per_item"]
    assert info["batch"] == 4096
    row = info["ops"][0]
    assert set(row) >= {
        "name",
        "op",
        "shape",
        "params",
        "macs_per_item",
        "weight_bytes",
        "embedding_bytes_per_item",
        "activation_bytes_per_item",
    }
    for key in list(totals) + list(row):
        assert key == key.lower() and " " not in key


def test_models_show_table_and_ir(tmp_path):
    ir_path = tmp_path / "g.json"
    result = run("models", "show", "dlrm-rmc1", "--ir", "--save-ir", str(ir_path))
    assert result.exit_code == 0, result.output
    assert "model size" in result.stdout and "81,920 B" in result.stdout
    assert "graph dlrm-rmc1(batch=1):" in result.stdout
    assert json.loads(ir_path.read_text())["format"] == "codesign.ir"


def test_models_show_spec_file(tmp_path, tiny_spec_dict):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_spec_dict))
    result = run("models", "show", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "tiny-dlrm"


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [
        (["models", "show", "rmc1"], "did you mean dlrm-rmc1", 1),
        (["models", "show", "rm-small", "--batch", "0"], "batch", 1),
        (["models", "show", "missing.yaml"], "not found", 1),
        (["models", "show", "rm-small", "--batch", "x"], "batch", 2),
        (["models", "frobnicate"], "frobnicate", 2),
    ],
)
def test_errors_are_one_line_with_exit_code(args, needle, code):
    result = run(*args)
    assert result.exit_code == code
    text = result.stderr if code == 1 else result.output
    assert needle in text
    if code == 1:
        assert result.stderr.strip().count("\n") == 0
        assert "Traceback" not in result.output


def test_bad_yaml_field_error_names_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\nkind: model\nname: x\narch: dlrm\ndense_features: 13\n"
        "embedding: {dim: 4, tables: [{rows: -5}]}\nbottom_mlp: [4]\ntop_mlp: [1]\n"
    )
    result = run("models", "show", str(path))
    assert result.exit_code == 1
    assert "embedding.tables[0].rows: must be positive, got -5" in result.stderr
    assert "fix:" in result.stderr


def _cli() -> list[str]:
    exe = shutil.which("codesign", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "codesign"]


def test_readme_commands_as_subprocesses():
    listed = subprocess.run(
        [*_cli(), "models", "list"], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert "17 models" in listed.stdout
    shown = subprocess.run(
        [*_cli(), "models", "show", "rm-large", "--batch", "4096", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["totals"]["macs_per_item_by_op"]["dense"] == 217_600


def test_subprocess_error_has_no_traceback_unless_debug():
    bad = subprocess.run(
        [*_cli(), "models", "show", "nope"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: unknown model 'nope'")
    assert "Traceback" not in bad.stderr
    debug = subprocess.run(
        [*_cli(), "--debug", "models", "show", "nope"], capture_output=True, text=True, timeout=120
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_models_show_applies_passes():
    base = json.loads(run("models", "show", "rm-small", "--json").stdout)["totals"]
    result = run(
        "models", "show", "rm-small", "--json", "--passes", "merge-small-tables,quantize-embeddings"
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["passes"] == ["merge-small-tables", "quantize-embeddings"]
    totals = info["totals"]
    assert totals["macs_per_item"] == base["macs_per_item"]
    assert totals["embedding_lookups_per_item"] == 22  # 4 merged pairs of the smallest tables
    # int8 rows hold dim + 8 bytes (fp32 scale and bias): 18 single tables and 4 two-vector rows
    assert totals["embedding_bytes_per_item"] == 18 * (4 + 8) + 4 * (2 * 4 + 8)
    default = json.loads(run("models", "show", "rm-small", "--json", "-p", "default").stdout)
    assert default["passes"][0] == "dce" and default["passes"][-1] == "annotate-cost"
