"""`codesign targets`: registered hardware targets and their knobs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from codesign import api
from codesign.cli._common import boundary, out, print_json

app = typer.Typer(
    help="List hardware targets, show their knobs, area and power, and check preset and "
    "technology table files.",
    no_args_is_help=True,
)


@app.command("list")
@boundary
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List built-in and plugin targets (plugins are not imported to list them)."""
    rows = api.list_targets()
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"codesign targets ({len(rows)})")
    for col in ("name", "kind", "from", "description"):
        table.add_column(col, no_wrap=col != "description")
    for r in rows:
        origin = "built-in" if r["builtin"] else f"{r['distribution']} {r['version']}"
        table.add_row(r["name"], r["kind"], origin, r["description"])
    out.print(table)
    out.print("codesign targets show NAME for knobs, area and power", style="dim")


@app.command("show")
@boundary
def show_cmd(
    name: str = typer.Argument(..., help="A target name (see `targets list`) or a preset .yaml."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show a target's knobs (range, default, what the search tries per stage or per chip) and
    the default configuration's area and power."""
    info = api.describe_target(name)
    if as_json:
        print_json(info)
        return
    table = Table(title=f"{info['name']} ({info['kind']})", caption=info["description"])
    for col in ("knob", "default", "range", "unit", "searched", "help"):
        table.add_column(col, no_wrap=col not in ("help", "searched"))
    for k in info["knobs"]:
        rng = (
            "|".join(map(str, k["choices"]))
            if "choices" in k
            else ("true|false" if k["kind"] == "bool" else f"{k['low']:g}..{k['high']:g}")
        )
        default = k["default"]
        shown = f"{default:.6g}" if isinstance(default, float) else str(default)
        searched = (
            f"per {k['search']}: "
            + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in k["grid"])
            if k.get("search")
            else ""
        )
        table.add_row(k["name"], shown, rng, k.get("unit", ""), searched, k.get("help", ""))
    out.print(table)
    area = "n/a" if info["area_mm2"] is None else f"{info['area_mm2']:.3f} mm2"
    out.print(f"default configuration: area {area}, power {info['power_w']:.2f} W")
    if info.get("hardware_breakdown"):
        parts = Table(title="area and power by component", show_header=True)
        for col in ("component", "count", "area mm2", "power W"):
            parts.add_column(col, justify="left" if col == "component" else "right")
        for comp, b in info["hardware_breakdown"].items():
            parts.add_row(
                comp,
                f"{b.get('count', 0):,}",
                f"{b.get('area_mm2', 0.0):.3f}",
                f"{b.get('power_w', 0.0):.3f}",
            )
        out.print(parts)
    if info.get("tech"):
        out.print(f"tech: {info['tech']} ({info['tech_path']})")
    if info.get("source"):
        out.print(f"source: {info['source']}", style="dim")


@app.command("validate")
@boundary
def validate_cmd(
    path: str = typer.Argument(
        ..., help="A target preset .yaml (kind: target) or a technology table (kind: tech)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Check a target preset or a technology table: every problem in one line (exit 1). A
    preset prints its resolved knobs, where each value comes from (the preset, the detected
    host, or the type's default) and the technology table pricing its silicon; a technology
    table prints each component's figures."""
    from codesign.targets.builtin import validate_file

    info = validate_file(Path(path))
    if as_json:
        print_json(info)
        return
    if info["kind"] == "tech":
        _print_tech(info)
        return
    table = Table(title=f"{info['name']} ({info['type']}): valid")
    for col in ("knob", "value", "unit", "from"):
        table.add_column(col, no_wrap=True)
    for k in info["knobs"]:
        value = k["value"]
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        table.add_row(k["name"], shown, k["unit"], k["from"])
    out.print(table)
    if info.get("tech"):
        tech = info["tech"]
        out.print(f"tech: {tech['name']} ({tech['path']}; from {tech['from']})")


def _print_tech(info: dict) -> None:
    table = Table(
        title=f"{info['name']} (tech, figures at {info['clock_hz']:.6g} Hz): valid",
        caption=info["description"],
    )
    figures = ("pes", "macro_bytes", "area_um2", "power_mw", "leakage_mw", "energy_pj_per_byte")
    for col in ("component", *figures, "source"):
        table.add_column(col, no_wrap=col != "source")
    for name, comp in info["components"].items():
        cells = [f"{comp[f]:.6g}" if f in comp else "" for f in figures]
        table.add_row(name, *cells, comp.get("source", ""))
    out.print(table)
