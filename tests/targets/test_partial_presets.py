"""Partial target presets (issue 14, Deliver 1): a preset that sets only some knobs takes its
type's defaults for the others and prices exactly as the preset that writes every knob out;
knobs a type has no default for are listed in one line, as are unknown knobs (with the closest
name) and refused values, each naming the file. `codesign targets validate` shows where every
resolved value comes from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from codesign.cli import app
from codesign.targets.accel import accel_knobs
from codesign.targets.cpu import cpu_knobs
from codesign.targets.gpu import gpu_knobs
from codesign.targets.presets import preset_dir, read_preset, type_defaults

runner = CliRunner()
KNOBS = {"cpu": cpu_knobs, "gpu": gpu_knobs, "accel": accel_knobs}
#: What one costing reports that depends on every knob: totals, silicon, the resolved point.
COMPARED = ("latency_s", "energy_j", "dram_bytes", "sram_bytes", "pcie_bytes", "area_mm2")


def _write(path: Path, knobs: dict, *, kind: str = "accel", name: str = "my/chip") -> str:
    doc = {"version": 1, "kind": "target", "name": name, "type": kind, "knobs": knobs}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _cost(target: str, model: str = "rm-small", batch: int = 64) -> dict:
    result = runner.invoke(
        app, ["cost", model, "--target", target, "--batch", str(batch), "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _same_costs(a: dict, b: dict) -> None:
    for key in COMPARED:
        assert a[key] == b[key], key
    assert a["point"] == b["point"]
    assert [op["latency_s"] for op in a["ops"]] == [op["latency_s"] for op in b["ops"]]


def _error_line(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    assert result.stdout == "" and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line
    return line


def test_the_accel_type_has_a_default_for_every_knob_and_documents_them():
    defaults, missing = type_defaults(accel_knobs)
    assert missing == ()
    # docs/targets.md: RPAccel's array and SRAM, hardconf_1's clock and DRAM, no caches/top-k
    assert (defaults["rows"], defaults["cols"], defaults["arrays"]) == (128, 128, 1)
    assert defaults["clock_hz"] == 125e6
    assert defaults["weight_sram_bytes"] == defaults["activation_sram_bytes"] == 4 * 2**20
    assert defaults["dram_bandwidth_bytes_per_s"] == 32 * 2**30
    assert defaults["static_cache_bytes"] == defaults["dynamic_cache_bytes"] == 0
    assert defaults["topk_units"] == 0


def test_rows_and_cols_price_exactly_as_the_full_preset(tmp_path):
    partial = _write(tmp_path / "partial.yaml", {"rows": 32, "cols": 64})
    defaults, _ = type_defaults(accel_knobs)
    full_knobs = {**defaults, "rows": 32, "cols": 64}
    full = _write(tmp_path / "full.yaml", full_knobs)
    assert len(full_knobs) > 20
    a, b = _cost(partial, "rm-large", 256), _cost(full, "rm-large", 256)
    _same_costs(a, b)
    assert a["point"]["rows"] == 32 and a["point"]["cols"] == 64
    # the knobs the preset set change the price: the defaults alone (128x128) differ
    other = _cost(_write(tmp_path / "defaults.yaml", {}), "rm-large", 256)
    assert other["latency_s"] != a["latency_s"] and other["area_mm2"] != a["area_mm2"]


@pytest.mark.parametrize("path", sorted(preset_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_every_builtin_preset_prices_the_same_without_its_default_values(tmp_path, path):
    """Each shipped preset, with every knob whose value equals its type's default dropped,
    prices exactly as the shipped file (the accelerators drop several knobs each)."""
    preset = read_preset(path)
    defaults, missing = type_defaults(KNOBS[preset.type])
    kept = {k: v for k, v in preset.knobs.items() if k not in defaults or defaults[k] != v}
    if "detect" not in kept:  # the host's figures stand in for the CPU's required knobs
        assert set(missing) <= set(kept)
    if preset.type == "accel":
        assert len(kept) < len(preset.knobs), "an accel preset repeats no type default?"
    short = _write(tmp_path / "short.yaml", kept, kind=preset.type, name=preset.name)
    _same_costs(_cost(short), _cost(str(path)))


def test_missing_knobs_are_listed_in_one_line_naming_the_file(tmp_path):
    path = _write(tmp_path / "gpu.yaml", {"sms": 40, "tdp_w": 70}, kind="gpu")
    _, missing = type_defaults(gpu_knobs)
    assert missing == (
        "sms",
        "peak_flops_fp32",
        "peak_flops_fp16",
        "memory_bandwidth_bytes_per_s",
        "memory_bytes",
        "pcie_bandwidth_bytes_per_s",
        "tdp_w",
    )
    for command in (["cost", "rm-small", "--target", path], ["targets", "validate", path]):
        line = _error_line(*command)
        assert line.startswith(f"error: {path}: knobs: missing ")
        listed = line.split("missing ", 1)[1].split(":", 1)[0].split(", ")
        assert listed == [m for m in missing if m not in ("sms", "tdp_w")]
        assert "the gpu type has no default" in line


def test_unknown_knobs_name_the_file_and_the_closest_knob(tmp_path):
    path = _write(tmp_path / "typo.yaml", {"rowz": 32, "cols": 64})
    line = _error_line("targets", "validate", path)
    assert f"{path}: knobs.rowz: unknown accel knob 'rowz'" in line
    assert "did you mean 'rows'?" in line


def test_every_problem_at_once(tmp_path):
    path = _write(
        tmp_path / "bad.yaml", {"cores": "many", "frobnicate": 1, "tdp_w": -3}, kind="cpu"
    )
    line = _error_line("targets", "validate", path)
    assert "knobs.cores: 'many' is not a number" in line
    assert "knobs.frobnicate: unknown cpu knob" in line
    assert "knobs.tdp_w: -3 is out of range (valid: 1..2000 W)" in line
    assert "knobs: missing frequency_hz, simd_lanes_fp32" in line


def test_validate_shows_each_value_and_where_it_comes_from(tmp_path):
    path = _write(tmp_path / "chip.yaml", {"rows": 32, "cols": 64, "clock_hz": 250e6})
    result = runner.invoke(app, ["targets", "validate", path, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["name"], info["type"], info["path"]) == ("my/chip", "accel", path)
    knobs = {k["name"]: k for k in info["knobs"]}
    defaults, _ = type_defaults(accel_knobs)
    assert set(knobs) == set(defaults)
    for name, k in knobs.items():
        if name in ("rows", "cols", "clock_hz"):
            assert k["from"] == "preset"
        else:
            assert (k["from"], k["value"]) == ("type default", defaults[name])
    assert knobs["clock_hz"]["value"] == 250e6 and knobs["clock_hz"]["unit"] == "Hz"
    table = runner.invoke(app, ["targets", "validate", path])
    assert table.exit_code == 0, table.output
    assert "my/chip (accel): valid" in table.stdout and "type default" in table.stdout


@pytest.mark.parametrize("path", sorted(preset_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_every_builtin_preset_validates(path):
    result = runner.invoke(app, ["targets", "validate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["name"] == read_preset(path).name
    set_in_file = set(read_preset(path).knobs) - {"detect"}
    assert {k["name"] for k in info["knobs"] if k["from"] == "preset"} == set_in_file
