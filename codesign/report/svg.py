"""The report's plots as hand-written SVG: one scatter plot per pair of objectives, hypervolume
over trials, measured against predicted latency.

Each plot is a standalone SVG document (presentation attributes only, no page CSS), so the same
string is inlined in report.html and written to ``plots/*.svg``. Pair and hypervolume plots
carry their data in ``data-*`` attributes (values in the axis units) and two precomputed views
(every point, or feasible points only) so the page's script can hide infeasible points, zoom
and reset without redoing the layout rules here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from codesign.report.data import display_unit
from codesign.search.pareto import pareto_mask

__all__ = [
    "COLORS",
    "SERIES",
    "Series",
    "axis_title",
    "constraint_text",
    "hv_plot",
    "measured_plot",
    "pair_plot",
    "points_of",
    "stairs",
]

# Plot geometry (SVG user units = CSS pixels). The top margin grows with the legend's rows.
W, H = 440, 340
ML, MR, MB = 72, 16, 52
LEGEND_ROW = 15

COLORS = {
    "infeasible": "#8c8c8c",
    "constraint": "#6a3d9a",
    "hv": "#2a9d8f",
    "axis": "#444",
    "grid": "#e6e6e6",
}
#: One style per run: the report's run, then the run it is compared with.
SERIES = (
    {"feasible": "#4c78a8", "front": "#e4572e", "edge": "#7a2410", "marker": "circle",
     "infeasible": "cross", "hv": "#2a9d8f"},
    {"feasible": "#59a14f", "front": "#1b7837", "edge": "#0b3d1a", "marker": "diamond",
     "infeasible": "plus", "hv": "#b07aa1"},
)  # fmt: skip
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"'


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(v: float | None) -> str:
    """Compact number for ticks, tooltips and tables (the page's script writes the same)."""
    if v is None or not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        mant, exp = f"{v:.2e}".split("e")
        mant = mant.rstrip("0").rstrip(".")
        return f"{mant}e{int(exp)}"
    return f"{float(f'{v:.4g}'):.12g}"


def _num(v: float) -> str:
    """A data value in an attribute: enough digits to place it, no more."""
    return f"{v:.7g}"


def _shape(marker: str, r: float) -> str:
    """Path of a marker centred on 0,0."""
    if marker == "circle":
        return f"M{-r:g},0a{r:g},{r:g} 0 1 0 {2 * r:g},0a{r:g},{r:g} 0 1 0 {-2 * r:g},0Z"
    if marker == "diamond":
        r *= 1.25
        return f"M0,{-r:g}L{r:g},0L0,{r:g}L{-r:g},0Z"
    if marker == "cross":
        return f"M{-r:g},{-r:g}L{r:g},{r:g}M{-r:g},{r:g}L{r:g},{-r:g}"
    return f"M{-r:g},0H{r:g}M0,{-r:g}V{r:g}"  # plus


@dataclass
class Axis:
    """Maps data values to pixels on a linear or log10 scale."""

    lo: float  # in transformed units (log10 when log)
    hi: float
    log: bool
    p0: float  # pixel of lo
    p1: float  # pixel of hi

    @classmethod
    def fit(
        cls, data: Iterable[float], *, log: bool, p0: float, p1: float, lines: Iterable[float] = ()
    ) -> Axis:
        """Fit the data with a margin; a constraint line (``lines``) is brought into view when
        it lies within one data span of the data, so it never squashes the points."""
        vals = [math.log10(v) if log else v for v in data]
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        span = hi - lo
        for c in lines:
            if log and c <= 0:
                continue
            t = math.log10(c) if log else c
            if vals and lo - max(span, 0.1 * abs(t)) <= t <= hi + max(span, 0.1 * abs(t)):
                lo, hi = min(lo, t), max(hi, t)
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


def axis_title(obj: dict[str, Any]) -> str:
    """``p95 latency (ms, log) — lower is better``: the metric, its unit and the direction."""
    label = obj.get("label") or obj["name"]
    unit = display_unit(obj)[0]
    scale = "log" if obj.get("log") else ""
    inside = ", ".join(x for x in (unit, scale) if x)
    minimize = obj.get("direction", "minimize") == "minimize"
    better = "lower is better" if minimize else "higher is better"
    return f"{label}{f' ({inside})' if inside else ''} \u2014 {better}"


def constraint_text(c: dict[str, Any], obj: dict[str, Any]) -> str:
    """``SLA 100 ms``: a constraint line's label, in the axis unit."""
    unit, factor = display_unit(obj)
    return f"{c.get('label', 'constraint')} {fmt(c['value'] * factor)}{f' {unit}' if unit else ''}"


def _ticks(x: Axis, y: Axis, top: float) -> list[str]:
    """Grid lines, tick marks and tick labels (the part the page's script redraws)."""
    parts = []
    left, right, bottom = ML, W - MR, H - MB
    for v in x.ticks():
        p = x.px(v)
        if left - 0.5 <= p <= right + 0.5:
            parts.append(
                f'<line x1="{p:.1f}" y1="{top}" x2="{p:.1f}" y2="{bottom}" '
                f'stroke="{COLORS["grid"]}"/>'
                f'<line x1="{p:.1f}" y1="{bottom}" x2="{p:.1f}" y2="{bottom + 5}" '
                f'stroke="{COLORS["axis"]}"/>'
                f'<text x="{p:.1f}" y="{bottom + 17}" text-anchor="middle" font-size="11" '
                f'fill="#333">{_e(fmt(v))}</text>'
            )
    for v in y.ticks():
        p = y.px(v)
        if top - 0.5 <= p <= bottom + 0.5:
            parts.append(
                f'<line x1="{left}" y1="{p:.1f}" x2="{right}" y2="{p:.1f}" '
                f'stroke="{COLORS["grid"]}"/>'
                f'<line x1="{left - 5}" y1="{p:.1f}" x2="{left}" y2="{p:.1f}" '
                f'stroke="{COLORS["axis"]}"/>'
                f'<text x="{left - 8}" y="{p + 4:.1f}" text-anchor="end" font-size="11" '
                f'fill="#333">{_e(fmt(v))}</text>'
            )
    return parts


def _frame(x: Axis, y: Axis, x_title: str, y_title: str, top: float) -> tuple[str, str]:
    """(before the data: the ticks group; after it: the plot border and the axis titles)."""
    left, right, bottom = ML, W - MR, H - MB
    before = f'<g class="ticks">{"".join(_ticks(x, y, top))}</g>'
    cy = (top + bottom) / 2
    after = (
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
        f'fill="none" stroke="{COLORS["axis"]}"/>'
        f'<text x="{(left + right) / 2:.1f}" y="{H - 10}" text-anchor="middle" font-size="12" '
        f'fill="#111" class="axis-title">{_e(x_title)}</text>'
        f'<text x="14" y="{cy:.1f}" text-anchor="middle" font-size="12" fill="#111" '
        f'class="axis-title" transform="rotate(-90 14 {cy:.1f})">{_e(y_title)}</text>'
    )
    return before, after


def _legend(rows: Sequence[Sequence[tuple[str, str]]]) -> str:
    """Rows of (swatch SVG drawn at 0,0, text) at the top of a plot."""
    parts = []
    for n, row in enumerate(rows):
        x, y = ML, 12 + n * LEGEND_ROW
        for swatch, text in row:
            parts.append(
                f'<g transform="translate({x:.0f} {y - 4})">{swatch}</g>'
                f'<text x="{x + 9:.0f}" y="{y}" font-size="10" fill="#333">{_e(text)}</text>'
            )
            x += 9 + 5.6 * len(text) + 12
    return f'<g class="legend">{"".join(parts)}</g>'


def _svg(parts: list[str], *, css_class: str, label: str, name: str, extra: str = "") -> str:
    return (
        f'<svg class="{_e(css_class)}" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'role="img" aria-label="{_e(label)}" data-name="{_e(name)}" {FONT}{extra}>'
        f"<title>{_e(label)}</title>" + "".join(parts) + "</svg>"
    )


def _empty(text: str) -> str:
    return (
        f'<text x="{(ML + W - MR) / 2}" y="{(H - MB) / 2 + 10}" text-anchor="middle" '
        f'font-size="13" font-style="italic" fill="#888" class="empty">{_e(text)}</text>'
    )


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class Point:
    number: int
    values: dict[str, float]  # objective name -> value in the stored unit
    kind: str  # "front" | "feasible" | "infeasible"


@dataclass
class Series:
    """One run's points on the plots."""

    name: str
    points: list[Point]
    objectives: dict[str, dict[str, Any]]  # name -> objective (label, unit, ...)


def points_of(
    trials: Sequence[dict[str, Any]], front: Iterable[int], objectives: Sequence[dict[str, Any]]
) -> list[Point]:
    """Trials with objective values, each as feasible, infeasible or on the front."""
    front_set = {int(n) for n in front}
    names = [o["name"] for o in objectives]
    out = []
    for t in trials:
        vals = t.get("values")
        if vals is None or len(vals) != len(names):
            continue
        if not t.get("feasible", False):
            kind = "infeasible"
        elif t.get("number") in front_set:
            kind = "front"
        else:
            kind = "feasible"
        values = {n: float(v) if _finite(v) else math.nan for n, v in zip(names, vals, strict=True)}
        out.append(Point(int(t.get("number", -1)), values, kind))
    return out


def _tooltip(p: Point, series: Series, named: bool) -> str:
    vals = []
    for name, v in p.values.items():
        o = series.objectives[name]
        unit, factor = display_unit(o)
        vals.append(f"{o.get('label') or name} = {fmt(v * factor)} {unit}".rstrip())
    run = f"{series.name}: " if named else ""
    return f"{run}trial {p.number} ({p.kind}): {'; '.join(vals)}"


def stairs(pts: Sequence[tuple[float, float]], dirs: Sequence[str]) -> list[tuple[float, float]]:
    """The 2-D front of these points as its attainment staircase (vertices, in order)."""
    if not pts:
        return []
    vals = np.array(pts, dtype=float)
    mask = pareto_mask(vals, list(dirs))
    sign_x = 1.0 if dirs[0] == "minimize" else -1.0
    sign_y = 1.0 if dirs[1] == "maximize" else -1.0
    front = sorted(
        {(float(a), float(b)) for a, b in vals[mask]}, key=lambda v: (sign_x * v[0], sign_y * v[1])
    )
    out: list[tuple[float, float]] = []
    for n, (a, b) in enumerate(front):
        if n:
            out.append((a, front[n - 1][1]))
        out.append((a, b))
    return out if len(front) > 1 else []


def _ranges(x: Axis, y: Axis) -> str:
    return ",".join(f"{v:.9g}" for v in (x.lo, x.hi, y.lo, y.hi))


@dataclass
class PairView:
    """What a plot of objective ``j`` against objective ``i`` shows, in axis units: the SVG
    and the PNG are both drawn from it."""

    x_obj: dict[str, Any]
    y_obj: dict[str, Any]
    x: list[list[float]]  # per series: x of each shown point
    y: list[list[float]]
    kinds: list[list[str]]
    tips: list[list[str]]
    stairs: list[list[tuple[float, float]]]  # per series: its 2-D front of this pair
    lines: list[tuple[str, str, float]]  # (axis "x" | "y", label, value)
    hidden: int  # points not shown: non-finite, or not positive on a log axis
    x_all: Axis
    y_all: Axis
    x_feasible: Axis
    y_feasible: Axis
    top: float


def pair_view(
    series: Sequence[Series],
    objectives: Sequence[dict[str, Any]],
    i: int,
    j: int,
    constraints: Sequence[dict[str, Any]] = (),
    *,
    top: float | None = None,
) -> PairView:
    """The points, fronts, constraint lines and axis ranges (with every point, and with the
    feasible ones only) of objective ``j`` against objective ``i``. ``top``: the plot area's
    top pixel (default: below the legend rows)."""
    oi, oj = objectives[i], objectives[j]
    ni, nj = oi["name"], oj["name"]
    (_, fi), (_, fj) = display_unit(oi), display_unit(oj)
    log_i, log_j = bool(oi.get("log")), bool(oj.get("log"))

    def plottable(p: Point) -> bool:
        a, b = p.values.get(ni, math.nan), p.values.get(nj, math.nan)
        return (
            math.isfinite(a) and math.isfinite(b) and (a > 0 or not log_i) and (b > 0 or not log_j)
        )

    shown = [[p for p in s.points if plottable(p)] for s in series]
    hidden = sum(
        1
        for s in series
        for p in s.points
        if ni in p.values and nj in p.values and not plottable(p)
    )
    lines = []
    for c in constraints:
        for axis, obj, f in (("x", oi, fi), ("y", oj, fj)):
            v = c["value"] * f
            if c["objective"] == obj["name"] and math.isfinite(v) and (v > 0 or not obj.get("log")):
                lines.append((axis, constraint_text(c, obj), v))
    if top is None:
        top = 14 + LEGEND_ROW * (len(series) + (1 if lines else 0))
    xl = [v for axis, _, v in lines if axis == "x"]
    yl = [v for axis, _, v in lines if axis == "y"]

    def fit(pts: list[Point]) -> tuple[Axis, Axis]:
        x = Axis.fit((p.values[ni] * fi for p in pts), log=log_i, p0=ML, p1=W - MR, lines=xl)
        y = Axis.fit((p.values[nj] * fj for p in pts), log=log_j, p0=H - MB, p1=top, lines=yl)
        return x, y

    every = [p for s in shown for p in s]
    x_all, y_all = fit(every)
    x_feasible, y_feasible = fit([p for p in every if p.kind != "infeasible"] or every)
    dirs = [oi.get("direction", "minimize"), oj.get("direction", "minimize")]
    return PairView(
        x_obj=oi,
        y_obj=oj,
        x=[[p.values[ni] * fi for p in pts] for pts in shown],
        y=[[p.values[nj] * fj for p in pts] for pts in shown],
        kinds=[[p.kind for p in pts] for pts in shown],
        tips=[
            [_tooltip(p, s, len(series) > 1) for p in pts]
            for s, pts in zip(series, shown, strict=True)
        ],
        stairs=[
            stairs(
                [(p.values[ni] * fi, p.values[nj] * fj) for p in pts if p.kind != "infeasible"],
                dirs,
            )
            for pts in shown
        ],
        lines=lines,
        hidden=hidden,
        x_all=x_all,
        y_all=y_all,
        x_feasible=x_feasible,
        y_feasible=y_feasible,
        top=top,
    )


def pair_plot(
    series: Sequence[Series],
    objectives: Sequence[dict[str, Any]],
    i: int,
    j: int,
    constraints: Sequence[dict[str, Any]] = (),
    *,
    uid: str,
    feasible_only: bool = False,
) -> tuple[str, int]:
    """(SVG, number of points not shown) of objective ``j`` against objective ``i``.

    Infeasible points are grey crosses (pluses for a compared run), feasible ones blue dots,
    points of the run's whole Pareto front orange (a compared run: green diamonds); the dashed
    staircase is the 2-D front of this pair among feasible points. A constraint on either
    objective is a purple dash-dotted line. ``feasible_only``: leave infeasible points out and
    fit the axes to the others (the page's checkbox does the same).
    """
    view = pair_view(series, objectives, i, j, constraints)
    top = view.top
    front_label = "front" if len(series) > 1 else "Pareto front"
    rows = []
    for n, s in enumerate(series):
        st = SERIES[n]
        prefix = f"{_short(s.name)}: " if len(series) > 1 else ""
        rows.append(
            [
                (_marker_svg(st["infeasible"], 3.2, COLORS["infeasible"], None), prefix
                 + "infeasible"),
                (_marker_svg(st["marker"], 3.5, st["feasible"], st["feasible"], 0.6), "feasible"),
                (_marker_svg(st["marker"], 4.5, st["front"], st["edge"]), front_label),
                (f'<path d="M-4,0H8" stroke="{st["front"]}" stroke-dasharray="4 2" '
                 'stroke-width="1.5"/>', "2-D front"),
            ]
        )  # fmt: skip
        if feasible_only:
            rows[-1][0] = (rows[-1][1][0], prefix + "feasible")
            del rows[-1][1]
    if view.lines:
        rows.append(
            [
                (
                    f'<path d="M-4,0H8" stroke="{COLORS["constraint"]}" stroke-width="1.5" '
                    'stroke-dasharray="6 2 1 2"/>',
                    text,
                )
                for _, text, _ in view.lines
            ]
        )
    x, y = (view.x_feasible, view.y_feasible) if feasible_only else (view.x_all, view.y_all)
    before, after = _frame(x, y, axis_title(view.x_obj), axis_title(view.y_obj), top)
    left, right, bottom = ML, W - MR, H - MB
    body = [
        f'<defs><clipPath id="clip-{_e(uid)}"><rect x="{left}" y="{top}" width="{right - left}" '
        f'height="{bottom - top}"/></clipPath></defs>',
        before,
        f'<g class="data" clip-path="url(#clip-{_e(uid)})">',
    ]

    def marks(kind: str, shapes: Callable[[dict[str, str]], str]) -> None:
        for n in range(len(series)):
            shape = shapes(SERIES[n])
            for a, b, k, tip in zip(view.x[n], view.y[n], view.kinds[n], view.tips[n],
                                    strict=True):  # fmt: skip
                if k == kind:
                    body.append(
                        f'<path class="pt-{kind}" data-x="{_num(a)}" data-y="{_num(b)}" '
                        f'transform="translate({x.px(a):.1f} {y.px(b):.1f})" {shape}>'
                        f"<title>{_e(tip)}</title></path>"
                    )

    if not feasible_only:
        marks("infeasible", lambda st: _marker_attrs(st["infeasible"], 3.2, COLORS["infeasible"],
                                                     None))  # fmt: skip
    marks("feasible", lambda st: _marker_attrs(st["marker"], 3.5, st["feasible"], st["feasible"],
                                               0.55))  # fmt: skip
    for n, stair in enumerate(view.stairs):
        if stair:
            coords = " ".join(f"{x.px(a):.1f},{y.px(b):.1f}" for a, b in stair)
            data = "[" + ",".join(f"[{_num(a)},{_num(b)}]" for a, b in stair) + "]"
            body.append(
                f'<polyline class="front-line" data-xy="{data}" points="{coords}" fill="none" '
                f'stroke="{SERIES[n]["front"]}" stroke-width="1.5" stroke-dasharray="5 3"/>'
            )
    marks("front", lambda st: _marker_attrs(st["marker"], 4.5, st["front"], st["edge"]))
    stroke = f'stroke="{COLORS["constraint"]}" stroke-width="1.5" stroke-dasharray="6 2 1 2"'
    for axis, text, v in view.lines:
        if axis == "x":
            p = x.px(v)
            body.append(
                f'<line class="constraint" data-axis="x" data-v="{_num(v)}" x1="{p:.1f}" '
                f'y1="{top}" x2="{p:.1f}" y2="{bottom}" {stroke}/>'
                f'<text class="constraint-label" data-axis="x" data-v="{_num(v)}" '
                f'{_label_at("x", p, top, bottom)} y="{top + 12}" font-size="10" '
                f'fill="{COLORS["constraint"]}">{_e(text)}</text>'
            )
        else:
            p = y.px(v)
            body.append(
                f'<line class="constraint" data-axis="y" data-v="{_num(v)}" x1="{left}" '
                f'y1="{p:.1f}" x2="{right}" y2="{p:.1f}" {stroke}/>'
                f'<text class="constraint-label" data-axis="y" data-v="{_num(v)}" '
                f'x="{right - 4}" {_label_at("y", p, top, bottom)} text-anchor="end" '
                f'font-size="10" fill="{COLORS["constraint"]}">{_e(text)}</text>'
            )
    body.append("</g>")
    body.append(after)
    body.append(_legend(rows))
    if not any(view.x):
        body.append(_empty("no completed trials yet"))
    oi, oj = view.x_obj, view.y_obj
    label = f"{oj.get('label') or oj['name']} vs {oi.get('label') or oi['name']}"
    ranges_all = _ranges(view.x_feasible, view.y_feasible) if feasible_only else _ranges(
        view.x_all, view.y_all)  # fmt: skip
    extra = (
        f' data-lx="{int(bool(oi.get("log")))}" data-ly="{int(bool(oj.get("log")))}" '
        f'data-top="{top}" data-all="{ranges_all}" '
        f'data-feasible="{_ranges(view.x_feasible, view.y_feasible)}"'
    )
    name = f"{oj['name']}-vs-{oi['name']}"
    svg = _svg(body, css_class="pair-plot zplot", label=label, name=name, extra=extra)
    return svg, view.hidden


def _short(name: str, width: int = 16) -> str:
    """A run name short enough for a legend row."""
    return name if len(name) <= width else name[: width - 1] + "\u2026"


def _label_at(axis: str, p: float, top: float, bottom: float) -> str:
    """Where a constraint line's label goes: beside a vertical line, on the side with more
    room; above a horizontal line, or below it near the top (the page's script does the same)."""
    if axis == "x":
        if p > (ML + W - MR) / 2:
            return f'x="{p - 4:.1f}" text-anchor="end"'
        return f'x="{p + 4:.1f}" text-anchor="start"'
    return f'y="{p + 12 if p - 14 < top else p - 4:.1f}"'


def _marker_attrs(
    marker: str, r: float, stroke: str, fill: str | None, opacity: float = 1.0
) -> str:
    paint = (
        f'fill="{fill}"' + (f' fill-opacity="{opacity}"' if opacity < 1 else "")
        if fill
        else 'fill="none"'
    )
    width = 1.6 if fill is None else 1
    return f'd="{_shape(marker, r)}" {paint} stroke="{stroke}" stroke-width="{width}"'


def _marker_svg(marker: str, r: float, stroke: str, fill: str | None, opacity: float = 1.0) -> str:
    return f"<path {_marker_attrs(marker, r, stroke, fill, opacity)}/>"


def hv_ranges(
    histories: Sequence[tuple[str, Sequence[float]]],
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The hypervolume plot's x (trials) and y (hypervolume) ranges."""
    n = max((len(h) for _, h in histories), default=0)
    peak = max((v for _, h in histories for v in h if math.isfinite(v)), default=0.0)
    ceil = min(1.0, _nice_ticks(0.0, peak * 1.1)[-1]) if peak > 0 else 1.0
    return (0.0, max(n, 1) + 0.5), (0.0, max(ceil, peak) * 1.04)


def hv_plot(histories: Sequence[tuple[str, Sequence[float]]], *, uid: str) -> str:
    """Normalised hypervolume of the feasible front after each completed trial, one staircase
    per run."""
    runs = [(name, [float(v) for v in h if v is not None and math.isfinite(v)]) for name, h in
            histories]  # fmt: skip
    n = max((len(h) for _, h in runs), default=0)
    rows = (
        [[(f'<path d="M-4,0H8" stroke="{SERIES[k]["hv"]}" stroke-width="2"/>', name)
          for k, (name, _) in enumerate(runs)]]
        if len(runs) > 1
        else []
    )  # fmt: skip
    top = 14 + LEGEND_ROW * len(rows)
    (x0, x1), (y0, y1) = hv_ranges(runs)
    x = Axis(x0, x1, False, ML, W - MR)
    y = Axis(y0, y1, False, H - MB, top)
    before, after = _frame(x, y, "completed trials", "normalised hypervolume (ref = 1)", top)
    left, right, bottom = ML, W - MR, H - MB
    body = [
        f'<defs><clipPath id="clip-{_e(uid)}"><rect x="{left}" y="{top}" width="{right - left}" '
        f'height="{bottom - top}"/></clipPath></defs>',
        before,
        f'<g class="data" clip-path="url(#clip-{_e(uid)})">',
    ]
    for k, (_, hv) in enumerate(runs):
        if not hv:
            continue
        pts = [(0.0, 0.0)]
        prev = 0.0
        for idx, v in enumerate(hv, start=1):
            pts += [(float(idx), prev), (float(idx), v)]
            prev = v
        coords = " ".join(f"{x.px(a):.1f},{y.px(b):.1f}" for a, b in pts)
        data = "[" + ",".join(f"[{_num(a)},{_num(b)}]" for a, b in pts) + "]"
        body.append(
            f'<polyline class="hv-line" data-xy="{data}" points="{coords}" fill="none" '
            f'stroke="{SERIES[k]["hv"]}" stroke-width="2"/>'
        )
    body.append("</g>")
    body.append(after)
    if rows:
        body.append(_legend(rows))
    if not n:
        body.append(_empty("no completed trials yet"))
    extra = (
        f' data-lx="0" data-ly="0" data-top="{top}" data-all="{_ranges(x, y)}" '
        f'data-feasible="{_ranges(x, y)}"'
    )
    return _svg(
        body,
        css_class="hv-plot zplot",
        label="hypervolume over completed trials",
        name="hypervolume",
        extra=extra,
    )


def measured_plot(runs: Sequence[dict[str, Any]]) -> str:
    """Measured (dots) against predicted (crosses) p50 and p95 latency over the offered load,
    for every ``codesign plan run`` of the run's plans."""
    rows = [r for r in runs if _finite(r.get("qps"))]
    values = [
        v * 1e3
        for r in rows
        for v in (
            r.get("p50_latency_s"),
            r.get("p95_latency_s"),
            (r.get("predicted") or {}).get("p50_latency_s"),
            (r.get("predicted") or {}).get("p95_latency_s"),
        )
        if _finite(v) and v > 0
    ]
    top = 14
    x = Axis.fit([float(r["qps"]) for r in rows], log=False, p0=ML, p1=W - MR)
    y = Axis.fit(values or [1.0], log=True, p0=H - MB, p1=top)
    before, after = _frame(x, y, "offered load (QPS)", "latency (ms, log)", top)
    body = [before]
    marks = (("p50_latency_s", SERIES[0]["feasible"]), ("p95_latency_s", SERIES[0]["front"]))
    for r in rows:
        cx = x.px(float(r["qps"]))
        for key, color in marks:
            measured, predicted = r.get(key), (r.get("predicted") or {}).get(key)
            label = f"trial {r.get('trial')} at {fmt(float(r['qps']))} QPS: {key}"
            if _finite(measured) and measured > 0:
                body.append(
                    f'<circle cx="{cx:.1f}" cy="{y.px(measured * 1e3):.1f}" r="4.5" '
                    f'fill="{color}"><title>{_e(label)} measured {_e(fmt(measured))}</title>'
                    "</circle>"
                )
            if _finite(predicted) and predicted > 0:
                py = y.px(predicted * 1e3)
                body.append(
                    f'<path d="M{cx - 5:.1f},{py - 5:.1f}L{cx + 5:.1f},{py + 5:.1f}'
                    f'M{cx - 5:.1f},{py + 5:.1f}L{cx + 5:.1f},{py - 5:.1f}" '
                    f'stroke="{color}" stroke-width="2"><title>{_e(label)} predicted '
                    f"{_e(fmt(predicted))}</title></path>"
                )
    body.append(after)
    return _svg(
        body,
        css_class="measured-plot",
        label="measured and predicted latency",
        name="measured-latency",
    )
