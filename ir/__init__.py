"""The tensor graph IR: :class:`Graph`/:class:`Node`, the fixed op set (:mod:`.ops`), frontends
(YAML specs, the model zoo, PyTorch import) and compiler passes (:mod:`.passes`)."""

from __future__ import annotations

from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.spec import ModelSpec, load_spec
from codesign.ir.graph import Graph, Node
from codesign.ir.ops import OPS, OpCost

__all__ = ["OPS", "Graph", "ModelSpec", "Node", "OpCost", "load_spec", "lower"]
