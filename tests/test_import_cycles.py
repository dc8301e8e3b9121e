"""No import cycles: between modules anywhere, and between the packages the issue tracker named
(``codesign.api`` and ``codesign.pipeline``, ``codesign.config`` and ``codesign.search``).
Imports inside functions count too: a lazy import hides a cycle from Python, not from the
reader. Cost models never import the library entry (``codesign.api``)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "codesign": "codesign",
    "ir": "codesign.ir",
    "search": "codesign.search",
    "cost_models": "codesign.cost_models",
    "targets": "codesign.targets",
}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def module_graph() -> nx.DiGraph:
    """Module -> module it imports (``from pkg import mod`` resolves to the module; package
    ``__init__`` files, which only re-export, are left out)."""
    modules = _modules()
    packages = {m for m, p in modules.items() if p.name == "__init__.py"}
    graph = nx.DiGraph()
    for module, path in modules.items():
        if module in packages:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.append(full if full in modules else node.module)
            for name in targets:
                if name in modules and name not in packages and name != module:
                    graph.add_edge(module, name, where=f"{path.relative_to(ROOT)}:{node.lineno}")
    return graph


def _describe(graph: nx.DiGraph, cycles: list[list[str]]) -> str:
    return "\n".join(
        " -> ".join([*c, c[0]])
        + " ("
        + ", ".join(graph.edges[a, b]["where"] for a, b in zip(c, [*c[1:], c[0]], strict=True))
        + ")"
        for c in cycles
    )


def test_no_import_cycles_between_modules():
    graph = module_graph()
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, _describe(graph, cycles)


def _reaches(graph: nx.DiGraph, src_prefix: str, dst_prefix: str) -> bool:
    src = [n for n in graph if n == src_prefix or n.startswith(src_prefix + ".")]
    dst = {n for n in graph if n == dst_prefix or n.startswith(dst_prefix + ".")}
    return any(dst & nx.descendants(graph, s) for s in src)


def test_named_packages_do_not_import_each_other_both_ways():
    graph = module_graph()
    for a, b in (
        ("codesign.api", "codesign.pipeline"),
        ("codesign.config", "codesign.search"),
    ):
        assert not (_reaches(graph, a, b) and _reaches(graph, b, a)), f"{a} <-> {b}"


def test_cost_models_do_not_import_the_library_entry():
    graph = module_graph()
    assert not _reaches(graph, "codesign.cost_models", "codesign.api")
