"""``merge-small-tables``: Cartesian merge of small one-hot tables (MicroRec, Jiang et al.,
MLSys 2021).

Two tables A (r1 rows) and B (r2 rows) looked up once each become one table of r1 * r2 rows
whose row (i, j) holds A[i] and B[j] side by side: one gather instead of two, at the price of
storing the product. Candidates are ``embedding_bag`` nodes with ``pooling == 1``, mode sum,
``vectors == 1`` and ``rows <= max_rows`` whose only user consumes them as a set of vectors (an
``interaction`` or ``concat``; see :func:`~codesign.ir.passes.base.vector_consumer`). Pairs
share that user, ``dim``, ``dtype`` and ``output_dtype`` and satisfy r1 * r2 <= max_merged_rows.

Pairing is greedy, smallest tables first: within a bucket the two smallest remaining tables
pair, then the next two, until the product of the next two exceeds ``max_merged_rows`` (every
later product is larger). Smallest-first keeps the storage growth of each merge minimal.

A merged bag has ``rows = r1 * r2`` and ``vectors = 2``; its (2, dim) output stands for the two
vectors, in the user's input order, at the position of the first one. One new index input
(shape [1], int64, role sparse) feeds it; the two old index inputs are removed once unused.
The pass changes the gathers and table bytes, never the MACs, FLOPs or gathered bytes (for
fp32/fp16/bf16 storage; int8 rows carry one scale and bias per merged row).

Defaults: ``max_rows = 1_000`` counts a table as small (on Criteo Kaggle that is the eleven
tables of 3..633 rows) and ``max_merged_rows = 100_000`` bounds one merged table at 100k rows
(800 kB per unit of dim in fp32, for its two vectors), in the spirit of MicroRec, which merges
only tables whose product stays small enough for on-chip or fast memory. On rm-small they
merge four pairs for about 106 kB of extra storage (26 -> 22 lookups).
"""

from __future__ import annotations

from codesign.ir.graph import Graph, Node
from codesign.ir.passes.base import (
    PassResult,
    attrs_of,
    check_int_option,
    drop_cost_annotations,
    embedding_lookups,
    embedding_table_bytes,
    min_inputs,
    splice_inputs,
    vector_consumer,
)

DEFAULT_MAX_ROWS = 1_000
DEFAULT_MAX_MERGED_ROWS = 100_000
_NAME = "merge-small-tables"


def _candidates(graph: Graph, max_rows: int) -> dict[tuple, list[Node]]:
    buckets: dict[tuple, list[Node]] = {}
    for node in graph.nodes:
        if node.op != "embedding_bag":
            continue
        attrs = attrs_of(node)
        if (
            attrs["mode"] != "sum"
            or attrs["pooling"] != 1
            or attrs["vectors"] != 1
            or attrs["rows"] > max_rows
        ):
            continue
        user = vector_consumer(graph, node)
        if user is None:
            continue
        key = (user.name, attrs["dim"], attrs["dtype"], attrs["output_dtype"])
        buckets.setdefault(key, []).append(node)
    return buckets


def _merge(graph: Graph, user: Node, pair: list[Node]) -> dict:
    first, second = sorted(pair, key=lambda n: user.inputs.index(n.name))
    a, b = attrs_of(first), attrs_of(second)
    name = f"{first.name}_x_{second.name}"
    ids = graph.add_node(
        "input", attrs={"shape": [1], "dtype": "int64", "role": "sparse"}, name=f"{name}_ids"
    )
    merged = graph.add_node(
        "embedding_bag",
        [ids],
        {
            "rows": a["rows"] * b["rows"],
            "dim": a["dim"],
            "pooling": 1,
            "dtype": a["dtype"],
            "mode": "sum",
            "vectors": 2,
            "output_dtype": a["output_dtype"],
        },
        name=name,
        meta={
            "merged_from": [
                {"name": first.name, "rows": a["rows"]},
                {"name": second.name, "rows": b["rows"]},
            ]
        },
    )
    splice_inputs(graph, user, [first.name, second.name], merged.name)
    removed = []
    for bag in (first, second):
        old_ids = graph.node(bag.inputs[0])
        graph.remove_node(bag)
        if old_ids.op == "input" and not graph.users(old_ids):
            graph.remove_node(old_ids)
            removed.append(old_ids.name)
    return {
        "merged": merged.name,
        "tables": [first.name, second.name],
        "rows": [a["rows"], b["rows"]],
        "merged_rows": a["rows"] * b["rows"],
        "removed_inputs": removed,
    }


def merge_small_tables(
    graph: Graph,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_merged_rows: int = DEFAULT_MAX_MERGED_ROWS,
) -> PassResult:
    """Merge pairs of small one-hot tables; notes give lookups, table bytes and the pairs."""
    check_int_option(_NAME, "max_rows", max_rows, minimum=1)
    check_int_option(_NAME, "max_merged_rows", max_merged_rows, minimum=1)
    out = graph.copy().infer()
    lookups_before = embedding_lookups(out)
    bytes_before = embedding_table_bytes(out)
    pairs = []
    for key, bags in _candidates(out, max_rows).items():
        user = out.node(key[0])
        bags.sort(key=lambda n: (attrs_of(n)["rows"], user.inputs.index(n.name)))
        for i in range(0, len(bags) - 1, 2):
            small, next_small = bags[i], bags[i + 1]
            if attrs_of(small)["rows"] * attrs_of(next_small)["rows"] > max_merged_rows:
                break
            if len(user.inputs) - 1 < min_inputs(user):
                break
            pairs.append(_merge(out, user, [small, next_small]))
    if pairs:
        drop_cost_annotations(out)
    out.infer()
    bytes_after = embedding_table_bytes(out)
    notes = {
        "max_rows": max_rows,
        "max_merged_rows": max_merged_rows,
        "pairs": pairs,
        "lookups_before": lookups_before,
        "lookups_after": embedding_lookups(out),
        "table_bytes_before": bytes_before,
        "table_bytes_after": bytes_after,
        "table_bytes_growth": bytes_after - bytes_before,
        "table_bytes_ratio": bytes_after / bytes_before if bytes_before else 1.0,
    }
    return PassResult(out, bool(pairs), notes)
