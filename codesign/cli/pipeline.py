"""`codesign pipeline`: multi-stage ranking pipelines under load."""

from __future__ import annotations

import dataclasses

import typer
from rich.table import Table

from codesign.cli._common import boundary, err, out, print_json

app = typer.Typer(help="Evaluate multi-stage ranking pipelines: service times and tail latency "
                  "under Poisson load.", no_args_is_help=True)


def _ms(value: float) -> str:
    return f"{value * 1e3:.3f} ms"


@app.command("evaluate")
@boundary
def evaluate_cmd(
    pipeline: str = typer.Argument(..., help="Pipeline spec .yaml (see examples/pipelines/)."),
    qps: float = typer.Option(..., "--qps", help="Offered load in queries per second."),
    sla_ms: float | None = typer.Option(None, "--sla-ms", help="Tail-latency target; also "
                                        "search the highest QPS that meets it."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of arrivals and query sizes."),
    queries: int | None = typer.Option(None, "--queries", help="Queries to simulate."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Per-stage service times, p50/p95/p99 latency, utilisation and max QPS under the SLA."""
    from codesign.pipeline import evaluate, load_pipeline

    spec = load_pipeline(pipeline)
    if queries is not None:
        if queries <= spec.load.warmup:
            from codesign.errors import CodesignError

            raise CodesignError(f"--queries {queries}: must exceed the warm-up "
                                f"({spec.load.warmup} queries)")
        spec = dataclasses.replace(spec, load=dataclasses.replace(spec.load, queries=queries))
    with err.status("simulating" + (" and searching max QPS under the SLA" if
                                    (sla_ms or spec.load.sla_ms) else "")):
        info = evaluate(spec, qps, sla_ms=sla_ms, seed=seed)
    if as_json:
        print_json(info)
        return
    table = Table(title=f"{info['pipeline']} at {qps:g} QPS ({info['queries']} queries, "
                  f"{info['arrival']} arrivals, seed {info['seed']})")
    for col in ("stage", "servers", "service (full query)", "mean service", "utilization",
                "mean wait", "p95 wait"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for st in info["stages"]:
        table.add_row(st["name"], str(st["servers"]), _ms(st["service_s_full_query"]),
                      _ms(st["mean_service_s"]), f"{100 * st['utilization']:.1f}%",
                      _ms(st["mean_wait_s"]), _ms(st["p95_wait_s"]))
    out.print(table)
    summary = Table(show_header=False, title="end-to-end latency")
    summary.add_column("quantity")
    summary.add_column("value", justify="right")
    summary.add_row("unloaded latency", _ms(info["unloaded_latency_s"]))
    for p in ("p50", "p95", "p99"):
        summary.add_row(f"{p} latency", _ms(info[f"{p}_latency_s"]))
    summary.add_row("throughput", f"{info['throughput_qps']:.1f} QPS")
    summary.add_row("stability limit", f"{info['stability_limit_qps']:.1f} QPS")
    if "sla" in info:
        sla = info["sla"]
        label = f"max QPS with p{sla['percentile']} <= {sla['sla_s'] * 1e3:g} ms"
        summary.add_row(label, f"{sla['max_qps']:.1f} QPS" if sla["max_qps"] > 0 else
                        "none (unloaded latency above the SLA)")
    out.print(summary)
    if info["stages"] and max(s["utilization"] for s in info["stages"]) > 0.98:
        err.print("warning: a stage is saturated at this load; latencies grow with the number "
                  "of queries simulated", style="yellow")


@app.command("validate")
@boundary
def validate_cmd(
    pipeline: str = typer.Argument(..., help="Pipeline spec .yaml."),
) -> None:
    """Check a pipeline spec (funnel, models, targets, knobs, capacity) without simulating."""
    from codesign.pipeline import load_pipeline

    spec = load_pipeline(pipeline)
    stages = " -> ".join(f"{s.name}: {s.model} {s.items}>{s.keep} on {s.target} x{s.engines}"
                         for s in spec.stages)
    out.print(f"{spec.name}: ok ({stages})")
