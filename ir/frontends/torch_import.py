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

Anything else raises :class:`ImportFailure` naming the fx node, its target and its module. This
is the only module in the package that imports torch, and only inside functions.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from codesign.errors import ImportFailure, IRError
from codesign.ir.graph import Graph, Node

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
_ACTIVATIONS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid"}
_ACTIVATIONS |= {"tanh": "tanh", "tanh_": "tanh"}
_BINARY = {"add": "add", "sub": "sub", "mul": "mul"}
_IDENTITY = ("clone", "alias", "detach", "detach_", "contiguous", "dropout", "lift_fresh_copy")
_VIEWS = ("view", "reshape", "_unsafe_view", "flatten")
#: Ops that may rearrange integer ids from the inputs without computing on them.
_ID_PLUMBING = frozenset(
    (*_IDENTITY, *_VIEWS, "select", "slice", "squeeze", "unsqueeze", "unbind", "split", "narrow")
)
_BAG_MODES = {0: "sum", 1: "mean"}


# --- abstract values ----------------------------------------------------------------------------


class _Value:
    """Base of the abstract values the importer tracks per fx node."""


@dataclass(eq=False)
class _Const(_Value):
    """A value known at import time (literal, buffer, lifted constant, or folded from those)."""

    value: Any


@dataclass(eq=False)
class _Param(_Value):
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(eq=False)
class _Ids(_Value):
    """Integer data from the user inputs (ids, offsets): only its shape matters."""

    shape: tuple[int, ...]
    dtype: str


@dataclass(eq=False)
class _Act(_Value):
    """A batch-first activation equal to the output of an IR node."""

    node: Node


@dataclass(eq=False)
class _DenseIn(_Value):
    """A float user input; its IR ``input`` node is made at the first use."""

    fx_node: fx.Node
    built: Node | None = None


@dataclass(eq=False)
class _Cat(_Value):
    """``cat(parts, dim=1)`` of (B, w) activations, not yet an IR node."""

    parts: list[Node]
    widths: list[int]
    fx_node: fx.Node
    built: Node | None = None


@dataclass(eq=False)
class _Stack(_Value):
    """Vectors (B, d) stacked to (B, n, d)."""

    parts: list[Node]
    dim: int
    fx_node: fx.Node
    built: Node | None = None


@dataclass(eq=False)
class _StackT(_Value):
    stack: _Stack


@dataclass(eq=False)
class _Gram(_Value):
    """``bmm(T, T^T)`` of a stack: all pairwise dots, (B, n, n)."""

    stack: _Stack


@dataclass(eq=False)
class _Pairs(_Value):
    """The lower triangle of a Gram matrix, flattened: DLRM's dot interaction."""

    stack: _Stack
    self_interaction: bool
    fx_node: fx.Node
    built: Node | None = None


@dataclass(eq=False)
class _Multi(_Value):
    items: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class _Dead(_Value):
    """An output the IR does not model (e.g. embedding_bag's offset2bag); fine if unused."""

    why: str


class _Failure(Exception):
    """Raised inside a handler; the importer adds the node and target."""


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
        raise _Failure(f"dtype {key} has no IR equivalent (use float32/16, bfloat16, int32/64)")
    return _TORCH_DTYPES[key]


def _target_name(target: Any) -> str:
    return str(target) if hasattr(target, "_schema") else getattr(target, "__name__", str(target))


class _Importer:
    def __init__(self, program: Any, *, name: str, cls: str) -> None:
        import torch

        self.torch = torch
        self.program = program
        self.fx_graph = program.graph
        self.values: dict[str, Any] = {}
        #: IR node name -> the fx nodes whose value equals it (for fusion and the shape check)
        self.owners: dict[str, list[fx.Node]] = {}
        self.graph = Graph(
            name,
            meta={
                "model": name,
                "arch": "torch",
                "source": f"torch.export:{cls}",
                "importer": f"torch {torch.__version__}",
            },
        )
        self.batch = self._example_batch()
        self.graph.batch = self.batch

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
                    raise _Failure("only placeholders, call_function nodes and one output")
            except _Failure as exc:
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
            return _Param(spec.target, tuple(int(s) for s in val.shape), _ir_dtype(val.dtype))
        if kind in (InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            if spec.target in self.program.constants:
                return _Const(self.program.constants[spec.target])
            return _Const(self.program.state_dict[spec.target])
        if kind == InputKind.USER_INPUT:
            if not isinstance(val, self.torch.Tensor):
                return _Const(val)
            if val.is_floating_point():
                return _DenseIn(node)
            return _Ids(tuple(int(s) for s in val.shape), str(val.dtype).removeprefix("torch."))
        raise _Failure(f"input kind {kind} is not supported")

    def _output(self, node: fx.Node) -> None:
        results = [self.values[n.name] for n in self._flat(node.args[0])]
        self.graph.add_node("output", [self._act(v, node) for v in results], name="output")

    # --- calls ----------------------------------------------------------------------------

    def _call(self, node: fx.Node) -> Any:
        from torch.fx.node import map_arg

        target = node.target
        if target is operator.getitem:
            return self._getitem(node)
        if not hasattr(target, "_schema"):
            raise _Failure("only ATen operators are understood")
        op = target._schema.name.split("::", 1)[-1]
        if not node.users and op.startswith("_assert"):
            return _Dead("an assertion")
        args = map_arg(node.args, lambda n: self.values[n.name])
        kwargs = map_arg(node.kwargs, lambda n: self.values[n.name])
        leaves = [v for v in self._flat([*args, *kwargs.values()]) if isinstance(v, _Value)]
        if all(isinstance(v, _Const) for v in leaves):
            return self._fold(node, args, kwargs)
        if op in _ID_PLUMBING and all(isinstance(v, _Ids | _Const) for v in leaves):
            return self._ids_like(node.meta.get("val"))
        handler = _HANDLERS.get(op)
        if handler is None:
            raise _Failure("the IR has no equivalent op")
        return handler(self, node, _bind(target, args, kwargs))

    def _fold(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        def real(v: Any) -> Any:
            if isinstance(v, _Const):
                return v.value
            if isinstance(v, list | tuple):
                return type(v)(real(x) for x in v)
            return v

        try:
            with self.torch.no_grad():
                out = node.target(*real(args), **{k: real(v) for k, v in kwargs.items()})
        except Exception as exc:  # a constant computation torch itself rejects
            first = (str(exc).strip().splitlines() or [""])[0]
            raise _Failure(f"folding a constant failed: {type(exc).__name__}: {first}") from None
        if isinstance(out, list | tuple):
            return _Multi([_Const(o) for o in out])
        return _Const(out)

    def _ids_like(self, val: Any) -> Any:
        if isinstance(val, list | tuple):
            return _Multi([self._ids_like(v) for v in val])
        return _Ids(tuple(int(s) for s in val.shape), str(val.dtype).removeprefix("torch."))

    def _getitem(self, node: fx.Node) -> Any:
        base, index = node.args
        value = self.values[base.name]
        if not isinstance(value, _Multi) or not isinstance(index, int):
            raise _Failure("indexing is only understood on multi-output ops")
        item = value.items[index]
        if isinstance(item, _Act):
            self._own(item.node, node)
        if isinstance(item, _Dead) and node.users:
            raise _Failure(f"output {index} is {item.why}, which the IR does not model")
        return item

    # --- helpers for handlers -------------------------------------------------------------

    def _add(self, op: str, inputs: list[Node], attrs: dict, *, name: str, owner: Any) -> Node:
        ir_node = self.graph.add_node(op, inputs, attrs, name=name)
        if owner is not None:
            self._own(ir_node, owner)
        return ir_node

    def _own(self, ir_node: Node, fx_node: fx.Node) -> None:
        owners = self.owners.setdefault(ir_node.name, [])
        if fx_node not in owners:
            owners.append(fx_node)

    def _single_use(self, ir_node: Node) -> bool:
        return sum(len(n.users) for n in self.owners.get(ir_node.name, [])) == 1

    def _item_shape(self, fx_node: Any) -> tuple[int, ...]:
        """Per-item shape of a batch-first torch value (fails when the lead dim is not batch)."""
        val = fx_node.meta.get("val")
        if not isinstance(val, self.torch.Tensor) or val.dim() == 0:
            raise _Failure(f"value {fx_node.name} is not a batch-first tensor")
        if int(val.shape[0]) != self.batch:
            raise _Failure(
                f"value {fx_node.name} has leading dim {int(val.shape[0])}, not the batch "
                f"{self.batch}"
            )
        return tuple(int(s) for s in val.shape[1:])

    def _module_name(self, node: fx.Node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
        return path or node.name

    def _act(self, value: Any, user: fx.Node) -> Node:
        """The IR node holding ``value``, building pending patterns on demand."""
        if isinstance(value, _Act):
            return value.node
        if isinstance(value, _DenseIn):
            if value.built is None:
                shape = self._item_shape(value.fx_node)
                if not shape:
                    raise _Failure(f"float input {value.fx_node.name} has no feature dim per item")
                value.built = self._add(
                    "input",
                    [],
                    {
                        "shape": list(shape),
                        "dtype": _ir_dtype(value.fx_node.meta["val"].dtype),
                        "role": "dense",
                    },
                    name=value.fx_node.name,
                    owner=value.fx_node,
                )
            return value.built
        if isinstance(value, _Cat):
            if value.built is None:
                value.built = self._build_cat(value)
            return value.built
        if isinstance(value, _Stack):
            if value.built is None:
                value.built = self._add(
                    "concat",
                    value.parts,
                    {"layout": "rows"},
                    name=value.fx_node.name,
                    owner=value.fx_node,
                )
            return value.built
        if isinstance(value, _Pairs):
            if value.built is None:
                value.built = self._interaction(value, dense_first=False, owner=value.fx_node)
            return value.built
        why = {
            _Const: "a constant tensor used as an activation",
            _Param: "a parameter used outside a Linear/Embedding",
            _Ids: "integer ids used outside an embedding lookup",
            _StackT: "a transposed stack not multiplied with its stack",
            _Gram: "a full Gram matrix (only its triangle gathered by index is supported)",
            _Dead: "an output the IR does not model",
        }.get(type(value), f"an unsupported value ({type(value).__name__})")
        raise _Failure(f"{why} reaches {user.name}")

    def _build_cat(self, cat: _Cat) -> Node:
        first, rest = cat.parts[0], cat.parts[1:]
        dlrm = first.op == "dense" and rest and all(p.op == "embedding_bag" for p in rest)
        if dlrm:
            return self._add(
                "interaction",
                cat.parts,
                {"mode": "cat", "self_interaction": False, "dense_first": True},
                name="interact",
                owner=cat.fx_node,
            )
        return self._add(
            "concat", cat.parts, {"layout": "flat"}, name=cat.fx_node.name, owner=cat.fx_node
        )

    def _interaction(self, pairs: _Pairs, *, dense_first: bool, owner: fx.Node) -> Node:
        return self._add(
            "interaction",
            pairs.stack.parts,
            {
                "mode": "dot",
                "self_interaction": pairs.self_interaction,
                "dense_first": dense_first,
            },
            name="interact",
            owner=owner,
        )

    # --- handlers -------------------------------------------------------------------------

    def _linear(self, node: fx.Node, a: dict) -> Any:
        x = self._act(a["input"], node)
        weight, bias = a["weight"], a["bias"]
        if not isinstance(weight, _Param) or len(weight.shape) != 2:
            raise _Failure("the weight must be a parameter of shape (out, in)")
        if bias is not None and not isinstance(bias, _Param):
            raise _Failure("the bias must be a parameter")
        out_features, in_features = weight.shape
        return _Act(
            self._add(
                "dense",
                [x],
                {
                    "in_features": in_features,
                    "out_features": out_features,
                    "bias": bias is not None,
                    "activation": "none",
                    "dtype": weight.dtype,
                },
                name=self._module_name(node),
                owner=node,
            )
        )

    def _activation(self, node: fx.Node, a: dict) -> Any:
        fn = _ACTIVATIONS[node.target._schema.name.split("::", 1)[-1]]
        x = self._act(a["self"], node)
        if x.op == "dense" and x.attrs["activation"] == "none" and self._single_use(x):
            x.attrs["activation"] = fn
            self.owners[x.name] = [node]  # the Linear's own value is no longer in the IR
            return _Act(x)
        return _Act(self._add("elementwise", [x], {"fn": fn}, name=node.name, owner=node))

    def _binary(self, node: fx.Node, a: dict) -> Any:
        fn = _BINARY[node.target._schema.name.split("::", 1)[-1]]
        if a.get("alpha", 1) != 1:
            raise _Failure("add/sub with alpha != 1 has no IR equivalent")
        if not isinstance(a["other"], _Value):
            raise _Failure("a scalar operand has no IR equivalent (elementwise takes two tensors)")
        inputs = [self._act(a["self"], node), self._act(a["other"], node)]
        if self._item_shape(node.args[0]) != self._item_shape(node.args[1]):
            raise _Failure("elementwise inputs must have equal shapes (no broadcasting)")
        return _Act(self._add("elementwise", inputs, {"fn": fn}, name=node.name, owner=node))

    def _bag_common(
        self, node: fx.Node, weight: Any, ids: _Ids, *, pooling: int, mode: str, meta: dict
    ) -> Node:
        if not isinstance(weight, _Param) or len(weight.shape) != 2:
            raise _Failure("the table must be a parameter of shape (rows, dim)")
        if ids.dtype not in ("int32", "int64"):
            raise _Failure(f"ids must be int32/int64, got {ids.dtype}")
        rows, dim = weight.shape
        val = node.meta["val"]
        out_dtype = _ir_dtype((val[0] if isinstance(val, list | tuple) else val).dtype)
        name = self._module_name(node)
        idx = self._add(
            "input",
            [],
            {"shape": [pooling], "dtype": ids.dtype, "role": "sparse"},
            name=f"{name}_ids",
            owner=None,
        )
        bag = self._add(
            "embedding_bag",
            [idx],
            {
                "rows": rows,
                "dim": dim,
                "pooling": pooling,
                "dtype": weight.dtype,
                "mode": mode,
                "output_dtype": out_dtype,
            },
            name=name,
            owner=None,
        )
        bag.meta.update(meta)
        return bag

    def _embedding_bag(self, node: fx.Node, a: dict) -> Any:
        ids, offsets = a["indices"], a["offsets"]
        mode = _BAG_MODES.get(a["mode"])
        if mode is None:
            raise _Failure("max pooling has no IR equivalent (sum and mean do)")
        if a.get("per_sample_weights") is not None:
            raise _Failure("weighted bags (per_sample_weights) are not modelled")
        if not isinstance(ids, _Ids) or len(ids.shape) != 1:
            raise _Failure("ids must be a 1-D integer input (with offsets) or 2-D (batch, pooling)")
        if isinstance(offsets, _Const):
            offsets_len = int(offsets.value.numel())
        elif isinstance(offsets, _Ids) and len(offsets.shape) == 1:
            offsets_len = offsets.shape[0]
        else:
            raise _Failure("offsets must be a 1-D integer tensor")
        bags = offsets_len - (1 if a.get("include_last_offset") else 0)
        if bags != self.batch:
            raise _Failure(f"{bags} bags for a batch of {self.batch}: one bag per item expected")
        exact = ids.shape[0] / bags
        pooling = max(1, int(exact + 0.5))  # half up
        meta = {} if exact == pooling else {"pooling_mean": exact}
        bag = self._bag_common(node, a["weight"], ids, pooling=pooling, mode=mode, meta=meta)
        return _Multi([_Act(bag), _Dead("offset2bag"), _Dead("bag_size"), _Dead("max_indices")])

    def _embedding(self, node: fx.Node, a: dict) -> Any:
        ids = a["indices"]
        if not isinstance(ids, _Ids) or len(ids.shape) not in (1, 2) or ids.shape[0] != self.batch:
            raise _Failure("ids must be (batch,) or (batch, length) integers from the inputs")
        pooling = ids.shape[1] if len(ids.shape) == 2 else 1
        mode = "none" if len(ids.shape) == 2 else "sum"
        bag = self._bag_common(node, a["weight"], ids, pooling=pooling, mode=mode, meta={})
        self._own(bag, node)
        return _Act(bag)

    def _reduce(self, node: fx.Node, a: dict) -> Any:
        x = self._act(a["self"], node)
        dims = a.get("dim")
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        ok = (
            x.op == "embedding_bag"
            and x.attrs["mode"] == "none"
            and dims in ([1], [-2])
            and not a.get("keepdim")
            and a.get("dtype") is None
            and self._single_use(x)
        )
        if not ok:
            raise _Failure("only a sum/mean over the ids of an embedding lookup is supported")
        x.attrs["mode"] = node.target._schema.name.split("::", 1)[-1]
        self.owners[x.name] = [node]  # the unpooled lookup is no longer in the IR
        return _Act(x)

    def _identity(self, node: fx.Node, a: dict) -> Any:
        value = a["self"] if "self" in a else a["input"]
        if isinstance(value, _Act):
            self._own(value.node, node)
        return value

    def _cat(self, node: fx.Node, a: dict) -> Any:
        values, dim = list(a["tensors"]), a["dim"]
        if dim not in (1, -1):
            raise _Failure("only concatenation along the feature dim (dim=1) is supported")
        fx_inputs = list(node.args[0])
        if (
            len(values) == 2
            and isinstance(values[1], _Pairs)
            and values[1].built is None
            and isinstance(values[0], _Act | _DenseIn)
            and self._act(values[0], node) is values[1].stack.parts[0]
        ):
            return _Act(self._interaction(values[1], dense_first=True, owner=node))
        parts, widths = [], []
        for value, fx_input in zip(values, fx_inputs, strict=True):
            shape = self._item_shape(fx_input)
            if len(shape) != 1:
                raise _Failure(f"only (batch, features) tensors can be concatenated, got {shape}")
            if isinstance(value, _Cat) and value.built is None:
                parts += value.parts
                widths += value.widths
            else:
                parts.append(self._act(value, node))
                widths.append(shape[0])
        return _Cat(parts, widths, node)

    def _stack(self, node: fx.Node, a: dict) -> Any:
        if a["dim"] != 1:
            raise _Failure("only stacking vectors along dim 1 is supported")
        shapes = {self._item_shape(x) for x in node.args[0]}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise _Failure(f"stacked tensors must be (batch, d) of one d, got {sorted(shapes)}")
        parts = [self._act(v, node) for v in a["tensors"]]
        return _Stack(parts, next(iter(shapes))[0], node)

    def _view(self, node: fx.Node, a: dict) -> Any:
        value = a["self"] if "self" in a else a["input"]
        out = self._item_shape(node)
        src = self._item_shape(node.args[0])
        if isinstance(value, _Cat) and value.built is None and len(out) == 2:
            n, d = out
            if n == len(value.parts) and all(w == d for w in value.widths):
                return _Stack(list(value.parts), d, node)
            raise _Failure(
                f"viewing a concatenation of widths {value.widths} as {n} vectors of {d} "
                "splits or merges its parts"
            )
        if (
            isinstance(value, _Stack)
            and value.built is None
            and out == (len(value.parts) * value.dim,)
        ):
            return _Cat(list(value.parts), [value.dim] * len(value.parts), node)
        if out == src:
            if isinstance(value, _Act):
                self._own(value.node, node)
            return value
        raise _Failure(f"reshaping {list(src)} to {list(out)} per item has no IR equivalent")

    def _transpose(self, node: fx.Node, a: dict) -> Any:
        value = a["self"]
        if "dims" in a:
            swap = list(a["dims"]) in ([0, 2, 1], [0, -1, -2])
        else:
            dims = {d % 3 for d in (a["dim0"], a["dim1"])}
            swap = dims == {1, 2}
        if isinstance(value, _Stack) and swap:
            return _StackT(value)
        raise _Failure("only transposing the two inner dims of a stack of vectors is supported")

    def _bmm(self, node: fx.Node, a: dict) -> Any:
        lhs = a["self"]
        rhs = a["other"] if "other" in a else a["mat2"]
        if isinstance(lhs, _Stack) and isinstance(rhs, _StackT) and rhs.stack is lhs:
            return _Gram(lhs)
        raise _Failure("only T @ T.transpose(1, 2) of a stack of vectors (DLRM dot) is supported")

    def _slice(self, node: fx.Node, a: dict) -> Any:
        value = a["self"]
        size = int(node.args[0].meta["val"].shape[a["dim"]])
        start, end, step = a.get("start"), a.get("end"), a.get("step", 1)
        if start in (None, 0) and (end is None or end >= size) and step == 1:
            if isinstance(value, _Act):
                self._own(value.node, node)
            return value
        raise _Failure("only full slices (`:`) are supported")

    def _index(self, node: fx.Node, a: dict) -> Any:
        gram, indices = a["self"], list(a["indices"])
        if not isinstance(gram, _Gram):
            raise _Failure("advanced indexing is only understood as the DLRM triangle gather")
        if (
            len(indices) != 3
            or indices[0] is not None
            or not all(isinstance(i, _Const) for i in indices[1:])
        ):
            raise _Failure("the gather must be Z[:, li, lj] with constant index tensors")
        li, lj = (i.value.reshape(-1).tolist() for i in indices[1:])
        n = len(gram.stack.parts)
        if len(li) != len(lj):
            raise _Failure("li and lj differ in length")
        picked = {(max(i, j), min(i, j)) for i, j in zip(li, lj, strict=True)}
        strict = {(i, j) for i in range(n) for j in range(i)}
        full = strict | {(i, i) for i in range(n)}
        if len(picked) == len(li) and picked == strict:
            return _Pairs(gram.stack, False, node)
        if len(picked) == len(li) and picked == full:
            return _Pairs(gram.stack, True, node)
        raise _Failure(
            f"gathers {len(li)} entries of a {n}x{n} Gram matrix: neither the strict "
            f"({n * (n - 1) // 2}) nor the full ({n * (n + 1) // 2}) triangle, each pair once"
        )


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
