"""A self-contained HTML report for a co-design search.

Everything is inline: CSS in a <style>, plots as SVG drawn here, and a few lines of JavaScript
that only make the plan table sortable (the page reads fine without it). No fonts, scripts or
images are fetched, so the file can be mailed, archived or opened from a run directory offline.
All text that comes from the caller is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from codesign.search.pareto import pareto_mask

__all__ = ["render_report"]

# Plot geometry (SVG user units = CSS pixels).
_W, _H = 440, 330
_ML, _MR, _MT, _MB = 72, 16, 14, 52

_COLORS = {
    "infeasible": "#b8b8b8",
    "feasible": "#4c78a8",
    "front": "#e4572e",
    "line": "#e4572e",
    "hv": "#2a9d8f",
    "axis": "#444",
    "grid": "#e6e6e6",
}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(v: float) -> str:
    """Compact number for ticks, tooltips and tables."""
    if v is None or not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        mant, exp = f"{v:.2e}".split("e")
        mant = mant.rstrip("0").rstrip(".")
        return f"{mant}e{int(exp)}"
    return f"{v:.4g}"


@dataclass
class _Axis:
    """Maps data values to pixels on a linear or log10 scale."""

    lo: float  # in transformed units (log10 when log)
    hi: float
    log: bool
    p0: float  # pixel of lo
    p1: float  # pixel of hi

    @classmethod
    def fit(cls, data: Iterable[float], *, log: bool, p0: float, p1: float) -> _Axis:
        vals = [math.log10(v) if log else v for v in data]
        if not vals:
            lo, hi = (0.0, 1.0)
        else:
            lo, hi = min(vals), max(vals)
        if hi - lo < 1e-12:
            pad = 0.5 if log else (abs(lo) * 0.1 or 1.0)
            lo, hi = lo - pad, hi + pad
        else:
            pad = (hi - lo) * 0.06
            lo, hi = lo - pad, hi + pad
        return cls(lo, hi, log, p0, p1)

    def t(self, v: float) -> float:
        return math.log10(v) if self.log else v

    def px(self, v: float) -> float:
        return self.p0 + (self.t(v) - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)

    def ticks(self) -> list[float]:
        if not self.log:
            return _nice_ticks(self.lo, self.hi)
        span = self.hi - self.lo
        if span >= 1.5:
            step = max(1, math.ceil(span / 6))
            first = math.ceil(self.lo / step) * step
            return [10.0**e for e in range(first, math.floor(self.hi) + 1, step)]
        out = []
        for e in range(math.floor(self.lo), math.ceil(self.hi) + 1):
            for m in (1, 2, 5):
                v = m * 10.0**e
                if self.lo <= math.log10(v) <= self.hi:
                    out.append(v)
        if len(out) >= 3:
            return out
        # Less than a factor of ~5 in range: linear-looking ticks placed on the log scale.
        return [v for v in _nice_ticks(10**self.lo, 10**self.hi) if v > 0]


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    raw = (hi - lo) / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    out = []
    v = start
    while v <= hi + step * 1e-9:
        out.append(0.0 if abs(v) < step * 1e-9 else round(v, 12))
        v += step
    return out


def _axis_title(obj: dict[str, Any]) -> str:
    label = obj.get("label") or obj["name"]
    unit = obj.get("unit")
    scale = "log" if obj.get("log") else ""
    inside = ", ".join(x for x in (unit, scale) if x)
    minimize = obj.get("direction", "minimize") == "minimize"
    better = "lower is better" if minimize else "higher is better"
    return f"{label}{f' ({inside})' if inside else ''} \u2014 {better}"


def _frame(x: _Axis, y: _Axis, x_title: str, y_title: str) -> list[str]:
    """Grid lines, ticks, tick labels and axis titles."""
    parts = []
    left, right, top, bottom = _ML, _W - _MR, _MT, _H - _MB
    for v in x.ticks():
        p = x.px(v)
        if left - 0.5 <= p <= right + 0.5:
            parts.append(
                f'<line x1="{p:.1f}" y1="{top}" x2="{p:.1f}" y2="{bottom}" '
                f'stroke="{_COLORS["grid"]}"/>'
            )
            parts.append(
                f'<line x1="{p:.1f}" y1="{bottom}" x2="{p:.1f}" y2="{bottom + 5}" '
                f'stroke="{_COLORS["axis"]}"/>'
            )
            parts.append(
                f'<text x="{p:.1f}" y="{bottom + 17}" text-anchor="middle" '
                f'class="tick">{_e(_fmt(v))}</text>'
            )
    for v in y.ticks():
        p = y.px(v)
        if top - 0.5 <= p <= bottom + 0.5:
            parts.append(
                f'<line x1="{left}" y1="{p:.1f}" x2="{right}" y2="{p:.1f}" '
                f'stroke="{_COLORS["grid"]}"/>'
            )
            parts.append(
                f'<line x1="{left - 5}" y1="{p:.1f}" x2="{left}" y2="{p:.1f}" '
                f'stroke="{_COLORS["axis"]}"/>'
            )
            parts.append(
                f'<text x="{left - 8}" y="{p + 4:.1f}" text-anchor="end" '
                f'class="tick">{_e(_fmt(v))}</text>'
            )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
        f'fill="none" stroke="{_COLORS["axis"]}"/>'
    )
    parts.append(
        f'<text x="{(left + right) / 2:.1f}" y="{_H - 10}" text-anchor="middle" '
        f'class="axis-title">{_e(x_title)}</text>'
    )
    cy = (top + bottom) / 2
    parts.append(
        f'<text x="14" y="{cy:.1f}" text-anchor="middle" class="axis-title" '
        f'transform="rotate(-90 14 {cy:.1f})">{_e(y_title)}</text>'
    )
    return parts


def _svg(body: list[str], *, css_class: str, label: str) -> str:
    return (
        f'<svg class="{_e(css_class)}" width="{_W}" '
        f'height="{_H}" viewBox="0 0 {_W} {_H}" role="img" aria-label="{_e(label)}">'
        f"<title>{_e(label)}</title>" + "".join(body) + "</svg>"
    )


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class _Point:
    number: int
    values: list[float]
    kind: str  # "front" | "feasible" | "infeasible"


def _points(trials: Sequence[dict[str, Any]], front: set[int], k: int) -> list[_Point]:
    out = []
    for t in trials:
        vals = t.get("values")
        if vals is None or len(vals) != k:
            continue
        if not t.get("feasible", False):
            kind = "infeasible"
        elif t.get("number") in front:
            kind = "front"
        else:
            kind = "feasible"
        out.append(
            _Point(
                int(t.get("number", -1)), [float(v) if _finite(v) else math.nan for v in vals], kind
            )
        )
    return out


def _tooltip(p: _Point, objectives: Sequence[dict[str, Any]]) -> str:
    vals = "; ".join(
        f"{o.get('label') or o['name']} = {_fmt(v)} {o.get('unit') or ''}".rstrip()
        for o, v in zip(objectives, p.values, strict=True)
    )
    return f"trial {p.number} ({p.kind}): {vals}"


def _pair_plot(points: list[_Point], objectives: Sequence[dict[str, Any]], i: int, j: int) -> str:
    oi, oj = objectives[i], objectives[j]
    log_i, log_j = bool(oi.get("log")), bool(oj.get("log"))

    def plottable(p: _Point) -> bool:
        a, b = p.values[i], p.values[j]
        return (
            math.isfinite(a) and math.isfinite(b) and (a > 0 or not log_i) and (b > 0 or not log_j)
        )

    shown = [p for p in points if plottable(p)]
    hidden = sum(1 for p in points if not plottable(p))
    x = _Axis.fit((p.values[i] for p in shown), log=log_i, p0=_ML, p1=_W - _MR)
    y = _Axis.fit((p.values[j] for p in shown), log=log_j, p0=_H - _MB, p1=_MT)
    body = _frame(x, y, _axis_title(oi), _axis_title(oj))

    for kind, radius in (("infeasible", 3.0), ("feasible", 3.5)):
        color = _COLORS[kind]
        style = (
            f'fill="none" stroke="{color}"'
            if kind == "infeasible"
            else f'fill="{color}" fill-opacity="0.55" stroke="{color}"'
        )
        for p in shown:
            if p.kind == kind:
                body.append(
                    f'<circle class="pt-{kind}" cx="{x.px(p.values[i]):.1f}" '
                    f'cy="{y.px(p.values[j]):.1f}" r="{radius}" {style}>'
                    f"<title>{_e(_tooltip(p, objectives))}</title></circle>"
                )

    # The 2-D front of this pair among feasible points, drawn as its attainment staircase.
    feas = [p for p in shown if p.kind != "infeasible"]
    if feas:
        dirs = [oi.get("direction", "minimize"), oj.get("direction", "minimize")]
        vals = np.array([[p.values[i], p.values[j]] for p in feas])
        mask = pareto_mask(vals, dirs)
        sign_x = 1.0 if dirs[0] == "minimize" else -1.0
        stair = sorted(
            {(float(a), float(b)) for a, b in vals[mask]},
            key=lambda v: (sign_x * v[0], v[1] * (1.0 if dirs[1] == "maximize" else -1)),
        )
        coords = []
        for n, (a, b) in enumerate(stair):
            if n:
                coords.append(f"{x.px(a):.1f},{y.px(stair[n - 1][1]):.1f}")
            coords.append(f"{x.px(a):.1f},{y.px(b):.1f}")
        if len(stair) > 1:
            body.append(
                f'<polyline class="front-line" points="{" ".join(coords)}" fill="none" '
                f'stroke="{_COLORS["line"]}" stroke-width="1.5" '
                f'stroke-dasharray="5 3"/>'
            )
    for p in shown:
        if p.kind == "front":
            body.append(
                f'<circle class="pt-front" cx="{x.px(p.values[i]):.1f}" '
                f'cy="{y.px(p.values[j]):.1f}" r="5" fill="{_COLORS["front"]}" '
                f'stroke="#7a2410" stroke-width="1">'
                f"<title>{_e(_tooltip(p, objectives))}</title></circle>"
            )
    if not shown:
        body.append(
            f'<text x="{(_ML + _W - _MR) / 2}" y="{(_MT + _H - _MB) / 2}" '
            f'text-anchor="middle" class="empty">no completed trials yet</text>'
        )
    label = f"{oj.get('label') or oj['name']} vs {oi.get('label') or oi['name']}"
    svg = _svg(body, css_class="pair-plot", label=label)
    note = (
        f'<p class="note">{hidden} point(s) not shown (non-finite, or not positive on a log '
        "axis).</p>"
        if hidden
        else ""
    )
    return f'<figure class="plot">{svg}<figcaption>{_e(label)}</figcaption>{note}</figure>'


def _hv_plot(hv_history: Sequence[float]) -> str:
    hv = [float(v) for v in hv_history if v is not None and math.isfinite(v)]
    n = len(hv)
    x = _Axis(0.0, max(n, 1) + 0.5, False, _ML, _W - _MR)
    peak = max(hv) if hv else 0.0
    top = min(1.0, _nice_ticks(0.0, peak * 1.1)[-1]) if peak > 0 else 1.0
    y = _Axis(0.0, max(top, peak) * 1.04, False, _H - _MB, _MT)
    body = _frame(x, y, "completed trials", "normalised hypervolume (ref = 1)")
    if hv:
        coords = [f"{x.px(0):.1f},{y.px(0):.1f}"]
        prev = 0.0
        for idx, v in enumerate(hv, start=1):
            coords.append(f"{x.px(idx):.1f},{y.px(prev):.1f}")
            coords.append(f"{x.px(idx):.1f},{y.px(v):.1f}")
            prev = v
        body.append(
            f'<polyline class="hv-line" points="{" ".join(coords)}" fill="none" '
            f'stroke="{_COLORS["hv"]}" stroke-width="2"/>'
        )
    else:
        body.append(
            f'<text x="{(_ML + _W - _MR) / 2}" y="{(_MT + _H - _MB) / 2}" '
            f'text-anchor="middle" class="empty">no completed trials yet</text>'
        )
    svg = _svg(body, css_class="hv-plot", label="hypervolume over completed trials")
    final = f": {_fmt(hv[-1])} after {n} trials" if hv else ""
    return (
        f'<figure class="plot">{svg}<figcaption>hypervolume of the feasible front after each '
        f"completed trial{_e(final)}</figcaption></figure>"
    )


def _measured_plot(runs: Sequence[dict[str, Any]]) -> str:
    """Measured (dots) against predicted (crosses) p50 and p95 latency over the offered load,
    for every ``codesign plan run`` of the run's plans."""
    rows = [r for r in runs if _finite(r.get("qps"))]
    values = [
        v
        for r in rows
        for v in (
            r.get("p50_latency_s"),
            r.get("p95_latency_s"),
            (r.get("predicted") or {}).get("p50_latency_s"),
            (r.get("predicted") or {}).get("p95_latency_s"),
        )
        if _finite(v) and v > 0
    ]
    x = _Axis.fit([float(r["qps"]) for r in rows], log=False, p0=_ML, p1=_W - _MR)
    y = _Axis.fit(values or [1e-3], log=True, p0=_H - _MB, p1=_MT)
    body = _frame(x, y, "offered load (QPS)", "latency (s)")
    marks = (
        ("p50_latency_s", _COLORS["feasible"]),
        ("p95_latency_s", _COLORS["front"]),
    )
    for r in rows:
        cx = x.px(float(r["qps"]))
        for key, color in marks:
            measured, predicted = r.get(key), (r.get("predicted") or {}).get(key)
            label = f"trial {r.get('trial')} at {_fmt(float(r['qps']))} QPS: {key}"
            if _finite(measured) and measured > 0:
                body.append(
                    f'<circle cx="{cx:.1f}" cy="{y.px(measured):.1f}" r="4.5" fill="{color}">'
                    f"<title>{_e(label)} measured {_e(_fmt(measured))}</title></circle>"
                )
            if _finite(predicted) and predicted > 0:
                py = y.px(predicted)
                body.append(
                    f'<path d="M{cx - 5:.1f},{py - 5:.1f}L{cx + 5:.1f},{py + 5:.1f}'
                    f'M{cx - 5:.1f},{py + 5:.1f}L{cx + 5:.1f},{py - 5:.1f}" '
                    f'stroke="{color}" stroke-width="2"><title>{_e(label)} predicted '
                    f"{_e(_fmt(predicted))}</title></path>"
                )
    svg = _svg(body, css_class="measured-plot", label="measured and predicted latency")
    return (
        f'<figure class="plot">{svg}<figcaption>codesign plan run: measured (dots) and predicted '
        "(crosses) latency, p50 blue and p95 orange</figcaption></figure>"
    )


def _measured_table(runs: Sequence[dict[str, Any]]) -> str:
    head = (
        "<tr><th>trial</th><th>QPS</th><th>p50 measured</th><th>p50 predicted</th>"
        "<th>p95 measured</th><th>p95 predicted</th><th>throughput</th></tr>"
    )
    body = []
    for r in sorted(runs, key=lambda r: (r.get("trial", 0), r.get("qps", 0))):
        pred = r.get("predicted") or {}
        body.append(
            "<tr>"
            + "".join(
                _cell(v)
                for v in (
                    r.get("trial"),
                    r.get("qps"),
                    r.get("p50_latency_s"),
                    pred.get("p50_latency_s"),
                    r.get("p95_latency_s"),
                    pred.get("p95_latency_s"),
                    r.get("throughput_qps"),
                )
            )
            + "</tr>"
        )
    return f'<table class="plans"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def _cell(v: Any) -> str:
    if v is None:
        return "<td></td>"
    if _finite(v):
        return f'<td class="num" data-sort="{float(v)!r}">{_e(_fmt(float(v)))}</td>'
    if isinstance(v, dict | list | tuple):
        v = json.dumps(v, sort_keys=True, default=str)
    return f"<td>{_e(v)}</td>"


def _plan_table(plans: Sequence[dict[str, Any]], objectives: Sequence[dict[str, Any]]) -> str:
    if not plans:
        return '<p class="empty">No feasible Pareto-optimal plan yet.</p>'
    heads = ["trial", "plan", "summary"] + [
        (o.get("label") or o["name"])
        + (f" [{o['unit']}]" if o.get("unit") else "")
        + (" \u2193" if o.get("direction", "minimize") == "minimize" else " \u2191")
        for o in objectives
    ]
    # a plan's "fallbacks": its stages whose cost model left ops to the analytical one, in words
    fell = any(p.get("fallbacks") for p in plans)
    if fell:
        heads.append("cost-model fallback")
    rows = []
    for p in plans:
        file = p.get("file")
        link = f'<td><a href="{_e(file)}">{_e(file)}</a></td>' if file else "<td></td>"
        objs = p.get("objectives") or {}
        cells = [_cell(p.get("trial")), link, _cell(p.get("summary", ""))]
        cells += [_cell(objs.get(o["name"])) for o in objectives]
        if fell:
            cells.append(_cell("; ".join(p.get("fallbacks") or ())))
        rows.append('<tr class="plan-row">' + "".join(cells) + "</tr>")
    head = "".join(f'<th scope="col" title="click to sort">{_e(h)}</th>' for h in heads)
    return (
        f'<table class="sortable plans"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _kv_table(items: Iterable[tuple[Any, Any]], css_class: str) -> str:
    rows = []
    for k, v in items:
        if isinstance(v, dict | list | tuple):
            v = json.dumps(v, sort_keys=True, default=str)
        rows.append(f'<tr><th scope="row">{_e(k)}</th><td>{_e(v)}</td></tr>')
    return f'<table class="{css_class}"><tbody>{"".join(rows)}</tbody></table>'


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px;
       color: #222; background: #fff; max-width: 1400px; }
h1 { font-size: 1.5em; margin: 0 0 12px; } h2 { font-size: 1.15em; margin: 28px 0 8px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.meta th, table.summary th { background: #f6f6f6; font-weight: 600; }
table.plans thead th { background: #f0f0f0; cursor: pointer; user-select: none; }
table.plans thead th.asc::after { content: " \\25B2"; }
table.plans thead th.desc::after { content: " \\25BC"; }
table.plans tbody tr:nth-child(even) { background: #fafafa; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
figure.plot { margin: 0; border: 1px solid #e3e3e3; padding: 4px; width: 440px; }
figcaption { font-size: 12px; color: #555; text-align: center; }
svg text.tick { font-size: 11px; fill: #333; }
svg text.axis-title { font-size: 12px; fill: #111; }
svg text.empty, p.empty { fill: #888; color: #888; font-style: italic; }
p.note { font-size: 11px; color: #a33; margin: 2px 0; }
.legend { font-size: 13px; margin: 4px 0 10px; }
.legend span { display: inline-block; margin-right: 16px; }
.sw { display: inline-block; width: 11px; height: 11px; border-radius: 50%;
      vertical-align: -1px; margin-right: 5px; }
header { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
"""

_JS = """
(function () {
  function key(td) {
    var s = td.getAttribute('data-sort');
    if (s !== null) { return parseFloat(s); }
    return td.textContent.trim().toLowerCase();
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('thead th').forEach(function (th, col) {
      th.addEventListener('click', function () {
        var asc = !th.classList.contains('asc');
        table.querySelectorAll('thead th').forEach(function (h) {
          h.classList.remove('asc', 'desc');
        });
        th.classList.add(asc ? 'asc' : 'desc');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (typeof x === 'number' && typeof y === 'number') { return asc ? x - y : y - x; }
          x = String(x); y = String(y);
          return asc ? x.localeCompare(y) : y.localeCompare(x);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""


def render_report(
    *,
    title: str,
    objectives: list[dict[str, Any]],
    trials: list[dict[str, Any]],
    front: list[int],
    hv_history: list[float],
    plans: list[dict[str, Any]],
    meta: dict[str, Any],
    measured: Sequence[dict[str, Any]] = (),
) -> str:
    """The whole report as one HTML document.

    ``objectives``: ``{"name", "direction", "label", "unit", "log"}`` per objective, in the order
    of each trial's ``values``. ``trials``: ``{"number", "state", "values" (or None), "feasible",
    ...}``. ``front``: trial numbers on the feasible Pareto front. ``hv_history``: normalised
    hypervolume after each completed trial. ``plans``: ``{"trial", "file", "summary",
    "objectives": {name: value}}`` per front plan, optionally ``"fallbacks"``: lines saying which
    stages' cost model left ops to the analytical one (a column then shows them). ``meta``:
    shown as a key/value table.
    ``measured``: the results ``codesign plan run`` wrote to ``RUN_DIR/measured/`` (a plot and
    a table of measured against predicted latency when there are any).

    The page has one scatter plot per pair of objectives (infeasible points hollow grey, feasible
    blue, global front orange; the dashed staircase is the 2-D front of that pair among feasible
    points), the hypervolume-over-trials plot, the plan table and the meta table.
    """
    k = len(objectives)
    front_set = {int(n) for n in front}
    points = _points(trials, front_set, k)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]

    states = Counter(str(t.get("state", "?")) for t in trials)
    summary = [
        ("trials", len(trials)),
        *sorted(states.items()),
        ("with objective values", len(points)),
        ("feasible", sum(1 for p in points if p.kind != "infeasible")),
        ("on the Pareto front", len(front_set)),
    ]
    if hv_history:
        summary.append(("final hypervolume", _fmt(float(hv_history[-1]))))

    legend = (
        '<div class="legend">'
        f'<span><i class="sw" style="background:{_COLORS["front"]}"></i>Pareto front (all '
        "objectives)</span>"
        f'<span><i class="sw" style="background:{_COLORS["feasible"]};opacity:.6"></i>feasible'
        "</span>"
        f'<span><i class="sw" style="border:1.5px solid {_COLORS["infeasible"]}"></i>infeasible'
        "</span>"
        f'<span style="color:{_COLORS["line"]}">- - -</span> <span>2-D front of the pair</span>'
        "<span>Hover a point for its trial and values.</span></div>"
    )
    pair_html = "".join(_pair_plot(points, objectives, i, j) for i, j in pairs)
    if not pairs:
        pair_html = '<p class="empty">Fewer than two objectives: no pair to plot.</p>'
    objective_rows = [
        (
            o.get("label") or o["name"],
            f"{o['name']}: {o.get('direction', 'minimize')}"
            + (f", unit {o['unit']}" if o.get("unit") else "")
            + (", log scale" if o.get("log") else ""),
        )
        for o in objectives
    ]

    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{_e(title)}</h1>",
            "<header>",
            f"<section><h2>Run</h2>{_kv_table(meta.items(), 'meta')}</section>",
            f"<section><h2>Trials</h2>{_kv_table(summary, 'summary')}</section>",
            f"<section><h2>Objectives</h2>{_kv_table(objective_rows, 'summary')}</section>",
            "</header>",
            "<h2>Pareto front: every pair of objectives</h2>",
            legend,
            f'<div class="plots">{pair_html}</div>',
            "<h2>Hypervolume</h2>",
            f'<div class="plots">{_hv_plot(hv_history)}</div>',
            f"<h2>Plans on the front ({len(plans)})</h2>",
            _plan_table(plans, objectives),
            *(
                [
                    f"<h2>Plans run on this machine ({len(measured)})</h2>",
                    f'<div class="plots">{_measured_plot(measured)}</div>',
                    _measured_table(measured),
                ]
                if measured
                else []
            ),
            f"<script>{_JS}</script>",
            "</body></html>",
            "",
        ]
    )
