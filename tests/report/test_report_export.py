"""Report plots as files and two runs side by side (issue 15, deliver 4): constraint lines and
axis units from the run config, the page's embedded plot data, `codesign report RUN --png`
(SVG and PNG of every plot) and `--compare OTHER`."""

from __future__ import annotations

import math
import re
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_report_html import OBJ3, parse, synthetic_run
from typer.testing import CliRunner

from codesign.cli import app
from codesign.errors import CodesignError
from codesign.report import render_report
from codesign.report.data import constraint_lines, read_report_data
from codesign.report.export import write_plot_files

runner = CliRunner()
CONSTRAINTS = [
    {"objective": "p95_latency_s", "value": 0.05, "label": "SLA"},
    {"objective": "quality", "value": 0.7, "label": "quality floor"},
]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def check_svg_file(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()  # well-formed standalone XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def test_constraint_lines_from_the_run_config():
    class Cfg:
        sla_ms, area_budget_mm2, quality_floor = 25.0, 40.0, 0.8

    lines = {c["objective"]: (c["value"], c["label"]) for c in constraint_lines(Cfg)}
    assert lines == {
        "p95_latency_s": (0.025, "SLA"),
        "area_mm2": (40.0, "area budget"),
        "quality": (0.8, "quality floor"),
    }
    Cfg.sla_ms = Cfg.area_budget_mm2 = Cfg.quality_floor = None
    assert constraint_lines(Cfg) == []


def test_constraint_lines_sit_at_their_value_on_the_right_axis():
    run = synthetic_run(OBJ3[:2])
    page = render_report(**run, constraints=CONSTRAINTS)
    doc = parse(page)
    lines = [a for t, a in doc.starts if t == "line" and a.get("class") == "constraint"]
    # quality is the x axis: a vertical line; latency the y axis: a horizontal one, in ms
    by_axis = {a["data-axis"]: a for a in lines}
    assert float(by_axis["x"]["data-v"]) == 0.7 and by_axis["x"]["x1"] == by_axis["x"]["x2"]
    assert float(by_axis["y"]["data-v"]) == 50.0 and by_axis["y"]["y1"] == by_axis["y"]["y2"]
    assert "SLA 50 ms" in page and "quality floor 0.7" in page
    svg = next(a for t, a in doc.starts if t == "svg" and "pair-plot" in a["class"])
    top, bottom = float(svg["data-top"]), 340 - 52
    xlo, xhi, ylo, yhi = (float(v) for v in svg["data-all"].split(","))
    # the SLA line is drawn where 50 ms falls on the log axis
    want = bottom + (math.log10(50.0) - ylo) / (yhi - ylo) * (top - bottom)
    assert float(by_axis["y"]["y1"]) == pytest.approx(want, abs=0.1)


def test_plot_data_round_trips_and_cannot_break_out_of_the_page(tmp_path):
    run = synthetic_run(OBJ3)
    run["title"] = 'x</script><script>alert("x")</script>'
    run["trials"][1]["values"] = [math.nan, 1.0, 2.0]
    page = render_report(**run, constraints=CONSTRAINTS)
    # only our own two elements close (the data and the script): the title stays text
    assert page.count("</script>") == 2 and "<script>alert" not in page
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    data = read_report_data(path)
    assert data["title"] == run["title"] and data["front"] == run["front"]
    assert data["constraints"] == CONSTRAINTS
    assert data["trials"][1]["values"] == [None, 1.0, 2.0]  # NaN is not JSON
    assert [t["number"] for t in data["trials"]] == [t["number"] for t in run["trials"]]
    path.write_text("<html></html>", encoding="utf-8")
    with pytest.raises(CodesignError, match="no plot data"):
        read_report_data(path)


@pytest.mark.parametrize("k", [2, 3])
def test_png_and_svg_file_per_plot(tmp_path, k):
    data = synthetic_run(OBJ3[:k], n=30) | {"constraints": CONSTRAINTS, "measured": []}
    files = write_plot_files(data, tmp_path / "plots")
    stems = {f"{b['name']}-vs-{a['name']}" for n, a in enumerate(OBJ3[:k]) for b in OBJ3[n + 1 : k]}
    stems.add("hypervolume")
    assert sorted(p.name for p in files) == sorted(
        f"{s}.{e}" for s in stems for e in ("svg", "png")
    )
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in files)
    for path in files:
        if path.suffix == ".png":
            width, height = png_size(path)
            assert width > 500 and height > 400 and path.stat().st_size > 10_000
        else:
            root = check_svg_file(path)
            if path.stem != "hypervolume":
                titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
                assert any(t and t.startswith("p95 latency (ms, log)") for t in titles) or k == 3


def test_compare_draws_both_runs_in_the_same_axes():
    mine = synthetic_run(OBJ3[:2], seed=0)
    other = synthetic_run(OBJ3[:2], seed=1) | {"name": "other-run"}
    other["constraints"] = [{"objective": "p95_latency_s", "value": 0.2, "label": "SLA"}]
    page = render_report(**mine, constraints=CONSTRAINTS, compare=other)
    doc = parse(page)
    fronts = [a for t, a in doc.starts if a.get("class") == "pt-front"]
    assert len(fronts) == len(mine["front"]) + len(other["front"])
    lines = [a for t, a in doc.starts if t == "polyline" and a.get("class") == "front-line"]
    assert len(lines) == 2  # one 2-D front per run
    hv = [a for t, a in doc.starts if t == "polyline" and a.get("class") == "hv-line"]
    assert len(hv) == 2
    assert "other-run: SLA 200 ms" in page and "SLA 50 ms" in page
    assert "compared with other-run" in page


def tiny_run(tmp_path: Path, name: str, seed: int) -> Path:
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f"""version = 1
kind = "run"
name = "{name}"
[workload]
models = ["rm-small"]
candidates = 64
keep = 16
qps = 20
queries = 100
warmup = 10
[space]
max_stages = 1
targets = ["cpu/cascadelake"]
engines = [1, 2, 4]
batch_split_log2 = [0, 0]
[objectives]
names = ["p95_latency_s", "power_w"]
[constraints]
sla_ms = 1000
[search]
trials = 5
sampler = "random"
strategy = "joint"
seed = {seed}
"""
    )
    out = tmp_path / name
    result = runner.invoke(app, ["optimize", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_cli_report_png_and_compare(tmp_path):
    a, b = tiny_run(tmp_path, "alpha", 0), tiny_run(tmp_path, "beta", 1)
    before = (b / "report.html").read_bytes()
    result = runner.invoke(app, ["report", str(a), "--png", "--compare", str(b)])
    assert result.exit_code == 0, result.output
    want = {"power_w-vs-p95_latency_s", "hypervolume"}
    for folder in (a / "plots", a / "plots" / "compare-beta"):
        names = {p.name for p in folder.iterdir() if p.is_file()}
        assert names == {f"{s}.{e}" for s in want for e in ("png", "svg")}, folder
        for stem in want:
            assert png_size(folder / f"{stem}.png")[0] > 500
            check_svg_file(folder / f"{stem}.svg")
    page = (a / "compare-beta.html").read_text(encoding="utf-8")
    parse(page)
    assert "compared with beta" in page and "SLA 1000 ms" in page
    assert (b / "report.html").read_bytes() == before  # the compared run is left as it was
    # the plain report names the metric and unit on every axis and draws the SLA
    report = (a / "report.html").read_text(encoding="utf-8")
    assert "p95 latency (ms, log) \u2014 lower is better" in report
    assert re.search(r"provisioned peak power \(W, log\)", report)
    assert 'class="constraint"' in report


def test_cli_report_refusals(tmp_path, monkeypatch):
    a = tiny_run(tmp_path, "alpha", 0)
    result = runner.invoke(app, ["report", str(a), "--feasible-only"])
    assert result.exit_code == 2 and "--png" in result.stderr
    result = runner.invoke(app, ["report", str(a), "--compare", str(tmp_path / "nope")])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert not (a / "plots").exists()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    result = runner.invoke(app, ["report", str(a), "--png"])
    assert result.exit_code == 1 and "codesign[plots]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (a / "plots").exists()
