"""Tensor graph IR in the style of torch.fx: named nodes of a fixed op set, open attributes,
a free-form ``meta`` dict, use-def links kept by the graph, and a stable topological order.

A networkx ``MultiDiGraph`` holds the edges (composition, not inheritance); edge key = input
position, so a node may use the same value twice. Everything a node stores is plain JSON
(lists, not tuples), which makes the JSON round trip exact.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from codesign.errors import IRError
from codesign.ir import ops as opdefs

FORMAT = "codesign.ir"
FORMAT_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(eq=False)
class Node:
    """One value-producing operation. Change ``inputs`` only through the owning graph."""

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-item output shape (set by :meth:`Graph.infer`)."""
        if "shape" not in self.meta:
            raise IRError([f"node {self.name}: shape not inferred yet (call graph.infer())"])
        return tuple(self.meta["shape"])

    @property
    def dtype(self) -> str:
        return self.meta["dtype"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op": self.op,
            "inputs": list(self.inputs),
            "attrs": copy.deepcopy(self.attrs),
            "meta": copy.deepcopy(self.meta),
        }

    def __repr__(self) -> str:
        return f"Node({self.name!r}, op={self.op!r}, inputs={list(self.inputs)})"


class Graph:
    """A DAG of :class:`Node`; ``batch`` is the number of items ranked per query."""

    def __init__(self, name: str = "graph", *, batch: int = 1, meta: dict | None = None) -> None:
        self.name = name
        self.batch = batch
        self.meta: dict[str, Any] = dict(meta or {})
        self._nodes: dict[str, Node] = {}
        self._order: dict[str, int] = {}
        self._counter = 0
        self._edges = nx.MultiDiGraph()
        self._topo: list[str] | None = None

    # --- construction ---------------------------------------------------------------------

    def add_node(
        self,
        op: str,
        inputs: Sequence[Node | str] = (),
        attrs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Node:
        """Append a node; attributes get the op's defaults. Returns the new node."""
        opdef = opdefs.get_op(op)
        input_names = tuple(self._name_of(i) for i in inputs)
        missing = [i for i in input_names if i not in self._nodes]
        if missing:
            raise IRError([f"node {name or op}: unknown inputs {missing}"])
        name = self._fresh_name(name or op)
        node = Node(name, op, input_names, opdef.normalize(attrs or {}), dict(meta or {}))
        self._insert(node)
        return node

    def _insert(self, node: Node) -> None:
        self._nodes[node.name] = node
        self._order[node.name] = self._counter
        self._counter += 1
        self._edges.add_node(node.name)
        for pos, src in enumerate(node.inputs):
            self._edges.add_edge(src, node.name, key=pos)
        self._topo = None

    def _fresh_name(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.\-]", "_", base) or "node"
        if base[0].isdigit():
            base = "_" + base
        if base not in self._nodes:
            return base
        i = 1
        while f"{base}_{i}" in self._nodes:
            i += 1
        return f"{base}_{i}"

    @staticmethod
    def _name_of(value: Node | str) -> str:
        return value.name if isinstance(value, Node) else value

    # --- queries --------------------------------------------------------------------------

    def node(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise IRError([f"no node named {name!r}"]) from None

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @property
    def nodes(self) -> list[Node]:
        """Nodes in topological order (ties broken by insertion order: stable)."""
        if self._topo is None:
            try:
                order = nx.lexicographical_topological_sort(
                    self._edges, key=self._order.__getitem__
                )
                self._topo = list(order)
            except nx.NetworkXUnfeasible:
                raise IRError(["graph has a cycle"]) from None
        return [self._nodes[n] for n in self._topo]

    def inputs_of(self, node: Node | str) -> list[Node]:
        return [self._nodes[i] for i in self.node(self._name_of(node)).inputs]

    def users(self, node: Node | str) -> list[Node]:
        """Nodes that read ``node``, in topological order, each once."""
        name = self._name_of(node)
        users = set(self._edges.successors(name))
        return [n for n in self.nodes if n.name in users]

    def find(self, op: str) -> list[Node]:
        return [n for n in self.nodes if n.op == op]

    @property
    def output(self) -> Node:
        outs = self.find("output")
        if len(outs) != 1:
            raise IRError([f"graph needs exactly one output node, has {len(outs)}"])
        return outs[0]

    # --- edits (keep use-def links consistent) -------------------------------------------

    def set_inputs(self, node: Node | str, inputs: Sequence[Node | str]) -> None:
        target = self.node(self._name_of(node))
        names = tuple(self._name_of(i) for i in inputs)
        missing = [i for i in names if i not in self._nodes]
        if missing:
            raise IRError([f"node {target.name}: unknown inputs {missing}"])
        for pos in range(len(target.inputs)):
            self._edges.remove_edge(target.inputs[pos], target.name, key=pos)
        target.inputs = names
        for pos, src in enumerate(names):
            self._edges.add_edge(src, target.name, key=pos)
        self._topo = None

    def replace_all_uses(self, old: Node | str, new: Node | str) -> int:
        """Point every user of ``old`` at ``new``; returns how many users changed."""
        old_name, new_name = self._name_of(old), self._name_of(new)
        changed = 0
        for user in self.users(old_name):
            if user.name == new_name:
                continue
            self.set_inputs(user, [new_name if i == old_name else i for i in user.inputs])
            changed += 1
        return changed

    def remove_node(self, node: Node | str) -> None:
        name = self._name_of(node)
        users = [u.name for u in self.users(name)]
        if users:
            raise IRError([f"cannot remove {name}: still used by {users}"])
        self._edges.remove_node(name)
        del self._nodes[name]
        del self._order[name]
        self._topo = None

    def copy(self) -> Graph:
        return Graph.from_dict(self.to_dict())

    # --- checking and inference -----------------------------------------------------------

    def lint(self) -> None:
        """Raise :class:`IRError` listing every broken invariant; returns None when sound."""
        problems: list[str] = []
        for name, node in self._nodes.items():
            if not _NAME_RE.match(name):
                problems.append(f"node name {name!r} is not an identifier")
            if node.name != name:
                problems.append(f"node {name!r} is stored under another name ({node.name!r})")
            if node.op not in opdefs.OPS:
                problems.append(f"node {name}: unknown op {node.op!r}")
                continue
            opdef = opdefs.OPS[node.op]
            arity = opdef.check_arity(len(node.inputs))
            if arity:
                problems.append(f"node {name}: {arity}")
            problems += [f"node {name}: {p}" for p in opdef.check_attrs(node.attrs)]
            for src in node.inputs:
                if src not in self._nodes:
                    problems.append(f"node {name}: input {src!r} does not exist")
            linked = sorted(
                (k, s) for s, _, k in self._edges.in_edges(name, keys=True) if s in self._nodes
            )
            if linked != sorted(enumerate(node.inputs)):
                problems.append(f"node {name}: use-def links disagree with its inputs")
        outputs = [n for n in self._nodes.values() if n.op == "output"]
        if len(outputs) != 1:
            problems.append(f"graph needs exactly one output node, has {len(outputs)}")
        elif list(self._edges.successors(outputs[0].name)):
            problems.append("the output node must not have users")
        if not nx.is_directed_acyclic_graph(self._edges):
            problems.append("graph has a cycle")
        if not problems:
            problems += self._infer(strict=False)
        if problems:
            raise IRError(problems)

    def infer(self) -> Graph:
        """Infer every node's per-item shape and dtype into ``meta``; returns self."""
        problems = self._infer(strict=True)
        if problems:
            raise IRError(problems)
        return self

    def _infer(self, *, strict: bool) -> list[str]:
        problems: list[str] = []
        for node in self.nodes:
            opdef = opdefs.OPS[node.op]
            attrs = opdef.normalize(node.attrs)
            attr_problems = opdef.check_attrs(attrs)
            if attr_problems:
                problems += [f"node {node.name}: {p}" for p in attr_problems]
                if strict:
                    break
                continue
            srcs = [self._nodes[i] for i in node.inputs]
            if any("shape" not in s.meta for s in srcs):
                continue  # an upstream node already failed
            try:
                shape, dtype = opdef.infer(
                    attrs, [tuple(s.meta["shape"]) for s in srcs], [s.meta["dtype"] for s in srcs]
                )
            except opdefs.ShapeError as exc:
                problems.append(f"node {node.name}: {exc}")
                node.meta.pop("shape", None)
                if strict:
                    break
                continue
            node.meta["shape"] = list(shape)
            node.meta["dtype"] = dtype
        return problems

    def cost(self, node: Node | str) -> opdefs.OpCost:
        """Per-item cost of one node (shapes must be inferred)."""
        node = self.node(self._name_of(node))
        opdef = opdefs.OPS[node.op]
        srcs = self.inputs_of(node)
        return opdef.cost(
            opdef.normalize(node.attrs),
            [s.shape for s in srcs],
            [s.dtype for s in srcs],
            node.shape,
            node.dtype,
        )

    def total_cost(self) -> opdefs.OpCost:
        total = opdefs.OpCost()
        for node in self.nodes:
            total = total + self.cost(node)
        return total

    # --- serialization --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "batch": self.batch,
            "meta": copy.deepcopy(self.meta),
            "nodes": [n.to_dict() for n in self.nodes],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Graph:
        if data.get("format") != FORMAT:
            raise IRError([f"not a codesign IR document (format {data.get('format')!r})"])
        if data.get("version") != FORMAT_VERSION:
            raise IRError(
                [f"IR version {data.get('version')!r} unsupported; expected {FORMAT_VERSION}"]
            )
        graph = cls(data.get("name", "graph"), batch=data.get("batch", 1), meta=data.get("meta"))
        for i, raw in enumerate(data.get("nodes", [])):
            try:
                node = Node(
                    raw["name"],
                    raw["op"],
                    tuple(raw.get("inputs", [])),
                    copy.deepcopy(raw.get("attrs", {})),
                    copy.deepcopy(raw.get("meta", {})),
                )
            except (KeyError, TypeError):
                raise IRError([f"nodes[{i}] needs at least 'name' and 'op'"]) from None
            if node.name in graph._nodes:
                raise IRError([f"duplicate node name {node.name!r}"])
            missing = [s for s in node.inputs if s not in graph._nodes]
            if missing:
                raise IRError([f"node {node.name}: inputs {missing} must be defined before it"])
            graph._insert(node)
        return graph

    @classmethod
    def from_json(cls, text: str) -> Graph:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IRError([f"IR JSON is malformed: {exc}"]) from None
        return cls.from_dict(data)

    def to_networkx(self) -> nx.MultiDiGraph:
        """A copy for analysis: node attributes op/attrs/meta; edge attribute ``position``."""
        out = nx.MultiDiGraph(name=self.name, batch=self.batch)
        for node in self.nodes:
            out.add_node(
                node.name,
                op=node.op,
                attrs=copy.deepcopy(node.attrs),
                meta=copy.deepcopy(node.meta),
            )
            for pos, src in enumerate(node.inputs):
                out.add_edge(src, node.name, key=pos, position=pos)
        return out

    # --- printing -------------------------------------------------------------------------

    def __str__(self) -> str:
        lines = [f"graph {self.name}(batch={self.batch}):"]
        for node in self.nodes:
            shape = node.meta.get("shape")
            typ = f"{node.meta.get('dtype', '?')}{shape}" if shape is not None else "?"
            args = ", ".join(f"%{i}" for i in node.inputs)
            attrs = ", ".join(f"{k}={_fmt(v)}" for k, v in node.attrs.items())
            inner = ", ".join(x for x in (args, attrs) if x)
            lines.append(f"  %{node.name} : {typ} = {node.op}({inner})")
        return "\n".join(lines)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def _fmt(value: Any) -> str:
    if isinstance(value, list) and len(value) > 6:
        return f"[{len(value)} items]"
    return repr(value)
