"""Run reports: a self-contained HTML page (inline SVG plots, no external assets)."""

from __future__ import annotations

from codesign.report.html import render_report

__all__ = ["render_report"]
