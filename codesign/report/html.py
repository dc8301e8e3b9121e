"""A self-contained HTML report for a co-design search.

Everything is inline: CSS in a <style>, plots as SVG (:mod:`codesign.report.svg`), the plot
data as JSON (:mod:`codesign.report.data`), and plain JavaScript that sorts the plan table,
hides infeasible points (axes then fit the feasible ones), zooms a plot to a dragged box and
saves a plot as SVG or PNG. The page reads fine without the script. No fonts, scripts or images
are fetched, so the file can be mailed, archived or opened from a run directory offline. All
text that comes from the caller is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from codesign.report.data import embed
from codesign.report.svg import (
    MB,
    ML,
    MR,
    SERIES,
    H,
    Series,
    W,
    constraint_text,
    fmt,
    hv_plot,
    measured_plot,
    pair_plot,
    points_of,
)

__all__ = ["render_report"]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_fmt = fmt


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


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
figure.plot svg.zplot { cursor: crosshair; }
figcaption { font-size: 12px; color: #555; text-align: center; }
p.empty { color: #888; font-style: italic; }
p.note { font-size: 11px; color: #a33; margin: 2px 0; }
.tools { text-align: right; font-size: 11px; }
.tools button { font-size: 11px; padding: 0 6px; margin-left: 4px; }
.controls { font-size: 13px; margin: 4px 0 10px; }
.controls label { margin-right: 18px; }
body.hide-infeasible .pt-infeasible { display: none; }
header { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
"""

_JS_TEMPLATE = """
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

  // Plots: the same tick rules and number format as codesign/report/svg.py.
  var W = %(W)d, H = %(H)d, ML = %(ML)d, MR = %(MR)d, MB = %(MB)d;
  function niceTicks(lo, hi) {
    var raw = (hi - lo) / 5, mag = Math.pow(10, Math.floor(Math.log10(raw))), step = 10 * mag;
    [1, 2, 2.5, 5, 10].some(function (m) { if (m * mag >= raw) { step = m * mag; return true; }
      return false; });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Math.abs(v) < step * 1e-9 ? 0 : +v.toPrecision(12));
    }
    return out;
  }
  function ticks(lo, hi, log) {
    if (!log) { return niceTicks(lo, hi); }
    var out = [], e, span = hi - lo;
    if (span >= 1.5) {
      var step = Math.max(1, Math.ceil(span / 6));
      for (e = Math.ceil(lo / step) * step; e <= Math.floor(hi); e += step) {
        out.push(Math.pow(10, e));
      }
      return out;
    }
    for (e = Math.floor(lo); e <= Math.ceil(hi); e++) {
      [1, 2, 5].forEach(function (m) {
        var v = m * Math.pow(10, e), t = Math.log10(v);
        if (t >= lo && t <= hi) { out.push(v); }
      });
    }
    if (out.length >= 3) { return out; }
    return niceTicks(Math.pow(10, lo), Math.pow(10, hi)).filter(function (v) { return v > 0; });
  }
  function fmt(v) {
    if (!isFinite(v)) { return String(v); }
    if (v === 0) { return '0'; }
    var a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) {
      var s = v.toExponential(2).split('e');
      return s[0].replace(/\\.?0+$/, '') + 'e' + parseInt(s[1], 10);
    }
    return String(+v.toPrecision(4));
  }
  function tf(v, log) { return log ? Math.log10(v) : v; }
  function draw(svg, r) {
    var lx = svg.getAttribute('data-lx') === '1', ly = svg.getAttribute('data-ly') === '1';
    var top = +svg.getAttribute('data-top'), left = ML, right = W - MR, bottom = H - MB;
    svg.range = r;
    function X(v) { return left + (tf(v, lx) - r[0]) / (r[1] - r[0]) * (right - left); }
    function Y(v) { return bottom + (tf(v, ly) - r[2]) / (r[3] - r[2]) * (top - bottom); }
    svg.querySelectorAll('[data-x]').forEach(function (el) {
      el.setAttribute('transform', 'translate(' + X(+el.getAttribute('data-x')).toFixed(1) +
        ' ' + Y(+el.getAttribute('data-y')).toFixed(1) + ')');
    });
    svg.querySelectorAll('[data-xy]').forEach(function (el) {
      el.setAttribute('points', JSON.parse(el.getAttribute('data-xy')).map(function (p) {
        return X(p[0]).toFixed(1) + ',' + Y(p[1]).toFixed(1);
      }).join(' '));
    });
    svg.querySelectorAll('[data-axis]').forEach(function (el) {
      var v = +el.getAttribute('data-v'), onx = el.getAttribute('data-axis') === 'x';
      var p = onx ? X(v) : Y(v);
      if (el.tagName === 'line') {
        el.setAttribute(onx ? 'x1' : 'y1', p.toFixed(1));
        el.setAttribute(onx ? 'x2' : 'y2', p.toFixed(1));
      } else if (onx) {
        var end = p > (left + right) / 2;
        el.setAttribute('x', (end ? p - 4 : p + 4).toFixed(1));
        el.setAttribute('text-anchor', end ? 'end' : 'start');
      } else { el.setAttribute('y', (p - 14 < top ? p + 12 : p - 4).toFixed(1)); }
    });
    var g = svg.querySelector('g.ticks'), NS = svg.namespaceURI;
    while (g.firstChild) { g.removeChild(g.firstChild); }
    function add(tag, attrs, text) {
      var el = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
      if (text !== undefined) { el.textContent = text; }
      g.appendChild(el);
    }
    ticks(r[0], r[1], lx).forEach(function (v) {
      var p = X(v);
      if (p < left - 0.5 || p > right + 0.5) { return; }
      add('line', {x1: p, y1: top, x2: p, y2: bottom, stroke: '#e6e6e6'});
      add('line', {x1: p, y1: bottom, x2: p, y2: bottom + 5, stroke: '#444'});
      add('text', {x: p, y: bottom + 17, 'text-anchor': 'middle', 'font-size': 11,
        fill: '#333'}, fmt(v));
    });
    ticks(r[2], r[3], ly).forEach(function (v) {
      var p = Y(v);
      if (p < top - 0.5 || p > bottom + 0.5) { return; }
      add('line', {x1: left, y1: p, x2: right, y2: p, stroke: '#e6e6e6'});
      add('line', {x1: left - 5, y1: p, x2: left, y2: p, stroke: '#444'});
      add('text', {x: left - 8, y: p + 4, 'text-anchor': 'end', 'font-size': 11,
        fill: '#333'}, fmt(v));
    });
  }
  function hiding() { return document.body.classList.contains('hide-infeasible'); }
  function reset(svg) {
    draw(svg, svg.getAttribute(hiding() ? 'data-feasible' : 'data-all').split(',').map(Number));
  }
  function local(svg, e) {
    var pt = svg.createSVGPoint();
    pt.x = e.clientX; pt.y = e.clientY;
    return pt.matrixTransform(svg.getScreenCTM().inverse());
  }
  function source(svg) {
    var copy = svg.cloneNode(true);
    if (hiding()) {
      copy.querySelectorAll('.pt-infeasible').forEach(function (el) { el.remove(); });
    }
    return new XMLSerializer().serializeToString(copy);
  }
  function save(blob, name) {
    var a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 1000);
  }
  document.querySelectorAll('svg.zplot').forEach(function (svg) {
    var start = null, box = null;
    function clamp(p) {
      var top = +svg.getAttribute('data-top');
      return {x: Math.min(Math.max(p.x, ML), W - MR), y: Math.min(Math.max(p.y, top), H - MB)};
    }
    svg.addEventListener('mousedown', function (e) {
      var p = local(svg, e), top = +svg.getAttribute('data-top');
      if (p.x < ML || p.x > W - MR || p.y < top || p.y > H - MB) { return; }
      e.preventDefault();
      start = p;
      box = document.createElementNS(svg.namespaceURI, 'rect');
      box.setAttribute('class', 'zoom-box');
      box.setAttribute('fill', '#4c78a8');
      box.setAttribute('fill-opacity', '0.12');
      box.setAttribute('stroke', '#4c78a8');
      svg.appendChild(box);
    });
    window.addEventListener('mousemove', function (e) {
      if (!start) { return; }
      var p = clamp(local(svg, e));
      box.setAttribute('x', Math.min(start.x, p.x));
      box.setAttribute('y', Math.min(start.y, p.y));
      box.setAttribute('width', Math.abs(p.x - start.x));
      box.setAttribute('height', Math.abs(p.y - start.y));
    });
    window.addEventListener('mouseup', function (e) {
      if (!start) { return; }
      var p = clamp(local(svg, e)), s = start, r = svg.range;
      start = null;
      box.remove();
      if (Math.abs(p.x - s.x) < 4 || Math.abs(p.y - s.y) < 4) { return; }
      if (!r) { r = svg.getAttribute(hiding() ? 'data-feasible' : 'data-all')
        .split(',').map(Number); }
      var top = +svg.getAttribute('data-top'), left = ML, right = W - MR, bottom = H - MB;
      function fx(px) { return r[0] + (px - left) / (right - left) * (r[1] - r[0]); }
      function fy(py) { return r[2] + (bottom - py) / (bottom - top) * (r[3] - r[2]); }
      draw(svg, [fx(Math.min(s.x, p.x)), fx(Math.max(s.x, p.x)),
                 fy(Math.max(s.y, p.y)), fy(Math.min(s.y, p.y))]);
    });
    svg.addEventListener('dblclick', function () { reset(svg); });
    var tools = svg.closest('figure').querySelector('.tools');
    if (!tools) { return; }
    tools.hidden = false;
    var name = svg.getAttribute('data-name');
    tools.querySelector('[data-act=reset]').addEventListener('click', function () {
      reset(svg);
    });
    tools.querySelector('[data-act=svg]').addEventListener('click', function () {
      save(new Blob([source(svg)], {type: 'image/svg+xml'}), name + '.svg');
    });
    tools.querySelector('[data-act=png]').addEventListener('click', function () {
      var img = new Image();
      img.onload = function () {
        var k = 3, c = document.createElement('canvas');
        c.width = W * k; c.height = H * k;
        var ctx = c.getContext('2d');
        ctx.fillStyle = '#fff';
        ctx.fillRect(0, 0, c.width, c.height);
        ctx.drawImage(img, 0, 0, c.width, c.height);
        c.toBlob(function (b) { save(b, name + '.png'); });
      };
      img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(source(svg));
    });
  });
  var box = document.getElementById('show-infeasible');
  if (box) {
    box.parentNode.hidden = false;
    box.addEventListener('change', function () {
      document.body.classList.toggle('hide-infeasible', !box.checked);
      document.querySelectorAll('svg.zplot').forEach(reset);
    });
  }
})();
"""
_JS = (
    _JS_TEMPLATE.replace("%(W)d", str(W))
    .replace("%(H)d", str(H))
    .replace("%(ML)d", str(ML))
    .replace("%(MR)d", str(MR))
    .replace("%(MB)d", str(MB))
)


def _figure(svg: str, caption: str, notes: Sequence[str] = ()) -> str:
    tools = (
        '<div class="tools" hidden><button type="button" data-act="reset" title="or double-click '
        'the plot">reset zoom</button><button type="button" data-act="svg">SVG</button>'
        '<button type="button" data-act="png">PNG</button></div>'
    )
    note = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    return f'<figure class="plot">{tools}{svg}<figcaption>{_e(caption)}</figcaption>{note}</figure>'


def _name(data: dict[str, Any], fallback: str) -> str:
    return str(data.get("name") or (data.get("meta") or {}).get("run") or fallback)


def _series(name: str, data: dict[str, Any]) -> Series:
    objectives = data.get("objectives") or []
    return Series(
        name=name,
        points=points_of(data.get("trials") or [], data.get("front") or [], objectives),
        objectives={o["name"]: o for o in objectives},
    )


def runs_of(
    data: dict[str, Any], compare: dict[str, Any] | None = None
) -> tuple[list[Series], list[dict[str, Any]]]:
    """The runs on the plots (this one, then ``compare``'s) and the constraint lines: this
    run's, plus the compared run's that differ, labelled with its name."""
    constraints = list(data.get("constraints") or ())
    series = [_series(_name(data, "this run"), data)]
    if compare is not None:
        other = _name(compare, "compared run")
        if other == series[0].name:
            other += " (compared)"
        series.append(_series(other, compare))
        mine = {(c["objective"], c["value"]) for c in constraints}
        constraints += [
            {**c, "label": f"{other}: {c.get('label', 'constraint')}"}
            for c in compare.get("constraints") or ()
            if (c["objective"], c["value"]) not in mine
        ]
    return series, constraints


def plot_set(
    data: dict[str, Any], compare: dict[str, Any] | None = None, *, feasible_only: bool = False
) -> list[tuple[str, str, str, list[str]]]:
    """Every plot of a report as ``(file stem, SVG, caption, notes)``: one per pair of
    objectives, then the hypervolume over trials; with ``compare``, the other run's points,
    fronts and hypervolume drawn in the same axes. ``feasible_only``: pair plots without
    infeasible points, their axes fitted to the rest."""
    objectives = data["objectives"]
    series, constraints = runs_of(data, compare)
    k = len(objectives)
    out = []
    for i in range(k):
        for j in range(i + 1, k):
            svg, hidden = pair_plot(
                series, objectives, i, j, constraints, uid=f"p{i}-{j}", feasible_only=feasible_only
            )
            oi, oj = objectives[i], objectives[j]
            caption = f"{oj.get('label') or oj['name']} vs {oi.get('label') or oi['name']}"
            notes = []
            if hidden:
                notes.append(
                    f"{hidden} point(s) not shown (non-finite, or not positive on a log axis)."
                )
            for s in series[1:]:
                for o in (oi, oj):
                    theirs = s.objectives.get(o["name"])
                    if theirs is None:
                        notes.append(f"{s.name} has no objective {o['name']}: not drawn here.")
                    elif (theirs.get("label") or "") != (o.get("label") or ""):
                        notes.append(
                            f"{o['name']}: {o.get('label')} here, {theirs.get('label')} in "
                            f"{s.name}."
                        )
            out.append((f"{oj['name']}-vs-{oi['name']}", svg, caption, notes))
    histories = [(series[0].name, data.get("hv_history") or [])]
    if compare is not None:
        histories.append((series[1].name, compare.get("hv_history") or []))
    hv = [float(v) for v in histories[0][1] if v is not None and math.isfinite(v)]
    caption = "hypervolume of the feasible front after each completed trial" + (
        f": {_fmt(hv[-1])} after {len(hv)} trials" if hv and compare is None else ""
    )
    notes = (
        ["Each run's hypervolume is normalised between its own configuration's bounds."]
        if compare is not None
        else []
    )
    out.append(("hypervolume", hv_plot(histories, uid="hv"), caption, notes))
    return out


def _summary(data: dict[str, Any]) -> list[tuple[str, Any]]:
    trials = data.get("trials") or []
    points = points_of(trials, data.get("front") or [], data.get("objectives") or [])
    states = Counter(str(t.get("state", "?")) for t in trials)
    hv = data.get("hv_history") or []
    return [
        ("trials", len(trials)),
        *sorted(states.items()),
        ("with objective values", len(points)),
        ("feasible", sum(1 for p in points if p.kind != "infeasible")),
        ("on the Pareto front", len({int(n) for n in data.get("front") or []})),
        *([("final hypervolume", _fmt(float(hv[-1])))] if hv else []),
    ]


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
    constraints: Sequence[dict[str, Any]] = (),
    compare: dict[str, Any] | None = None,
) -> str:
    """The whole report as one HTML document.

    ``objectives``: ``{"name", "direction", "label", "unit", "log"}`` per objective, in the order
    of each trial's ``values`` (``label`` names the metric, e.g. the quality metric; a unit of
    ``s`` is shown in ms). ``trials``: ``{"number", "state", "values" (or None), "feasible",
    ...}``. ``front``: trial numbers on the feasible Pareto front. ``hv_history``: normalised
    hypervolume after each completed trial. ``plans``: ``{"trial", "file", "summary",
    "objectives": {name: value}}`` per front plan, optionally ``"fallbacks"``: lines saying which
    stages' cost model left ops to the analytical one (a column then shows them). ``meta``:
    shown as a key/value table.
    ``measured``: the results ``codesign plan run`` wrote to ``RUN_DIR/measured/`` (a plot and
    a table of measured against predicted latency when there are any). ``constraints``:
    ``{"objective", "value", "label"}`` per constraint (:func:`codesign.report.data.
    constraint_lines`), drawn as a line on that objective's axis. ``compare``: another run's
    report data (:func:`codesign.report.data.read_report_data`, optionally with a ``"name"``),
    whose points, fronts and hypervolume are drawn in the same axes.

    The page has one scatter plot per pair of objectives, the hypervolume-over-trials plot, the
    plan table and the meta table; the plots' data is embedded as JSON for ``--png`` and
    ``--compare`` (:func:`codesign.report.data.read_report_data`).
    """
    data = {
        "title": title,
        "objectives": list(objectives),
        "trials": [
            {k: t.get(k) for k in ("number", "state", "values", "feasible")} for t in trials
        ],
        "front": [int(n) for n in front],
        "hv_history": [float(v) for v in hv_history],
        "plans": list(plans),
        "meta": dict(meta),
        "measured": list(measured),
        "constraints": [dict(c) for c in constraints],
    }
    plots = plot_set(data, compare)
    k = len(objectives)
    pairs = plots[:-1]
    pair_html = "".join(_figure(svg, caption, notes) for _, svg, caption, notes in pairs)
    if not pairs:
        pair_html = '<p class="empty">Fewer than two objectives: no pair to plot.</p>'
    by_name = {o["name"]: o for o in objectives}
    objective_rows = [
        (
            o.get("label") or o["name"],
            f"{o['name']}: {o.get('direction', 'minimize')}"
            + (f", unit {o['unit']}" if o.get("unit") else "")
            + (", log scale" if o.get("log") else ""),
        )
        for o in objectives
    ] + [
        (f"constraint: {c.get('label', '')}", constraint_text(c, by_name[c["objective"]]))
        if c["objective"] in by_name
        else (f"constraint: {c.get('label', '')}", f"{c['objective']} {_fmt(c['value'])}")
        for c in constraints
    ]
    names = [_name(data, "this run")]
    if compare is not None:
        names.append(_name(compare, "compared run"))
        title = f"{title} compared with {names[1]}"
    controls = (
        '<div class="controls"><label hidden><input type="checkbox" id="show-infeasible" '
        "checked> show infeasible points</label><span>Drag a box on a plot to zoom in; "
        "double-click or \u201creset zoom\u201d to zoom out; hover a point for its trial and "
        "values.</span></div>"
    )
    compared = []
    if compare is not None:
        style = SERIES[1]
        compared = [
            f"<h2>Compared with {_e(names[1])}</h2>",
            f"<p>Its points are drawn as {_e(style['marker'])}s (front "
            f'<span style="color:{style["front"]}">\u25c6</span>), its infeasible ones as '
            f"pluses.</p>",
            "<header>",
            f"<section><h3>Run</h3>{_kv_table((compare.get('meta') or {}).items(), 'meta')}"
            "</section>",
            f"<section><h3>Trials</h3>{_kv_table(_summary(compare), 'summary')}</section>",
            "</header>",
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
            f"<section><h2>Trials</h2>{_kv_table(_summary(data), 'summary')}</section>",
            f"<section><h2>Objectives</h2>{_kv_table(objective_rows, 'summary')}</section>",
            "</header>",
            *compared,
            "<h2>Pareto front: every pair of objectives</h2>" if k > 2 else "<h2>Pareto front</h2>",
            controls,
            f'<div class="plots">{pair_html}</div>',
            "<h2>Hypervolume</h2>",
            f'<div class="plots">{_figure(*plots[-1][1:])}</div>',
            f"<h2>Plans on the front ({len(plans)})</h2>",
            _plan_table(plans, objectives),
            *(
                [
                    f"<h2>Plans run on this machine ({len(measured)})</h2>",
                    f'<div class="plots">{_figure(measured_plot(measured), _MEASURED)}</div>',
                    _measured_table(measured),
                ]
                if measured
                else []
            ),
            embed(data),
            f"<script>{_JS}</script>",
            "</body></html>",
            "",
        ]
    )


_MEASURED = (
    "codesign plan run: measured (dots) and predicted (crosses) latency, p50 blue and p95 orange"
)
