"""PyTorch import: a DLRM-style ``torch.nn.Module`` -> :class:`Graph`, through ``torch.export``.

The module is exported with its example inputs (static shapes), which gives an ATen-level
``torch.fx`` graph whose every value carries a fake tensor (shape, dtype) in ``meta["val"]``.
``torch.export`` rather than ``torch.fx.symbolic_trace``: the DLRM reference computes its
lower-triangle indices in ``forward`` from ``Z.shape`` (``range(ni)``), which symbolic tracing
cannot run; export runs the Python with concrete shapes and keeps the index tensors as
constants. Functional calls (``F.linear``) and modules (``nn.Linear``) arrive as the same ATen op.

The graph is then interpreted abstractly, one fx node at a time. Each value is one of: an IR
activation (batch first; the IR keeps the per-item shape without the batch), a constant (folded
with real torch calls), a parameter, integer ids from the inputs (shape only), or a pending
pattern (a concatenation, a stack of vectors, its transpose, their Gram matrix, a gather of its
triangle) that becomes one IR node when a consumer needs it. Supported patterns:

- float user input ``(B, ...)`` -> ``input`` (role dense), created at its first use;
- ``nn.EmbeddingBag`` (ids with offsets, or 2-D ids) -> an index ``input`` (``[pooling]``, role
  sparse) and an ``embedding_bag`` (sum/mean); pooling is ids per bag (rounded mean when the
  bags differ in size); ``nn.Embedding`` -> ``embedding_bag`` with pooling 1 (1-D ids) or mode
  none (2-D ids), and a following ``sum``/``mean`` over the ids folds into the bag;
- ``nn.Linear`` -> ``dense``; a ReLU/Sigmoid/Tanh that is the Linear's only user fuses into it,
  otherwise it becomes an ``elementwise`` node (so do ``add``/``sub``/``mul`` of activations);
- DLRM dot interaction: ``cat`` + ``view`` to ``(B, n, d)`` (or ``stack``), ``bmm``/``matmul``
  with its transpose, a gather of the strict (``n(n-1)/2``) or full (``n(n+1)/2``) lower triangle
  by index tensors (``li``/``lj`` or ``tril_indices``) -> one ``interaction`` (dot); with a final
  ``cat([x, Zflat])`` it is ``dense_first``;
- ``cat([x, *embeddings], dim=1)`` where ``x`` is a Linear's output and the rest are bags -> an
  ``interaction`` (cat), as the DLRM lowering emits; any other flat ``cat`` -> ``concat``;
- identities (``clone``, ``dropout``, ``detach``, full slices, same-shape views) pass through.

Anything else raises :class:`ImportFailure` naming the fx node, its target and its module. The
patterns and the IR they lower to live in :mod:`codesign.ir.frontends.patterns`, shared with the
ONNX importer; this module maps ATen ops onto them. It is the only module in the package that
imports torch, and only inside functions.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from codesign.errors import ImportFailure, IRError
from codesign.ir.frontends.patterns import (
    ACTIVATIONS,
    BINARY,
    Act,
    Const,
    Dead,
    DenseIn,
    Gram,
    Ids,
    Multi,
    Param,
    PatternError,
    PatternLowering,
    Value,
)
from codesign.ir.graph import Graph

if TYPE_CHECKING:
    import torch
    from torch import fx

_TORCH_DTYPES = {
    "float32": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
    "int64": "int64",
    "int32": "int32",
}
_ACTIVATIONS = {f"{fn}{suffix}": fn for fn in ACTIVATIONS for suffix in ("", "_")}
_BINARY = {fn: fn for fn in BINARY}
_IDENTITY = ("clone", "alias", "detach", "detach_", "contiguous", "dropout", "lift_fresh_copy")
_VIEWS = ("view", "reshape", "_unsafe_view", "flatten")
#: Ops that may rearrange integer ids from the inputs without computing on them.
_ID_PLUMBING = frozenset(
    (*_IDENTITY, *_VIEWS, "select", "slice", "squeeze", "unsqueeze", "unbind", "split", "narrow")
)
_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


# --- entry point --------------------------------------------------------------------------------


def import_module(
    module: Any,
    example_inputs: tuple,
    *,
    name: str | None = None,
    batch: int | None = None,
) -> Graph:
    """Import a DLRM-style ``torch.nn.Module`` as an IR :class:`Graph`.

    ``example_inputs`` are the positional arguments of ``module.forward`` for one batch; the
    leading dim of the first float input is the batch (``batch`` overrides what the graph
    records). Raises :class:`ImportFailure` for anything the IR cannot express.
    """
    import torch

    from codesign.ir.frontends.lower import check_batch

    if not isinstance(module, torch.nn.Module):
        raise ImportFailure(f"expected a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(example_inputs, tuple):
        raise ImportFailure(
            f"example_inputs must be a tuple of forward's arguments, got "
            f"{type(example_inputs).__name__} (wrap a single tensor as (x,))"
        )
    if batch is not None:
        batch = check_batch(batch)
    cls = type(module).__name__
    try:
        program = torch.export.export(module, example_inputs)
    except Exception as exc:  # torch raises many types here; all mean "cannot trace"
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ImportFailure(
            f"torch.export could not trace {cls}: {type(exc).__name__}: {first}"
        ) from exc
    importer = _Importer(program, name=name or cls, cls=cls)
    graph = importer.run()
    if batch is not None:
        graph.batch = batch
    return graph


# --- the importer -------------------------------------------------------------------------------


def _ir_dtype(dtype: torch.dtype) -> str:
    key = str(dtype).removeprefix("torch.")
    if key not in _TORCH_DTYPES:
        raise PatternError(f"dtype {key} has no IR equivalent (use float32/16, bfloat16, int32/64)")
    return _TORCH_DTYPES[key]


def _target_name(target: Any) -> str:
    return str(target) if hasattr(target, "_schema") else getattr(target, "__name__", str(target))


def _op_name(node: fx.Node) -> str:
    return node.target._schema.name.split("::", 1)[-1]


class _Importer(PatternLowering):
    def __init__(self, program: Any, *, name: str, cls: str) -> None:
        import torch

        self.torch = torch
        self.program = program
        self.fx_graph = program.graph
        self.values: dict[str, Any] = {}
        graph = Graph(
            name,
            meta={
                "model": name,
                "arch": "torch",
                "source": f"torch.export:{cls}",
                "importer": f"torch {torch.__version__}",
            },
        )
        super().__init__(graph, batch=1)
        self.batch = self._example_batch()
        self.graph.batch = self.batch

    def use_count(self, owner: Any) -> int:
        return len(owner.users)

    # --- driver ---------------------------------------------------------------------------

    def run(self) -> Graph:
        for node in self.fx_graph.nodes:
            try:
                if node.op == "placeholder":
                    self.values[node.name] = self._placeholder(node)
                elif node.op == "call_function":
                    self.values[node.name] = self._call(node)
                elif node.op == "output":
                    self._output(node)
                else:
                    raise PatternError("only placeholders, call_function nodes and one output")
            except PatternError as exc:
                raise ImportFailure(self._where(node) + str(exc)) from None
        try:
            self.graph.infer()
            self.graph.lint()
        except IRError as exc:
            raise ImportFailure(f"the imported graph is inconsistent: {exc}") from None
        self._check_shapes()
        return self.graph

    def _where(self, node: fx.Node) -> str:
        what = f"{node.op} {_target_name(node.target)}" if node.op == "call_function" else node.op
        text = f"cannot lower {what} at node {node.name!r}"
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            path, kind = list(stack.values())[-1]
            if path:
                kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
                text += f" (module {path!r}: {kind.rsplit('.', 1)[-1]})"
        return text + ": "

    def _example_batch(self) -> int:
        from torch.export.graph_signature import InputKind

        users = {
            s.arg.name
            for s in self.program.graph_signature.input_specs
            if s.kind == InputKind.USER_INPUT
        }
        for node in self.fx_graph.nodes:
            val = node.meta.get("val")
            if node.op == "placeholder" and node.name in users and self._is_float(val):
                if val.dim() >= 1:
                    return int(val.shape[0])
        for node in self.fx_graph.nodes:
            if node.op == "output":
                for out in self._flat(node.args[0]):
                    val = getattr(out, "meta", {}).get("val")
                    if val is not None and hasattr(val, "shape") and val.dim() >= 1:
                        return int(val.shape[0])
        return 1

    def _is_float(self, val: Any) -> bool:
        return isinstance(val, self.torch.Tensor) and val.is_floating_point()

    @staticmethod
    def _flat(args: Any) -> list[Any]:
        if isinstance(args, list | tuple):
            return [x for a in args for x in _Importer._flat(a)]
        return [args]

    def _check_shapes(self) -> None:
        """Every IR node's per-item shape must equal its torch value's shape less the batch."""
        for ir_name, fx_nodes in self.owners.items():
            ir_node = self.graph.node(ir_name)
            for fx_node in fx_nodes:
                torch_shape = tuple(int(s) for s in fx_node.meta["val"].shape)
                if torch_shape[1:] != ir_node.shape or torch_shape[0] != self.batch:
                    raise ImportFailure(
                        f"{self._where(fx_node)}torch computes {list(torch_shape)} but the IR "
                        f"node {ir_name} gives {list(ir_node.shape)} per item for batch "
                        f"{self.batch}"
                    )

    # --- placeholders and output ----------------------------------------------------------

    def _placeholder(self, node: fx.Node) -> Any:
        from torch.export.graph_signature import InputKind

        spec = next(
            (s for s in self.program.graph_signature.input_specs if s.arg.name == node.name),
            None,
        )
        kind = spec.kind if spec is not None else None
        val = node.meta.get("val")
        if kind == InputKind.PARAMETER:
            return Param(spec.target, tuple(int(s) for s in val.shape), _ir_dtype(val.dtype))
        if kind in (InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            if spec.target in self.program.constants:
                return Const(self.program.constants[spec.target])
            return Const(self.program.state_dict[spec.target])
        if kind == InputKind.USER_INPUT:
            if not isinstance(val, self.torch.Tensor):
                return Const(val)
            if val.is_floating_point():
                dtype = _TORCH_DTYPES.get(str(val.dtype).removeprefix("torch."))
                return DenseIn(node.name, self._shape(node), dtype, node)
            return Ids(self._shape(node), str(val.dtype).removeprefix("torch."))
        raise PatternError(f"input kind {kind} is not supported")

    def _output(self, node: fx.Node) -> None:
        results = [self.values[n.name] for n in self._flat(node.args[0])]
        self.graph.add_node("output", [self.act(v, node.name) for v in results], name="output")

    # --- calls ----------------------------------------------------------------------------

    def _call(self, node: fx.Node) -> Any:
        from torch.fx.node import map_arg

        target = node.target
        if target is operator.getitem:
            return self._getitem(node)
        if not hasattr(target, "_schema"):
            raise PatternError("only ATen operators are understood")
        op = _op_name(node)
        if not node.users and op.startswith("_assert"):
            return Dead("an assertion")
        args = map_arg(node.args, lambda n: self.values[n.name])
        kwargs = map_arg(node.kwargs, lambda n: self.values[n.name])
        leaves = [v for v in self._flat([*args, *kwargs.values()]) if isinstance(v, Value)]
        if all(isinstance(v, Const) for v in leaves):
            return self._fold(node, args, kwargs)
        if op in _ID_PLUMBING and all(isinstance(v, Ids | Const) for v in leaves):
            return self._ids_like(node.meta.get("val"))
        handler = _HANDLERS.get(op)
        if handler is None:
            raise PatternError("the IR has no equivalent op")
        return handler(self, node, _bind(target, args, kwargs))

    def _fold(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        def real(v: Any) -> Any:
            if isinstance(v, Const):
                return v.value
            if isinstance(v, list | tuple):
                return type(v)(real(x) for x in v)
            return v

        try:
            with self.torch.no_grad():
                out = node.target(*real(args), **{k: real(v) for k, v in kwargs.items()})
        except Exception as exc:  # a constant computation torch itself rejects
            first = (str(exc).strip().splitlines() or [""])[0]
            raise PatternError(
                f"folding a constant failed: {type(exc).__name__}: {first}"
            ) from None
        if isinstance(out, list | tuple):
            return Multi([Const(o) for o in out])
        return Const(out)

    def _ids_like(self, val: Any) -> Any:
        if isinstance(val, list | tuple):
            return Multi([self._ids_like(v) for v in val])
        return Ids(tuple(int(s) for s in val.shape), str(val.dtype).removeprefix("torch."))

    def _getitem(self, node: fx.Node) -> Any:
        base, index = node.args
        value = self.values[base.name]
        if not isinstance(value, Multi) or not isinstance(index, int):
            raise PatternError("indexing is only understood on multi-output ops")
        item = value.items[index]
        if isinstance(item, Act):
            self.own(item.node, node)
        if isinstance(item, Dead) and node.users:
            raise PatternError(f"output {index} is {item.why}, which the IR does not model")
        return item

    # --- helpers for handlers -------------------------------------------------------------

    def _shape(self, fx_node: Any) -> tuple[int, ...]:
        val = fx_node.meta.get("val")
        if not isinstance(val, self.torch.Tensor):
            raise PatternError(f"value {fx_node.name} is not a tensor")
        return tuple(int(s) for s in val.shape)

    def _item_shape(self, fx_node: Any) -> tuple[int, ...]:
        """Per-item shape of a batch-first torch value (fails when the lead dim is not batch)."""
        val = fx_node.meta.get("val")
        if not isinstance(val, self.torch.Tensor) or val.dim() == 0:
            raise PatternError(f"value {fx_node.name} is not a batch-first tensor")
        return self.item_shape(self._shape(fx_node), fx_node.name)

    def _module_name(self, node: fx.Node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
        return path or node.name

    # --- handlers -------------------------------------------------------------------------

    def _linear(self, node: fx.Node, a: dict) -> Any:
        return self.linear(
            a["input"],
            a["weight"],
            a["bias"],
            name=self._module_name(node),
            owner=node,
            user=node.name,
        )

    def _activation(self, node: fx.Node, a: dict) -> Any:
        fn = _ACTIVATIONS[_op_name(node)]
        return self.activation(a["self"], fn, name=node.name, owner=node, user=node.name)

    def _binary(self, node: fx.Node, a: dict) -> Any:
        if a.get("alpha", 1) != 1:
            raise PatternError("add/sub with alpha != 1 has no IR equivalent")
        if not isinstance(a["other"], Value):
            raise PatternError(
                "a scalar operand has no IR equivalent (elementwise takes two tensors)"
            )
        return self.binary(
            a["self"],
            a["other"],
            _BINARY[_op_name(node)],
            shapes=(self._item_shape(node.args[0]), self._item_shape(node.args[1])),
            name=node.name,
            owner=node,
            user=node.name,
        )

    def _out_dtype(self, node: fx.Node) -> str:
        val = node.meta["val"]
        return _ir_dtype((val[0] if isinstance(val, list | tuple) else val).dtype)

    def _embedding_bag(self, node: fx.Node, a: dict) -> Any:
        if a.get("per_sample_weights") is not None:
            raise PatternError("weighted bags (per_sample_weights) are not modelled")
        offsets = a["offsets"]
        if isinstance(offsets, Const):
            offsets_len = int(offsets.value.numel())
        elif isinstance(offsets, Ids) and len(offsets.shape) == 1:
            offsets_len = offsets.shape[0]
        else:
            raise PatternError("offsets must be a 1-D integer tensor")
        bag = self.embedding_bag(
            a["weight"],
            a["indices"],
            bags=offsets_len - (1 if a.get("include_last_offset") else 0),
            mode=_BAG_MODES.get(a["mode"], str(a["mode"])),
            out_dtype=self._out_dtype(node),
            name=self._module_name(node),
        )
        return Multi([Act(bag), Dead("offset2bag"), Dead("bag_size"), Dead("max_indices")])

    def _embedding(self, node: fx.Node, a: dict) -> Any:
        return self.embedding(
            a["weight"],
            a["indices"],
            out_dtype=self._out_dtype(node),
            name=self._module_name(node),
            owner=node,
        )

    def _reduce(self, node: fx.Node, a: dict) -> Any:
        dims = a.get("dim")
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        if a.get("dtype") is not None:
            raise PatternError("only a sum/mean over the ids of an embedding lookup is supported")
        return self.pool(
            a["self"],
            _op_name(node),
            dims=dims,
            keepdim=bool(a.get("keepdim")),
            owner=node,
            user=node.name,
        )

    def _identity(self, node: fx.Node, a: dict) -> Any:
        value = a["self"] if "self" in a else a["input"]
        if isinstance(value, Act):
            self.own(value.node, node)
        return value

    def _cat(self, node: fx.Node, a: dict) -> Any:
        if a["dim"] not in (1, -1):
            raise PatternError("only concatenation along the feature dim (dim=1) is supported")
        fx_inputs = list(node.args[0])
        return self.cat(
            list(a["tensors"]),
            [self._shape(x) for x in fx_inputs],
            name=node.name,
            owner=node,
            user=node.name,
        )

    def _stack(self, node: fx.Node, a: dict) -> Any:
        if a["dim"] != 1:
            raise PatternError("only stacking vectors along dim 1 is supported")
        shapes = {self._item_shape(x) for x in node.args[0]}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise PatternError(f"stacked tensors must be (batch, d) of one d, got {sorted(shapes)}")
        return self.stack(
            list(a["tensors"]),
            [self._shape(x) for x in node.args[0]],
            name=node.name,
            owner=node,
            user=node.name,
        )

    def _view(self, node: fx.Node, a: dict) -> Any:
        value = a["self"] if "self" in a else a["input"]
        return self.view(
            value,
            self._item_shape(node.args[0]),
            self._item_shape(node),
            name=node.name,
            owner=node,
        )

    def _transpose(self, node: fx.Node, a: dict) -> Any:
        if "dims" in a:
            swap = list(a["dims"]) in ([0, 2, 1], [0, -1, -2])
        else:
            swap = {d % 3 for d in (a["dim0"], a["dim1"])} == {1, 2}
        return self.transpose(a["self"], swaps_inner=swap)

    def _bmm(self, node: fx.Node, a: dict) -> Any:
        return self.matmul(a["self"], a["other"] if "other" in a else a["mat2"])

    def _slice(self, node: fx.Node, a: dict) -> Any:
        value = a["self"]
        size = int(node.args[0].meta["val"].shape[a["dim"]])
        start, end, step = a.get("start"), a.get("end"), a.get("step", 1)
        if start in (None, 0) and (end is None or end >= size) and step == 1:
            if isinstance(value, Act):
                self.own(value.node, node)
            return value
        raise PatternError("only full slices (`:`) are supported")

    def _index(self, node: fx.Node, a: dict) -> Any:
        gram, indices = a["self"], list(a["indices"])
        if not isinstance(gram, Gram):
            raise PatternError("advanced indexing is only understood as the DLRM triangle gather")
        if (
            len(indices) != 3
            or indices[0] is not None
            or not all(isinstance(i, Const) for i in indices[1:])
        ):
            raise PatternError("the gather must be Z[:, li, lj] with constant index tensors")
        li, lj = (i.value.reshape(-1).tolist() for i in indices[1:])
        return self.triangle(gram, li, lj, owner=node)


def _bind(target: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Arguments by schema name, defaults filled in."""
    out: dict[str, Any] = {}
    for i, arg in enumerate(target._schema.arguments):
        if i < len(args):
            out[arg.name] = args[i]
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


_HANDLERS: dict[str, Callable[..., Any]] = {
    "linear": _Importer._linear,
    "embedding_bag": _Importer._embedding_bag,
    "_embedding_bag": _Importer._embedding_bag,
    "_embedding_bag_forward_only": _Importer._embedding_bag,
    "embedding": _Importer._embedding,
    "sum": _Importer._reduce,
    "mean": _Importer._reduce,
    "cat": _Importer._cat,
    "stack": _Importer._stack,
    "transpose": _Importer._transpose,
    "permute": _Importer._transpose,
    "bmm": _Importer._bmm,
    "matmul": _Importer._bmm,
    "slice": _Importer._slice,
    "index": _Importer._index,
    **dict.fromkeys(_ACTIVATIONS, _Importer._activation),
    **dict.fromkeys(_BINARY, _Importer._binary),
    **dict.fromkeys(_IDENTITY, _Importer._identity),
    **dict.fromkeys(_VIEWS, _Importer._view),
}
