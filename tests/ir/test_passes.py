"""Compiler passes: each keeps the arithmetic it must keep, changes what it says it changes, and
leaves a graph that lints, has shapes, and round-trips through JSON."""

from __future__ import annotations

import copy
import functools
import json

import pytest

from codesign.errors import CodesignError, IRError, UnknownNameError
from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.spec import load_spec
from codesign.ir.frontends.zoo import list_models
from codesign.ir.graph import Graph
from codesign.ir.ops import ROW_OVERHEAD_BYTES
from codesign.ir.passes import (
    PASSES,
    PassOptionError,
    PassResult,
    annotate_cost,
    eliminate_dead_code,
    get_pass,
    group_embeddings,
    merge_small_tables,
    pass_name,
    quantize_embeddings,
    run_passes,
)
from codesign.ir.passes.merge_tables import DEFAULT_MAX_MERGED_ROWS, DEFAULT_MAX_ROWS

# Criteo Kaggle cardinalities, in table order c_0..c_25 (ir/frontends/zoo rm-small.yaml).
CRITEO_ROWS = [
    1460,
    583,
    10131227,
    2202608,
    305,
    24,
    12517,
    633,
    3,
    93145,
    5683,
    8351593,
    3194,
    27,
    14992,
    5461306,
    10,
    5652,
    2173,
    4,
    7046547,
    18,
    15,
    286181,
    105,
    142572,
]
RM_SMALL_DIM = 4
FP32 = 4
PIPELINE = [
    "dce",
    "group-embeddings",
    "merge-small-tables",
    "quantize-embeddings",
    "annotate-cost",
]


@pytest.fixture(scope="module")
def rm_small() -> Graph:
    return lower("rm-small", batch=64)


def _table_bytes(graph: Graph) -> int:
    return sum(
        graph.cost(n).weight_bytes
        for n in graph.nodes
        if n.op in ("embedding_bag", "embedding_bag_group")
    )


def _lookups(graph: Graph) -> int:
    total = 0
    for n in graph.nodes:
        if n.op == "embedding_bag":
            total += n.attrs["pooling"]
        elif n.op == "embedding_bag_group":
            total += sum(t["pooling"] for t in n.attrs["tables"])
    return total


def _assert_round_trip(graph: Graph) -> None:
    again = Graph.from_json(graph.to_json())
    assert again.to_dict() == graph.to_dict()


# --- registry and pipeline -----------------------------------------------------------------------


def test_registry_names_the_five_passes():
    assert sorted(PASSES) == [
        "annotate-cost",
        "dce",
        "group-embeddings",
        "merge-small-tables",
        "quantize-embeddings",
    ]
    assert get_pass("dce") is eliminate_dead_code
    for name, fn in PASSES.items():
        assert pass_name(fn) == name
    assert pass_name(functools.partial(merge_small_tables, max_rows=10)) == "merge-small-tables"


def test_unknown_pass_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown pass 'fuse'.*annotate-cost, dce"):
        get_pass("fuse")


@pytest.mark.parametrize("name", sorted(PASSES))
def test_pass_does_not_mutate_its_input(name, tiny_graph, rm_small):
    for graph in (tiny_graph, rm_small):
        before = graph.to_dict()
        result = get_pass(name)(graph)
        assert isinstance(result, PassResult)
        assert graph.to_dict() == before
        assert result.graph is not graph
        result.graph.lint()
        assert all("shape" in n.meta for n in result.graph.nodes)
        json.dumps(result.notes)


@pytest.mark.parametrize("entry", list_models(), ids=lambda e: e.name)
def test_full_pipeline_on_every_zoo_model(entry):
    graph = lower(entry.name, batch=8)
    before = graph.to_dict()
    result = run_passes(graph, PIPELINE)
    assert graph.to_dict() == before
    assert list(result.notes) == PIPELINE
    out = result.graph
    out.lint()
    macs = graph.total_cost().macs_per_item
    assert out.total_cost().macs_per_item == macs
    assert out.meta["cost"]["macs_per_item"] == macs
    assert out.output.shape == graph.output.shape
    _assert_round_trip(out)


def test_merge_before_group_also_keeps_the_arithmetic(rm_small):
    order = ["dce", "merge-small-tables", "group-embeddings", "quantize-embeddings"]
    out = run_passes(rm_small, order).graph
    (group,) = out.find("embedding_bag_group")
    assert len(group.attrs["tables"]) == 26 - 8  # 4 merged pairs stay separate bags
    assert out.total_cost().macs_per_item == rm_small.total_cost().macs_per_item
    assert out.node("interact").shape == rm_small.node("interact").shape


def test_run_passes_accepts_callables_and_numbers_repeats(tiny_graph):
    fp16 = functools.partial(quantize_embeddings, dtype="fp16")
    result = run_passes(tiny_graph, [eliminate_dead_code, "dce", fp16])
    assert list(result.notes) == ["dce", "dce#2", "quantize-embeddings"]
    assert result.changed
    assert not run_passes(tiny_graph, ["dce"]).changed
    assert run_passes(tiny_graph, []).graph == tiny_graph


def test_run_passes_names_the_pass_that_breaks_the_graph(tiny_graph):
    def breaks(graph: Graph) -> PassResult:
        out = graph.copy()
        out.node("emb_small_0").attrs["dim"] = -1
        return PassResult(out, True)

    with pytest.raises(IRError, match="after pass breaks: node emb_small_0"):
        run_passes(tiny_graph, ["dce", breaks])


# --- annotate-cost -------------------------------------------------------------------------------


def test_annotate_cost_writes_node_and_graph_costs(rm_small):
    result = annotate_cost(rm_small)
    out = result.graph
    for node in out.nodes:
        cost = rm_small.cost(node.name)
        assert node.meta["cost"] == cost.as_dict()
        assert node.meta["cost_batch"] == cost.for_batch(64).as_dict()
    total = rm_small.total_cost()
    meta = out.meta["cost"]
    assert meta["macs_per_item"] == total.macs_per_item
    assert meta["embedding_bytes_per_item"] == RM_SMALL_DIM * FP32 * 26
    assert meta["weight_bytes"] == meta["model_size_bytes"] == total.weight_bytes
    assert meta["embedding_table_bytes"] == sum(CRITEO_ROWS) * RM_SMALL_DIM * FP32
    assert meta["batch"] == 64
    assert meta["macs_per_batch"] == 64 * total.macs_per_item
    assert meta["embedding_bytes_per_batch"] == 64 * meta["embedding_bytes_per_item"]
    assert result.notes == meta
    values = [v for n in out.nodes for v in n.meta["cost"].values()] + list(meta.values())
    assert all(type(v) in (int, float) for v in values)
    _assert_round_trip(out)


def test_annotations_are_dropped_by_a_later_edit(rm_small):
    annotated = annotate_cost(rm_small).graph
    out = quantize_embeddings(annotated).graph
    assert "cost" not in out.meta
    assert all("cost" not in n.meta and "cost_batch" not in n.meta for n in out.nodes)


# --- dce -----------------------------------------------------------------------------------------


def test_dce_removes_dangling_nodes_and_nothing_else(tiny_graph):
    graph = tiny_graph.copy()
    graph.add_node("dense", ["bot_1"], {"in_features": 4, "out_features": 3}, name="dangling")
    graph.add_node("input", attrs={"shape": [5]}, name="unused")
    extra = graph.add_node("input", attrs={"shape": [2]}, name="unused_src")
    graph.add_node("dense", [extra], {"in_features": 2, "out_features": 2}, name="unused_fc")
    graph.infer()
    result = eliminate_dead_code(graph)
    assert result.changed
    assert sorted(result.notes["removed"]) == ["dangling", "unused", "unused_fc", "unused_src"]
    assert result.graph.to_dict()["nodes"] == tiny_graph.to_dict()["nodes"]
    assert result.graph.total_cost().macs_per_item == tiny_graph.total_cost().macs_per_item


def test_dce_on_a_live_graph_changes_nothing(tiny_graph):
    result = eliminate_dead_code(tiny_graph)
    assert not result.changed
    assert result.notes == {"removed": []}
    assert result.graph == tiny_graph


# --- group-embeddings ----------------------------------------------------------------------------


def test_group_embeddings_on_rm_small(rm_small):
    result = group_embeddings(rm_small)
    out = result.graph
    assert result.changed
    (group,) = out.find("embedding_bag_group")
    assert not out.find("embedding_bag")
    assert [t["rows"] for t in group.attrs["tables"]] == CRITEO_ROWS
    assert group.shape == (26, RM_SMALL_DIM)
    assert out.node("interact").inputs == ("bot_1", group.name)
    assert group.inputs == tuple(f"c_{i}_ids" for i in range(26))
    before, after = rm_small.total_cost(), out.total_cost()
    assert after.macs_per_item == before.macs_per_item
    assert after.flops_per_item == before.flops_per_item
    assert after.embedding_bytes_per_item == before.embedding_bytes_per_item
    assert after.weight_bytes == before.weight_bytes
    assert out.node("interact").shape == rm_small.node("interact").shape
    assert result.notes["groups"][0]["tables"] == [f"emb_c_{i}" for i in range(26)]
    _assert_round_trip(out)


def test_group_keeps_per_table_pooling(tiny_graph):
    out = group_embeddings(tiny_graph).graph
    (group,) = out.find("embedding_bag_group")
    assert [(t["rows"], t["pooling"]) for t in group.attrs["tables"]] == [
        (10, 1),
        (20, 1),
        (1000, 1),
        (500, 3),
        (500, 3),
    ]
    gathered = tiny_graph.total_cost().embedding_bytes_per_item
    assert out.total_cost().embedding_bytes_per_item == gathered


def test_group_without_candidates_reports_unchanged(rm_small, tiny_spec_dict):
    grouped = group_embeddings(rm_small).graph
    again = group_embeddings(grouped)
    assert not again.changed and again.graph == grouped
    one_table = copy.deepcopy(tiny_spec_dict)
    one_table["embedding"]["tables"] = [{"rows": 10, "pooling": 1, "name": "only"}]
    graph = lower(load_spec(one_table), batch=4)
    result = group_embeddings(graph)
    assert not result.changed and result.notes["groups"] == []


def test_group_skips_bags_not_read_as_a_set_of_vectors():
    graph = lower("ncf", batch=4)
    out = group_embeddings(graph).graph
    (group,) = out.find("embedding_bag_group")
    # the GMF lookups feed an elementwise product, which is not a set of vectors
    assert [t["name"] for t in group.attrs["tables"]] == ["emb_mlp_user", "emb_mlp_item"]
    assert {n.name for n in out.find("embedding_bag")} == {"emb_mf_user", "emb_mf_item"}
    assert out.total_cost().macs_per_item == graph.total_cost().macs_per_item


# --- merge-small-tables --------------------------------------------------------------------------


def test_merge_small_tables_on_rm_small_by_hand(rm_small):
    # Tables with rows <= 1000: 3, 4, 10, 15, 18, 24, 27, 105, 305, 583, 633. Smallest first:
    # 3*4 = 12, 10*15 = 150, 18*24 = 432, 27*105 = 2835 fit 100_000; 305*583 = 177_815 does
    # not, so pairing stops with four pairs.
    pairs = [(3, 4), (10, 15), (18, 24), (27, 105)]
    result = merge_small_tables(rm_small, max_rows=1000, max_merged_rows=100_000)
    notes, out = result.notes, result.graph
    assert result.changed
    assert sorted(tuple(sorted(p["rows"])) for p in notes["pairs"]) == pairs
    assert [p["tables"] for p in notes["pairs"]] == [
        ["emb_c_8", "emb_c_19"],
        ["emb_c_16", "emb_c_22"],
        ["emb_c_5", "emb_c_21"],
        ["emb_c_13", "emb_c_24"],
    ]
    assert notes["lookups_before"] == _lookups(rm_small) == 26
    assert notes["lookups_after"] == _lookups(out) == 26 - len(pairs)
    # a merged row holds both vectors: r1*r2 rows of 2*dim fp32 replace r1 + r2 rows of dim
    growth = sum(
        r1 * r2 * 2 * RM_SMALL_DIM * FP32 - (r1 + r2) * RM_SMALL_DIM * FP32 for r1, r2 in pairs
    )
    assert growth == 106_432
    assert notes["table_bytes_before"] == sum(CRITEO_ROWS) * RM_SMALL_DIM * FP32
    assert notes["table_bytes_growth"] == growth
    assert notes["table_bytes_after"] == _table_bytes(out) == notes["table_bytes_before"] + growth
    assert notes["table_bytes_ratio"] == pytest.approx(
        notes["table_bytes_after"] / notes["table_bytes_before"]
    )
    before, after = rm_small.total_cost(), out.total_cost()
    assert after.macs_per_item == before.macs_per_item
    assert after.flops_per_item == before.flops_per_item
    assert after.embedding_bytes_per_item == before.embedding_bytes_per_item
    assert out.node("interact").shape == rm_small.node("interact").shape
    _assert_round_trip(out)


def test_merged_bags_and_their_inputs(rm_small):
    out = merge_small_tables(rm_small, max_rows=1000, max_merged_rows=100_000).graph
    merged = out.node("emb_c_8_x_emb_c_19")
    assert merged.attrs["rows"] == 12 and merged.attrs["vectors"] == 2
    assert merged.shape == (2, RM_SMALL_DIM)
    assert merged.meta["merged_from"] == [
        {"name": "emb_c_8", "rows": 3},
        {"name": "emb_c_19", "rows": 4},
    ]
    (ids,) = out.inputs_of(merged)
    assert ids.op == "input" and ids.shape == (1,) and ids.dtype == "int64"
    assert ids.attrs["role"] == "sparse"
    for gone in ("c_8_ids", "c_19_ids", "emb_c_8", "emb_c_19"):
        assert gone not in out
    interact = out.node("interact").inputs
    assert interact.index("emb_c_5_x_emb_c_21") == 1 + 5  # where emb_c_5 was
    assert len(interact) == 1 + 26 - 4
    assert sum(n.attrs.get("role") == "sparse" for n in out.find("input")) == 22


def test_merge_defaults_are_the_documented_ones(rm_small):
    assert (DEFAULT_MAX_ROWS, DEFAULT_MAX_MERGED_ROWS) == (1_000, 100_000)
    assert len(merge_small_tables(rm_small).notes["pairs"]) == 4


def test_merge_limits(rm_small, tiny_graph):
    # the product limit: only 3*4 = 12 fits 12
    assert len(merge_small_tables(rm_small, max_merged_rows=12).notes["pairs"]) == 1
    none = merge_small_tables(rm_small, max_rows=2)
    assert not none.changed and none.graph == rm_small
    assert none.notes["table_bytes_ratio"] == 1.0
    # tiny: 10 and 20 rows merge (200); 1000 is left alone; the pooled-3 tables never merge
    result = merge_small_tables(tiny_graph)
    assert [p["rows"] for p in result.notes["pairs"]] == [[10, 20]]


@pytest.mark.parametrize(
    "options", [{"max_rows": 0}, {"max_merged_rows": -5}, {"max_rows": 1.5}, {"max_rows": True}]
)
def test_merge_rejects_bad_options(options, tiny_graph):
    with pytest.raises(PassOptionError, match="merge-small-tables: option"):
        merge_small_tables(tiny_graph, **options)


# --- quantize-embeddings -------------------------------------------------------------------------


def test_quantize_int8_rm_small(rm_small):
    result = quantize_embeddings(rm_small, dtype="int8")
    out = result.graph
    assert ROW_OVERHEAD_BYTES["int8"] == 8
    # FBGEMM fused 8-bit row-wise: dim int8 values plus an fp32 scale and bias per row
    int8_row = RM_SMALL_DIM + 8
    assert _table_bytes(out) == sum(CRITEO_ROWS) * int8_row
    assert result.notes["table_bytes_before"] == sum(CRITEO_ROWS) * RM_SMALL_DIM * FP32
    assert result.notes["table_bytes_after"] == sum(CRITEO_ROWS) * int8_row
    assert out.total_cost().embedding_bytes_per_item == 26 * int8_row
    assert result.notes["embedding_bytes_per_item_after"] == 26 * int8_row
    assert out.total_cost().macs_per_item == rm_small.total_cost().macs_per_item
    for node in out.find("embedding_bag"):
        assert node.attrs["dtype"] == "int8" and node.dtype == "fp32"
    assert out.node("interact").shape == rm_small.node("interact").shape


def test_quantize_fp16_group_and_min_rows(rm_small):
    grouped = group_embeddings(rm_small).graph
    out = quantize_embeddings(grouped, dtype="fp16").graph
    assert _table_bytes(out) == sum(CRITEO_ROWS) * RM_SMALL_DIM * 2
    assert out.total_cost().embedding_bytes_per_item == 26 * RM_SMALL_DIM * 2
    big = quantize_embeddings(rm_small, dtype="int8", min_rows=1_000_000)
    big_rows = [r for r in CRITEO_ROWS if r >= 1_000_000]
    small_rows = [r for r in CRITEO_ROWS if r < 1_000_000]
    assert len(big.notes["tables"]) == len(big_rows) == 5
    assert _table_bytes(big.graph) == (
        sum(big_rows) * (RM_SMALL_DIM + 8) + sum(small_rows) * RM_SMALL_DIM * FP32
    )
    same = quantize_embeddings(rm_small, dtype="fp32")
    assert not same.changed and same.graph == rm_small


def test_quantize_merged_rows_carry_one_scale_and_bias(rm_small):
    merged = merge_small_tables(rm_small).graph
    out = quantize_embeddings(merged, dtype="int8").graph
    assert out.cost("emb_c_8_x_emb_c_19").weight_bytes == 12 * (2 * RM_SMALL_DIM + 8)


@pytest.mark.parametrize("options", [{"dtype": "int4"}, {"dtype": "int64"}, {"min_rows": -1}])
def test_quantize_rejects_bad_options(options, tiny_graph):
    with pytest.raises(PassOptionError, match="quantize-embeddings: ") as info:
        quantize_embeddings(tiny_graph, **options)
    assert isinstance(info.value, CodesignError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)
