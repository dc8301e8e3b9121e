"""``annotate-cost``: write each node's per-op cost into ``meta`` and the totals into the graph.

Preconditions: none beyond a sound graph (shapes are inferred here). The annotation is a
snapshot: any later pass that edits the graph drops it, so run this pass last.

Per node, ``meta["cost"]`` is :meth:`OpCost.as_dict` (per item; weights per model) and
``meta["cost_batch"]`` is :meth:`BatchCost.as_dict` for ``graph.batch`` items.
``graph.meta["cost"]`` holds the graph's per-item totals, ``model_size_bytes`` (every weight
and table in storage), ``embedding_table_bytes``, and the per-batch totals with a
``_per_batch`` suffix. Every value is a plain int or float, so the annotated graph
round-trips through JSON exactly.
"""

from __future__ import annotations

from typing import Any

from codesign.ir.graph import Graph
from codesign.ir.ops import OpCost
from codesign.ir.passes.base import PassResult, embedding_table_bytes

_BATCH_KEYS = ("macs", "flops", "activation_bytes", "embedding_bytes")


def _plain(values: dict[str, Any]) -> dict[str, int | float]:
    return {k: int(v) if isinstance(v, int) else float(v) for k, v in values.items()}


def annotate_cost(graph: Graph) -> PassResult:
    """Annotate every node and the graph with their cost; notes repeat the graph totals."""
    out = graph.copy().infer()
    total = OpCost()
    for node in out.nodes:
        cost = out.cost(node)
        node.meta["cost"] = _plain(cost.as_dict())
        node.meta["cost_batch"] = _plain(cost.for_batch(out.batch).as_dict())
        total = total + cost
    batch = total.for_batch(out.batch).as_dict()
    totals = _plain(
        {
            **total.as_dict(),
            "model_size_bytes": total.weight_bytes,
            "embedding_table_bytes": embedding_table_bytes(out),
            "batch": out.batch,
            **{f"{key}_per_batch": batch[key] for key in _BATCH_KEYS},
        }
    )
    out.meta["cost"] = totals
    return PassResult(out, out.to_dict() != graph.to_dict(), dict(totals))
