"""Per-op shape and cost rules against hand-derived formulas."""

from __future__ import annotations

import pytest

from codesign.ir.graph import Graph
from codesign.ir.ops import OPS, OpCost


def single(op: str, in_shapes: list[list[int]], attrs: dict, dtypes: list[str] | None = None):
    g = Graph(batch=10)
    dtypes = dtypes or ["fp32"] * len(in_shapes)
    ins = [
        g.add_node("input", attrs={"shape": s, "dtype": d})
        for s, d in zip(in_shapes, dtypes, strict=True)
    ]
    node = g.add_node(op, ins, attrs, name="op")
    g.add_node("output", [node])
    g.infer().lint()
    return g.node("op"), g.cost("op")


def test_dense():
    node, cost = single(
        "dense", [[3, 16]], {"in_features": 16, "out_features": 8, "activation": "relu"}
    )
    assert node.shape == (3, 8)
    assert cost.macs_per_item == 3 * 16 * 8
    assert cost.params == 16 * 8 + 8
    assert cost.weight_bytes == 4 * (16 * 8 + 8)
    assert cost.flops_per_item == 2 * 384 + 3 * 8 * 2  # bias add + relu per output


def test_embedding_bag_bytes_by_dtype():
    for dtype, row in [("fp32", 64 * 4), ("fp16", 64 * 2), ("int8", 64 + 8)]:
        node, cost = single(
            "embedding_bag",
            [[5]],
            {"rows": 1000, "dim": 64, "pooling": 5, "dtype": dtype},
            ["int64"],
        )
        assert node.shape == (64,) and node.dtype == "fp32"
        assert cost.embedding_bytes_per_item == 5 * row
        assert cost.weight_bytes == 1000 * row
        assert cost.for_batch(10).embedding_bytes == 50 * row


def test_embedding_sequence_and_merged_rows():
    node, _ = single(
        "embedding_bag", [[7]], {"rows": 3, "dim": 8, "pooling": 7, "mode": "none"}, ["int64"]
    )
    assert node.shape == (7, 8)
    node, cost = single("embedding_bag", [[1]], {"rows": 100, "dim": 8, "vectors": 2}, ["int64"])
    assert node.shape == (2, 8)
    assert cost.weight_bytes == 100 * 2 * 8 * 4


@pytest.mark.parametrize(("self_inter", "pairs"), [(False, 10), (True, 15)])
def test_dot_interaction(self_inter, pairs):
    node, cost = single(
        "interaction", [[4], [4], [2, 4], [4]], {"mode": "dot", "self_interaction": self_inter}
    )
    assert node.shape == (pairs + 4,)  # n = 5 vectors; dense vector concatenated first
    assert cost.macs_per_item == pairs * 4


def test_cat_interaction_and_concat():
    node, cost = single("interaction", [[4], [4], [4]], {"mode": "cat"})
    assert node.shape == (12,) and cost.macs_per_item == 0
    node, _ = single("concat", [[4], [2, 4]], {"layout": "rows"})
    assert node.shape == (3, 4)


def test_recurrent():
    node, cost = single("recurrent", [[40, 32]], {"cell": "gru", "hidden": 64, "layers": 2})
    assert node.shape == (64,)
    assert cost.macs_per_item == 40 * 3 * ((32 * 64 + 64 * 64) + (64 * 64 + 64 * 64))
    assert cost.params == 3 * (32 * 64 + 64 * 64 + 128) + 3 * (64 * 64 + 64 * 64 + 128)


def test_attention():
    node, cost = single("attention", [[8], [5, 8]], {"mlp": [16], "features": "kq_prod"})
    assert node.shape == (8,)
    assert cost.macs_per_item == 5 * ((24 * 16 + 16 * 1) + 8)


def test_top_k():
    node, cost = single("top_k", [[1]], {"k": 64})
    assert node.shape == (1,)
    assert cost.flops_per_item == 6  # log2(64) comparisons per candidate


def test_op_costs_add():
    a = OpCost(macs_per_item=1, params=2, weight_bytes=8)
    assert (a + a).as_dict()["params"] == 4


def test_every_op_has_rules():
    for op in OPS.values():
        assert op.infer is not None and op.cost is not None and op.doc
