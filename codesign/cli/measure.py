"""`codesign measure`: compile a model's kernels with TVM, measure them on this machine (through
the measurement database), and `codesign measure report`: calibrate the CPU model and print
its accuracy on held-out shapes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from codesign.cli._common import boundary, err, out, print_json
from codesign.errors import CodesignError


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if value >= scale or unit == "ns":
            return f"{value / scale:.3g} {unit}"
    return f"{value:g} s"


def _pct(value: float) -> str:
    return "-" if value != value else f"{100 * value:.1f}%"


def _num(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"


@boundary
def measure_cmd(
    model: str = typer.Argument(
        ...,
        help="A zoo model or spec .yaml; 'sweep' for the built-in calibration set; "
        "'report' to fit and print accuracy.",
    ),
    target: str = typer.Option("cpu/host", "--target", "-t", help="Only cpu/host is measured."),
    batch: list[int] = typer.Option([1], "--batch", "-b", help="Batch size (repeat for more)."),
    db: Path | None = typer.Option(
        None,
        "--db",
        help="Measurement database (default .codesign-cache/measure.sqlite, "
        "or under $CODESIGN_CACHE_DIR).",
    ),
    threads: int = typer.Option(1, "--threads", help="Threads the kernels run with (pinned)."),
    repeat: int = typer.Option(5, "--repeat", help="Timed samples per kernel."),
    min_repeat_ms: float = typer.Option(20.0, "--min-repeat-ms", help="Minimum sample length."),
    timeout_s: float = typer.Option(120.0, "--timeout", help="Seconds before a kernel fails."),
    csr: bool = typer.Option(False, "--csr", help="Lower embedding bags with offsets (CSR)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Measure failures again."),
    rounds: int = typer.Option(
        0,
        "--rounds",
        help="Measure each missing kernel this many times (interleaved) and keep the fastest; "
        "0: 3 for the sweep, 1 for a model.",
    ),
    in_process: bool = typer.Option(
        False, "--in-process", help="Measure in this process (no worker; no timeout)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure MODEL's kernels with TVM on this CPU (cached in the database); or
    `codesign measure report` to calibrate the CPU model and print held-out MAPE/Spearman."""
    from codesign.cost_models.measure_db import MeasureDB

    if target != "cpu/host":
        raise CodesignError(
            f"measure: target {target} cannot be measured here (fix: use --target cpu/host; "
            "CUDA kernels are built by tests marked gpu and measured only on a GPU machine)"
        )
    if threads < 1 or repeat < 1 or rounds < 0:
        raise CodesignError(
            "measure: --threads and --repeat must be at least 1, --rounds at least 0"
        )
    with MeasureDB(db) as database:
        if model == "report":
            _report(database, target, threads, as_json)
            return
        _measure(
            model,
            database,
            batch,
            threads,
            repeat,
            min_repeat_ms,
            timeout_s,
            csr,
            retry_failed,
            in_process,
            as_json,
            rounds or (SWEEP_ROUNDS if model == "sweep" else 1),
        )


#: Measurement passes of the calibration sweep (the fastest is kept: see ``measure_specs``).
SWEEP_ROUNDS = 3


def _measure(
    model,
    database,
    batches,
    threads,
    repeat,
    min_repeat_ms,
    timeout_s,
    csr,
    retry_failed,
    in_process,
    as_json,
    rounds=1,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from codesign.cost_models import calibration as cb
    from codesign.cost_models import tvm_measured as tm

    if any(b < 1 for b in batches):
        raise CodesignError("measure: --batch must be at least 1")
    specs = cb.sweep_specs() if model == "sweep" else cb.model_specs(model, batches, csr=csr)
    if not specs:
        raise CodesignError(f"measure: {model} has no op with a TVM lowering")
    timing = tm.TimingConfig(repeat=repeat, min_repeat_ms=min_repeat_ms, threads=threads)
    progress = Progress(
        TextColumn("[bold]measure[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=False,
    )
    with progress:
        task = progress.add_task("", total=len(specs))

        def step(spec, how):
            progress.update(task, advance=1, description=f"{spec.label()} [dim]{how}[/]")

        summary = cb.measure_specs(
            specs,
            database,
            timing=timing,
            timeout_s=timeout_s,
            isolate=not in_process,
            retry_failed=retry_failed,
            rounds=rounds,
            on_progress=step,
        )
    if as_json:
        print_json(summary.as_dict())
        return
    table = Table(title=f"{model}: {len(specs)} kernels, threads {threads}")
    for col, justify in (
        ("kernel", "left"),
        ("class", "left"),
        ("status", "left"),
        ("latency", "right"),
        ("stdev", "right"),
        ("compile", "right"),
        ("note", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in summary.rows:
        table.add_row(
            row.kernel,
            row.op_class,
            row.status,
            _seconds(row.latency_s),
            _seconds(row.stdev_s),
            _seconds(row.compile_s),
            row.error[:80],
        )
    out.print(table)
    out.print(
        f"{summary.measured} measured, {summary.cached} from the database, "
        f"{summary.failed} failed; {summary.elapsed_s:.2f} s; db {summary.db_path}",
        style="dim",
    )


def _report(database, target, threads, as_json) -> None:
    from codesign.cost_models import calibration as cb

    data = cb.report(database, target=target, threads=threads)
    if as_json:
        print_json(data)
        return
    acc = data["accuracy"]
    table = Table(
        title=f"calibration of {data['target']} on {data['cpu_model']} "
        f"(threads {data['threads']}, TVM {data['tvm_version']})"
    )
    for col in (
        "class",
        "train",
        "held out",
        "MAPE default",
        "MAPE fitted",
        "Spearman fitted",
        "fitted knobs",
    ):
        table.add_column(col, justify="left" if col in ("class", "fitted knobs") else "right")
    for op_class, entry in acc["classes"].items():
        knobs = ", ".join(f"{k}={v:.3g}" for k, v in data["knobs"][op_class].items())
        table.add_row(
            op_class,
            str(entry["train"]),
            str(entry["holdout"]),
            _pct(entry["holdout_mape_before"]),
            _pct(entry["holdout_mape"]),
            _num(entry["holdout_spearman"]),
            knobs,
        )
    h = acc["holdout"]
    table.add_row(
        "all", "", str(h["count"]), _pct(h["mape_before"]), _pct(h["mape"]), _num(h["spearman"]), ""
    )
    out.print(table)
    ok = h["mape"] <= 0.15 and h["spearman"] >= 0.9
    out.print(
        f"held-out MAPE {_pct(h['mape'])} (target <= 15%), Spearman {_num(h['spearman'])} "
        f"(target >= 0.9): {'met' if ok else 'NOT met'}",
        style="green" if ok else "yellow",
    )
    if data["failed"]:
        out.print(f"{len(data['failed'])} failed measurement(s) left out", style="yellow")
    out.print(
        f"{data['measurements']} measurements in {data['db']}; "
        f"calibration saved to {data['calibration']}",
        style="dim",
    )
