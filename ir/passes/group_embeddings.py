"""``group-embeddings``: batch pooled lookups into one ``embedding_bag_group`` (FBGEMM TBE style).

Candidates are ``embedding_bag`` nodes with mode sum or mean and ``vectors == 1`` whose only
user consumes them as a set of vectors: an ``interaction`` (dot or cat) or a ``concat`` that
reads each once (see :func:`~codesign.ir.passes.base.vector_consumer`). Candidates with the
same user, ``dim``, ``dtype``, ``output_dtype`` and ``mode`` become one group node fed by all
their index inputs (pooling may differ per table); in the user the group takes the place of
the first grouped bag. A bucket of fewer than two candidates is left alone.

Precondition: because the user reads its inputs as a set of vectors, the grouped (n, dim)
value costs the same as n separate (dim,) values. The pass changes the order of features in
the user's output (a trained top MLP's weights would need the same permutation), never the
arithmetic: MACs, FLOPs, table bytes, gathered bytes and output shapes are unchanged.
"""

from __future__ import annotations

from codesign.ir.graph import Graph, Node
from codesign.ir.passes.base import (
    PassResult,
    attrs_of,
    drop_cost_annotations,
    min_inputs,
    splice_inputs,
    vector_consumer,
)


def _candidates(graph: Graph) -> dict[tuple, list[Node]]:
    buckets: dict[tuple, list[Node]] = {}
    for node in graph.nodes:
        if node.op != "embedding_bag":
            continue
        attrs = attrs_of(node)
        if attrs["mode"] not in ("sum", "mean") or attrs["vectors"] != 1:
            continue
        user = vector_consumer(graph, node)
        if user is None:
            continue
        key = (user.name, attrs["dim"], attrs["dtype"], attrs["output_dtype"], attrs["mode"])
        buckets.setdefault(key, []).append(node)
    return buckets


def group_embeddings(graph: Graph) -> PassResult:
    """Replace each bucket of >= 2 compatible bags by one group; notes list the groups."""
    out = graph.copy()
    groups = []
    bags_before = len(out.find("embedding_bag"))
    for (user_name, dim, dtype, output_dtype, mode), bags in _candidates(out).items():
        if len(bags) < 2:
            continue
        user = out.node(user_name)
        names = {b.name for b in bags}
        ordered = [out.node(src) for src in user.inputs if src in names]
        if len(user.inputs) - len(ordered) + 1 < min_inputs(user):
            continue  # e.g. an interaction of bags only: it needs two inputs
        group = out.add_node(
            "embedding_bag_group",
            [b.inputs[0] for b in ordered],
            {
                "tables": [
                    {"name": b.name, "rows": attrs_of(b)["rows"], "pooling": attrs_of(b)["pooling"]}
                    for b in ordered
                ],
                "dim": dim,
                "dtype": dtype,
                "mode": mode,
                "output_dtype": output_dtype,
            },
            name="emb_group",
        )
        splice_inputs(out, user, names, group.name)
        for bag in ordered:
            out.remove_node(bag)
        groups.append(
            {"name": group.name, "user": user_name, "dim": dim, "tables": [b.name for b in ordered]}
        )
    if groups:
        drop_cost_annotations(out)
    out.infer()
    notes = {
        "groups": groups,
        "embedding_bags_before": bags_before,
        "embedding_bags_after": len(out.find("embedding_bag")),
    }
    return PassResult(out, bool(groups), notes)
