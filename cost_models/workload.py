"""What each IR op asks of hardware: the GEMMs it performs, the embedding rows it gathers, or
the vector work it streams. Every target costs ops through this one mapping."""

from __future__ import annotations

import math
from dataclasses import dataclass

from codesign.ir.ops import ATTENTION_FEATURES, DTYPE_BYTES, RECURRENT_GATES, row_bytes
from codesign.targets.base import OpView

GEMM_OPS = frozenset({"dense", "interaction", "attention", "recurrent"})
GATHER_OPS = frozenset({"embedding_bag", "embedding_bag_group"})
VECTOR_OPS = frozenset({"concat", "elementwise", "top_k"})


@dataclass(frozen=True)
class Gemm:
    """C[m, n] = A[m, k] @ B[k, n], done ``repeat`` times one after another (e.g. RNN steps).

    ``weights`` is true when B is a learned weight (loaded from memory) rather than an activation.
    """

    m: int
    k: int
    n: int
    repeat: int = 1
    weights: bool = True

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.repeat


@dataclass(frozen=True)
class Gather:
    """One table's lookups for the whole batch."""

    table: str
    rows: int
    lookups: int  # rows gathered for the batch
    row_bytes: int
    table_bytes: int


def gemms(op: OpView) -> list[Gemm]:
    """The GEMMs of a batch of ``op`` (empty for non-GEMM ops)."""
    b = op.batch
    a = op.attrs
    if op.op == "dense":
        lead = math.prod(op.input_shapes[0][:-1])
        return [Gemm(b * lead, a["in_features"], a["out_features"])]
    if op.op == "interaction" and a.get("mode", "dot") == "dot":
        n = sum(1 if len(s) == 1 else s[0] for s in op.input_shapes)
        d = op.input_shapes[0][-1]
        # batched T @ T^T, computed in full as DLRM's bmm does: per item an (n x d) @ (d x n)
        return [Gemm(b * n, d, n, weights=False)]
    if op.op == "attention":
        length, dim = op.input_shapes[1]
        sizes = [ATTENTION_FEATURES[a.get("features", "kq_prod")] * dim, *a.get("mlp", []), 1]
        return [Gemm(b * length, i, o) for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    if op.op == "recurrent":
        steps, fin = op.input_shapes[0]
        gates = RECURRENT_GATES[a.get("cell", "gru")]
        h = a["hidden"]
        out = []
        for layer in range(a.get("layers", 1)):
            k = (fin if layer == 0 else h) + h  # [x_t, h_{t-1}] against stacked gate weights
            out.append(Gemm(b, k, gates * h, repeat=steps))
        return out
    return []


def gathers(op: OpView) -> list[Gather]:
    a = op.attrs
    b = op.batch
    if op.op == "embedding_bag":
        rb = row_bytes(a.get("vectors", 1) * a["dim"], a.get("dtype", "fp32"))
        return [Gather(op.node.name, a["rows"], b * a.get("pooling", 1), rb, a["rows"] * rb)]
    if op.op == "embedding_bag_group":
        rb = row_bytes(a["dim"], a.get("dtype", "fp32"))
        return [
            Gather(f"{op.node.name}.{t['name']}", t["rows"], b * t["pooling"], rb, t["rows"] * rb)
            for t in a["tables"]
        ]
    return []


def vector_bytes(op: OpView) -> float:
    """Activation bytes an op streams for the batch (inputs read + output written)."""
    ins = sum(
        math.prod(s) * DTYPE_BYTES[d] for s, d in zip(op.input_shapes, op.input_dtypes, strict=True)
    )
    return (ins + op.output_bytes_per_item) * op.batch
