"""Compiler passes over the IR: each is ``Graph -> PassResult`` and never mutates its input.

:data:`PASSES` names the built-in passes in kebab case; :func:`run_passes` runs a pipeline,
lints the graph after every pass, and gathers each pass's notes under its name. Passes with
options take them as keyword arguments: ``functools.partial(merge_small_tables, max_rows=100)``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from codesign.errors import IRError, UnknownNameError
from codesign.ir.graph import Graph
from codesign.ir.passes.annotate_cost import annotate_cost
from codesign.ir.passes.base import Pass, PassOptionError, PassResult
from codesign.ir.passes.dce import eliminate_dead_code
from codesign.ir.passes.group_embeddings import group_embeddings
from codesign.ir.passes.merge_tables import merge_small_tables
from codesign.ir.passes.quantize_embeddings import quantize_embeddings

PASSES: dict[str, Pass] = {
    "annotate-cost": annotate_cost,
    "dce": eliminate_dead_code,
    "group-embeddings": group_embeddings,
    "merge-small-tables": merge_small_tables,
    "quantize-embeddings": quantize_embeddings,
}

#: A sensible order: merging needs separate lookups, so it runs before grouping; cost
#: annotations are dropped by any later change, so they come last.
DEFAULT_PIPELINE: tuple[str, ...] = (
    "dce",
    "merge-small-tables",
    "group-embeddings",
    "annotate-cost",
)

__all__ = [
    "DEFAULT_PIPELINE",
    "PASSES",
    "Pass",
    "PassOptionError",
    "PassResult",
    "annotate_cost",
    "eliminate_dead_code",
    "get_pass",
    "group_embeddings",
    "merge_small_tables",
    "pass_name",
    "quantize_embeddings",
    "run_passes",
]


def get_pass(name: str) -> Pass:
    """The registered pass called ``name``."""
    try:
        return PASSES[name]
    except KeyError:
        known = ", ".join(sorted(PASSES))
        raise UnknownNameError(f"unknown pass {name!r} (known: {known})") from None


def pass_name(fn: Pass) -> str:
    """The registry name of ``fn`` (seen through ``functools.partial``), else its ``__name__``."""
    base = fn
    while isinstance(base, functools.partial):
        base = base.func
    for name, registered in PASSES.items():
        if registered is base:
            return name
    return getattr(base, "__name__", type(base).__name__)


def run_passes(graph: Graph, passes: Sequence[Pass | str]) -> PassResult:
    """Run ``passes`` (callables or registry names) in order, linting after each.

    ``notes`` maps each pass's name to its notes (a repeated name gets ``#2``, ``#3``...);
    ``changed`` is true when any pass changed the graph. A lint failure is raised as
    :class:`IRError` naming the pass that broke the graph.
    """
    current = graph.copy()
    changed = False
    notes: dict[str, dict] = {}
    for entry in passes:
        fn = get_pass(entry) if isinstance(entry, str) else entry
        name = pass_name(fn)
        key, n = name, 1
        while key in notes:
            n += 1
            key = f"{name}#{n}"
        result = fn(current)
        try:
            result.graph.lint()
        except IRError as exc:
            raise IRError([f"after pass {name}: {p}" for p in exc.problems]) from exc
        current = result.graph
        changed = changed or result.changed
        notes[key] = result.notes
    return PassResult(current, changed, notes)
