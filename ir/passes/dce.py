"""``dce``: dead-code elimination.

Preconditions: the graph has exactly one ``output`` node. Every node from which that output
cannot be reached (a dangling layer, an unused input) is removed; nothing else changes.
"""

from __future__ import annotations

from codesign.ir.graph import Graph
from codesign.ir.passes.base import PassResult, drop_cost_annotations


def eliminate_dead_code(graph: Graph) -> PassResult:
    """Remove the nodes the output does not depend on; notes list them in topological order."""
    out = graph.copy()
    live: set[str] = set()
    stack = [out.output.name]
    while stack:
        name = stack.pop()
        if name not in live:
            live.add(name)
            stack.extend(out.node(name).inputs)
    dead = [n.name for n in out.nodes if n.name not in live]
    for name in reversed(dead):  # users before the values they read
        out.remove_node(name)
    if dead:
        drop_cost_annotations(out)
    out.infer()
    return PassResult(out, bool(dead), {"removed": dead})
