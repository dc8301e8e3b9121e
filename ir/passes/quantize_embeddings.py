"""``quantize-embeddings``: change the storage type of embedding tables.

Sets ``dtype`` (fp32, fp16, bf16 or int8) on every ``embedding_bag`` and
``embedding_bag_group`` whose rows (a group's rows summed: it has one storage type) are at least
``min_rows``. ``output_dtype`` is kept: rows are dequantized on lookup, so activations, MACs and
shapes do not change; table bytes and gathered bytes do (an int8 row carries an fp32 scale and
bias, FBGEMM's fused 8-bit row-wise format; see ``ROW_OVERHEAD_BYTES`` in :mod:`codesign.ir.ops`).

Preconditions: none; the accuracy of the quantized model is the caller's concern.
"""

from __future__ import annotations

from codesign.ir.graph import Graph
from codesign.ir.ops import FLOAT_DTYPES
from codesign.ir.passes.base import (
    PassOptionError,
    PassResult,
    attrs_of,
    check_int_option,
    drop_cost_annotations,
    embedding_bytes_per_item,
    embedding_nodes,
    embedding_table_bytes,
    table_rows,
)

_NAME = "quantize-embeddings"


def quantize_embeddings(graph: Graph, *, dtype: str = "int8", min_rows: int = 0) -> PassResult:
    """Store tables with ``rows >= min_rows`` as ``dtype``; notes give bytes before and after."""
    if dtype not in FLOAT_DTYPES:
        raise PassOptionError(
            f"{_NAME}: dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r}"
        )
    check_int_option(_NAME, "min_rows", min_rows, minimum=0)
    out = graph.copy().infer()
    table_bytes_before = embedding_table_bytes(out)
    gathered_before = embedding_bytes_per_item(out)
    changed = []
    for node in embedding_nodes(out):
        if table_rows(node) >= min_rows and attrs_of(node)["dtype"] != dtype:
            node.attrs["dtype"] = dtype
            changed.append(node.name)
    if changed:
        drop_cost_annotations(out)
    out.infer()
    notes = {
        "dtype": dtype,
        "min_rows": min_rows,
        "tables": changed,
        "table_bytes_before": table_bytes_before,
        "table_bytes_after": embedding_table_bytes(out),
        "embedding_bytes_per_item_before": gathered_before,
        "embedding_bytes_per_item_after": embedding_bytes_per_item(out),
    }
    return PassResult(out, bool(changed), notes)
