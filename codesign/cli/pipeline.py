"""`codesign pipeline`: multi-stage ranking pipelines under load."""

from __future__ import annotations

import dataclasses

import typer
from rich.table import Table

from codesign.cli._common import boundary, check_int, check_number, err, out, print_json

#: Bounds of the load options (as a pipeline spec's ``load`` section bounds them).
MAX_QUERIES = 10**7
MAX_SEED = 2**32 - 1

app = typer.Typer(
    help="Evaluate multi-stage ranking pipelines: service times and tail latency "
    "under Poisson load.",
    no_args_is_help=True,
)


def _ms(value: float) -> str:
    return f"{value * 1e3:.3f} ms"


@app.command("evaluate")
@boundary
def evaluate_cmd(
    pipeline: str = typer.Argument(..., help="Pipeline spec .yaml (see examples/pipelines/)."),
    qps: float = typer.Option(..., "--qps", help="Offered load in queries per second."),
    sla_ms: float | None = typer.Option(
        None, "--sla-ms", help="Tail-latency target; also search the highest QPS that meets it."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of arrivals and query sizes."),
    queries: int | None = typer.Option(None, "--queries", help="Queries to simulate."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Per-stage service times, p50/p95/p99 latency, utilisation and max QPS under the SLA."""
    from codesign.pipeline import evaluate, load_pipeline

    check_number(qps, "--qps", example="200")
    check_number(sla_ms, "--sla-ms", example="25")
    check_int(seed, "--seed", low=0, high=MAX_SEED, example="0")
    check_int(queries, "--queries", low=1, high=MAX_QUERIES, example="2000")
    spec = load_pipeline(pipeline)
    if queries is not None:
        if queries <= spec.load.warmup:
            from codesign.errors import CodesignError

            raise CodesignError(
                f"--queries {queries}: must exceed the warm-up ({spec.load.warmup} queries)"
            )
        spec = dataclasses.replace(spec, load=dataclasses.replace(spec.load, queries=queries))
    with err.status(
        "simulating"
        + (" and searching max QPS under the SLA" if (sla_ms or spec.load.sla_ms) else "")
    ):
        info = evaluate(spec, qps, sla_ms=sla_ms, seed=seed)
    if as_json:
        print_json(info)
        return
    table = Table(
        title=f"{info['pipeline']} at {qps:g} QPS ({info['queries']} queries, "
        f"{info['arrival']} arrivals, seed {info['seed']})"
    )
    for col in (
        "stage",
        "servers",
        "service (full query)",
        "mean service",
        "utilization",
        "mean wait",
        "p95 wait",
    ):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for st in info["stages"]:
        table.add_row(
            st["name"],
            str(st["servers"]),
            _ms(st["service_s_full_query"]),
            _ms(st["mean_service_s"]),
            f"{100 * st['utilization']:.1f}%",
            _ms(st["mean_wait_s"]),
            _ms(st["p95_wait_s"]),
        )
    out.print(table)
    summary = Table(show_header=False, title="end-to-end latency")
    summary.add_column("quantity")
    summary.add_column("value", justify="right")
    summary.add_row("unloaded latency", _ms(info["unloaded_latency_s"]))
    for p in ("p50", "p95", "p99"):
        summary.add_row(f"{p} latency", _ms(info[f"{p}_latency_s"]))
    summary.add_row("throughput", f"{info['throughput_qps']:.1f} QPS")
    summary.add_row("stability limit", f"{info['stability_limit_qps']:.1f} QPS")
    summary.add_row("energy per query", f"{info['energy_j'] * 1e3:.3f} mJ")
    summary.add_row("provisioned power", f"{info['power_w']:.2f} W")
    if info["area_mm2"]:
        summary.add_row("silicon area", f"{info['area_mm2']:.2f} mm2")
    if "sla" in info:
        sla = info["sla"]
        label = f"max QPS with p{sla['percentile']} <= {sla['sla_s'] * 1e3:g} ms"
        summary.add_row(
            label,
            f"{sla['max_qps']:.1f} QPS"
            if sla["max_qps"] > 0
            else "none (unloaded latency above the SLA)",
        )
    out.print(summary)
    if info["stages"] and max(s["utilization"] for s in info["stages"]) > 0.98:
        err.print(
            "warning: a stage is saturated at this load; latencies grow with the number "
            "of queries simulated",
            style="yellow",
        )


@app.command("validate")
@boundary
def validate_cmd(
    pipeline: str = typer.Argument(..., help="Pipeline spec .yaml."),
) -> None:
    """Check a pipeline spec (funnel, models, targets, knobs, capacity) without simulating."""
    from codesign.pipeline import load_pipeline

    spec = load_pipeline(pipeline)
    stages = " -> ".join(
        f"{s.name}: {s.model} {s.items}>{s.keep} on {s.target} x{s.engines}" for s in spec.stages
    )
    out.print(f"{spec.name}: ok ({stages})")


@app.command("deeprecsched")
@boundary
def deeprecsched_cmd(
    model: str = typer.Argument(..., help="A zoo model or spec .yaml (single-stage)."),
    cpu_target: str = typer.Option("cpu/cascadelake", "--cpu-target"),
    accel_target: str | None = typer.Option(
        None, "--accel-target", help="Offload large queries to this target."
    ),
    engines: int | None = typer.Option(
        None, "--engines", help="Single-core CPU engines (default: all the CPU target's cores)."
    ),
    sla_ms: float = typer.Option(25.0, "--sla-ms", help="Tail-latency target."),
    percentile: int = typer.Option(95, "--percentile", help="50, 95 or 99."),
    queries: int = typer.Option(2000, "--queries"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """DeepRecSched baseline: hill-climb the per-core batch size and the accelerator offload
    threshold for the highest QPS whose tail latency meets the SLA."""
    from codesign.errors import CodesignError
    from codesign.search.deeprecsched import DeepRecSchedSettings, deeprecsched

    check_number(sla_ms, "--sla-ms", example="25")
    check_int(seed, "--seed", low=0, high=MAX_SEED, example="0")
    check_int(queries, "--queries", low=100, high=MAX_QUERIES, example="2000")
    check_int(engines, "--engines", low=1, high=4096, example="8")
    if percentile not in (50, 95, 99):
        raise CodesignError(f"--percentile {percentile}: use 50, 95 or 99")
    if queries < 100:
        raise CodesignError(f"--queries {queries}: simulate at least 100 queries")
    settings = DeepRecSchedSettings(
        model=model,
        cpu_target=cpu_target,
        accel_target=accel_target,
        engines=engines,
        sla_ms=sla_ms,
        percentile=percentile,
        queries=queries,
        seed=seed,
    )
    with err.status("hill-climbing") as status:
        result = deeprecsched(settings, progress=lambda msg: status.update(msg))
    if as_json:
        print_json(result.as_dict())
        return
    table = Table(title=f"DeepRecSched: {model}, p{percentile} <= {sla_ms:g} ms")
    for col in ("batch", "offload threshold", "max QPS"):
        table.add_column(col, justify="right")
    for h in result.history:
        table.add_row(
            str(h["batch"]), str(h["offload_threshold_items"] or "-"), f"{h['max_qps']:.1f}"
        )
    out.print(table)
    out.print(
        f"best: batch {result.batch}, offload threshold "
        f"{result.threshold or 'none'} -> {result.max_qps:.1f} QPS"
    )
