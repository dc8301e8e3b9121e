"""`codesign quality`: train model families into the quality cache, replay funnels from it, and
show measured quality tables."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from codesign.cli._common import boundary, err, out, print_json

app = typer.Typer(
    help="Recommendation quality: train model families, replay multi-stage funnels, tables.",
    no_args_is_help=True,
)

# --- shared options -------------------------------------------------------------------------

DATASET = typer.Option(
    "synthetic",
    "--dataset",
    "-d",
    help="synthetic (generated, no download), criteo:PATH (Kaggle train.txt TSV) or "
    "movielens:PATH (ratings.dat / ratings.csv, or their folder).",
)
SEED = typer.Option(0, "--seed", min=0, help="Seed of the dataset and of training.")
SAMPLES = typer.Option(
    None,
    "--samples",
    min=1,
    help="synthetic: training samples (default 1,000,000); criteo: training lines read "
    "(default: all); movielens: ratings read (default: all).",
)
VAL_SAMPLES = typer.Option(
    None,
    "--val-samples",
    min=1,
    help="Validation samples (default 524,288 = 128 pools of 4096; criteo: the last lines "
    "read). movielens: pools x pool size (default: the family's, e.g. 2800 x 1000).",
)
MAX_ROWS = typer.Option(
    None,
    "--max-rows",
    min=1,
    help="synthetic: cap on Criteo's cardinalities (default 200); criteo: hash ids into this "
    "many rows per table (default: one row per distinct value).",
)
POOL_SIZE = typer.Option(
    None,
    "--pool-size",
    min=2,
    help="movielens: candidates per query, 1 positive + sampled negatives (default: the "
    "family's, 1000 for ML-1M, 4000 for ML-20M).",
)
NEGATIVES = typer.Option(
    4, "--negatives", min=0, help="movielens: sampled negatives per training positive."
)
EPOCHS = typer.Option(1, "--epochs", min=1, help="Training epochs.")
CACHE_DIR = typer.Option(
    None,
    "--cache-dir",
    help="Cache root (default: $CODESIGN_CACHE_DIR, else ./.codesign-cache); entries go "
    "under its quality/ folder.",
)
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _options(samples, val_samples, seed, max_rows, pool_size, negatives):
    from codesign.quality.datasets import DataOptions

    return DataOptions(
        samples=samples,
        val_samples=val_samples,
        seed=seed,
        max_rows=max_rows,
        pool_size=pool_size,
        negatives=negatives,
    )


class PlainLines:
    """Progress as plain lines on stderr, for logs and pipes (no bars, no escape codes): one line
    each time the work passes another :data:`STEP_PERCENT` of its total, and at least one every
    :data:`EVERY_S` seconds while it runs."""

    STEP_PERCENT = 10
    EVERY_S = 10.0

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = max(1, total)
        self.done = 0
        self.start = time.monotonic()
        self.last_s = self.start
        self.last_step = 0
        #: ``done`` when the last line was printed (-1: none yet)
        self.printed = -1

    def update(self, done: int, extra: str = "") -> None:
        self.done = done
        step = min(100, 100 * done // self.total) // self.STEP_PERCENT
        now = time.monotonic()
        if step > self.last_step or now - self.last_s >= self.EVERY_S:
            self.last_step = max(self.last_step, step)
            self.last_s = now
            self.line(extra)

    def line(self, extra: str = "") -> None:
        self.printed = self.done
        pct = 100 * self.done / self.total
        tail = f", {extra}" if extra else ""
        plain(
            f"{self.label}: {pct:.0f} % ({self.done:,} of {self.total:,}){tail}, "
            f"{time.monotonic() - self.start:.0f} s"
        )


def plain(text: str) -> None:
    """One line on stderr as written (no markup, highlighting or wrapping), flushed."""
    err.print(text, markup=False, highlight=False, soft_wrap=True)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        err.file.flush()


class _PlainReporter:
    """Training progress as plain lines (see :class:`PlainLines`), for stderr that is not a
    terminal."""

    def __init__(self) -> None:
        self.lines: PlainLines | None = None

    def status(self, text: str) -> None:
        plain(text)

    def start(self, model: str, total_steps: int) -> None:
        self.lines = PlainLines(f"training {model}", total_steps)

    def advance(self, steps: int, loss: float) -> None:
        if self.lines is not None:
            self.lines.update(
                self.lines.done + steps, "" if math.isnan(loss) else f"loss {loss:.4f}"
            )

    def finish(self, model: str) -> None:
        if self.lines is not None:
            plain(f"trained {model} in {time.monotonic() - self.lines.start:.0f} s")
        self.lines = None


@contextlib.contextmanager
def training_reporter() -> Iterator[Any]:
    """Rich progress bars when stderr is a terminal, plain progress lines otherwise."""
    if not err.is_terminal:
        yield _PlainReporter()
        return
    with _progress() as progress:
        yield _RichReporter(progress)


class _RichReporter:
    """Progress bars on stderr, one per model."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def status(self, text: str) -> None:
        self.progress.console.print(text, style="dim", markup=False, highlight=False)

    def start(self, model: str, total_steps: int) -> None:
        self.task = self.progress.add_task(f"training {model}", total=total_steps, loss="")

    def advance(self, steps: int, loss: float) -> None:
        if self.task is not None:
            text = "" if math.isnan(loss) else f"loss {loss:.4f}"
            self.progress.update(self.task, advance=steps, loss=text)

    def finish(self, model: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=f"trained {model}")
        self.task = None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    )


# --- train ----------------------------------------------------------------------------------


@app.command("train")
@boundary
def train_cmd(
    dataset: str = DATASET,
    family: str = typer.Option(
        "recpipe-criteo",
        "--family",
        "-f",
        help="recpipe-criteo (rm-small/med/large), recpipe-movielens-1m, "
        "recpipe-movielens-20m, or a comma list of zoo models / spec files.",
    ),
    seed: int = SEED,
    samples: int | None = SAMPLES,
    val_samples: int | None = VAL_SAMPLES,
    max_rows: int | None = MAX_ROWS,
    pool_size: int | None = POOL_SIZE,
    negatives: int = NEGATIVES,
    epochs: int = EPOCHS,
    cache_dir: Path | None = CACHE_DIR,
    force: bool = typer.Option(False, "--force", help="Train again even if cached."),
    as_json: bool = JSON,
) -> None:
    """Train a family's models on a dataset (PyTorch, CPU) and cache their validation scores;
    print each model's AUC, accuracy and log loss. Cached models are reused ("cached")."""
    from codesign.quality.api import train_family
    from codesign.quality.train import TrainConfig

    options = _options(samples, val_samples, seed, max_rows, pool_size, negatives)
    with training_reporter() as reporter:
        result = train_family(
            dataset=dataset,
            family=family,
            options=options,
            train=TrainConfig(epochs=epochs, seed=seed),
            cache_dir=cache_dir,
            reporter=reporter,
            force=force,
        )
    if as_json:
        print_json(result)
        return
    table = Table(title=f"quality of {result['family']} on {result['dataset']} (validation)")
    for col, justify in [
        ("model", "left"),
        ("arch", "left"),
        ("AUC", "right"),
        ("accuracy", "right"),
        ("logloss", "right"),
        ("train+score", "right"),
        ("status", "left"),
    ]:
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in result["models"]:
        table.add_row(
            row["model"],
            row["arch"],
            f"{row['auc']:.4f}",
            f"{row['accuracy']:.4f}",
            f"{row['logloss']:.4f}",
            f"{row['train_time_s']:.1f} s",
            "cached" if row["cached"] else "trained",
        )
    out.print(table)
    first = result["models"][0]
    out.print(
        f"{first['train_samples']:,} training / {first['val_samples']:,} validation samples, "
        f"seed {result['seed']}, epochs {result['epochs']}; cache: {result['cache_dir']}",
        style="dim",
    )


# --- eval -----------------------------------------------------------------------------------


@app.command("eval")
@boundary
def eval_cmd(
    stages: list[str] = typer.Option(
        ...,
        "--stages",
        "-s",
        help="A funnel: MODEL:ITEMS>KEEP per stage, comma-separated, e.g. "
        "'rm-small:4096>512,rm-large:512>64'. Repeat to compare funnels.",
    ),
    metric: list[str] = typer.Option(
        [],
        "--metric",
        "-m",
        help="ndcg_recpipe@K (RecPipe's NDCG), ndcg@K (textbook), hr@K, precision@K; repeat "
        "or comma-separate (default: ndcg_recpipe, ndcg and hr at K = min(64, last keep)).",
    ),
    queries: int | None = typer.Option(
        None, "--queries", min=1, help="Replay only the first N queries (default: all)."
    ),
    dataset: str = DATASET,
    seed: int = SEED,
    samples: int | None = SAMPLES,
    val_samples: int | None = VAL_SAMPLES,
    max_rows: int | None = MAX_ROWS,
    pool_size: int | None = POOL_SIZE,
    negatives: int = NEGATIVES,
    epochs: int = EPOCHS,
    cache_dir: Path | None = CACHE_DIR,
    as_json: bool = JSON,
) -> None:
    """Replay multi-stage funnels over the cached validation scores (train first, with the same
    dataset options) and print their quality."""
    from codesign.quality.api import evaluate
    from codesign.quality.train import TrainConfig

    options = _options(samples, val_samples, seed, max_rows, pool_size, negatives)
    result = evaluate(
        stages,
        metric,
        dataset=dataset,
        options=options,
        train=TrainConfig(epochs=epochs, seed=seed),
        cache_dir=cache_dir,
        queries=queries,
    )
    if as_json:
        print_json(result)
        return
    table = Table(title=f"funnel quality on {result['dataset']} (validation, seed {seed})")
    table.add_column("stages", no_wrap=True)
    table.add_column("queries", justify="right")
    for name in result["metrics"]:
        table.add_column(name, justify="right", no_wrap=True)
    for row in result["results"]:
        table.add_row(
            row["stages"],
            f"{row['queries']:,}",
            *(f"{row['metrics'][m]:.4f}" for m in result["metrics"]),
        )
    out.print(table)
    out.print(
        "ndcg_recpipe = RecPipe's NDCG (position-weighted precision@k, ideal: k relevant); "
        "ndcg = textbook NDCG; hr = hit rate; values are fractions",
        style="dim",
    )


# --- table ----------------------------------------------------------------------------------


@app.command("table")
@boundary
def table_cmd(
    csv_path: Path | None = typer.Argument(
        None,
        help="A quality CSV (model,items,k,metric,value[,estimate][,source]); default: "
        "RecPipe's published Criteo tables (single models and funnels).",
    ),
    model: str | None = typer.Option(
        None, "--model", help="Look up this model, or a funnel's models: rm-small>rm-large ..."
    ),
    items: str | None = typer.Option(
        None, "--items", help="... at this pool size, or each stage's pool: 4096>128 ..."
    ),
    k: int = typer.Option(64, "--k", min=1, help="... and cut-off."),
    metric: str = typer.Option("ndcg_recpipe", "--metric", help="... for this metric."),
    as_json: bool = JSON,
) -> None:
    """Show a measured quality table, or look up one model or funnel (interpolated values
    between measured pool sizes are marked as estimates)."""
    from codesign.quality.tables import funnel_stages, load_csv, recpipe_criteo_table

    table_data = recpipe_criteo_table() if csv_path is None else load_csv(csv_path)
    if (model is None) != (items is None):
        from codesign.quality.errors import QualityTableError

        raise QualityTableError("a lookup needs both --model and --items")
    rows = (
        [table_data.lookup_funnel(funnel_stages(model, items, k), k, metric.lower())]
        if model is not None and items is not None
        else table_data.rows
    )
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    table = Table(title=f"quality table: {table_data.source}")
    for col, justify in [
        ("model", "left"),
        ("items", "right"),
        ("metric", "left"),
        ("value", "right"),
        ("estimate", "left"),
        ("source", "left"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r.model,
            ">".join(f"{p:,}" for p in r.pools),
            f"{r.metric}@{r.k}",
            f"{r.value:.4f}",
            "estimate" if r.estimate else "measured",
            r.source,
        )
    out.print(table)
