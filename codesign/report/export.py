"""Plot files and the two-run comparison (``codesign report RUN --png --compare OTHER``).

Every plot of report.html is written as ``plots/<name>.svg`` (the page's own SVG, standalone)
and, with matplotlib (``codesign[plots]``), ``plots/<name>.png`` drawn from the same data:
``<y objective>-vs-<x objective>`` per pair of objectives, and ``hypervolume``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from codesign.report.data import read_report_data
from codesign.report.html import plot_set, render_report, runs_of
from codesign.report.svg import pair_view

__all__ = ["compare_data", "safe_name", "write_compare_page", "write_plot_files"]

_XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
_SVG_NS = "http://www.w3.org/2000/svg"


def safe_name(text: str) -> str:
    """A file-name part: letters, digits, ``.``, ``_`` and ``-``; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "run"


def _write(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


def write_plot_files(
    data: dict[str, Any],
    out_dir: Path,
    *,
    compare: dict[str, Any] | None = None,
    png: bool = True,
    feasible_only: bool = False,
) -> list[Path]:
    """Write every plot of the report drawn from ``data`` (and ``compare``) into ``out_dir``
    as SVG, and as PNG when ``png``; returns the paths written, SVG and PNG of each plot in
    turn. ``feasible_only``: pair plots without infeasible points, axes fitted to the rest."""
    if png:
        from codesign.report.png import require_matplotlib

        require_matplotlib()  # before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plot_set(data, compare, feasible_only=feasible_only)
    series, constraints = runs_of(data, compare)
    objectives = data["objectives"]
    pairs = [(i, j) for i in range(len(objectives)) for j in range(i + 1, len(objectives))]
    written = []
    for n, (stem, svg, _, _) in enumerate(plots):
        path = out_dir / f"{safe_name(stem)}.svg"
        _write(path, _XML_HEAD + svg.replace("<svg ", f'<svg xmlns="{_SVG_NS}" ', 1))
        written.append(path)
        if not png:
            continue
        from codesign.report.png import save_hv_png, save_pair_png

        path = out_dir / f"{safe_name(stem)}.png"
        tmp = path.with_name(path.name + ".tmp")
        if n < len(pairs):
            i, j = pairs[n]
            view = pair_view(series, objectives, i, j, constraints)
            save_pair_png(view, series, tmp, feasible_only=feasible_only)
        else:
            histories = [(s.name, [float(v) for v in h]) for s, h in zip(
                series,
                [data.get("hv_history") or [], *([compare.get("hv_history") or []] if compare
                                                 else [])],
                strict=True,
            )]  # fmt: skip
            save_hv_png(histories, tmp)
        os.replace(tmp, path)
        written.append(path)
    return written


def compare_data(run: str) -> dict[str, Any]:
    """Another run's report data, rebuilt from its storage (a run directory or a storage URL)
    in a temporary folder, so the compared run's own files are left as they are."""
    from codesign.search.study import load_existing, storage_url, write_outputs

    study, cfg, run_dir = load_existing(run)
    url = run if not Path(run).is_dir() else storage_url(run_dir, None)
    with tempfile.TemporaryDirectory(prefix="codesign-compare-") as tmp:
        write_outputs(study, cfg, Path(tmp), url)
        data = read_report_data(Path(tmp) / "report.html")
    data["name"] = cfg.name
    data["folder"] = run_dir.name
    return data


def write_compare_page(
    data: dict[str, Any], other: dict[str, Any], run_dir: Path
) -> tuple[Path, str]:
    """``RUN_DIR/compare-<other>.html``: this run's report with the other run's points, fronts
    and hypervolume in the same axes. Returns the path and the file-name part naming the other
    run (its run name, or its folder's when both runs have the same name)."""
    mine = (data.get("meta") or {}).get("run")
    if other.get("name") == mine and other.get("folder"):
        other = {**other, "name": other["folder"]}
    tag = safe_name(str(other.get("name") or "other"))
    path = run_dir / f"compare-{tag}.html"
    _write(path, render_report(**data, compare=other))
    return path, tag
