"""`codesign targets ...` and `codesign cost ...` through typer's CliRunner: listings, knobs,
area and power from the RecPipe synthesis table, the SCALE-Sim GEMM example, RecPipe's
``run_query`` reproduced by hand, and one-line errors."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from codesign.cli import app

runner = CliRunner()

BUILTINS = {
    "cpu/host",
    "cpu/cascadelake",
    "gpu/nvidia/t4",
    "gpu/nvidia/v100",
    "gpu/nvidia/h100",
    "accel/rpaccel",
    "accel/tpu-like",
    "accel/recpipe-hardconf-1",
    "accel/recpipe-hardconf-4",
    "accel/recpipe-hardconf-16",
    "accel/recpipe-hardconf-64",
}


def run(*args: str):
    return runner.invoke(app, list(args))


def ok_json(*args: str):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- targets list / show -------------------------------------------------------------------------


def test_targets_list_json_has_the_eleven_builtins():
    rows = ok_json("targets", "list", "--json")
    builtin = {r["name"] for r in rows if r["builtin"]}
    assert builtin == BUILTINS
    for r in rows:
        assert set(r) >= {"name", "kind", "distribution", "version", "builtin", "description"}
        assert r["kind"] == r["name"].split("/")[0]
        assert r["description"]


def test_targets_list_table():
    result = run("targets", "list")
    assert result.exit_code == 0, result.output
    assert "codesign targets (" in result.stdout and "built-in" in result.stdout
    for name in BUILTINS:
        assert name in result.stdout


def _um2(*terms: tuple[int, float]) -> float:
    return sum(count * each for count, each in terms)


# BACKGROUND §1.8 (RecPipe RPAccel_characterization/Synthesis_Report, GF 12LP): um^2 and mW
DYN_MMU32, MMU32 = (527_807, 171.0), (506_891, 166.4)
SIMD, CROSSBAR, TOPK = (106, 0.14), (287, 0.32), (453, 0.198)
SRAM_4K, SRAM_32K, SRAM_256K = (4_684, 0.8), (29_142, 2.4), (183_290, 8.4)

#: name -> [(count, block)]: the compositions of BACKGROUND §1.8 (plotting/figure11)
CHIPS = {
    "accel/rpaccel": [
        (16, DYN_MMU32),
        (1024, SIMD),
        (256, CROSSBAR),
        (1024, TOPK),
        (1024, SRAM_4K),  # 4 MB activation
        (16, SRAM_256K),  # 4 MB weight
        (64, SRAM_256K),  # 16 MB embedding
    ],
    "accel/tpu-like": [
        (16, MMU32),
        (128, SIMD),
        (128, SRAM_32K),
        (16, SRAM_256K),
        (64, SRAM_256K),
    ],
}


@pytest.mark.parametrize(
    ("name", "area_mm2"), [("accel/rpaccel", 28.55), ("accel/tpu-like", 26.52)]
)
def test_show_accel_area_and_power_from_the_synthesis_table(name, area_mm2):
    info = ok_json("targets", "show", name, "--json")
    parts = CHIPS[name]
    expected_area = sum(n * block[0] for n, block in parts) / 1e6
    expected_power = sum(n * block[1] for n, block in parts) / 1e3
    assert info["area_mm2"] == pytest.approx(expected_area, rel=1e-9)
    assert info["area_mm2"] == pytest.approx(area_mm2, abs=0.005)
    assert info["power_w"] == pytest.approx(expected_power, rel=1e-9)
    assert info["name"] == name and info["kind"] == "accel"
    breakdown = info["hardware_breakdown"]
    assert sum(b["area_mm2"] for b in breakdown.values()) == pytest.approx(expected_area)


def test_show_rpaccel_knobs_have_ranges():
    info = ok_json("targets", "show", "accel/rpaccel", "--json")
    knobs = {k["name"]: k for k in info["knobs"]}
    assert knobs["rows"]["default"] == 128 and knobs["rows"]["kind"] == "int"
    assert (knobs["rows"]["low"], knobs["rows"]["high"]) == (1, 1024)
    assert knobs["dataflow"]["choices"] == ["os", "ws", "is"]
    assert knobs["topk_on_chip"]["kind"] == "bool"
    for k in knobs.values():
        if k["kind"] in ("int", "float"):
            assert k["low"] <= k["default"] <= k["high"], k
    assert "RecPipe" in info["source"]


def test_show_table_prints_area_and_breakdown():
    result = run("targets", "show", "accel/rpaccel")
    assert result.exit_code == 0, result.output
    assert "area 28.550 mm2" in result.stdout
    assert "embedding_sram" in result.stdout and "dataflow" in result.stdout
    cpu = run("targets", "show", "cpu/cascadelake")
    assert cpu.exit_code == 0, cpu.output
    assert "area n/a" in cpu.stdout and "power 205.00 W" in cpu.stdout


# --- cost ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["accel/rpaccel", "cpu/host"])
def test_cost_rm_large_prints_a_per_op_table(target):
    result = run("cost", "rm-large", "--target", target, "--batch", "4096")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"rm-large on {target}, batch 4096" in out
    for needle in ("bot_0", "emb_", "interact", "top_0", "latency per query", "energy per query"):
        assert needle in out
    assert result.stderr == ""


def test_cost_gemm_matches_scalesim():
    """REFERENCE-TOOLS.md §1: SCALE-Sim 3.0.0, 32x32 WS, M=256 K=512 N=256: 44,799 cycles;
    SRAM reads ifmap 1,048,576 / filter 131,072, ofmap writes 1,048,576 (words)."""
    info = ok_json(
        "cost", "gemm", "--m", "256", "--k", "512", "--n", "256",
        "--target", "accel/rpaccel",
        "--set", "rows=32", "--set", "cols=32", "--set", "dataflow=ws",
        "--json",
    )  # fmt: skip
    assert info["compute_cycles"] == 44_799
    assert info["sram_ifmap_reads"] == 1_048_576
    assert info["sram_filter_reads"] == 131_072
    assert info["sram_ofmap_writes"] == 1_048_576
    assert (info["rows"], info["cols"], info["dataflow"]) == (32, 32, "ws")
    assert info["macs"] == 256 * 512 * 256
    assert info["latency_s"] == pytest.approx(44_799 / 125e6)  # compute-bound at 125 MHz


def recpipe_run_query_s(
    *,
    dim: int,
    bottom: list[int],
    top: list[int],
    items: int,
    keep: int,
    array: int,
    bandwidth_gib_per_s: float,
    clock_ns: float = 8.0,
    dram_latency_cycles: float = 100.0,
    weight_sram_bytes: float = 1e6,
) -> float:
    """RecPipe's ``Accelerator.run_query`` (harvard-acc/RecPipe @ 2daff5bb, RecPipeAccelModel.py;
    BACKGROUND §1.7) for a Criteo model with on-chip sorting, written out by hand."""
    bw_bytes_per_ns = bandwidth_gib_per_s * 2**30 / 1e9
    cycles = (5 + 12 / 4096 * items) * 1000  # input PCIe: "ms" counted as cycles (sic)
    emb_bytes = 4 * dim * 26 * items  # fp32, 26 lookups per item
    cycles += dram_latency_cycles + emb_bytes * 0.5 / bw_bytes_per_ns / clock_ns  # L1 misses
    cycles += emb_bytes * 0.5 / 64  # L1 hits: one 64-byte word per cycle
    for layers in (bottom, top):
        for fin, fout in zip(layers[:-1], layers[1:], strict=True):
            weight_bytes = 4 * fin * fout
            slices = math.ceil(weight_bytes / weight_sram_bytes)
            loaded = min(weight_sram_bytes, weight_bytes)  # fp32 weights, no double buffering
            cycles += (dram_latency_cycles + loaded / bw_bytes_per_ns / clock_ns) * slices
            tiles = math.ceil(fin / array) * math.ceil(fout / array)
            cycles += tiles * (min(fout, array) + min(fin, array) + items)
    cycles += items / (64 / 4) / clock_ns  # on-chip sort, divided by the clock again (sic)
    cycles += (5 + 5 / 4096 * keep) * 1000  # output PCIe: only the kept items
    return cycles * clock_ns / 1e9


#: Layer sizes of the zoo specs (BACKGROUND §1.3): top MLP input = 351 + d (dot interaction).
RM = {
    "rm-small": {"dim": 4, "bottom": [13, 64, 4], "top": [355, 64, 1]},
    "rm-large": {"dim": 32, "bottom": [13, 512, 256, 128, 64, 32], "top": [383, 96, 1]},
}


@pytest.mark.parametrize(
    ("model", "target", "array", "bandwidth_gib_per_s"),
    [
        ("rm-small", "accel/recpipe-hardconf-1", 128, 32),
        ("rm-large", "accel/recpipe-hardconf-1", 128, 32),
        ("rm-small", "accel/recpipe-hardconf-16", 32, 2),
    ],
)
def test_recpipe_hardconf_reproduces_run_query(model, target, array, bandwidth_gib_per_s):
    report = ok_json("cost", model, "--target", target, "--batch", "4096", "--keep", "64", "--json")
    expected = recpipe_run_query_s(
        **RM[model], items=4096, keep=64, array=array, bandwidth_gib_per_s=bandwidth_gib_per_s
    )
    assert report["latency_s"] == pytest.approx(expected, rel=1e-9)


# --- errors: exit 1, one line on stderr, no traceback ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["cost", "rm-small", "--target", "accel/rpacel"],
            ["unknown target 'accel/rpacel'", "did you mean accel/rpaccel", "valid:", "cpu/host"],
        ),
        (
            ["targets", "show", "gpu/nvidia/t5"],
            ["unknown target", "did you mean gpu/nvidia/t4", "gpu/nvidia/h100"],
        ),
        (
            ["cost", "rm-small", "--target", "accel/rpaccel", "--set", "rowz=3"],
            ["unknown knob 'rowz'", "did you mean 'rows'", "valid:", "dataflow", "cols"],
        ),
        (
            ["cost", "rm-small", "--target", "accel/rpaccel", "--set", "rows=0"],
            ["knob rows", "out of range", "1..1024"],
        ),
        (
            ["cost", "rm-small", "--target", "accel/rpaccel", "--set", "dataflow=xx"],
            ["knob dataflow", "'xx'", "os|ws|is"],
        ),
        (
            ["cost", "rm-small", "--target", "accel/rpaccel", "--set", "rows"],
            ["--set 'rows'", "knob=value"],
        ),
        (
            ["cost", "rm-small", "--target", "accel/rpaccel", "--set", "rows=abc"],
            ["knob rows", "not a number", "1..1024"],
        ),
        (
            ["cost", "gemm", "--m", "4", "--k", "4", "--target", "cpu/host"],
            ["--n", "required"],
        ),
        (
            ["cost", "gemm", "--m", "4", "--k", "4", "--n", "4", "--target", "cpu/host", "--set",
             "rows=8"],
            ["unknown knob 'rows'", "cores"],
        ),
        (
            ["cost", "rm-small", "--target", "accel/rpaccel", "--set", "area_budget_mm2=1"],
            ["exceeds area_budget_mm2"],
        ),
    ],
)  # fmt: skip
def test_errors_are_one_line_with_exit_code_1(args, needles):
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr and result.exception.__class__ is SystemExit
    assert result.stderr.startswith("error: ")
    assert result.stderr.strip().count("\n") == 0, result.stderr
    for needle in needles:
        assert needle in result.stderr


def test_infinite_int_knob_is_a_one_line_error():
    result = run("cost", "rm-small", "--target", "accel/rpaccel", "--set", "rows=inf")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 1 and "knob rows" in result.stderr
