"""`codesign cost`: a model (or one GEMM) costed on a target by the analytical model."""

from __future__ import annotations

import typer
from rich.table import Table

from codesign import api
from codesign.cli._common import boundary, check_int, human_bytes, out, print_json
from codesign.errors import CodesignError
from codesign.targets.base import parse_assignments


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if value >= scale or unit == "ns":
            return f"{value / scale:.3g} {unit}"
    return f"{value:g} s"


def _value(key: str, value: object) -> str:
    if isinstance(value, float):
        return _seconds(value) if key.endswith("_s") else f"{value:.4g}"
    return str(value)


@boundary
def cost_cmd(
    model: str = typer.Argument(..., help="A zoo model, a spec .yaml, or 'gemm' with --m/--k/--n."),
    target: str = typer.Option(..., "--target", "-t", help="Target name or preset .yaml."),
    batch: int = typer.Option(1, "--batch", "-b", help="Items ranked per query."),
    sets: list[str] = typer.Option([], "--set", "-s", help="Knob override knob=value (repeat)."),
    keep: int | None = typer.Option(None, "--keep", help="Add a top-k keeping this many items."),
    passes: str = typer.Option("", "--passes", "-p", help="IR passes to apply first (comma list)."),
    cost_model: str = typer.Option(
        "analytical",
        "--cost-model",
        help="analytical | calibrated (fitted by `codesign "
        "measure report`) | tvm (measured on this CPU, cached).",
    ),
    db: str | None = typer.Option(None, "--db", help="Measurement database (tvm/calibrated)."),
    trace: str | None = typer.Option(
        None, "--trace", help="Embedding row-id trace (.npy or text) to measure hit rates from."
    ),
    m: int | None = typer.Option(None, "--m", help="gemm: rows of A (batch)."),
    k: int | None = typer.Option(None, "--k", help="gemm: inner dimension."),
    n: int | None = typer.Option(None, "--n", help="gemm: columns of B (outputs)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Cost MODEL on a target: per-op and total latency_s, energy_j and bytes moved.

    `codesign cost gemm --m M --k K --n N --target T` costs one GEMM instead and, on an
    accelerator, reports compute cycles and SRAM accesses in SCALE-Sim's convention.
    """
    overrides = parse_assignments(sets)
    if keep is not None and model != "gemm":
        check_int(keep, "--keep", low=1, high=max(batch, 1), example=str(max(min(batch, 64), 1)))
    if model == "gemm":
        missing = [name for name, v in (("--m", m), ("--k", k), ("--n", n)) if v is None]
        if missing:
            raise CodesignError(
                f"cost gemm: {', '.join(missing)} required (e.g. --m 256 --k 512 --n 256)"
            )
        info = api.cost_gemm(m, k, n, target, overrides=overrides)
        if as_json:
            print_json(info)
            return
        table = Table(title=f"GEMM {m}x{k} @ {k}x{n} on {info['target']}", show_header=False)
        for key in (
            "compute_cycles",
            "sram_ifmap_reads",
            "sram_filter_reads",
            "sram_ofmap_writes",
            "macs",
            "bound",
        ):
            if key in info:
                value = info[key]
                table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
        table.add_row("latency", _seconds(info["latency_s"]))
        table.add_row("energy", f"{info['energy_j']:.3g} J")
        out.print(table)
        return
    from codesign.cli.models import _pass_list

    report = api.cost_model(
        model,
        target,
        batch=batch,
        overrides=overrides,
        keep=keep,
        passes=_pass_list(passes),
        trace=trace,
        cost_model=cost_model,
        db=db,
    )
    if as_json:
        print_json(report)
        return
    prov = report["provenance"]
    table = Table(title=f"{prov['model']} on {prov['target']}, batch {batch}")
    for col, justify in [
        ("node", "left"),
        ("op", "left"),
        ("latency", "right"),
        ("share", "right"),
        ("bound", "left"),
        ("compute", "right"),
        ("memory", "right"),
        ("DRAM", "right"),
        ("PCIe", "right"),
        ("energy", "right"),
    ]:
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    total = report["latency_s"] or 1.0
    for row in report["ops"] + report["extra"]:
        table.add_row(
            row["name"],
            row["op"],
            _seconds(row["latency_s"]),
            f"{100 * row['latency_s'] / total:.1f}%",
            row["bound"],
            _seconds(row["compute_s"]) if row["compute_s"] else "",
            _seconds(row["memory_s"]) if row["memory_s"] else "",
            human_bytes(row["dram_bytes"]) if row["dram_bytes"] else "",
            human_bytes(row["pcie_bytes"]) if row["pcie_bytes"] else "",
            f"{row['energy_j']:.3g} J" if row["energy_j"] else "",
        )
    out.print(table)
    summary = Table(title="totals", show_header=False)
    summary.add_column("quantity")
    summary.add_column("value", justify="right")
    summary.add_row("latency per query", _seconds(report["latency_s"]))
    summary.add_row("energy per query", f"{report['energy_j']:.4g} J")
    summary.add_row("DRAM bytes", human_bytes(report["dram_bytes"]))
    summary.add_row("SRAM bytes", human_bytes(report["sram_bytes"]))
    summary.add_row("PCIe bytes", human_bytes(report["pcie_bytes"]))
    if report["area_mm2"] is not None:
        summary.add_row("area", f"{report['area_mm2']:.3f} mm2")
    summary.add_row("power", f"{report['power_w']:.3g} W")
    for key, value in report["schedule"].items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={_value(k, v)}" for k, v in value.items())
        else:
            value = _value(key, value)
        summary.add_row(key.replace("_", " "), str(value))
    out.print(summary)
    if "trace" in report:
        t = report["trace"]
        out.print(
            f"trace {t['path']}: {t['lookups']:,} lookups, hit rate {t['hit_rate']:.3f} "
            f"(static {t['static_hit_rate']:.3f}, dynamic {t['dynamic_hit_rate']:.3f}) "
            f"with {t['static_rows']:,} + {t['dynamic_rows']:,} rows per table",
            style="dim",
        )
    if overrides:
        out.print("knobs set: " + ", ".join(f"{k}={v}" for k, v in overrides.items()), style="dim")
