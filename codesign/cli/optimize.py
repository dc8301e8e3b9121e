"""`codesign optimize`, `codesign report` and `codesign worker`: the co-design search."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from codesign.cli._common import EXIT_EMPTY_FRONT, boundary, err, out
from codesign.cli.quality import PlainLines
from codesign.errors import CodesignError


def _front_table(front: list[dict], objectives: tuple[str, ...], title: str) -> Table:
    table = Table(title=title)
    table.add_column("trial", justify="right")
    for name in objectives:
        table.add_column(name, justify="right")
    table.add_column("design")
    for row in front:
        values = [f"{row['objectives'][o]:.4g}" for o in objectives]
        table.add_row(str(row["trial"]), *values, row["summary"])
    return table


@contextlib.contextmanager
def _trial_progress(label: str, total: int) -> Iterator[Callable[..., None]]:
    """``progress(state, last=False)`` for the study (``state``: finished and feasible
    trials): a rich bar on a terminal, plain lines (:class:`PlainLines`) otherwise."""
    if not err.is_terminal:
        lines = PlainLines(f"{label}: trials", total)

        def plain_update(state: dict, last: bool = False) -> None:
            done = min(state["finished"], total)
            extra = f"feasible {state['feasible']}"
            if last:
                if lines.printed != done:  # the final count, unless just printed
                    lines.done = done
                    lines.line(extra)
            else:
                lines.update(done, extra)

        yield plain_update
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("feasible {task.fields[feasible]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=total, feasible=0)

        def bar_update(state: dict, last: bool = False) -> None:
            bar.update(task, completed=min(state["finished"], total), feasible=state["feasible"])

        yield bar_update


def _run(
    config: Path | None,
    *,
    trials,
    sampler,
    seed,
    storage,
    out_dir,
    worker: int,
    strategy=None,
    inner_trials=None,
    cost_model=None,
    time_budget_s=None,
) -> None:
    from codesign.config import load_run_config
    from codesign.search.study import (
        check_run_dir,
        check_storage,
        default_run_dir,
        resolve_strategy,
        run_study,
    )

    if out_dir is not None:
        check_run_dir(out_dir, option="--out")
    if storage is not None:
        check_storage(storage, option="--storage")
        check_server_reachable(storage, option="--storage")
    cfg = load_run_config(
        config,
        trials=trials,
        sampler=sampler,
        seed=seed,
        strategy=strategy,
        inner_trials=inner_trials,
        cost_model=cost_model,
        time_budget_s=time_budget_s,
    )
    run_dir = out_dir or default_run_dir(cfg.name)
    _train_quality_models(cfg)
    two_level = resolve_strategy(cfg) == "two-level"
    how = f"two-level, inner {cfg.sampler}" if two_level else cfg.sampler
    with _trial_progress(f"{cfg.name} ({how}, seed {cfg.seed + worker})", cfg.trials) as progress:
        result = run_study(cfg, run_dir=run_dir, storage=storage, worker=worker, progress=progress)
        progress({"finished": result.finished, "feasible": result.feasible}, last=True)
    out.print(
        _front_table(
            result.front,
            cfg.objectives,
            f"Pareto front: {len(result.front)} plans; {result.finished} trials: "
            f"{result.evaluated} evaluated, {result.cached} cached (a design already "
            f"evaluated), {result.finished - result.feasible} infeasible (of them "
            f"{result.unbuildable} unbuildable, "
            f"{100 * result.unbuildable / max(1, result.finished):.1f} % of the trials), "
            f"{result.feasible} feasible",
        )
    )
    if result.not_counted:
        out.print(
            "not counted against the budget: "
            + ", ".join(f"{n} {why}" for why, n in sorted(result.not_counted.items()))
            + " (trials.csv, not_counted)",
            style="dim",
        )
    if result.outer_rounds:
        kinds: dict[str, int] = {}
        for r in result.outer_rounds:
            kinds[r["inner"]] = kinds.get(r["inner"], 0) + 1
        how = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        priced = sum(r["priced"] for r in result.outer_rounds)
        ref = ", ".join(f"{k} {v:g}" for k, v in (result.reference_point or {}).items())
        out.print(
            f"two-level: {len(result.outer_rounds)} hardware "
            f"point{'s' if len(result.outer_rounds) != 1 else ''} searched ({how}); the inner "
            f"loops priced {priced:,} designs; outer reference point: {ref}",
            style="dim",
        )
    from codesign.cost_models.queueing import tail_tolerance

    if result.stopped_by_time:
        out.print(
            f"stopped at the time budget ({cfg.time_budget_s:g} s) after {result.finished} of "
            f"{cfg.trials} trials; the front above is the best found so far (re-run to resume)",
            style="yellow",
        )

    measured = cfg.queries - cfg.warmup
    out.print(
        f"p95 latency from {measured} simulated queries per design (after {cfg.warmup} warm-up, "
        f"one arrival stream, seed {cfg.load_seed}): within +-"
        f"{100 * tail_tolerance(95, measured):.0f} % at 95 % confidence (exponential tail)",
        style="dim",
    )
    out.print(
        f"run directory: {result.run_dir}  (plans/, trials.csv, report.html; "
        f"storage {result.storage})",
        style="dim",
    )
    _exit_if_empty(result.why_empty)


def _exit_if_empty(why: list[str]) -> None:
    """An empty front: say why on stderr, one line per constraint, and exit 3."""
    if not why:
        return
    err.print("no feasible design: every trial missed a constraint", style="yellow")
    for line in why:
        err.print(f"  {line}", style="yellow", markup=False, soft_wrap=True)
    err.print(
        "(fix: relax the constraints in [constraints], or widen [space]; "
        f"exit code {EXIT_EMPTY_FRONT})",
        style="yellow",
        markup=False,
    )
    raise typer.Exit(EXIT_EMPTY_FRONT)


def _train_quality_models(cfg) -> None:
    """Quality replayed from trained models: train the ones the cache lacks, with progress."""
    from codesign.cli.quality import training_reporter
    from codesign.search.study import prepare_quality

    if cfg.quality_source != "replay":
        return
    with training_reporter() as reporter:
        trained = prepare_quality(cfg, reporter=reporter)
    if trained is not None:
        aucs = ", ".join(
            f"{m['model']} {m['auc']:.4f}{' (cached)' if m['cached'] else ''}"
            for m in trained["models"]
        )
        err.print(f"quality: {cfg.quality_metric} replayed on {trained['dataset']}; AUC {aucs}")


@boundary
def optimize_cmd(
    config: Path | None = typer.Argument(
        None, help="Run config .toml (default: the shipped RecPipe Criteo example)."
    ),
    trials: int | None = typer.Option(None, "--trials", "-n", help="Trial budget (all workers)."),
    sampler: str | None = typer.Option(
        None, "--sampler", help="auto|tpe|gp|nsga2|random|skopt (skopt: scalarised baseline)."
    ),
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        help="auto, joint (one sampler over everything) or two-level (hardware outside, "
        "software inside, HASCO-style; exact inner loop when the software space is small); auto: "
        "two-level when there are hardware knobs and the inner space can be enumerated.",
    ),
    inner_trials: int | None = typer.Option(
        None, "--inner-trials", help="Two-level: software trials per hardware point."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed (worker k uses seed + k)."),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="sqlite:///..., postgresql://... "
        "or journal:PATH (default: SQLite in the run directory).",
    ),
    out_dir: Path | None = typer.Option(None, "--out", help="Run directory (default runs/NAME)."),
    cost_model: str | None = typer.Option(
        None,
        "--cost-model",
        help="analytical (default), calibrated or tvm: how stages on cpu/host are priced "
        "(other targets stay analytical).",
    ),
    time_budget: float | None = typer.Option(
        None,
        "--time-budget",
        help="Stop after this many seconds with the front found so far (resume later).",
    ),
) -> None:
    """Search stage decompositions, placements and hardware knobs; writes plans/, trials.csv
    and report.html. Re-running the same command resumes the study."""
    _run(
        config,
        trials=trials,
        sampler=sampler,
        seed=seed,
        storage=storage,
        out_dir=out_dir,
        worker=0,
        strategy=strategy,
        inner_trials=inner_trials,
        cost_model=cost_model,
        time_budget_s=time_budget,
    )


def check_server_reachable(url: str, *, option: str) -> None:
    """A database server URL (``postgresql://``) must accept a connection before any work
    starts: one line naming ``option`` and the server's reason, instead of SQLAlchemy's
    traceback. Opening the storage also creates Optuna's tables, as the run would next."""
    if not url.startswith("postgresql"):
        return
    from sqlalchemy.exc import SQLAlchemyError

    from codesign.search.study import _redacted, check_storage, open_storage

    check_storage(url, option=option)
    try:
        open_storage(url)
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        raise CodesignError(
            f"{option} {_redacted(url)}: cannot connect to the database ({reason}) "
            "(fix: check host, port, database name and credentials, and that the server runs)"
        ) from None


@boundary
def worker_cmd(
    run: str = typer.Argument(..., help="Run directory or storage URL of a running study."),
    worker_id: int = typer.Option(1, "--worker-id", help="Distinct per worker; seed + id."),
) -> None:
    """Join a study from another process or machine until its trial budget is spent."""
    from codesign.search.study import load_existing, run_study

    check_server_reachable(run, option="RUN")
    _, cfg, run_dir = load_existing(run)
    storage = None if Path(run).is_dir() else run
    _train_quality_models(cfg)
    result = run_study(
        cfg, run_dir=run_dir, storage=storage, worker=worker_id, write_outputs_after=False
    )
    out.print(f"worker {worker_id}: study has {result.finished} finished trials")


@boundary
def report_cmd(
    run: str = typer.Argument(..., help="Run directory (or storage URL)."),
    out_dir: Path | None = typer.Option(
        None,
        "--out",
        help="Where to write, for a storage URL (default: the folder of its SQLite or journal "
        "file; runs/NAME for a database server).",
    ),
    png: bool = typer.Option(
        False,
        "--png",
        help="Also write every plot as PNG and SVG into RUN/plots/ (PNG needs codesign[plots]).",
    ),
    compare: str | None = typer.Option(
        None,
        "--compare",
        metavar="OTHER_RUN",
        help="Another run (directory or storage URL): write RUN/compare-NAME.html with both "
        "runs' points and fronts in the same axes (with --png, also RUN/plots/compare-NAME/).",
    ),
    feasible_only: bool = typer.Option(
        False,
        "--feasible-only",
        help="With --png: plot files without infeasible points, axes fitted to the others.",
    ),
) -> None:
    """Rebuild plans/, trials.csv and report.html from the study's storage and print the front
    (works while workers are still running)."""
    from codesign.report.data import read_report_data
    from codesign.report.export import compare_data, write_compare_page, write_plot_files
    from codesign.search.study import (
        check_run_dir,
        front_rows,
        load_existing,
        storage_url,
        why_empty,
        write_outputs,
    )

    if out_dir is not None:
        check_run_dir(out_dir, option="--out")
    if feasible_only and not png:
        raise typer.BadParameter("needs --png", param_hint="--feasible-only")
    if png:
        from codesign.report.png import require_matplotlib

        require_matplotlib()
    check_server_reachable(run, option="RUN")
    study, cfg, run_dir = load_existing(run, out_dir=out_dir)
    url = run if not Path(run).is_dir() else storage_url(run_dir, None)
    check_run_dir(run_dir, option="run directory")
    other = compare_data(compare) if compare is not None else None
    run_dir.mkdir(parents=True, exist_ok=True)
    write_outputs(study, cfg, run_dir, url)
    front = front_rows(study, cfg)
    out.print(_front_table(front, cfg.objectives, f"{cfg.name}: Pareto front"))
    out.print(f"report: {run_dir / 'report.html'}", style="dim")
    if png or other is not None:
        data = read_report_data(run_dir / "report.html")
        if png:
            files = write_plot_files(data, run_dir / "plots", feasible_only=feasible_only)
            out.print(f"plots: {len(files)} files in {run_dir / 'plots'}", style="dim")
        if other is not None:
            page, tag = write_compare_page(data, other, run_dir)
            out.print(f"comparison: {page}", style="dim")
            if png:
                files = write_plot_files(
                    data,
                    run_dir / "plots" / f"compare-{tag}",
                    compare=other,
                    feasible_only=feasible_only,
                )
                out.print(f"comparison plots: {len(files)} files in {files[0].parent}", style="dim")
    if not front:
        _exit_if_empty(why_empty(study, cfg))
