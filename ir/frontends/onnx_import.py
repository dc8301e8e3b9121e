"""ONNX import: a DLRM-, NCF- or Wide&Deep-style ``.onnx`` graph -> :class:`Graph`.

The graph is interpreted abstractly, one ONNX node at a time, with the values and layer patterns
of :mod:`codesign.ir.frontends.patterns` (shared with the PyTorch importer); this module maps
ONNX ops onto them. Shapes are static: every value's full shape is known, so the shape
arithmetic exporters emit (``Shape``, ``Gather``, ``Concat``, ``Slice`` of constants) folds to
constants (evaluated with ``onnx.reference``), and ops that only rearrange integer ids keep them
ids. Recognised patterns, as ``torch.onnx.export`` writes them:

- ``Gemm`` (``transB`` 0 or 1) or ``MatMul`` by a weight (plus an ``Add`` of a bias) ->
  ``dense``; a ``Relu``/``Sigmoid``/``Tanh`` that is its only user fuses into it;
- ``Gather(table, ids)`` (``nn.Embedding``) -> ``embedding_bag`` with pooling 1 for (batch,)
  ids, or an unpooled lookup for (batch, length) ids that a ``ReduceSum``/``ReduceMean`` over
  axis 1 pools;
- ``nn.EmbeddingBag`` -> a ``Loop`` over the bags whose body slices the ids by the offsets,
  gathers the rows of a table and reduces them (``ReduceSum``/``ReduceMean`` over axis 0): one
  ``embedding_bag`` with pooling = ids / bags;
- DLRM's dot interaction: ``Unsqueeze`` + ``Concat`` (a stack) or ``Concat`` + ``Reshape`` to
  (B, n, d), ``MatMul`` with its ``Transpose``, then the gather of the lower triangle through
  ``Transpose``/``Flatten``/``Gather``/``Reshape``/``Transpose`` -> one ``interaction``;
- ``Concat`` along axis 1 -> ``interaction`` (cat) or ``concat``, as for PyTorch;
  ``Add``/``Sub``/``Mul`` of activations -> ``elementwise``; ``Identity``, ``Dropout`` and
  same-shape reshapes pass through.

Weights are read by their dims only: tables kept as external data (``torch.onnx.export`` writes
models over 2 GB that way) are never loaded. Anything else raises :class:`ImportFailure` naming
the node and its op type. This is the only module that imports onnx, and only inside functions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codesign.errors import ImportFailure, IRError
from codesign.ir.frontends.patterns import (
    ACTIVATIONS,
    BINARY,
    Act,
    Cat,
    Const,
    Dead,
    DenseIn,
    Gram,
    Ids,
    Pairs,
    Param,
    PatternError,
    PatternLowering,
    Stack,
    StackT,
    Value,
)
from codesign.ir.graph import Graph

if TYPE_CHECKING:
    import numpy as np
    import onnx

INSTALL_HINT = "pip install 'codesign[onnx]' (or pip install onnx)"

#: ONNX TensorProto element types the IR has.
_DTYPES = {1: "fp32", 10: "fp16", 16: "bf16", 7: "int64", 6: "int32"}
_INT_TYPES = (7, 6)
_ACTIVATIONS = {fn.capitalize(): fn for fn in ACTIVATIONS}
_BINARY = {fn.capitalize(): fn for fn in BINARY}
_IDENTITY = ("Identity", "Dropout")
#: Ops that may rearrange integer ids (or offsets) from the inputs without computing on them.
_ID_PLUMBING = frozenset(
    (
        *_IDENTITY,
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Slice",
        "Gather",
        "Concat",
        "Cast",
        "Transpose",
        "Split",
    )
)
#: What an embedding-bag Loop body may contain besides its table Gather and its reduction.
_BAG_BODY_OPS = frozenset(
    ("Gather", "Unsqueeze", "Squeeze", "Slice", "Constant", "Cast", "Identity", "Reshape")
)
_REDUCTIONS = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max"}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportFailure(f"ONNX import needs the onnx package: {INSTALL_HINT}") from None
    return onnx


# --- entry point --------------------------------------------------------------------------------


def import_onnx(
    source: str | Path | bytes | onnx.ModelProto,
    *,
    name: str | None = None,
    batch: int | None = None,
) -> Graph:
    """Import an ONNX model (a ``.onnx`` path, its bytes, or a ``ModelProto``) as an IR graph.

    The model's inputs must have static shapes, except a symbolic leading (batch) dim, which
    takes ``batch`` (1 if not given); ``batch`` also overrides what the graph records. Weights
    are read by their dims only. Raises :class:`ImportFailure` (one line) for a file that is
    not ONNX and for anything the IR cannot express.
    """
    from codesign.ir.frontends.lower import check_batch

    onnx = _onnx()
    if batch is not None:
        batch = check_batch(batch)
    model, label = _load(onnx, source)
    default_name = Path(label).stem if isinstance(source, str | Path) else model.graph.name
    base_dir = Path(source).parent if isinstance(source, str | Path) else None
    importer = _Importer(
        onnx,
        model,
        name=name or default_name or "onnx",
        label=label,
        batch=batch,
        base_dir=base_dir,
    )
    graph = importer.run()
    if batch is not None:
        graph.batch = batch
    return graph


def _load(onnx: Any, source: Any) -> tuple[Any, str]:
    from google.protobuf.message import DecodeError

    if isinstance(source, onnx.ModelProto):
        model, label = source, "ONNX model"
    else:
        if isinstance(source, bytes):
            data, label = source, "ONNX bytes"
        else:
            path = Path(source)
            label = str(path)
            if not path.is_file():
                raise ImportFailure(f"{label}: no such file (pass the path of a .onnx model)")
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ImportFailure(f"{label}: cannot read: {exc.strerror or exc}") from None
        try:
            model = onnx.load_model_from_string(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ImportFailure(
                f"{label}: not an ONNX model ({type(exc).__name__}: {first}); export one with "
                "torch.onnx.export"
            ) from None
    if not model.graph.node or not model.opset_import:
        raise ImportFailure(
            f"{label}: not an ONNX model (no graph nodes or no opset); export one with "
            "torch.onnx.export"
        )
    return model, label


# --- ONNX-only pending values (DLRM's triangle gather with the batch moved last) ----------------


@dataclass(eq=False)
class _GramT(Value):
    """A Gram matrix transposed to (n, n, B)."""

    gram: Gram


@dataclass(eq=False)
class _GramFlat(Value):
    """A (n, n, B) Gram matrix flattened to (n * n, B)."""

    gram: Gram


@dataclass(eq=False)
class _PairsT(Value):
    """The gathered triangle with the batch last: (k, B)."""

    pairs: Pairs


# --- the importer -------------------------------------------------------------------------------


class _Importer(PatternLowering):
    def __init__(
        self,
        onnx: Any,
        model: Any,
        *,
        name: str,
        label: str,
        batch: int | None,
        base_dir: Path | None = None,
    ) -> None:
        self.onnx = onnx
        self.model = model
        self.label = label
        #: where external tensor data lives (the model file's directory), if known
        self.base_dir = base_dir
        self.opsets = {o.domain or "": o.version for o in model.opset_import}
        self.values: dict[str, Any] = {}
        self.initializers = {t.name: t for t in model.graph.initializer}
        self.uses = self._count_uses(model.graph)
        graph = Graph(
            name,
            meta={
                "model": name,
                "arch": "onnx",
                "source": f"onnx:{Path(label).name}",
                "importer": f"onnx {onnx.__version__}",
            },
        )
        super().__init__(graph, batch=1)
        self.symbolic_batch = batch or 1
        self.batch = self._example_batch()
        self.graph.batch = self.batch

    def use_count(self, owner: Any) -> int:
        return self.uses[owner]

    @staticmethod
    def _count_uses(graph: Any) -> Counter:
        """Consumers of each value name, subgraphs (Loop bodies) and graph outputs included."""
        uses: Counter = Counter(o.name for o in graph.output)

        def walk(g: Any) -> None:
            for node in g.node:
                uses.update(i for i in node.input if i)
                for attr in node.attribute:
                    for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                        walk(sub)

        walk(graph)
        return uses

    # --- driver ---------------------------------------------------------------------------

    def run(self) -> Graph:
        g = self.model.graph
        for inp in g.input:
            if inp.name not in self.initializers:
                try:
                    value = self.values[inp.name] = self._input(inp)
                    if isinstance(value, DenseIn) and self.uses[inp.name]:
                        self.act(value, inp.name)  # in input order, as lowering adds them
                except PatternError as exc:
                    raise ImportFailure(f"{self.label}: input {inp.name!r}: {exc}") from None
        for tensor in g.initializer:
            self.values[tensor.name] = Param(
                tensor.name, tuple(int(d) for d in tensor.dims), _DTYPES.get(tensor.data_type, "?")
            )
        for node in g.node:
            try:
                outs = self._call(node)
            except PatternError as exc:
                raise ImportFailure(self._where(node) + str(exc)) from None
            for out, value in zip(node.output, outs, strict=False):
                if out:
                    self.values[out] = value
        try:
            results = [self.act(self._value(o.name), "the graph output") for o in g.output]
            self.graph.add_node("output", results, name="output")
        except PatternError as exc:
            raise ImportFailure(f"{self.label}: graph output: {exc}") from None
        try:
            self.graph.infer()
            self.graph.lint()
        except IRError as exc:
            raise ImportFailure(
                f"{self.label}: the imported graph is inconsistent: {exc}"
            ) from None
        self._check_shapes()
        return self.graph

    def _where(self, node: Any) -> str:
        label = node.name or (node.output[0] if node.output else "?")
        return f"{self.label}: cannot lower ONNX node {label!r} ({node.op_type}): "

    def _dims(self, value_info: Any, *, lead_is_batch: bool) -> tuple[int, ...]:
        tt = value_info.type.tensor_type
        if not tt.HasField("shape"):
            raise PatternError("has no shape (export with static input shapes)")
        dims = []
        for pos, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif pos == 0 and lead_is_batch:
                dims.append(self.symbolic_batch)
            else:
                raise PatternError(
                    f"dim {pos} is symbolic ({d.dim_param or '?'}); only the leading (batch) "
                    "dim may be: export with static shapes for the others"
                )
        return tuple(dims)

    def _example_batch(self) -> int:
        """The leading dim of the first float input (else of the first input, else 1)."""
        inputs = [i for i in self.model.graph.input if i.name not in self.initializers]
        floats = [i for i in inputs if i.type.tensor_type.elem_type not in _INT_TYPES]
        for inp in floats + inputs:
            try:
                dims = self._dims(inp, lead_is_batch=True)
            except PatternError:
                continue
            if dims:
                return dims[0]
        return self.symbolic_batch

    def _check_shapes(self) -> None:
        """The IR's per-item shapes must equal what ONNX shape inference finds (where static)."""
        try:
            inferred = self.onnx.shape_inference.infer_shapes(self.model)
        except Exception:  # inference is a cross-check only; a model it rejects still imports
            return
        known: dict[str, tuple[int, ...]] = {}
        for vi in [*inferred.graph.value_info, *inferred.graph.output]:
            tt = vi.type.tensor_type
            if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
                known[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
        for ir_name, owners in self.owners.items():
            ir_node = self.graph.node(ir_name)
            for owner in owners:
                shape = known.get(owner)
                if shape is not None and (shape[1:] != ir_node.shape or shape[0] != self.batch):
                    raise ImportFailure(
                        f"{self.label}: ONNX value {owner!r} is {list(shape)} but the IR node "
                        f"{ir_name} gives {list(ir_node.shape)} per item for batch {self.batch}"
                    )

    # --- values ---------------------------------------------------------------------------

    def _input(self, inp: Any) -> Value:
        elem = inp.type.tensor_type.elem_type
        dims = self._dims(inp, lead_is_batch=True)
        if elem in _INT_TYPES:
            return Ids(dims, _DTYPES[elem])
        if elem in (1, 10, 16, 11):  # float, float16, bfloat16, double
            return DenseIn(inp.name, dims, _DTYPES.get(elem), inp.name)
        raise PatternError(f"element type {elem} is neither a float nor int32/int64")

    def _value(self, name: str) -> Any:
        if name not in self.values:
            raise PatternError(f"value {name!r} is not defined before its use")
        return self.values[name]

    def _array(self, value: Any, what: str) -> np.ndarray:
        """The data of a constant or of an initializer (loaded on demand)."""
        if isinstance(value, Const):
            return value.value
        if isinstance(value, Param):
            tensor = self.initializers[value.name]
            if tensor.data_location == self.onnx.TensorProto.EXTERNAL:
                return self._external(tensor, what)
            return self.onnx.numpy_helper.to_array(tensor)
        raise PatternError(f"{what} must be a constant")

    def _external(self, tensor: Any, what: str) -> np.ndarray:
        """A small external tensor that shape arithmetic needs, read from beside the model."""
        from onnx.external_data_helper import load_external_data_for_tensor

        copy = self.onnx.TensorProto()
        copy.CopyFrom(tensor)
        try:
            if self.base_dir is None:
                raise OSError("no directory")
            load_external_data_for_tensor(copy, str(self.base_dir))
            return self.onnx.numpy_helper.to_array(copy)
        except Exception as exc:  # onnx raises OSError, ValueError or its ValidationError here
            raise PatternError(
                f"{what} needs the data of {tensor.name!r}, which is external and unreadable "
                f"({type(exc).__name__}); keep the .onnx file beside its data file"
            ) from None

    def _shape(self, value: Any) -> tuple[int, ...]:
        """The full shape of any value."""
        import numpy as np

        if isinstance(value, Const):
            return tuple(np.shape(value.value))
        if isinstance(value, Param | Ids | DenseIn):
            return tuple(value.shape)
        if isinstance(value, Act):
            self._infer()
            return (self.batch, *value.node.shape)
        if isinstance(value, Cat):
            return (self.batch, sum(value.widths))
        if isinstance(value, Stack):
            return (self.batch, len(value.parts), value.dim)
        if isinstance(value, StackT):
            return (self.batch, value.stack.dim, len(value.stack.parts))
        n = None
        if isinstance(value, Gram | _GramT | _GramFlat):
            gram = value if isinstance(value, Gram) else value.gram
            n = len(gram.stack.parts)
            return {
                Gram: (self.batch, n, n),
                _GramT: (n, n, self.batch),
                _GramFlat: (n * n, self.batch),
            }[type(value)]
        if isinstance(value, Pairs | _PairsT):
            pairs = value if isinstance(value, Pairs) else value.pairs
            n = len(pairs.stack.parts)
            k = n * (n + 1) // 2 if pairs.self_interaction else n * (n - 1) // 2
            return (self.batch, k) if isinstance(value, Pairs) else (k, self.batch)
        raise PatternError(f"the shape of {type(value).__name__} is unknown")

    def _infer(self) -> None:
        try:
            self.graph.infer()
        except IRError as exc:
            raise PatternError(f"the IR so far is inconsistent: {exc}") from None

    def _evaluate(self, node: Any, arrays: list[Any]) -> list[np.ndarray]:
        """Run one node on concrete arrays with onnx's reference evaluator."""
        from onnx.reference import ReferenceEvaluator

        feeds = {n: a for n, a in zip(node.input, arrays, strict=True) if n}
        try:
            outs = ReferenceEvaluator(node, opsets=self.opsets).run(None, feeds)
        except Exception as exc:  # the reference evaluator raises many types; all mean "cannot"
            first = (str(exc).strip().splitlines() or [""])[0]
            raise PatternError(f"evaluating it failed: {type(exc).__name__}: {first}") from None
        return list(outs)

    def _probe(self, node: Any, values: list[Any]) -> list[np.ndarray]:
        """Run ``node`` with constants as they are and every other value as zeros of its shape:
        the outputs' shapes (and dtypes) are what the node gives the real values."""
        import numpy as np

        arrays = []
        for value in values:
            if value is None:
                arrays.append(None)
            elif isinstance(value, Const | Param):
                arrays.append(self._array(value, "shape arithmetic"))
            elif isinstance(value, Ids):
                arrays.append(
                    np.zeros(value.shape, np.int32 if value.dtype == "int32" else np.int64)
                )
            else:
                arrays.append(np.zeros(self._shape(value), np.float32))
        return self._evaluate(node, arrays)

    # --- dispatch -------------------------------------------------------------------------

    def _call(self, node: Any) -> list[Any]:
        if node.domain not in ("", "ai.onnx"):
            raise PatternError(f"ops of domain {node.domain!r} are not understood")
        op = node.op_type
        if op == "Constant":
            return [Const(self._constant(node))]
        inputs = [self._value(n) if n else None for n in node.input]
        given = [v for v in inputs if v is not None]
        if op == "Shape":
            return [Const(self._shape_of(node, inputs[0]))]
        if op == "Loop":
            return self._loop(node, inputs)
        if given and all(isinstance(v, Const | Param) for v in given):
            return [Const(a) for a in self._probe(node, inputs)]
        if op in _ID_PLUMBING and all(isinstance(v, Ids | Const) for v in given):
            return [Ids(tuple(a.shape), str(a.dtype)) for a in self._probe(node, inputs)]
        handler = _HANDLERS.get(op)
        if handler is None:
            raise PatternError("the IR has no equivalent op")
        return handler(self, node, inputs)

    def _constant(self, node: Any) -> Any:
        from onnx import helper, numpy_helper

        attr = node.attribute[0]
        value = helper.get_attribute_value(attr)
        if attr.name == "value":
            return numpy_helper.to_array(value)
        if attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
            import numpy as np

            return np.array(value)
        raise PatternError(f"a Constant with {attr.name} is not supported")

    def _shape_of(self, node: Any, value: Any) -> Any:
        import numpy as np

        shape = np.array(self._shape(value), dtype=np.int64)
        attrs = _attrs(node)
        start, end = attrs.get("start", 0), attrs.get("end")
        return shape[start:end]

    @staticmethod
    def _label(node: Any) -> str:
        """A node's name for IR nodes it makes: ``/top/Concat_3`` -> top/Concat_3."""
        return node.name.strip("/") or node.output[0]

    def _module_name(self, node: Any) -> str:
        """The module path torch writes into node names: ``/bottom/bottom.0/Gemm`` -> bottom.0."""
        parts = [p for p in node.name.split("/") if p]
        if len(parts) >= 2:
            return parts[-2]
        return node.name or node.output[0]

    def _own_pass(self, value: Any, out: str) -> Any:
        if isinstance(value, Act):
            self.own(value.node, out)
        return value

    # --- handlers -------------------------------------------------------------------------

    def _gemm(self, node: Any, inputs: list[Any]) -> list[Any]:
        a = _attrs(node)
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise PatternError(
                "only Gemm with transA=0, alpha=1 and beta=1 (a Linear) is supported"
            )
        weight = inputs[1]
        if isinstance(weight, Param) and len(weight.shape) == 2 and not a.get("transB", 0):
            weight = Param(weight.name, weight.shape[::-1], weight.dtype)
        bias = inputs[2] if len(inputs) > 2 else None
        if isinstance(bias, Param) and bias.shape not in ((weight.shape[0],), (1, weight.shape[0])):
            raise PatternError(f"the bias {list(bias.shape)} is not one per output feature")
        return [self._dense(node, inputs[0], weight, bias)]

    def _dense(self, node: Any, x: Any, weight: Any, bias: Any) -> Act:
        return self.linear(
            x,
            weight,
            bias,
            name=self._module_name(node),
            owner=node.output[0],
            user=node.name,
        )

    def _matmul(self, node: Any, inputs: list[Any]) -> list[Any]:
        lhs, rhs = inputs
        if isinstance(rhs, Param) and len(rhs.shape) == 2:
            weight = Param(rhs.name, rhs.shape[::-1], rhs.dtype)
            return [self._dense(node, lhs, weight, None)]
        return [self.matmul(lhs, rhs)]

    def _binary(self, node: Any, inputs: list[Any]) -> list[Any]:
        lhs, rhs = inputs
        fn = _BINARY[node.op_type]
        if fn == "add" and isinstance(lhs, Param):
            lhs, rhs = rhs, lhs
        if fn == "add" and isinstance(rhs, Param) and isinstance(lhs, Act):
            return [self._bias(node, lhs.node, rhs)]
        if isinstance(lhs, Const | Param) or isinstance(rhs, Const | Param):
            raise PatternError(
                "a constant operand has no IR equivalent (elementwise takes two activations)"
            )
        shapes = (self._shape(lhs), self._shape(rhs))
        return [
            self.binary(
                lhs,
                rhs,
                fn,
                shapes=shapes,
                name=self._label(node),
                owner=node.output[0],
                user=node.name,
            )
        ]

    def _bias(self, node: Any, dense: Any, bias: Param) -> Act:
        """``MatMul`` by a weight, then ``Add`` of a bias: one dense with a bias."""
        ok = (
            dense.op == "dense"
            and not dense.attrs["bias"]
            and dense.attrs["activation"] == "none"
            and bias.shape in ((dense.attrs["out_features"],), (1, dense.attrs["out_features"]))
            and self.single_use(dense)
        )
        if not ok:
            raise PatternError("only the bias of a MatMul by a weight may be added to a parameter")
        dense.attrs["bias"] = True
        self.replace_owner(dense, node.output[0])
        return Act(dense)

    def _activation(self, node: Any, inputs: list[Any]) -> list[Any]:
        fn = _ACTIVATIONS[node.op_type]
        return [
            self.activation(
                inputs[0], fn, name=self._label(node), owner=node.output[0], user=node.name
            )
        ]

    def _identity(self, node: Any, inputs: list[Any]) -> list[Any]:
        value = self._own_pass(inputs[0], node.output[0])
        return [value, Dead("a dropout mask")]

    def _cast(self, node: Any, inputs: list[Any]) -> list[Any]:
        value = inputs[0]
        to = _DTYPES.get(_attrs(node).get("to"))
        if isinstance(value, Act) and to == self._dtype_of(value):
            return [self._own_pass(value, node.output[0])]
        raise PatternError("only a Cast to the activation's own dtype is supported")

    def _dtype_of(self, value: Act) -> str:
        self._infer()
        return value.node.dtype

    def _gather(self, node: Any, inputs: list[Any]) -> list[Any]:
        data, idx = inputs
        axis = _attrs(node).get("axis", 0)
        if isinstance(data, Param) and isinstance(idx, Ids) and axis == 0:
            return [
                self.embedding(
                    data,
                    idx,
                    out_dtype=data.dtype,
                    name=self._module_name(node),
                    owner=node.output[0],
                )
            ]
        if isinstance(data, _GramFlat) and axis == 0:
            flat = self._array(idx, "the triangle's indices").reshape(-1).tolist()
            n = len(data.gram.stack.parts)
            li, lj = [i // n for i in flat], [i % n for i in flat]
            return [_PairsT(self.triangle(data.gram, li, lj, owner=node.output[0]))]
        raise PatternError(
            "a Gather is only understood as an embedding lookup (a table by integer ids) or as "
            "DLRM's triangle gather"
        )

    def _reduce(self, node: Any, inputs: list[Any]) -> list[Any]:
        a = _attrs(node)
        mode = _REDUCTIONS.get(node.op_type, node.op_type)
        axes = a.get("axes")
        if axes is None and len(inputs) > 1 and inputs[1] is not None:
            axes = self._array(inputs[1], "the axes").reshape(-1).tolist()
        return [
            self.pool(
                inputs[0],
                mode,
                dims=list(axes or []),
                keepdim=bool(a.get("keepdims", 1)),
                owner=node.output[0],
                user=node.name,
            )
        ]

    def _concat(self, node: Any, inputs: list[Any]) -> list[Any]:
        axis = _attrs(node).get("axis")
        shapes = [self._shape(v) for v in inputs]
        rank = {len(s) for s in shapes}
        if rank == {2} and axis in (1, -1):
            return [
                self.cat(
                    inputs, shapes, name=self._label(node), owner=node.output[0], user=node.name
                )
            ]
        if rank == {3} and axis in (1, -2):
            return [
                self.stack(
                    inputs, shapes, name=self._label(node), owner=node.output[0], user=node.name
                )
            ]
        raise PatternError(
            "only concatenation of (batch, features) along axis 1, or of stacks of vectors "
            "along axis 1, is supported"
        )

    def _unsqueeze(self, node: Any, inputs: list[Any]) -> list[Any]:
        value = inputs[0]
        axes = _attrs(node).get("axes")
        if axes is None and len(inputs) > 1:
            axes = self._array(inputs[1], "the axes").reshape(-1).tolist()
        shape = self._shape(value)
        if list(axes or []) in ([1], [-2]) and len(shape) == 2:
            return [
                self.stack(
                    [value], [shape], name=self._label(node), owner=node.output[0], user=node.name
                )
            ]
        return self._reshape(node, inputs)

    def _reshape(self, node: Any, inputs: list[Any]) -> list[Any]:
        """Reshape, Flatten, Squeeze and Unsqueeze of batch-first values, and the same-shape
        reshapes of the batch-last triangle."""
        value = inputs[0]
        src = self._shape(value)
        (out,) = (tuple(a.shape) for a in self._probe(node, inputs)[:1])
        if isinstance(value, _PairsT | _GramT | _GramFlat):
            if isinstance(value, _GramT) and node.op_type == "Flatten" and len(out) == 2:
                return [_GramFlat(value.gram)]
            if out == src:
                return [value]
            raise PatternError(f"reshaping {list(src)} to {list(out)} breaks the triangle gather")
        if not out or out[0] != self.batch:
            raise PatternError(f"reshaping {list(src)} to {list(out)} moves the batch dim")
        return [
            self.view(
                value,
                self.item_shape(src, node.name),
                out[1:],
                name=self._label(node),
                owner=node.output[0],
            )
        ]

    def _transpose(self, node: Any, inputs: list[Any]) -> list[Any]:
        value = inputs[0]
        perm = list(_attrs(node).get("perm") or reversed(range(len(self._shape(value)))))
        if isinstance(value, Gram) and perm == [1, 2, 0]:
            return [_GramT(value)]
        if isinstance(value, _PairsT) and perm == [1, 0]:
            return [value.pairs]
        return [self.transpose(value, swaps_inner=perm == [0, 2, 1])]

    def _loop(self, node: Any, inputs: list[Any]) -> list[Any]:
        """``nn.EmbeddingBag`` as ``torch.onnx.export`` writes it: a Loop over the bags whose
        body gathers the rows of one table for one bag's slice of the ids and reduces them."""
        trips, carried = inputs[0], inputs[2:]
        body = _attrs(node)["body"]
        fail = (
            "a Loop is only understood as an EmbeddingBag (per bag: Slice of the ids, Gather of "
            "a table, ReduceSum/ReduceMean)"
        )
        if carried or len(body.output) != 2 or len(node.output) != 1:
            raise PatternError(f"{fail}; this one carries state or has several outputs")
        if not isinstance(trips, Const):
            raise PatternError(f"{fail}; its trip count is not static")
        others = sorted({n.op_type for n in body.node} - _BAG_BODY_OPS - set(_REDUCTIONS))
        if others:
            raise PatternError(f"{fail}; its body has {', '.join(others)}")
        made = {out: n for n in body.node for out in n.output}
        tables = [
            n
            for n in body.node
            if n.op_type == "Gather"
            and n.input[0] not in made
            and isinstance(self.values.get(n.input[0]), Param)
        ]
        reduce = made.get(body.output[1].name)
        if len(tables) != 1 or reduce is None or reduce.op_type not in _REDUCTIONS:
            raise PatternError(f"{fail}; found {len(tables)} table gathers")
        table = tables[0]
        if reduce.input[0] != table.output[0] or _attrs(table).get("axis", 0) != 0:
            raise PatternError(f"{fail}; the reduction is not over the table's rows")
        axes = _attrs(reduce).get("axes")
        if axes is None and len(reduce.input) > 1:
            axes_node = made.get(reduce.input[1])
            axes = list(self._constant(axes_node).reshape(-1)) if axes_node else None
        if list(axes or []) != [0] or _attrs(reduce).get("keepdims", 1):
            raise PatternError(f"{fail}; the reduction is not over axis 0 without keepdims")
        sliced = made.get(table.input[1])
        ids = self.values.get(sliced.input[0]) if sliced is not None else None
        if sliced is None or sliced.op_type != "Slice" or not isinstance(ids, Ids):
            raise PatternError(f"{fail}; the table is not indexed by a slice of the input ids")
        weight = self.values[table.input[0]]
        bag = self.embedding_bag(
            weight,
            ids,
            bags=int(self._array(trips, "the trip count").reshape(-1)[0]),
            mode=_REDUCTIONS[reduce.op_type],
            out_dtype=weight.dtype,
            name=self._module_name(node),
        )
        self.own(bag, node.output[0])
        return [Act(bag)]


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


_HANDLERS = {
    "Gemm": _Importer._gemm,
    "MatMul": _Importer._matmul,
    "Gather": _Importer._gather,
    "ReduceSum": _Importer._reduce,
    "ReduceMean": _Importer._reduce,
    "Concat": _Importer._concat,
    "Unsqueeze": _Importer._unsqueeze,
    "Reshape": _Importer._reshape,
    "Flatten": _Importer._reshape,
    "Squeeze": _Importer._reshape,
    "Transpose": _Importer._transpose,
    "Cast": _Importer._cast,
    **dict.fromkeys(_ACTIVATIONS, _Importer._activation),
    **dict.fromkeys(_BINARY, _Importer._binary),
    **dict.fromkeys(_IDENTITY, _Importer._identity),
}
