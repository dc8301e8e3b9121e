"""The `codesign` command line: one sub-app per noun; each command parses, calls one library
function (:mod:`codesign.api`) and renders."""

from __future__ import annotations

import typer

from codesign import __version__
from codesign.cli import cost, measure, models, optimize, pipeline, plan, quality, targets
from codesign.cli._common import STATE, OneLineUsageGroup

app = typer.Typer(
    name="codesign",
    help="Hardware/software co-design optimizer for deep recommendation inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=OneLineUsageGroup,
)
app.add_typer(models.app, name="models")
app.add_typer(targets.app, name="targets")
app.command("cost")(cost.cost_cmd)
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(quality.app, name="quality")
app.add_typer(plan.app, name="plan")
app.command("optimize")(optimize.optimize_cmd)
app.command("worker")(optimize.worker_cmd)
app.command("report")(optimize.report_cmd)
app.command("measure")(measure.measure_cmd)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"codesign {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Lower recommendation models to a tensor IR, cost them on CPU/GPU/accelerator targets,
    and search hardware/software co-designs."""
    if debug:
        STATE["debug"] = True


def main() -> None:
    app()
