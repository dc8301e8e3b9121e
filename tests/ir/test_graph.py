"""Graph/Node invariants: use-def links, topological order, lint, JSON round trip, networkx."""

from __future__ import annotations

import json

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codesign.errors import IRError, UnknownNameError
from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.zoo import list_models
from codesign.ir.graph import Graph


def small_graph() -> Graph:
    g = Graph("g", batch=4)
    x = g.add_node("input", attrs={"shape": [8]}, name="x")
    a = g.add_node("dense", [x], {"in_features": 8, "out_features": 4, "activation": "relu"})
    b = g.add_node("elementwise", [a, a], {"fn": "mul"}, name="sq")
    g.add_node("output", [b])
    return g.infer()


@pytest.mark.parametrize("name", [e.name for e in list_models()])
def test_json_round_trip_is_exact_for_every_zoo_model(name):
    g = lower(name, batch=128)
    text = g.to_json()
    back = Graph.from_json(text)
    assert back == g
    assert back.to_json() == text
    assert [n.name for n in back.nodes] == [n.name for n in g.nodes]
    assert back.total_cost() == g.total_cost()


def test_use_def_links_follow_edits():
    g = small_graph()
    assert [u.name for u in g.users("x")] == ["dense"]
    assert [u.name for u in g.users("dense")] == ["sq"]  # used twice, listed once
    y = g.add_node("input", attrs={"shape": [4]}, name="y")
    g.replace_all_uses("dense", y)
    assert g.node("sq").inputs == ("y", "y")
    assert g.users("dense") == []
    g.remove_node("dense")
    assert "dense" not in g
    g.lint()


def test_remove_node_with_users_is_refused():
    g = small_graph()
    with pytest.raises(IRError, match="still used by"):
        g.remove_node("dense")


def test_topological_order_is_stable_and_valid():
    g = lower("dlrm-rmc1", batch=2)
    seen = set()
    for node in g.nodes:
        assert all(i in seen for i in node.inputs)
        seen.add(node.name)
    assert [n.name for n in g.nodes] == [n.name for n in lower("dlrm-rmc1", batch=2).nodes]


def test_names_are_made_unique():
    g = Graph()
    a = g.add_node("input", attrs={"shape": [2]}, name="x")
    b = g.add_node("input", attrs={"shape": [2]}, name="x")
    assert (a.name, b.name) == ("x", "x_1")


def test_unknown_op_is_rejected():
    with pytest.raises(UnknownNameError, match="unknown op 'conv2d'"):
        Graph().add_node("conv2d")


def _broken(mutate) -> dict:
    data = small_graph().to_dict()
    mutate(data)
    return data


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["nodes"].pop(), "exactly one output"),
        (lambda d: d["nodes"][1]["attrs"].update(in_features=5), "expects last dim 5"),
        (lambda d: d["nodes"][1]["attrs"].update(out_features=0), "out_features"),
        (lambda d: d["nodes"][1]["attrs"].pop("in_features"), "missing attribute 'in_features'"),
        (lambda d: d["nodes"][1].update(op="warp"), "unknown op 'warp'"),
        (lambda d: d["nodes"][2]["attrs"].update(fn="relu"), "takes 1 inputs"),
        (lambda d: d["nodes"][1].update(inputs=[]), "takes 1 inputs, got 0"),
        (lambda d: d["nodes"][1]["attrs"].update(activation="gelu"), "activation"),
        (lambda d: d["nodes"].append(dict(d["nodes"][-1], name="out2")), "exactly one output"),
        (lambda d: d["nodes"][0]["attrs"].update(shape=[]), "shape"),
        (lambda d: d["nodes"][1].update(name="bad name"), "not an identifier"),
    ],
)
def test_lint_rejects_broken_graphs(mutate, message):
    data = _broken(mutate)
    try:
        g = Graph.from_dict(data)
    except IRError as exc:  # some breakage is caught while loading
        assert message in str(exc) or "inputs" in str(exc)
        return
    with pytest.raises(IRError) as info:
        g.lint()
    assert message in str(info.value)


def test_from_dict_rejects_forward_references_and_duplicates():
    data = small_graph().to_dict()
    data["nodes"].reverse()
    with pytest.raises(IRError, match="must be defined before"):
        Graph.from_dict(data)
    data = small_graph().to_dict()
    data["nodes"].insert(1, dict(data["nodes"][0]))
    with pytest.raises(IRError, match="duplicate node name"):
        Graph.from_dict(data)
    with pytest.raises(IRError, match="not a codesign IR"):
        Graph.from_dict({"nodes": []})
    with pytest.raises(IRError, match="malformed"):
        Graph.from_json("{nope")


def test_lint_catches_use_def_drift():
    g = small_graph()
    g.node("sq").inputs = ("x", "x")  # edited behind the graph's back
    with pytest.raises(IRError, match="use-def links disagree"):
        g.lint()


def test_networkx_export():
    g = lower("ncf", batch=3)
    nxg = g.to_networkx()
    assert isinstance(nxg, nx.MultiDiGraph)
    assert nxg.number_of_nodes() == len(g)
    assert nx.is_directed_acyclic_graph(nxg)
    assert nxg.nodes["gmf"]["op"] == "elementwise"
    assert {d["position"] for _, _, d in nxg.in_edges("gmf", data=True)} == {0, 1}


def test_readable_printing():
    text = str(small_graph())
    assert text.splitlines()[0] == "graph g(batch=4):"
    assert "%sq : fp32[4] = elementwise(%dense, %dense, fn='mul')" in text


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    widths=st.lists(st.integers(1, 64), min_size=1, max_size=5),
    batch=st.integers(1, 10_000),
    meta=st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.one_of(st.integers(), st.text(max_size=5), st.booleans()),
        max_size=3,
    ),
)
def test_json_round_trip_property(widths, batch, meta):
    g = Graph("p", batch=batch, meta=meta)
    x = g.add_node("input", attrs={"shape": [widths[0]]})
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        x = g.add_node("dense", [x], {"in_features": a, "out_features": b}, meta={"i": i})
    g.add_node("output", [x])
    g.infer().lint()
    back = Graph.from_json(g.to_json())
    assert back == g and back.to_json() == g.to_json()
    assert json.loads(g.to_json(indent=None)) == g.to_dict()
