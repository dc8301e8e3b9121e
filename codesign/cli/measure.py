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
    whole_stage: bool = typer.Option(
        False,
        "--whole-stage",
        help="Also build the model as one Relax module and time it end to end; prints it "
        "beside the sum of the per-op times and the analytical estimate.",
    ),
    tune: int = typer.Option(
        0,
        "--tune",
        help="Tune the dense kernels with meta_schedule for this many trials each and measure "
        "them as schedule variant 'ms' (0: no tuning).",
    ),
    tuning_db: Path | None = typer.Option(
        None,
        "--tuning-db",
        help="meta_schedule tuning database directory, reused across runs "
        "(default .codesign-cache/tuning/, or under $CODESIGN_CACHE_DIR).",
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
    if threads < 1 or repeat < 1 or rounds < 0 or tune < 0:
        raise CodesignError(
            "measure: --threads and --repeat must be at least 1, --rounds and --tune at least 0"
        )
    if model in ("sweep", "report") and (whole_stage or tune):
        raise CodesignError(
            f"measure: --whole-stage and --tune apply to a model, not to {model} "
            "(fix: codesign measure MODEL --whole-stage)"
        )
    if csr and whole_stage:
        raise CodesignError(
            "measure: --whole-stage lowers embedding bags with fixed pooling only (fix: drop --csr)"
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
            whole_stage=whole_stage,
            tune=tune,
            tuning_db=tuning_db,
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
    *,
    whole_stage=False,
    tune=0,
    tuning_db=None,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from codesign.cost_models import calibration as cb
    from codesign.cost_models import tvm_measured as tm
    from codesign.cost_models import tvm_stage as ts

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
        stages = []
        for b in batches if whole_stage else ():
            progress.update(task, description=f"stage {model} B{b} [dim]building[/]")
            stages.append(
                ts.compare_stage(
                    model,
                    b,
                    database,
                    timing=timing,
                    timeout_s=timeout_s,
                    isolate=not in_process,
                    retry_failed=retry_failed,
                )
            )
        tuned = []
        if tune:
            from codesign.cost_models import tvm_tuning as tt

            dense = [s for s in specs if s.kind in tt.TUNABLE]
            tune_task = progress.add_task("", total=len(dense))

            def tuned_step(spec, how):
                progress.update(
                    tune_task, advance=1, description=f"tuned {spec.label()} [dim]{how}[/]"
                )

            tuned = tt.measure_tuned_specs(
                dense,
                database,
                trials=tune,
                work_dir=tuning_db,
                timing=timing,
                retry_failed=retry_failed,
                on_progress=tuned_step,
            )
    if as_json:
        data = summary.as_dict()
        if whole_stage:
            data["stages"] = [c.as_dict() for c in stages]
        if tune:
            data["tuned"] = _tuned_rows(summary, tuned)
        print_json(data)
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
    if whole_stage:
        _print_stages(model, stages, threads)
    if tune:
        _print_tuned(summary, tuned, tune)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


def _print_stages(model, stages, threads) -> None:
    table = Table(title=f"{model} as one stage (Relax VM), threads {threads}")
    for col in (
        "batch",
        "status",
        "whole stage",
        "sum of ops",
        "stage / ops",
        "analytical",
        "stage / analytical",
        "calibrated",
        "note",
    ):
        table.add_column(col, justify="left" if col in ("status", "note") else "right")
    for c in stages:
        note = c.row.error[:80] or ("from the database" if c.cached else "")
        if c.ops_missing:
            note = (note + "; " if note else "") + f"{len(c.ops_missing)} op(s) not measured"
        table.add_row(
            str(c.batch),
            c.row.status,
            _seconds(c.stage_s),
            _seconds(c.ops_sum_s),
            _ratio(c.stage_s, c.ops_sum_s),
            _seconds(c.analytical_s),
            _ratio(c.stage_s, c.analytical_s),
            _seconds(c.calibrated_s),
            note,
        )
    out.print(table)


def _tuned_rows(summary, tuned) -> list[dict]:
    hand = {r.signature: r for r in summary.rows}
    rows = []
    for row, info in tuned:
        base = hand.get(row.signature)
        rows.append(
            {
                "kernel": row.kernel,
                "status": row.status,
                "error": row.error,
                "hand_s": base.latency_s if base is not None and base.ok else None,
                "ms_s": row.latency_s,
                "target": row.target,
                **info,
            }
        )
    return rows


def _print_tuned(summary, tuned, trials) -> None:
    table = Table(title=f"meta_schedule tuning, {trials} trials per kernel")
    for col in ("kernel", "status", "hand", "ms", "hand / ms", "tuning", "note"):
        table.add_column(col, justify="left" if col in ("kernel", "status", "note") else "right")
    for entry in _tuned_rows(summary, tuned):
        if not entry.get("tuning"):
            how = "from the database"
        elif entry["tuning"] == "reused":
            how = f"records reused ({entry['records']})"
        else:
            how = f"tuned {_seconds(entry['tune_s'])}"
        table.add_row(
            entry["kernel"],
            entry["status"],
            _seconds(entry["hand_s"]),
            _seconds(entry["ms_s"]),
            _ratio(entry["hand_s"], entry["ms_s"]),
            how,
            entry["error"][:80],
        )
    out.print(table)


def _report(database, target, threads, as_json) -> None:
    from codesign.cost_models import calibration as cb
    from codesign.cost_models import tvm_stage as ts

    data = cb.report(
        database,
        target=target,
        threads=threads,
        dispatch=ts.fit_dispatch(database, threads=threads),
    )
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
    ok = h["mape"] <= 0.10 and h["spearman"] >= 0.9
    out.print(
        f"held-out MAPE {_pct(h['mape'])} (target <= 10%), Spearman {_num(h['spearman'])} "
        f"(target >= 0.9): {'met' if ok else 'NOT met'}",
        style="green" if ok else "yellow",
    )
    if data["failed"]:
        out.print(f"{len(data['failed'])} failed measurement(s) left out", style="yellow")
    d = data.get("dispatch") or {}
    if d:
        out.print(
            f"whole-stage glue: {d['per_call_s'] * 1e6:.2f} us per kernel call + "
            f"{d['per_byte_s'] * 1e12:.2f} us/MB the kernels write, fitted to "
            f"{len(d['samples'])} --whole-stage measurement(s) (stage MAPE "
            f"{_pct(d['mape_kernels_only'])} -> {_pct(d['mape'])})"
        )
    else:
        out.print(
            "whole-stage glue: not fitted (fix: `codesign measure MODEL --whole-stage` first)",
            style="dim",
        )
    if data.get("dropped_stage_overhead"):
        out.print(
            "the plan-run stage overhead fitted before was priced with the old knobs and is "
            "dropped (fix: `codesign plan run PLAN --calibrate` again)",
            style="yellow",
        )
    out.print(
        f"{data['measurements']} measurements in {data['db']}; "
        f"calibration saved to {data['calibration']}",
        style="dim",
    )
