"""The library entry: what the CLI calls, usable from Python as well.

Every function here takes plain arguments, returns plain data (dicts of JSON types, with units
in key names), and raises :class:`codesign.errors.CodesignError` for bad input.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.zoo import list_models as _zoo_list
from codesign.ir.frontends.zoo import resolve
from codesign.ir.graph import Graph
from codesign.ir.ops import OpCost

SKIPPED_IN_TABLE = ("input", "output")


def list_models() -> list[dict[str, Any]]:
    """The zoo: name, family, arch, description, and headline numbers at batch 1."""
    rows = []
    for entry in _zoo_list():
        totals = model_totals(lower(entry.name, batch=1))
        rows.append(
            {
                "name": entry.name,
                "family": entry.family,
                "arch": entry.arch,
                "description": entry.description,
                "macs_per_item": totals["macs_per_item"],
                "embedding_bytes_per_item": totals["embedding_bytes_per_item"],
                "model_size_bytes": totals["model_size_bytes"],
            }
        )
    return rows


def load_graph(model: str | Path, *, batch: int = 1, passes: Sequence[str] = ()) -> Graph:
    """A zoo model (by name) or a spec file, lowered for ``batch`` items per query, with the
    named passes (see ``codesign.ir.passes.PASSES``) applied in order."""
    graph = lower(resolve(model), batch=batch)
    if passes:
        from codesign.ir.passes import run_passes

        graph = run_passes(graph, list(passes)).graph
    return graph


def model_totals(graph: Graph) -> dict[str, Any]:
    """Whole-model numbers; MACs are also split by op type (``macs_per_item_by_op``)."""
    by_op: dict[str, float] = defaultdict(float)
    emb_table_bytes = lookups = 0
    total = OpCost()
    for node in graph.nodes:
        cost = graph.cost(node)
        total = total + cost
        if cost.macs_per_item:
            by_op[node.op] += cost.macs_per_item
        if node.op == "embedding_bag":
            emb_table_bytes += cost.weight_bytes
            lookups += node.attrs["pooling"]
        elif node.op == "embedding_bag_group":
            emb_table_bytes += cost.weight_bytes
            lookups += sum(t["pooling"] for t in node.attrs["tables"])
    batch = graph.batch
    activation_per_item = total.input_bytes_per_item + total.output_bytes_per_item
    return {
        "batch": batch,
        "model_size_bytes": total.weight_bytes,
        "embedding_table_bytes": emb_table_bytes,
        "dense_weight_bytes": total.weight_bytes - emb_table_bytes,
        "params": total.params,
        "macs_per_item": total.macs_per_item,
        "macs_per_item_by_op": dict(by_op),
        "flops_per_item": total.flops_per_item,
        "embedding_lookups_per_item": lookups,
        "embedding_bytes_per_item": total.embedding_bytes_per_item,
        "activation_bytes_per_item": activation_per_item,
        "macs_per_batch": total.macs_per_item * batch,
        "flops_per_batch": total.flops_per_item * batch,
        "embedding_bytes_per_batch": total.embedding_bytes_per_item * batch,
        "activation_bytes_per_batch": activation_per_item * batch,
    }


def describe_model(
    model: str | Path, *, batch: int = 1, passes: Sequence[str] = ()
) -> dict[str, Any]:
    """Per-op rows and totals of a model: what ``codesign models show`` prints."""
    spec = resolve(model)
    graph = load_graph(model, batch=batch, passes=passes)
    ops = []
    for node in graph.nodes:
        if node.op in SKIPPED_IN_TABLE:
            continue
        cost = graph.cost(node)
        ops.append(
            {
                "name": node.name,
                "op": node.op,
                "shape": list(node.shape),
                "dtype": node.dtype,
                "params": cost.params,
                "weight_bytes": cost.weight_bytes,
                "macs_per_item": cost.macs_per_item,
                "flops_per_item": cost.flops_per_item,
                "embedding_bytes_per_item": cost.embedding_bytes_per_item,
                "activation_bytes_per_item": cost.input_bytes_per_item + cost.output_bytes_per_item,
            }
        )
    return {
        "model": spec.name,
        "arch": spec.arch,
        "description": spec.description,
        "source": spec.source,
        "notes": spec.notes,
        "spec_hash": graph.meta["spec_hash"],
        "batch": batch,
        "passes": list(passes),
        "ops": ops,
        "totals": model_totals(graph),
    }
