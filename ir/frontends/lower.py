"""Lowering: a validated :class:`ModelSpec` and a batch (items ranked per query) -> :class:`Graph`.

One builder per architecture family. Every builder ends with ``infer()`` and ``lint()``, so a
graph that leaves here has shapes on every node and passes the IR's invariants.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from codesign.ir.frontends.checker import Checker
from codesign.ir.frontends.spec import ModelSpec, load_spec
from codesign.ir.graph import Graph, Node

MAX_BATCH = 2**24


def check_batch(batch: Any) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        chk = Checker(source="lowering")
        chk.add(
            "batch",
            f"must be an integer in 1..{MAX_BATCH}, got {batch!r}",
            "pass the number of items ranked per query, e.g. --batch 4096",
        )
        chk.raise_if_any()
    return batch


def lower(
    spec: ModelSpec | str | Path | Mapping[str, Any], *, batch: int = 1, keep: int | None = None
) -> Graph:
    """Build the IR graph of ``spec`` for ``batch`` items per query; with ``keep``, a top_k
    keeps that many items (the funnel step to the next stage)."""
    if not isinstance(spec, ModelSpec):
        from codesign.ir.frontends.zoo import resolve

        spec = resolve(spec) if isinstance(spec, str | Path) else load_spec(spec)
    batch = check_batch(batch)
    graph = Graph(
        spec.name,
        batch=batch,
        meta={
            "model": spec.name,
            "arch": spec.arch,
            "spec_hash": spec.spec_hash(),
            "source": spec.source,
        },
    )
    _BUILDERS[spec.arch](graph, spec.config, spec.dtype)
    graph.infer()
    if keep is not None:
        add_top_k(graph, keep)
    graph.lint()
    return graph


def add_top_k(graph: Graph, keep: Any) -> None:
    """Insert ``top_k(k=keep)`` between the model's score and the output node."""
    chk = Checker(source="lowering")
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= graph.batch:
        chk.add(
            "keep",
            f"must be an integer in 1..batch ({graph.batch}), got {keep!r}",
            "keep at most as many items as are ranked",
        )
    scores = graph.inputs_of(graph.output)
    if len(scores) != 1 or math.prod(scores[0].shape) != 1:
        chk.add(
            "keep",
            f"needs a model with one score per item; {graph.name} outputs "
            f"{[list(s.shape) for s in scores]}",
            "rank by a single-score model",
        )
    chk.raise_if_any()
    top = graph.add_node("top_k", [scores[0]], {"k": keep}, name="top_k")
    graph.set_inputs(graph.output, [top])
    graph.infer()


# --- building blocks ----------------------------------------------------------------------------


def mlp(
    graph: Graph,
    x: Node,
    in_features: int,
    widths: list[int],
    *,
    prefix: str,
    dtype: str,
    activation: str = "relu",
    last_activation: str | None = None,
) -> Node:
    """A chain of dense layers; hidden layers use ``activation``, the last ``last_activation``."""
    last_activation = activation if last_activation is None else last_activation
    fin = in_features
    for i, width in enumerate(widths):
        act = last_activation if i == len(widths) - 1 else activation
        x = graph.add_node(
            "dense",
            [x],
            {
                "in_features": fin,
                "out_features": width,
                "bias": True,
                "activation": act,
                "dtype": dtype,
            },
            name=f"{prefix}_{i}",
        )
        fin = width
    return x


def sparse_lookup(
    graph: Graph, table: Mapping[str, Any], emb: Mapping[str, Any], *, mode: str = "sum"
) -> Node:
    """An index input and its embedding_bag for one table."""
    idx = graph.add_node(
        "input",
        attrs={"shape": [table["pooling"]], "dtype": "int64", "role": "sparse"},
        name=f"{table['name']}_ids",
    )
    return graph.add_node(
        "embedding_bag",
        [idx],
        {
            "rows": table["rows"],
            "dim": emb["dim"],
            "pooling": table["pooling"],
            "dtype": emb["dtype"],
            "mode": mode,
            "output_dtype": emb["output_dtype"],
        },
        name=f"emb_{table['name']}",
    )


def dense_input(graph: Graph, features: int, dtype: str, name: str = "dense") -> Node:
    return graph.add_node(
        "input", attrs={"shape": [features], "dtype": dtype, "role": "dense"}, name=name
    )


def width(graph: Graph, node: Node) -> int:
    """Flat per-item width of ``node`` (infers shapes so far)."""
    graph.infer()
    out = 1
    for d in node.shape:
        out *= d
    return out


# --- families -----------------------------------------------------------------------------------


def _head(graph: Graph, x: Node, widths: list[int], *, prefix: str, cfg: dict, dtype: str) -> None:
    """The final MLP over ``x`` (last layer with the spec's output activation) and the output."""
    out = mlp(
        graph,
        x,
        width(graph, x),
        widths,
        prefix=prefix,
        dtype=dtype,
        last_activation=cfg["output_activation"],
    )
    graph.add_node("output", [out], name="output")


def _emb(cfg_emb: dict, dtype: str) -> dict:
    """Embedding settings with the activations' dtype as the lookups' output type."""
    return {"dtype": dtype, **cfg_emb, "output_dtype": dtype}


def _build_dlrm(graph: Graph, cfg: dict, dtype: str) -> None:
    emb = _emb(cfg["embedding"], dtype)
    dense = dense_input(graph, cfg["dense_features"], dtype)
    x = mlp(graph, dense, cfg["dense_features"], cfg["bottom_mlp"], prefix="bot", dtype=dtype)
    bags = [sparse_lookup(graph, t, emb) for t in emb["tables"]]
    z = graph.add_node(
        "interaction",
        [x, *bags],
        {
            "mode": cfg["interaction"],
            "self_interaction": cfg["self_interaction"],
            "dense_first": True,
        },
        name="interact",
    )
    _head(graph, z, cfg["top_mlp"], prefix="top", cfg=cfg, dtype=dtype)


def _build_neumf(graph: Graph, cfg: dict, dtype: str) -> None:
    layers, mf_dim = cfg["mlp_layers"], cfg["mf_dim"]
    mlp_emb = _emb({"dim": cfg["mlp_embedding_dim"]}, dtype)
    users = {"rows": cfg["users"], "pooling": 1}
    items = {"rows": cfg["items"], "pooling": 1}
    branches = []
    if mf_dim:
        mf_emb = _emb({"dim": mf_dim}, dtype)
        mf_u = sparse_lookup(graph, {**users, "name": "mf_user"}, mf_emb)
        mf_i = sparse_lookup(graph, {**items, "name": "mf_item"}, mf_emb)
        branches.append(graph.add_node("elementwise", [mf_u, mf_i], {"fn": cfg["gmf"]}, name="gmf"))
    mlp_u = sparse_lookup(graph, {**users, "name": "mlp_user"}, mlp_emb)
    mlp_i = sparse_lookup(graph, {**items, "name": "mlp_item"}, mlp_emb)
    x = graph.add_node("concat", [mlp_u, mlp_i], name="mlp_in")
    x = mlp(graph, x, layers[0], layers[1:], prefix="mlp", dtype=dtype)
    branches.append(x)
    joined = graph.add_node("concat", branches, name="final_in")
    _head(graph, joined, cfg["final"], prefix="final", cfg=cfg, dtype=dtype)


def _build_wide_deep(graph: Graph, cfg: dict, dtype: str) -> None:
    emb = _emb(cfg["embedding"], dtype)
    parts = []
    if cfg["dense_features"]:
        parts.append(dense_input(graph, cfg["dense_features"], dtype))
    parts += [sparse_lookup(graph, t, emb) for t in emb["tables"]]
    x = graph.add_node("concat", parts, name="deep_in")
    multi = cfg["tasks"] > 1 or bool(cfg["task_mlp"])
    shared_last = "relu" if multi else cfg["output_activation"]
    x = mlp(
        graph,
        x,
        width(graph, x),
        cfg["deep_mlp"],
        prefix="deep",
        dtype=dtype,
        last_activation=shared_last,
    )
    heads = [x]
    if multi:
        fin = cfg["deep_mlp"][-1]
        heads = [
            mlp(
                graph,
                x,
                fin,
                cfg["task_mlp"],
                prefix=f"task{t}",
                dtype=dtype,
                last_activation=cfg["output_activation"],
            )
            for t in range(cfg["tasks"])
        ]
    graph.add_node("output", heads, name="output")


def _pooled(graph: Graph, tables: list, emb: dict) -> list[Node]:
    return [sparse_lookup(graph, t, emb) for t in tables]


def _history(graph: Graph, cfg: dict, emb: dict) -> Node:
    """The behaviour lookups as one (steps, dim) sequence."""
    seq = [sparse_lookup(graph, t, emb, mode="none") for t in cfg["behaviour_tables"]]
    return graph.add_node("concat", seq, {"layout": "rows"}, name="history")


def _build_din(graph: Graph, cfg: dict, dtype: str) -> None:
    emb = _emb(cfg["embedding"], dtype)
    user = _pooled(graph, cfg["user_tables"], emb)
    keys = _history(graph, cfg, emb)
    ads = _pooled(graph, cfg["ad_tables"], emb)
    context = _pooled(graph, cfg["context_tables"], emb)
    query = ads[0]
    if len(ads) > 1:
        query = graph.add_node("elementwise", ads[:2], {"fn": "add"}, name="ad_query")
        for i, more in enumerate(ads[2:]):
            query = graph.add_node("elementwise", [query, more], {"fn": "add"}, name=f"ad_query{i}")
    pooled = graph.add_node(
        "attention",
        [query, keys],
        {
            "mlp": cfg["attention_mlp"],
            "features": cfg["attention_features"],
            "activation": "relu",
            "dtype": dtype,
        },
        name="attention",
    )
    x = graph.add_node("concat", [*user, pooled, *ads, *context], name="top_in")
    _head(graph, x, cfg["top_mlp"], prefix="top", cfg=cfg, dtype=dtype)


def _build_dien(graph: Graph, cfg: dict, dtype: str) -> None:
    emb = _emb(cfg["embedding"], dtype)
    user = _pooled(graph, cfg["user_tables"], emb)
    seq = _history(graph, cfg, emb)
    seq_cfg = cfg["sequence"]
    interest = graph.add_node(
        "recurrent",
        [seq],
        {
            "cell": seq_cfg["cell"],
            "hidden": seq_cfg["hidden"],
            "layers": seq_cfg["layers"],
            "return_sequence": False,
            "dtype": dtype,
        },
        name="interest",
    )
    ads = _pooled(graph, cfg["ad_tables"], emb)
    context = _pooled(graph, cfg["context_tables"], emb)
    x = graph.add_node("concat", [interest, *user, *ads, *context], name="top_in")
    _head(graph, x, cfg["top_mlp"], prefix="top", cfg=cfg, dtype=dtype)


_BUILDERS = {
    "dlrm": _build_dlrm,
    "neumf": _build_neumf,
    "wide_deep": _build_wide_deep,
    "din": _build_din,
    "dien": _build_dien,
}
