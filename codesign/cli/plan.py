"""`codesign plan`: read a deployment plan back, re-price it, print its JSON Schema."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from codesign.cli._common import boundary, check_number, out, print_json

app = typer.Typer(
    help="Show, re-price and validate deployment plans (RUN_DIR/plans/plan-NNNNN.json).",
    no_args_is_help=True,
)

PLAN_ARG = typer.Argument(..., help="A plan file (RUN_DIR/plans/plan-NNNNN.json).")
JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


@app.command("show")
@boundary
def show_cmd(plan_path: Path = PLAN_ARG, as_json: bool = JSON) -> None:
    """The plan's stages with their full configuration, its per-pool predictions, predicted
    objectives and provenance."""
    from codesign.plan import load_plan

    plan = load_plan(plan_path)
    if as_json:
        print_json(plan.to_dict())
        return
    ctx = plan.context
    out.print(
        f"[bold]plan[/] {plan_path}: run {plan.run!r}, trial {plan.trial}; priced at "
        f"{ctx['qps']:g} QPS ({ctx['queries']} queries, {ctx['warmup']} warm-up, load seed "
        f"{ctx['seed']}, {ctx['arrival']} arrivals)"
    )
    stages = Table(title="stages (the full configuration of one engine; * = set by the plan)")
    for col in ("stage", "model", "items>keep", "target", "engines", "configuration"):
        stages.add_column(col, overflow="fold")
    for st, res in zip(plan.design["stages"], plan.resolved["stages"], strict=True):
        own = set(st.get("knobs", {}))
        config = ", ".join(
            f"{k}={_fmt(v)}{'*' if k in own else ''}" for k, v in sorted(res["point"].items())
        )
        stages.add_row(
            st["name"],
            st["model"],
            f"{st['items']}>{st['keep']}",
            st["target"],
            str(st["engines"]),
            config,
        )
    out.print(stages)
    for target, chip in plan.resolved["chips"].items():
        chosen = set(plan.design.get("chips", {}).get(target, {}))
        out.print(
            f"chip {target}: "
            + ", ".join(f"{k}={_fmt(v)}{'*' if k in chosen else ''}" for k, v in chip.items())
        )
    pools = Table(title="predicted per server pool")
    for col in ("pool", "servers", "service s (full query)", "mean service s", "util", "energy J"):
        pools.add_column(col, justify="left" if col == "pool" else "right")
    for p in plan.pools:
        pools.add_row(
            p["name"],
            str(p["servers"]),
            _fmt(p["service_s_full_query"]),
            _fmt(p.get("mean_service_s")),
            _fmt(p.get("utilization")),
            _fmt(p.get("energy_j")),
        )
    out.print(pools)
    out.print(_metrics_table("predicted", plan.predicted, objectives=list(plan.objectives)))
    prov = plan.provenance
    out.print(
        f"provenance: codesign {prov.get('codesign_version')}, config {prov.get('config_hash')}, "
        f"search seed {prov.get('seed')}, cost model {prov.get('cost_model')} "
        f"({', '.join(prov.get('stage_cost_models', ()))})",
        style="dim",
    )
    from codesign.plan import fallback_lines

    for line in fallback_lines(plan):  # the chosen model left some ops to the analytical one
        out.print(line, style="yellow", markup=False)


def _check_cost_model(cost_model: str | None) -> None:
    """One line before any work when ``--cost-model`` names no model."""
    from codesign.cost_models.select import COST_MODELS
    from codesign.errors import CodesignError

    if cost_model is not None and cost_model not in COST_MODELS:
        raise CodesignError(f"--cost-model {cost_model!r}: use one of {', '.join(COST_MODELS)}")


def _metrics_table(title: str, predicted, *, objectives, again=None) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("plan", justify="right")
    if again is not None:
        table.add_column("now", justify="right")
        table.add_column("change", justify="right")
    for name, value in predicted.items():
        label = f"{name} *" if name in objectives else name
        if again is None:
            table.add_row(label, _fmt(value))
            continue
        now = again.get(name)
        change = (
            f"{(now - value) / abs(value):+.1%}"
            if isinstance(now, float) and isinstance(value, float) and value
            else "-"
        )
        table.add_row(label, _fmt(value), _fmt(now), change)
    return table


@app.command("evaluate")
@boundary
def evaluate_cmd(
    plan_path: Path = PLAN_ARG,
    qps: float | None = typer.Option(
        None, "--qps", min=1e-9, help="Price at this load instead of the plan's."
    ),
    cost_model: str | None = typer.Option(
        None,
        "--cost-model",
        help="analytical, calibrated or tvm instead of the plan's (host-timed stages only).",
    ),
    queries: int | None = typer.Option(
        None,
        "--queries",
        min=10,
        help="Simulated queries (default: the plan's); more gives a tighter percentile.",
    ),
    as_json: bool = JSON,
) -> None:
    """Re-price a plan through the search's evaluator: at the plan's own load and seed this
    reproduces its predicted metrics; --qps, --cost-model and --queries price it otherwise."""
    from codesign.plan import evaluate_plan, load_plan

    _check_cost_model(cost_model)
    check_number(qps, "--qps", example="200")
    plan = load_plan(plan_path)
    metrics = evaluate_plan(plan, qps=qps, cost_model=cost_model, queries=queries).as_dict()
    if as_json:
        print_json({"plan": str(plan_path), "qps": qps or plan.context["qps"], "metrics": metrics})
        return
    how = f"at {qps:g} QPS" if qps else f"at the plan's {plan.context['qps']:g} QPS"
    if cost_model:
        how += f" with the {cost_model} model"
    if queries:
        how += f", {queries} queries"
    out.print(
        _metrics_table(
            f"trial {plan.trial} re-priced {how}",
            plan.predicted,
            objectives=list(plan.objectives),
            again=metrics,
        )
    )


@app.command("schema")
@boundary
def schema_cmd() -> None:
    """Print the JSON Schema of plan files."""
    from codesign.plan import SCHEMA

    print_json(SCHEMA)


@app.command("run")
@boundary
def run_cmd(
    plan_path: Path = PLAN_ARG,
    qps: float | None = typer.Option(
        None, "--qps", min=1e-9, help="Offered load (default: the plan's)."
    ),
    duration: float = typer.Option(10.0, "--duration", min=0.5, help="Seconds of load."),
    warmup: float = typer.Option(1.0, "--warmup", min=0.0, help="Seconds not measured."),
    seed: int = typer.Option(0, "--seed", help="Arrival and weight seed."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Where to write the result JSON (default: RUN_DIR/measured/)."
    ),
    cost_model: str | None = typer.Option(
        None,
        "--cost-model",
        help="Predict with analytical, calibrated or tvm instead of the plan's model.",
    ),
    calibrate: bool = typer.Option(
        False,
        "--calibrate",
        help="Fit the calibrated host model's deployed-stage terms (overhead, hand-off, cold "
        "term, frontend share, service shape) to this run and the runs before it, and save "
        "them with the calibration (needs `codesign measure report`).",
    ),
    pin: bool = typer.Option(
        True, "--pin/--no-pin", help="Pin each one-thread engine to a core (round robin)."
    ),
    processes: bool = typer.Option(
        True,
        "--processes/--threads",
        help="Run each engine as a forked process (no shared GIL) or as a thread.",
    ),
    as_json: bool = JSON,
) -> None:
    """Execute a cpu/host plan on this machine: each stage compiled with TVM, the funnel with
    top-k between stages, engines as processes pinned to cores, an open-loop Poisson load;
    prints measured latency percentiles, throughput and per-stage service beside the
    prediction."""
    import json

    from codesign.cli._common import err
    from codesign.deploy import STALL_S, check_runnable, close_loop, run_plan
    from codesign.plan import load_plan

    _check_cost_model(cost_model)
    check_number(qps, "--qps", example="200")
    check_number(duration, "--duration", example="10", maximum=86_400)
    if not 0 <= warmup < duration:
        from codesign.errors import CodesignError

        raise CodesignError(
            f"--warmup {warmup:g}: must be at least 0 and under --duration {duration:g} "
            "(fix: e.g. --warmup 1)"
        )
    plan = load_plan(plan_path)
    check_runnable(plan)
    if calibrate:  # fail before the run, not after it
        from codesign.cost_models.calibration import CALIBRATION_FILE, Calibration
        from codesign.cost_models.measure_db import default_path

        Calibration.load(default_path().parent / CALIBRATION_FILE)
    load = qps or float(plan.context["qps"])
    result = run_plan(
        plan,
        qps=load,
        duration_s=duration,
        warmup_s=warmup,
        seed=seed,
        status=lambda text: err.print(text, style="dim"),
        cost_model=cost_model,
        pin=pin,
        processes=processes,
    )
    data = {"plan": str(plan_path), "trial": plan.trial, **result.as_dict()}
    if calibrate:
        fit = close_loop(plan, result)
        data["stage_overhead"] = {k: v for k, v in fit.items() if k != "samples"}
    target_dir = out_dir or plan_path.resolve().parent.parent / "measured"
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"plan-{plan.trial:05d}-{load:g}qps.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    if as_json:
        print_json(data)
        return
    table = Table(title=f"trial {plan.trial} run at {load:g} QPS for {result.duration_s:.1f} s")
    for col in ("", "measured", "predicted", "error"):
        table.add_column(col, justify="left" if not col else "right")
    for key in ("p50_latency_s", "p95_latency_s", "p99_latency_s"):
        m, p = getattr(result, key), result.predicted.get(key)
        table.add_row(key, _fmt(m), _fmt(p), f"{(m - p) / p:+.1%}" if p else "-")
    table.add_row("throughput_qps", _fmt(result.throughput_qps), _fmt(load), "")
    for stage, predicted in zip(result.stages, result.predicted_stage_service_s, strict=False):
        m = stage.mean_service_s
        table.add_row(
            f"{stage.name} service s ({stage.model}, x{stage.engines})",
            _fmt(m),
            _fmt(predicted),
            f"{(m - predicted) / predicted:+.1%}" if predicted else "-",
        )
    out.print(table)
    out.print(
        f"{result.completed} of {result.offered} queries completed, {result.measured_after_warmup}"
        f" measured after the warm-up; written to {path}",
        style="dim",
    )
    late = result.send_late_s
    if late:
        out.print(
            f"load generator: queries sent {late['p50'] * 1e6:.0f} us late at p50, "
            f"{late['p99'] * 1e6:.0f} us at p99, {late['max'] * 1e3:.1f} ms at most (each is "
            f"timed from its arrival); stalls over {STALL_S * 1e3:g} ms: "
            f"{result.send_stalls.get('count', 0)}, "
            f"{result.send_stalls.get('total_s', 0.0) * 1e3:.0f} ms in all",
            style="dim",
        )
    if result.host_steal_s > 0.005:
        out.print(
            f"the hypervisor took {result.host_steal_s * 1e3:.0f} ms of CPU from this machine "
            "during the load (steal): host pauses stretch queries, and no model of this "
            "machine predicts them",
            style="yellow",
        )
    report = _refresh_report(plan_path)
    if report:
        out.print(f"report: {report}", style="dim")
    if calibrate:
        o = data["stage_overhead"]
        out.print(
            f"calibrated model: stage overhead {o['fixed_s'] * 1e6:.1f} us + "
            f"{o['per_item_s'] * 1e9:.2f} ns/item per batch, fitted to "
            f"{len(fit['samples'])} stage runs (stage-service MAPE {o['mape_before']:.0%} -> "
            f"{o['mape_after']:.0%}); saved with the calibration"
        )


def _refresh_report(plan_path: Path) -> Path | None:
    """Rebuild the report of the plan's run directory (it plots the measured runs), when the
    plan sits in one; None otherwise."""
    from codesign.errors import CodesignError
    from codesign.search.study import STUDY_FILE, load_existing, storage_url, write_outputs

    run_dir = plan_path.resolve().parent.parent
    if not (run_dir / STUDY_FILE).exists():
        return None
    try:
        study, cfg, run_dir = load_existing(str(run_dir))
        write_outputs(study, cfg, run_dir, storage_url(run_dir, None))
    except CodesignError:
        return None
    return run_dir / "report.html"
