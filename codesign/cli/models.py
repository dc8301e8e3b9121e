"""`codesign models`: the model zoo and per-op model statistics."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from codesign import api
from codesign.cli._common import boundary, human_bytes, human_count, out, print_json
from codesign.errors import CodesignError

app = typer.Typer(
    help="List zoo models and show a model's ops, sizes and costs.", no_args_is_help=True
)


@app.command("list")
@boundary
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the models of the shipped zoo with their headline numbers (batch 1)."""
    rows = api.list_models()
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"codesign model zoo ({len(rows)} models)")
    for col, justify in [
        ("name", "left"),
        ("family", "left"),
        ("arch", "left"),
        ("MACs/item", "right"),
        ("emb bytes/item", "right"),
        ("model size", "right"),
    ]:
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r["name"],
            r["family"],
            r["arch"],
            human_count(r["macs_per_item"]),
            human_bytes(r["embedding_bytes_per_item"]),
            human_bytes(r["model_size_bytes"]),
        )
    out.print(table)
    out.print(
        "codesign models show NAME [--batch N] [--json] for a model's ops and totals", style="dim"
    )


@app.command("show")
@boundary
def show_cmd(
    model: str = typer.Argument(
        ..., help="A zoo model name (see `models list`), a spec .yaml, or an ONNX model (.onnx)."
    ),
    batch: int = typer.Option(1, "--batch", "-b", help="Items ranked per query (batch size)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    ir: bool = typer.Option(False, "--ir", help="Also print the lowered IR graph."),
    save_ir: Path | None = typer.Option(None, "--save-ir", help="Write the IR graph as JSON here."),
    passes: str = typer.Option(
        "",
        "--passes",
        "-p",
        help="Comma-separated IR passes to apply first, e.g. dce,merge-small-tables,"
        "group-embeddings,quantize-embeddings ('default' for the standard pipeline).",
    ),
) -> None:
    """Show a model's per-op table (op, shape, params, MACs, bytes) and its totals."""
    pass_names = _pass_list(passes)
    check_output_file(save_ir, "--save-ir")
    info = api.describe_model(model, batch=batch, passes=pass_names)
    if save_ir is not None or ir:
        graph = api.load_graph(model, batch=batch, passes=pass_names)
    if save_ir is not None:
        save_ir.write_text(graph.to_json() + "\n", encoding="utf-8")
    if as_json:
        print_json(info)
        return
    totals = info["totals"]
    table = Table(
        title=f"{info['model']} ({info['arch']}), batch {batch}",
        caption=info["description"] or None,
    )
    for col, justify in [
        ("node", "left"),
        ("op", "left"),
        ("shape/item", "left"),
        ("params", "right"),
        ("MACs/item", "right"),
        ("weights", "right"),
        ("gathered/item", "right"),
        ("act. bytes/batch", "right"),
    ]:
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in info["ops"]:
        table.add_row(
            row["name"],
            row["op"],
            "x".join(map(str, row["shape"])) or "-",
            human_count(row["params"]) if row["params"] else "",
            human_count(row["macs_per_item"]) if row["macs_per_item"] else "",
            human_bytes(row["weight_bytes"]) if row["weight_bytes"] else "",
            human_bytes(row["embedding_bytes_per_item"]) if row["embedding_bytes_per_item"] else "",
            human_bytes(row["activation_bytes_per_item"] * batch),
        )
    out.print(table)
    summary = Table(title="totals", show_header=False)
    summary.add_column("quantity")
    summary.add_column("value", justify="right")
    by_op = ", ".join(f"{op} {v:,.0f}" for op, v in totals["macs_per_item_by_op"].items())
    for label, value in [
        (
            "model size",
            f"{human_bytes(totals['model_size_bytes'])} ({totals['model_size_bytes']:,} B)",
        ),
        ("  embedding tables", human_bytes(totals["embedding_table_bytes"])),
        ("  dense weights", human_bytes(totals["dense_weight_bytes"])),
        ("parameters", f"{totals['params']:,}"),
        ("MACs per item", f"{totals['macs_per_item']:,.0f}  ({by_op})"),
        ("embedding lookups per item", f"{totals['embedding_lookups_per_item']:,}"),
        ("embedding bytes gathered per item", f"{totals['embedding_bytes_per_item']:,.0f} B"),
        (f"MACs per batch of {batch}", human_count(totals["macs_per_batch"])),
        (f"embedding bytes per batch of {batch}", human_bytes(totals["embedding_bytes_per_batch"])),
    ]:
        summary.add_row(label, value)
    out.print(summary)
    if pass_names:
        out.print(f"passes: {', '.join(pass_names)}", style="dim")
    if info["source"]:
        out.print(f"source: {info['source']}", style="dim")
    if ir:
        out.print(str(graph), highlight=False, markup=False)
    if save_ir is not None:
        out.print(f"IR written to {save_ir}", style="dim")


def _pass_list(text: str) -> list[str]:
    from codesign.ir.passes import DEFAULT_PIPELINE, get_pass

    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["default"]:
        return list(DEFAULT_PIPELINE)
    for name in names:
        try:
            get_pass(name)  # unknown names fail here, with the list of known ones
        except CodesignError as exc:
            raise CodesignError(f"--passes: {exc}") from None
    return names


def check_output_file(path: Path | None, option: str) -> None:
    """An output file's folder must exist and the path must not be a folder: checked before any
    work, one line naming ``option``."""
    if path is None:
        return
    shown = str(path) if len(str(path)) <= 240 else f"{str(path)[:120]}..."
    try:
        if path.is_dir():
            raise CodesignError(f"{option} {shown}: is a folder (fix: give a file name)")
        if path.is_fifo() or path.is_socket():  # writing would wait for a reader for good
            raise CodesignError(
                f"{option} {shown}: is a FIFO or socket, not a file (fix: give a file name)"
            )
        if not path.parent.is_dir():
            raise CodesignError(
                f"{option} {shown}: folder {str(path.parent)[:240]!r} does not exist "
                "(fix: create it first)"
            )
    except OSError as exc:
        raise CodesignError(
            f"{option} {shown}: cannot be used ({exc.strerror}) (fix: a shorter or valid path)"
        ) from None
