"""The report's plots as PNG, drawn with matplotlib (``codesign[plots]``) from the same views as
the SVG (:func:`codesign.report.svg.pair_view`): the same axis titles, units, ranges, constraint
lines, markers and colours. matplotlib is imported here only, and only when a PNG is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError
from codesign.report.svg import (
    COLORS,
    SERIES,
    Axis,
    PairView,
    Series,
    axis_title,
    fmt,
    hv_ranges,
)

__all__ = ["require_matplotlib", "save_hv_png", "save_pair_png"]

#: matplotlib's names for the SVG markers.
_MARKERS = {"circle": "o", "diamond": "D", "cross": "x", "plus": "+"}
_SIZE_IN = (5.8, 4.6)
DPI = 200


def require_matplotlib() -> None:
    """Fail with one line naming the extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise CodesignError(
            "--png needs matplotlib, which is not installed (fix: pip install 'codesign[plots]')"
        ) from exc


def _figure() -> tuple[Any, Any]:
    """A figure on the Agg canvas, without pyplot (no global state, no display backend)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, color=COLORS["grid"], linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _save(fig: Any, ax: Any, path: Path, title: str) -> None:
    ax.set_title(title, fontsize=10)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=3,
            fontsize=7,
            frameon=False,
        )
    fig.savefig(path, format="png", facecolor="white", bbox_inches="tight")


def _ticks_as_svg(ax: Any, axis: Axis, which: Any) -> None:
    """The SVG plot's scale, range, ticks and tick labels on one matplotlib axis."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    lo, hi = (10**axis.lo, 10**axis.hi) if axis.log else (axis.lo, axis.hi)
    if which is ax.xaxis:
        ax.set_xscale("log" if axis.log else "linear")
        ax.set_xlim(lo, hi)
    else:
        ax.set_yscale("log" if axis.log else "linear")
        ax.set_ylim(lo, hi)
    ticks = [v for v in axis.ticks() if lo <= v <= hi]
    which.set_major_locator(FixedLocator(ticks))
    which.set_major_formatter(FixedFormatter([fmt(v) for v in ticks]))
    which.set_minor_locator(NullLocator())


def save_pair_png(
    view: PairView, series: Sequence[Series], path: Path, *, feasible_only: bool = False
) -> None:
    """One pair plot as a PNG file."""
    fig, ax = _figure()
    many = len(series) > 1
    for n, s in enumerate(series):
        st = SERIES[n]
        prefix = f"{s.name}: " if many else ""
        xs, ys, kinds = view.x[n], view.y[n], view.kinds[n]

        def pick(kind: str, xs: list = xs, ys: list = ys, kinds: list = kinds) -> tuple:
            return (
                [a for a, k in zip(xs, kinds, strict=True) if k == kind],
                [b for b, k in zip(ys, kinds, strict=True) if k == kind],
            )

        if not feasible_only:
            ax.scatter(
                *pick("infeasible"),
                marker=_MARKERS[st["infeasible"]],
                s=18,
                c=COLORS["infeasible"],
                linewidths=1,
                label=f"{prefix}infeasible",
                zorder=2,
            )
        ax.scatter(
            *pick("feasible"),
            marker=_MARKERS[st["marker"]],
            s=16,
            c=st["feasible"],
            alpha=0.6,
            edgecolors=st["feasible"],
            label=f"{prefix}feasible" if feasible_only else "feasible",
            zorder=3,
        )
        if view.stairs[n]:
            sx, sy = zip(*view.stairs[n], strict=True)
            ax.plot(
                sx,
                sy,
                linestyle=(0, (5, 3)),
                color=st["front"],
                linewidth=1.2,
                label="2-D front",
                zorder=3,
            )
        ax.scatter(
            *pick("front"),
            marker=_MARKERS[st["marker"]],
            s=34,
            c=st["front"],
            edgecolors=st["edge"],
            linewidths=0.8,
            label=f"{prefix}front" if many else "Pareto front",
            zorder=4,
        )
    for axis, text, v in view.lines:
        line = ax.axvline if axis == "x" else ax.axhline
        line(v, color=COLORS["constraint"], linestyle=(0, (6, 2, 1, 2)), linewidth=1.2, label=text)
    x, y = (view.x_feasible, view.y_feasible) if feasible_only else (view.x_all, view.y_all)
    for axis, which in ((x, ax.xaxis), (y, ax.yaxis)):
        _ticks_as_svg(ax, axis, which)
    for axis, text, v in view.lines:  # labelled where the SVG labels them
        along = x if axis == "x" else y
        t = math.log10(v) if along.log else v
        if not along.lo <= t <= along.hi:
            continue
        if axis == "x":
            end = (t - x.lo) / (x.hi - x.lo) > 0.5
            ax.text(
                v,
                0.98,
                f" {text} ",
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                color=COLORS["constraint"],
                ha="right" if end else "left",
                va="top",
            )
        else:
            ax.text(
                0.99,
                v,
                text,
                transform=ax.get_yaxis_transform(),
                fontsize=7,
                color=COLORS["constraint"],
                ha="right",
                va="bottom",
            )
    ax.set_xlabel(axis_title(view.x_obj), fontsize=9)
    ax.set_ylabel(axis_title(view.y_obj), fontsize=9)
    ox, oy = view.x_obj, view.y_obj
    _save(fig, ax, path, f"{oy.get('label') or oy['name']} vs {ox.get('label') or ox['name']}")


def save_hv_png(histories: Sequence[tuple[str, Sequence[float]]], path: Path) -> None:
    """The hypervolume-over-trials plot as a PNG file."""
    fig, ax = _figure()
    for k, (name, hv) in enumerate(histories):
        if not hv:
            continue
        ax.step(
            range(len(hv) + 1),
            [0.0, *hv],
            where="post",
            color=SERIES[k]["hv"],
            linewidth=1.8,
            label=name if len(histories) > 1 else None,
        )
    (x0, x1), (y0, y1) = hv_ranges(histories)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("completed trials", fontsize=9)
    ax.set_ylabel("normalised hypervolume (ref = 1)", fontsize=9)
    _save(fig, ax, path, "hypervolume of the feasible front after each completed trial")
