"""report.html: self-contained, one plot per objective pair, escaped, renders in a browser."""

from __future__ import annotations

import html
import json
import math
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from codesign.report import render_report
from codesign.report.svg import COLORS, SERIES
from codesign.search.pareto import hypervolume_history, pareto_mask

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}

OBJ3 = [
    {"name": "quality", "direction": "maximize", "label": "NDCG@10", "unit": "", "log": False},
    {
        "name": "p95_latency_s",
        "direction": "minimize",
        "label": "p95 latency",
        "unit": "s",
        "log": True,
    },
    {"name": "area_mm2", "direction": "minimize", "label": "area", "unit": "mm2", "log": True},
]


def synthetic_run(objectives: list[dict], n: int = 60, seed: int = 0) -> dict:
    """A plausible study: latency and area over decades, quality in [0.6, 0.95], failures."""
    rng = np.random.default_rng(seed)
    k = len(objectives)
    raw = np.column_stack(
        [
            rng.uniform(0.6, 0.95, n),
            10 ** rng.uniform(-3.5, 0, n),
            10 ** rng.uniform(0, 2.5, n),
            10 ** rng.uniform(-4, -1, n),
        ]
    )[:, :k]
    raw[:, 0] = np.clip(raw[:, 0] + 0.05 * np.log10(raw[:, 1]) / 3.5, 0, 1)  # a trade-off
    failed = rng.uniform(size=n) < 0.1
    feasible = (rng.uniform(size=n) < 0.75) & ~failed
    dirs = [o["direction"] for o in objectives]
    mask = np.zeros(n, dtype=bool)
    mask[feasible] = pareto_mask(raw[feasible], dirs)
    trials = [
        {
            "number": i,
            "state": "FAIL" if failed[i] else "COMPLETE",
            "values": None if failed[i] else raw[i].tolist(),
            "feasible": bool(feasible[i]),
            "params": {"stage1.items": 4096},
            "user_attrs": {},
        }
        for i in range(n)
    ]
    done = ~failed
    hv = hypervolume_history(
        raw[done],
        feasible[done],
        dirs,
        lower=[1.0, 1e-4, 0.1, 1e-5][:k],
        upper=[0.0, 10.0, 1000.0, 1.0][:k],
        log=[o["log"] for o in objectives],
    )
    front = [i for i in range(n) if mask[i]]
    plans = [
        {
            "trial": i,
            "file": f"plans/plan-{i:05d}.json",
            "summary": f"S:rm-small 4096>512 cpu/cascadelake x{i % 16 + 1} -> M:rm-med on acc",
            "objectives": {o["name"]: float(raw[i, j]) for j, o in enumerate(objectives)},
        }
        for i in front
    ]
    return {
        "title": "codesign: demo",
        "objectives": objectives,
        "trials": trials,
        "front": front,
        "hv_history": hv.tolist(),
        "plans": plans,
        "meta": {
            "run": "demo",
            "seed": seed,
            "sampler": "tpe",
            "storage": "sqlite:///x.db",
            "n_trials": n,
            "feasible": int(feasible.sum()),
            "versions": {"optuna": "5.0.0"},
        },
    }


class Checker(HTMLParser):
    """Collects start tags and checks that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.starts: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.starts.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.starts.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert not checker.errors and not checker.stack, (checker.errors, checker.stack)
    return checker


@pytest.mark.parametrize("k", [2, 3, 4])
def test_one_plot_per_pair_plus_hypervolume(k):
    objectives = [
        *OBJ3,
        {"name": "energy_j", "direction": "minimize", "label": "energy", "unit": "J", "log": True},
    ][:k]
    run = synthetic_run(objectives)
    page = render_report(**run)
    doc = parse(page)
    svgs = [a.get("class") for t, a in doc.starts if t == "svg"]
    assert svgs.count("pair-plot zplot") == math.comb(k, 2)
    assert svgs.count("hv-plot zplot") == 1 and len(svgs) == math.comb(k, 2) + 1
    for i, j in combinations(range(k), 2):
        assert f"{objectives[j]['label']} vs {objectives[i]['label']}" in page
    # Every plan is a row; front points are highlighted, one circle per (front trial, pair).
    rows = [a for t, a in doc.starts if t == "tr" and a.get("class") == "plan-row"]
    assert len(rows) == len(run["plans"]) > 0
    fronts = [a for t, a in doc.starts if a.get("class") == "pt-front"]
    assert len(fronts) == len(run["front"]) * math.comb(k, 2)
    infeasible = sum(1 for t in run["trials"] if t["values"] is not None and not t["feasible"])
    assert infeasible > 0
    marks = [a for t, a in doc.starts if a.get("class") == "pt-infeasible"]
    assert len(marks) == infeasible * math.comb(k, 2)
    assert any(t == "polyline" and a.get("class") == "hv-line" for t, a in doc.starts)
    # latency is shown in ms, each axis names its metric, unit and direction
    assert "p95 latency (ms, log) \u2014 lower is better" in page
    assert "NDCG@10 \u2014 higher is better" in page
    assert "higher is better" in page


def test_self_contained():
    page = render_report(**synthetic_run(OBJ3))
    doc = parse(page)
    assert "http://" not in page and "https://" not in page
    for tag, attrs in doc.starts:
        assert tag not in {"link", "img", "iframe", "object", "embed"}
        assert not (tag == "script" and "src" in attrs)
    assert "plans/plan-" in page  # plan links are relative to the run directory


def test_malicious_text_is_escaped():
    evil = '<script>alert("x")</script>'
    objectives = [dict(OBJ3[0], label=evil, unit='"><img src=x onerror=alert(1)>'), OBJ3[1]]
    run = synthetic_run(objectives)
    run["title"] = f"<b>{evil}</b>"
    run["meta"][evil] = evil
    run["plans"][0]["summary"] = evil
    run["plans"][0]["file"] = 'x" onclick="alert(1)'
    run["trials"][0]["state"] = evil
    page = render_report(**run)
    doc = parse(page)
    assert evil not in page and "<img" not in page and "<b>" not in page
    assert 'onclick="alert' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    scripts = [a for t, a in doc.starts if t == "script" and a.get("type") != "application/json"]
    assert len(scripts) == 1  # only our own script (the other one is the plot data, JSON)
    assert evil in "".join(doc.text)  # the text survives, as text


def test_empty_and_degenerate_runs_still_render():
    page = render_report(
        title="empty", objectives=OBJ3[:2], trials=[], front=[], hv_history=[], plans=[], meta={}
    )
    doc = parse(page)
    assert sum(1 for t, _ in doc.starts if t == "svg") == 2
    assert "no completed trials yet" in page
    one = [
        {
            "number": 0,
            "state": "COMPLETE",
            "values": [0.8, 0.01],
            "feasible": True,
            "params": {},
            "user_attrs": {},
        },
        {
            "number": 1,
            "state": "COMPLETE",
            "values": [0.7, -1.0],
            "feasible": True,
            "params": {},
            "user_attrs": {},
        },
    ]
    page = render_report(
        title="one",
        objectives=OBJ3[:2],
        trials=one,
        front=[0],
        hv_history=[0.3, 0.3],
        plans=[],
        meta={"seed": 0},
    )
    parse(page)
    assert "1 point(s) not shown" in page  # a non-positive value on a log axis


#: A headless Chromium: Debian's chromium or chromium-headless-shell, or Google Chrome.
CHROMIUM = next(
    (
        p
        for name in (
            "chromium",
            "chromium-headless-shell",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        )
        if (p := shutil.which(name))
    ),
    None,
)
NO_CHROMIUM = "no headless Chromium (apt-get install chromium-headless-shell, or chromium)"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def chromium(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / ('profile-' + name)}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def share_of(rgb: np.ndarray, hex_color: str, tol: float = 0.06) -> float:
    """Fraction of pixels within ``tol`` (per channel, 0..1) of a colour."""
    want = np.array([int(hex_color[k : k + 2], 16) / 255 for k in (1, 3, 5)])
    return float(np.mean(np.all(np.abs(rgb[..., :3] - want) <= tol, axis=-1)))


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_renders_in_headless_chromium(tmp_path):
    run = synthetic_run(OBJ3)
    run["constraints"] = [
        {"objective": "p95_latency_s", "value": 0.05, "label": "SLA"},
        {"objective": "area_mm2", "value": 30.0, "label": "area budget"},
    ]
    page = tmp_path / "report.html"
    page.write_text(render_report(**run), encoding="utf-8")
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")

    def shoot(src: Path, name: str) -> bytes:
        png = tmp_path / name
        proc = chromium(tmp_path, name, f"--screenshot={png}", "--window-size=1280,2000",
                        src.as_uri())  # fmt: skip
        assert png.exists(), proc.stderr[-2000:]
        return png.read_bytes()

    shot = shoot(page, "report.png")
    assert png_size(shot) == (1280, 2000)
    # A blank page compresses to almost nothing; plots, text and tables do not.
    empty = shoot(blank, "blank.png")
    assert len(shot) > 20_000 and len(shot) > 5 * len(empty), (len(shot), len(empty))
    image = pytest.importorskip("matplotlib.image")
    rgb = image.imread(tmp_path / "report.png")
    # the front's markers and the constraint lines are drawn (their colours cover pixels)
    assert share_of(rgb, SERIES[0]["front"]) > 1e-4
    assert share_of(rgb, COLORS["constraint"]) > 1e-4
    assert share_of(image.imread(tmp_path / "blank.png"), COLORS["constraint"]) == 0


# Drives the page's script as a user would: untick "show infeasible points", then drag a box on
# the first pair plot; records what changed on <body data-probe>.
PROBE = """<script>
(function () {
  var svg = document.querySelector('svg.pair-plot');
  function ticks() {
    return Array.prototype.map.call(svg.querySelectorAll('g.ticks text'),
      function (t) { return t.textContent; }).join('|');
  }
  var out = {ticks0: ticks()};
  var box = document.getElementById('show-infeasible');
  box.checked = false;
  box.dispatchEvent(new Event('change'));
  out.hidden = getComputedStyle(svg.querySelector('.pt-infeasible')).display;
  out.ticks1 = ticks();
  out.range1 = svg.range;
  var r = svg.getBoundingClientRect();
  function ev(type, x, y) {
    (type === 'mousedown' ? svg : window).dispatchEvent(new MouseEvent(type,
      {clientX: r.left + x, clientY: r.top + y, bubbles: true}));
  }
  ev('mousedown', 120, 120); ev('mousemove', 300, 220); ev('mouseup', 300, 220);
  out.range2 = svg.range;
  out.ticks2 = ticks();
  document.body.setAttribute('data-probe', JSON.stringify(out));
})();
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_hide_infeasible_and_zoom_in_headless_chromium(tmp_path):
    run = synthetic_run(OBJ3[:2])
    # an infeasible outlier far off: with it hidden, the axes fit the feasible points
    run["trials"].append(
        {"number": 999, "state": "COMPLETE", "values": [0.1, 1e4], "feasible": False}
    )
    page = render_report(**run)
    doc = parse(page)
    svg = next(a for t, a in doc.starts if t == "svg" and "pair-plot" in a["class"])
    every = [float(v) for v in svg["data-all"].split(",")]
    feasible = [float(v) for v in svg["data-feasible"].split(",")]
    # log10 of the outlier's 1e7 ms against feasible latencies of at most 1e3 ms
    assert every[0] < 0.1 < feasible[0] and every[3] > 7 > 4 > feasible[3]
    src = tmp_path / "probe.html"
    src.write_text(page.replace("</body>", PROBE), encoding="utf-8")
    proc = chromium(tmp_path, "probe", "--window-size=1280,2000", "--dump-dom", src.as_uri())
    dumped = proc.stdout
    start = dumped.index('data-probe="') + len('data-probe="')
    probe = json.loads(html.unescape(dumped[start : dumped.index('"', start)]))
    assert probe["hidden"] == "none"
    assert probe["range1"] == pytest.approx(feasible)  # the checkbox refits the axes
    assert probe["ticks1"] != probe["ticks0"]
    x0, x1, y0, y1 = probe["range2"]  # the dragged box, inside the previous view
    assert feasible[0] < x0 < x1 < feasible[1] and feasible[2] < y0 < y1 < feasible[3]
    assert (x1 - x0) < 0.6 * (feasible[1] - feasible[0])
    assert probe["ticks2"] != probe["ticks1"]
