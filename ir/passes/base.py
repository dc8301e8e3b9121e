"""What every pass shares: the result type, the option error, and small graph queries.

A pass is a function ``Graph -> PassResult``. It works on ``graph.copy()`` (the input is never
mutated), leaves every node's shape inferred, and puts JSON-able details in ``notes``. Options
are keyword-only arguments; bind them with :func:`functools.partial` to get a plain pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from codesign.errors import CodesignError
from codesign.ir import ops as opdefs
from codesign.ir.graph import Graph, Node

#: Ops that own embedding tables.
EMBEDDING_OPS = ("embedding_bag", "embedding_bag_group")
#: Ops that read their inputs as a bag of (d,) vectors or (n, d) rows (see ``ops._vectors``), so
#: a (k, d) value can stand for k separate (d,) inputs without changing the op's cost.
VECTOR_CONSUMERS = ("interaction", "concat")


@dataclass(frozen=True)
class PassResult:
    """A pass's output graph, whether it differs from the input, and JSON-able details."""

    graph: Graph
    changed: bool
    notes: dict[str, Any] = field(default_factory=dict)


Pass = Callable[[Graph], PassResult]


class PassOptionError(CodesignError, ValueError):
    """A pass got an option it cannot use (an unknown dtype, a non-positive threshold)."""


def check_int_option(pass_name: str, option: str, value: Any, *, minimum: int) -> int:
    """``value`` if it is an integer >= ``minimum``; else a one-line :class:`PassOptionError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PassOptionError(
            f"{pass_name}: option {option} must be an integer >= {minimum}, got {value!r}"
        )
    return value


def attrs_of(node: Node) -> dict[str, Any]:
    """The node's attributes with the op's defaults filled in."""
    return opdefs.OPS[node.op].normalize(node.attrs)


def table_rows(node: Node) -> int:
    """Rows of storage an embedding node holds (all tables of a group)."""
    attrs = attrs_of(node)
    if node.op == "embedding_bag_group":
        return sum(t["rows"] for t in attrs["tables"])
    return attrs["rows"]


def embedding_nodes(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if n.op in EMBEDDING_OPS]


def embedding_lookups(graph: Graph) -> int:
    """Row gathers per item: the sum of every table's pooling factor."""
    total = 0
    for node in embedding_nodes(graph):
        attrs = attrs_of(node)
        if node.op == "embedding_bag_group":
            total += sum(t["pooling"] for t in attrs["tables"])
        else:
            total += attrs["pooling"]
    return total


def embedding_table_bytes(graph: Graph) -> int:
    """Bytes of every embedding table in storage (shapes must be inferred)."""
    return int(sum(graph.cost(n).weight_bytes for n in embedding_nodes(graph)))


def embedding_bytes_per_item(graph: Graph) -> float:
    """Embedding rows gathered per item, in bytes (shapes must be inferred)."""
    return sum(graph.cost(n).embedding_bytes_per_item for n in embedding_nodes(graph))


def drop_cost_annotations(graph: Graph) -> None:
    """Remove what ``annotate-cost`` wrote: a pass that edits the graph makes it stale."""
    graph.meta.pop("cost", None)
    for node in graph.nodes:
        node.meta.pop("cost", None)
        node.meta.pop("cost_batch", None)


def vector_consumer(graph: Graph, node: Node) -> Node | None:
    """The single user of ``node`` if it consumes ``node`` as one member of a set of vectors.

    That holds when the user is an interaction or concat that reads ``node`` exactly once, and
    ``node`` is not the dense vector of a ``dense_first`` interaction (input 0, which must stay
    a single (d,) vector). Otherwise None.
    """
    users = graph.users(node)
    if len(users) != 1 or users[0].op not in VECTOR_CONSUMERS:
        return None
    user = users[0]
    positions = [i for i, src in enumerate(user.inputs) if src == node.name]
    if len(positions) != 1:
        return None
    if user.op == "interaction" and attrs_of(user)["dense_first"] and positions[0] == 0:
        return None
    return user


def splice_inputs(graph: Graph, user: Node, replaced: Iterable[str], new: str) -> None:
    """In ``user``'s inputs, put ``new`` where the first of ``replaced`` was; drop the others."""
    replaced = set(replaced)
    inputs: list[str] = []
    placed = False
    for src in user.inputs:
        if src not in replaced:
            inputs.append(src)
        elif not placed:
            inputs.append(new)
            placed = True
    graph.set_inputs(user, inputs)


def min_inputs(node: Node) -> int:
    return opdefs.OPS[node.op].min_inputs
