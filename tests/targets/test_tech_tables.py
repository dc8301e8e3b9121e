"""Technology tables (issue 15, Deliver 3): the accelerator's area, power and DRAM energy come
from a versioned ``kind: tech`` YAML table that a preset names with ``tech:``. The shipped table
holds the figures that were hard-coded before, so every shipped preset prices exactly as
before; a preset that sets only ``rows``, ``cols`` and ``tech`` prices as the full preset; a
table of one's own (another node) prices by its figures; bad tables are one line naming the
file and the field."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from codesign.cli import app
from codesign.targets.accel import accel_knobs
from codesign.targets.presets import type_defaults
from codesign.targets.technology import COMPONENTS, DEFAULT_TECH, resolve_tech, tech_dir

runner = CliRunner()
#: Prices of every shipped preset computed by the old code path (commit 5ff4aae, constants in
#: targets/accel.py); how they were made is in the file's "_source".
BEFORE = json.loads((Path(__file__).parent / "prices_before_tech.json").read_text())["prices"]
#: The constants targets/accel.py held before the tables, as BACKGROUND §1.8 tabulates them from
#: harvard-acc/RecPipe RPAccel_characterization/Synthesis_Report: (area um2, power mW) per
#: 32x32 array (1024 PEs), unit or SRAM macro; the clock they were read at (RecPipe's 8 ns
#: cycle) and the DRAM energy (Horowitz, ISSCC 2014: 160 pJ/B).
OLD_CONSTANTS = {
    "systolic_array": (527_807.0, 171.0),  # DYN_MMU32
    "systolic_array_fixed": (506_891.0, 166.4),  # MMU32
    "simd_unit": (106.0, 0.14),
    "crossbar": (287.0, 0.32),
    "topk_unit": (453.0, 0.198),
    "activation_sram": (4_684.0, 0.8),  # 4 KB macro
    "activation_sram_fixed": (29_142.0, 2.4),  # 32 KB macro
    "weight_sram": (183_290.0, 8.4),  # 256 KB macro
    "embedding_sram": (183_290.0, 8.4),  # 256 KB macro
}
OLD_MACRO_BYTES = {
    "activation_sram": 4 * 1024,
    "activation_sram_fixed": 32 * 1024,
    "weight_sram": 256 * 1024,
    "embedding_sram": 256 * 1024,
}
OLD_CLOCK_HZ, OLD_DRAM_J_PER_BYTE = 125e6, 160e-12

#: A made-up node for the tests: its clock, and per component (area um2, power mW, leakage mW)
#: per unit (arrays: per 1024 PEs), the SRAM macros' bytes as in 12 nm; DRAM 120 pJ/B.
NODE_CLOCK_HZ = 1e9
NODE = {
    "systolic_array": (140_000.0, 400.0, 12.0),
    "systolic_array_fixed": (130_000.0, 380.0, 10.0),
    "simd_unit": (30.0, 0.5, 0.01),
    "crossbar": (80.0, 1.0, 0.02),
    "topk_unit": (120.0, 0.6, 0.0),
    "activation_sram": (1_300.0, 2.0, 0.05),
    "activation_sram_fixed": (8_000.0, 6.0, 0.3),
    "weight_sram": (50_000.0, 20.0, 2.0),
    "embedding_sram": (48_000.0, 19.0, 1.5),
}
NODE_DRAM_PJ_PER_BYTE = 120.0


def _node_doc() -> dict:
    components: dict = {}
    for name, (area, power, leakage) in NODE.items():
        comp: dict = {"area_um2": area, "power_mw": power, "source": "test figures"}
        if leakage:
            comp["leakage_mw"] = leakage
        if name.startswith("systolic_array"):
            comp = {"pes": 1024, **comp}
        if name in OLD_MACRO_BYTES:
            comp = {"macro_bytes": OLD_MACRO_BYTES[name], **comp}
        components[name] = comp
    components["dram"] = {"energy_pj_per_byte": NODE_DRAM_PJ_PER_BYTE}
    return {
        "version": 1,
        "kind": "tech",
        "name": "test-7nm",
        "source": "made up for tests",
        "clock_hz": NODE_CLOCK_HZ,
        "components": components,
    }


def _write_yaml(path: Path, doc: dict) -> str:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _preset(path: Path, knobs: dict, *, tech: str | None = None, name: str = "my/chip") -> str:
    doc: dict = {"version": 1, "kind": "target", "name": name, "type": "accel"}
    if tech is not None:
        doc["tech"] = tech
    doc["knobs"] = knobs
    return _write_yaml(path, doc)


def _cost(target: str, *args: str, model: str = "rm-large", batch: int = 256) -> dict:
    result = runner.invoke(
        app, ["cost", model, "--target", target, "--batch", str(batch), "--json", *args]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _error_line(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    assert result.stdout == "" and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line
    return line


PRICED = ("latency_s", "energy_j", "dram_bytes", "sram_bytes", "pcie_bytes", "area_mm2", "power_w")


# --- the shipped presets price exactly as before ---------------------------------------------


def _case_args(key: str) -> tuple[str, list[str]]:
    """'accel-rpaccel rm-large batch=256 keep=16 own-model' -> preset path, cost arguments."""
    stem, model, batch, keep, *variant = key.split()
    args = [model, "--batch", batch.split("=")[1], "--json"]
    if keep != "keep=0":
        args += ["--keep", keep.split("=")[1]]
    overrides = {
        "own-model": ["recpipe_compat=false"],
        "fast-fixed": [
            "recpipe_compat=false",
            "clock_hz=5e8",
            "reconfigurable=false",
            "topk_units=64",
        ],
    }.get(variant[0] if variant else "", [])
    for o in overrides:
        args += ["--set", o]
    return str(tech_dir().parent / "presets" / f"{stem}.yaml"), args


@pytest.mark.parametrize("key", sorted(k for k in BEFORE if not k.endswith("hardware_breakdown")))
def test_every_shipped_preset_prices_exactly_as_before_the_tables(key):
    path, args = _case_args(key)
    result = runner.invoke(app, ["cost", *args[:1], "--target", path, *args[1:]])
    assert result.exit_code == 0, result.output
    now = json.loads(result.stdout)
    before = BEFORE[key]
    # the tables price accelerators; CPU and GPU power is their tdp_w knob (the CPU's latency
    # model is calibrated separately, so only what a table could change is compared there)
    compared = (
        ("latency_s", "energy_j", "area_mm2", "power_w")
        if "accel" in key
        else (
            "area_mm2",
            "power_w",
        )
    )
    for field in compared:
        assert now[field] == before[field], field


@pytest.mark.parametrize(
    "stem", sorted(k.split()[0] for k in BEFORE if k.endswith("hardware_breakdown"))
)
def test_every_shipped_accelerator_has_the_same_silicon_as_before(stem):
    result = runner.invoke(app, ["targets", "show", f"{tech_dir().parent}/presets/{stem}.yaml"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["targets", "show", f"{tech_dir().parent}/presets/{stem}.yaml", "--json"]
    )
    info = json.loads(result.stdout)
    assert info["hardware_breakdown"] == BEFORE[f"{stem} hardware_breakdown"]
    assert info["tech"] == DEFAULT_TECH


def test_the_default_table_holds_the_figures_that_were_hard_coded():
    tech = resolve_tech(DEFAULT_TECH)
    assert tech.name == "rpaccel-12nm" and tech.source
    assert tech.clock_hz == OLD_CLOCK_HZ and tech.dram_j_per_byte == OLD_DRAM_J_PER_BYTE
    assert set(tech.components) == set(COMPONENTS)
    for name, (area, power) in OLD_CONSTANTS.items():
        c = tech[name]
        assert (c.area_um2, c.power_mw, c.leakage_mw) == (area, power, 0.0), name
        if name.startswith("systolic_array"):
            assert c.pes == 1024
        else:
            assert c.macro_bytes == OLD_MACRO_BYTES.get(name, 0)
    for name, c in tech.components.items():
        assert "Synthesis_Report" in c.source or "Horowitz" in c.source, name


# --- acceptance: rows, cols and tech only ----------------------------------------------------


def _same(a: dict, b: dict) -> None:
    for field in PRICED:
        assert a[field] == b[field], field
    assert a["point"] == b["point"]
    assert [op["energy_j"] for op in a["ops"]] == [op["energy_j"] for op in b["ops"]]


def test_rows_cols_and_tech_price_as_the_full_preset(tmp_path):
    """A preset of rows, cols and tech prices exactly as the preset that writes every knob out
    with the same tech, for the shipped table and for a table of one's own (named by a path
    relative to the preset); the table's figures, not the knobs, set the silicon."""
    defaults, _ = type_defaults(accel_knobs)
    full_knobs = {**defaults, "rows": 32, "cols": 64}
    (tmp_path / "nodes").mkdir()
    node = _write_yaml(tmp_path / "nodes" / "my-7nm.yaml", _node_doc())

    short_12 = _cost(_preset(tmp_path / "s12.yaml", {"rows": 32, "cols": 64}, tech=DEFAULT_TECH))
    full_12 = _cost(_preset(tmp_path / "f12.yaml", full_knobs))  # no tech: the default
    _same(short_12, full_12)

    short_7 = _cost(
        _preset(tmp_path / "s7.yaml", {"rows": 32, "cols": 64}, tech="nodes/my-7nm.yaml")
    )
    full_7 = _cost(_preset(tmp_path / "f7.yaml", full_knobs, tech=node))
    _same(short_7, full_7)

    # rows=32, cols=64 with the accel type's defaults: 2048 PEs of a reconfigurable array,
    # 128 SIMD units (PEs/16), 32 crossbars (PEs/64), no top-k units, 4 MiB of activation SRAM
    # in 4 KB macros (1024) and 4 MiB of weight SRAM in 256 KB macros (16), no embedding SRAM
    counts = {
        "systolic_array": 2048 / 1024,
        "simd_unit": 128,
        "crossbar": 32,
        "activation_sram": 1024,
        "weight_sram": 16,
    }
    area_um2 = sum(n * NODE[c][0] for c, n in counts.items())
    scale = 125e6 / NODE_CLOCK_HZ  # the type's default clock over the table's
    power_mw = sum(n * (NODE[c][1] * scale + NODE[c][2]) for c, n in counts.items())
    assert short_7["area_mm2"] == pytest.approx(area_um2 / 1e6, rel=1e-12)
    assert short_7["power_w"] == pytest.approx(power_mw / 1e3, rel=1e-12)
    # the table prices silicon and energy, not time: same latency and bytes, other energy
    for field in ("latency_s", "dram_bytes", "sram_bytes", "pcie_bytes"):
        assert short_7[field] == short_12[field], field
    expected_j = sum(
        op["latency_s"] * short_7["power_w"] + op["dram_bytes"] * NODE_DRAM_PJ_PER_BYTE / 1e12
        for op in short_7["ops"] + short_7["extra"]
    )
    assert short_7["energy_j"] == pytest.approx(expected_j, rel=1e-9)
    assert short_7["area_mm2"] < 0.5 * short_12["area_mm2"]


def test_a_table_of_ones_own_prices_alike_in_every_cost_path(tmp_path):
    """The evaluator's compiled model (``codesign cost``'s totals) and the per-op interpreter
    read the same table (leakage and DRAM energy included); presets that differ only in their
    table are not confused by the compiled model's cache."""
    from codesign.cost_models.analytical import estimate
    from codesign.ir.frontends.lower import lower
    from codesign.ir.frontends.zoo import resolve
    from codesign.plugins import load_target

    node = _write_yaml(tmp_path / "my-7nm.yaml", _node_doc())
    knobs = {"rows": 64, "cols": 64, "static_cache_bytes": 2**20, "topk_units": 64}
    own = _preset(tmp_path / "own.yaml", knobs, tech=node)
    default = _preset(tmp_path / "default.yaml", knobs)
    for args in ((), ("--set", "reconfigurable=false", "--set", "clock_hz=5e8")):
        priced = {p: _cost(p, "--keep", "8", *args) for p in (own, default)}
        assert priced[own]["energy_j"] != priced[default]["energy_j"]
        assert priced[own]["latency_s"] == priced[default]["latency_s"]
        target = load_target(own)
        overrides = dict(a.split("=") for a in args[1::2])
        point = target.design_space().resolve(
            {k: target.design_space()[k].parse(v) for k, v in overrides.items()}
        )
        graph = lower(resolve("rm-large"), batch=256, keep=8)
        report = estimate(graph, target, point)
        assert priced[own]["energy_j"] == pytest.approx(report.energy_j, rel=1e-9)
        assert priced[own]["power_w"] == pytest.approx(target.hw_cost(point).power_w, rel=1e-12)


def test_energy_per_cycle_is_the_same_figure_as_power(tmp_path):
    doc = _node_doc()
    simd = doc["components"]["simd_unit"]
    power_mw = simd.pop("power_mw")
    simd["energy_pj_per_cycle"] = power_mw / NODE_CLOCK_HZ * 1e9  # mW / Hz = 1e9 pJ per cycle
    cycles = resolve_tech(_write_yaml(tmp_path / "cycles.yaml", doc))
    assert cycles["simd_unit"].power_mw == pytest.approx(power_mw, rel=1e-12)


# --- one clear line for a bad table or a bad reference -----------------------------------------


def _bad_table(tmp_path: Path, edit) -> str:
    doc = _node_doc()
    edit(doc)
    return _write_yaml(tmp_path / "bad-node.yaml", doc)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["components"].update(simd=d["components"].pop("simd_unit")),
            "components.simd: unknown component 'simd' (fix: did you mean 'simd_unit'?",
        ),
        (
            lambda d: d["components"]["topk_unit"].pop("area_um2"),
            "components.topk_unit.area_um2: missing figure (area of one unit) (fix: set area_um2)",
        ),
        (
            lambda d: d["components"].pop("dram"),
            "components: missing dram: an accelerator is priced from every component",
        ),
        (
            lambda d: d["components"]["weight_sram"].update(power_mw=0),
            "components.weight_sram.power_mw: must be positive, got 0",
        ),
        (
            lambda d: d["components"]["crossbar"].update(area_um2=-287.0),
            "components.crossbar.area_um2: must be positive, got -287.0",
        ),
        (
            lambda d: d["components"]["embedding_sram"].pop("macro_bytes"),
            "components.embedding_sram.macro_bytes: is required (fix: set macro_bytes: the bytes "
            "one macro holds)",
        ),
        (
            lambda d: d["components"]["dram"].update(area_um2=1.0),
            "components.dram.area_um2: unknown field",
        ),
        (lambda d: d.pop("clock_hz"), "clock_hz: missing figure"),
    ],
    ids=[
        "unknown-component",
        "missing-figure",
        "missing-component",
        "zero",
        "negative",
        "missing-macro-size",
        "unknown-field",
        "no-clock",
    ],
)
def test_a_bad_table_is_one_line_naming_the_file_and_field(tmp_path, edit, expected):
    table = _bad_table(tmp_path, edit)
    line = _error_line("targets", "validate", table)
    assert line.startswith(f"error: {table}: {expected}"), line
    # the same line when a preset names it, whatever command loads the preset
    preset = _preset(tmp_path / "chip.yaml", {"rows": 32}, tech=table)
    assert _error_line("cost", "rm-small", "--target", preset) == line


def test_every_problem_of_a_table_at_once(tmp_path):
    def edit(doc: dict) -> None:
        doc["components"].pop("crossbar")
        doc["components"]["simd_unit"]["power_mw"] = "lots"
        doc["components"]["topk_unit"]["leakage_mw"] = -1

    line = _error_line("targets", "validate", _bad_table(tmp_path, edit))
    assert "components.simd_unit.power_mw: must be a positive number, got 'lots'" in line
    assert "components.topk_unit.leakage_mw: must be >= 0, got -1" in line
    assert "components: missing crossbar" in line


def test_bad_tech_references_name_the_preset(tmp_path):
    unknown = _preset(tmp_path / "a.yaml", {"rows": 32}, tech="rpaccel-7nm")
    line = _error_line("targets", "validate", unknown)
    assert line.startswith(f"error: {unknown}: tech: no built-in technology table 'rpaccel-7nm'")
    assert "did you mean 'rpaccel-12nm'?" in line
    missing = _preset(tmp_path / "b.yaml", {"rows": 32}, tech="nodes/none.yaml")
    line = _error_line("cost", "rm-small", "--target", missing)
    assert line.startswith(f"error: {missing}: tech: technology table ")
    assert "none.yaml not found" in line
    cpu = tmp_path / "cpu.yaml"
    cpu.write_text("version: 1\nkind: target\nname: c\ntype: cpu\ntech: rpaccel-12nm\n")
    line = _error_line("targets", "validate", str(cpu))
    assert f"{cpu}: tech: a cpu preset takes no technology table" in line
    table = _write_yaml(tmp_path / "node.yaml", _node_doc())
    line = _error_line("cost", "rm-small", "--target", table)
    assert line.startswith(f"error: {table}: kind: this is a technology table, not a target")
    assert "; also" not in line
    other = _preset(tmp_path / "other.yaml", {"rows": 16})
    swapped = _preset(tmp_path / "swapped.yaml", {"rows": 32}, tech=other)
    line = _error_line("targets", "validate", swapped)
    assert line.startswith(f"error: {other}: kind: this is a target preset, not a technology")
    assert "; also" not in line  # nothing but the kind is said about the wrong document


# --- codesign targets validate ------------------------------------------------------------------


def test_validate_checks_a_table_and_shows_which_table_a_preset_uses(tmp_path):
    result = runner.invoke(app, ["targets", "validate", str(tech_dir() / "rpaccel-12nm.yaml")])
    assert result.exit_code == 0, result.output
    assert "rpaccel-12nm (tech, figures at 1.25e+08 Hz): valid" in result.stdout
    assert "systolic_array_fixed" in result.stdout and "527807" in result.stdout

    node = _write_yaml(tmp_path / "my-7nm.yaml", _node_doc())
    info = json.loads(runner.invoke(app, ["targets", "validate", node, "--json"]).stdout)
    assert (info["kind"], info["name"], info["clock_hz"]) == ("tech", "test-7nm", 1e9)
    assert info["components"]["weight_sram"] == {
        "area_um2": 50_000.0,
        "power_mw": 20.0,
        "leakage_mw": 2.0,
        "macro_bytes": 256 * 1024,
        "source": "test figures",
    }

    chosen = _preset(tmp_path / "chosen.yaml", {"rows": 32}, tech="my-7nm.yaml")
    info = json.loads(runner.invoke(app, ["targets", "validate", chosen, "--json"]).stdout)
    assert info["tech"] == {"name": "test-7nm", "path": node, "from": "preset"}
    default = _preset(tmp_path / "default.yaml", {"rows": 32})
    info = json.loads(runner.invoke(app, ["targets", "validate", default, "--json"]).stdout)
    assert (info["tech"]["name"], info["tech"]["from"]) == (DEFAULT_TECH, "default")
    table = runner.invoke(app, ["targets", "validate", chosen])
    assert table.exit_code == 0, table.output
    assert f"tech: test-7nm ({node}; from preset)" in " ".join(table.stdout.split())


def test_every_shipped_table_is_valid_and_cites_its_sources():
    for path in sorted(tech_dir().glob("*.yaml")):
        result = runner.invoke(app, ["targets", "validate", str(path), "--json"])
        assert result.exit_code == 0, result.output
        info = json.loads(result.stdout)
        assert info["source"] and all(c.get("source") for c in info["components"].values())
        assert math.isfinite(info["clock_hz"])


def test_the_docs_list_every_component_a_table_must_give():
    docs = (Path(__file__).parents[2] / "docs" / "targets.md").read_text()
    section = docs.split("## Technology tables", 1)[1]
    rows = [
        line.split("|")[1].strip(" `") for line in section.splitlines() if line.startswith("| `")
    ]
    assert rows == list(COMPONENTS)
