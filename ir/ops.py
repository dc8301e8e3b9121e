"""The IR's fixed op set: attribute checks, shape inference and per-op cost (MACs, FLOPs, bytes).

Shapes are *per item* (one candidate being ranked) and exclude the batch dimension; a graph is
lowered for a batch of items per query and every cost scales from the per-item numbers
(:meth:`OpCost.for_batch`). Weight bytes do not scale with the batch.

Counting conventions (the ones the cost models and the published tables use):

- ``macs``: multiply-accumulates. A dense layer does ``in * out`` per item; a dot interaction
  does ``pairs * d`` (each distinct pair once, as DLRM's lower-triangle gather keeps it); an RNN
  does ``gates * (in * h + h * h)`` per step and layer.
- ``flops``: ``2 * macs`` plus bias adds, activation evaluations and pooling adds.
- ``embedding_bytes``: embedding rows gathered (``pooling * row_bytes`` per table). An int8 row
  carries an fp32 scale and bias (8 bytes), as in FBGEMM's fused 8-bit row-wise format.
- ``input_bytes``/``output_bytes``: activations read and written by the op.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DTYPE_BYTES: dict[str, int] = {
    "fp32": 4,
    "fp16": 2,
    "bf16": 2,
    "int8": 1,
    "int32": 4,
    "int64": 8,
}
FLOAT_DTYPES = ("fp32", "fp16", "bf16", "int8")
INDEX_DTYPES = ("int32", "int64")
ACTIVATIONS = ("none", "relu", "sigmoid", "tanh", "softmax")
#: FLOPs charged per element for an activation (a transcendental counts as 4).
ACTIVATION_FLOPS = {"none": 0, "relu": 1, "sigmoid": 4, "tanh": 4, "softmax": 5}
UNARY_FNS = ("relu", "sigmoid", "tanh", "neg", "identity")
BINARY_FNS = ("add", "sub", "mul")
RECURRENT_GATES = {"rnn": 1, "gru": 3, "lstm": 4}
#: Extra bytes per embedding row beyond ``dim * dtype`` (FBGEMM fused 8-bit row-wise: fp32
#: scale and bias).
ROW_OVERHEAD_BYTES = {"int8": 8}

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """Shape inference failed: the inputs do not fit the op's attributes."""


@dataclass(frozen=True)
class BatchCost:
    """Totals of one op (or a whole graph) for a batch of ``batch`` items."""

    batch: int
    macs: float
    flops: float
    weight_bytes: int
    activation_bytes: float
    embedding_bytes: float

    def as_dict(self) -> dict[str, float]:
        return {
            "batch": self.batch,
            "macs": self.macs,
            "flops": self.flops,
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes,
            "embedding_bytes": self.embedding_bytes,
        }


@dataclass(frozen=True)
class OpCost:
    """Per-item work and traffic of one op; weights are per model, not per item."""

    macs_per_item: float = 0
    flops_per_item: float = 0
    params: int = 0
    weight_bytes: int = 0
    input_bytes_per_item: float = 0
    output_bytes_per_item: float = 0
    embedding_bytes_per_item: float = 0

    def for_batch(self, batch: int) -> BatchCost:
        return BatchCost(
            batch=batch,
            macs=self.macs_per_item * batch,
            flops=self.flops_per_item * batch,
            weight_bytes=self.weight_bytes,
            activation_bytes=(self.input_bytes_per_item + self.output_bytes_per_item) * batch,
            embedding_bytes=self.embedding_bytes_per_item * batch,
        )

    def __add__(self, other: OpCost) -> OpCost:
        return OpCost(
            macs_per_item=self.macs_per_item + other.macs_per_item,
            flops_per_item=self.flops_per_item + other.flops_per_item,
            params=self.params + other.params,
            weight_bytes=self.weight_bytes + other.weight_bytes,
            input_bytes_per_item=self.input_bytes_per_item + other.input_bytes_per_item,
            output_bytes_per_item=self.output_bytes_per_item + other.output_bytes_per_item,
            embedding_bytes_per_item=self.embedding_bytes_per_item + other.embedding_bytes_per_item,
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "macs_per_item": self.macs_per_item,
            "flops_per_item": self.flops_per_item,
            "params": self.params,
            "weight_bytes": self.weight_bytes,
            "input_bytes_per_item": self.input_bytes_per_item,
            "output_bytes_per_item": self.output_bytes_per_item,
            "embedding_bytes_per_item": self.embedding_bytes_per_item,
        }


# --- attribute schema -------------------------------------------------------------------------


@dataclass(frozen=True)
class Attr:
    """One attribute of an op: its checker and default (``required`` when no default)."""

    check: Callable[[Any], str | None]
    default: Any = None
    required: bool = False


def _pos_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return f"must be a positive integer, got {value!r}"
    return None


def _nonneg_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"must be a non-negative integer, got {value!r}"
    return None


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value not in choices:
            return f"must be one of {', '.join(choices)}; got {value!r}"
        return None

    return check


def _int_list(value: Any) -> str | None:
    if not isinstance(value, list) or not value or any(_pos_int(v) for v in value):
        return f"must be a non-empty list of positive integers, got {value!r}"
    return None


def _int_list_or_empty(value: Any) -> str | None:
    if not isinstance(value, list) or any(_pos_int(v) for v in value):
        return f"must be a list of positive integers, got {value!r}"
    return None


def _tables(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return f"must be a non-empty list of tables, got {value!r}"
    for i, table in enumerate(value):
        if not isinstance(table, dict) or set(table) != {"name", "rows", "pooling"}:
            return f"[{i}] must be a mapping with keys name, rows, pooling; got {table!r}"
        for key in ("rows", "pooling"):
            if _pos_int(table[key]):
                return f"[{i}].{key} must be a positive integer, got {table[key]!r}"
    return None


# --- op definitions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OpDef:
    """An op of the fixed set: arity, attributes, shape rule and cost rule."""

    name: str
    doc: str
    min_inputs: int
    max_inputs: int | None
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    infer: Callable[[dict[str, Any], list[Shape], list[str]], tuple[Shape, str]] | None = None
    cost: Callable[[dict[str, Any], list[Shape], list[str], Shape, str], OpCost] | None = None

    def normalize(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Attributes with defaults filled in (unknown keys are kept: attrs are open)."""
        out = dict(attrs)
        for key, spec in self.attrs.items():
            if key not in out and not spec.required:
                out[key] = spec.default
        return out

    def check_attrs(self, attrs: Mapping[str, Any]) -> list[str]:
        problems = []
        for key, spec in self.attrs.items():
            if key not in attrs:
                if spec.required:
                    problems.append(f"missing attribute {key!r}")
                continue
            msg = spec.check(attrs[key])
            if msg:
                problems.append(f"attribute {key!r} {msg}")
        return problems

    def check_arity(self, n: int) -> str | None:
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            want = (
                f"{self.min_inputs}"
                if self.max_inputs == self.min_inputs
                else f"{self.min_inputs}..{self.max_inputs if self.max_inputs is not None else ''}"
            )
            return f"op {self.name} takes {want} inputs, got {n}"
        return None


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def row_bytes(dim: int, dtype: str) -> int:
    """Bytes of one embedding row in storage (``dim`` values plus any per-row metadata)."""
    return dim * DTYPE_BYTES[dtype] + ROW_OVERHEAD_BYTES.get(dtype, 0)


def _io_bytes(shapes: list[Shape], dtypes: list[str]) -> int:
    return sum(numel(s) * DTYPE_BYTES[d] for s, d in zip(shapes, dtypes, strict=True))


# input ------------------------------------------------------------------------------------------


def _input_infer(attrs, shapes, dtypes):
    return tuple(attrs["shape"]), attrs["dtype"]


def _input_cost(attrs, shapes, dtypes, out, out_dtype):
    return OpCost(output_bytes_per_item=numel(out) * DTYPE_BYTES[out_dtype])


# embedding_bag -----------------------------------------------------------------------------------


def _check_indices(name: str, shape: Shape, dtype: str, pooling: int) -> None:
    if dtype not in INDEX_DTYPES:
        raise ShapeError(f"{name} input must hold indices (int32/int64), got {dtype}")
    if numel(shape) != pooling:
        raise ShapeError(
            f"{name} input carries {numel(shape)} indices per item, pooling is {pooling}"
        )


def _bag_infer(attrs, shapes, dtypes):
    _check_indices("embedding_bag", shapes[0], dtypes[0], attrs["pooling"])
    if attrs["mode"] != "none" and attrs["pooling"] > attrs["rows"]:
        raise ShapeError(
            f"pooling {attrs['pooling']} exceeds rows {attrs['rows']}: "
            "a pooled bag holds distinct ids"
        )
    out_dtype = attrs["output_dtype"]
    if attrs["mode"] == "none":
        if attrs["vectors"] != 1:
            raise ShapeError("mode none (a sequence) needs vectors = 1")
        return (attrs["pooling"], attrs["dim"]), out_dtype
    if attrs["vectors"] > 1:
        return (attrs["vectors"], attrs["dim"]), out_dtype
    return (attrs["dim"],), out_dtype


def _pool_flops(mode: str, pooling: int, dim: int) -> int:
    if mode == "none":
        return 0
    return pooling * dim + (dim if mode == "mean" else 0)


def _bag_cost(attrs, shapes, dtypes, out, out_dtype):
    rb = row_bytes(attrs["vectors"] * attrs["dim"], attrs["dtype"])
    return OpCost(
        flops_per_item=_pool_flops(
            attrs["mode"], attrs["pooling"], attrs["vectors"] * attrs["dim"]
        ),
        params=attrs["rows"] * attrs["vectors"] * attrs["dim"],
        weight_bytes=attrs["rows"] * rb,
        input_bytes_per_item=_io_bytes(shapes, dtypes),
        output_bytes_per_item=numel(out) * DTYPE_BYTES[out_dtype],
        embedding_bytes_per_item=attrs["pooling"] * rb,
    )


def _group_infer(attrs, shapes, dtypes):
    tables = attrs["tables"]
    if len(shapes) != len(tables):
        raise ShapeError(f"embedding_bag_group has {len(tables)} tables but {len(shapes)} inputs")
    for table, shape, dtype in zip(tables, shapes, dtypes, strict=True):
        _check_indices(f"embedding_bag_group table {table['name']}", shape, dtype, table["pooling"])
        if table["pooling"] > table["rows"]:
            raise ShapeError(f"table {table['name']}: pooling exceeds rows")
    return (len(tables), attrs["dim"]), attrs["output_dtype"]


def _group_cost(attrs, shapes, dtypes, out, out_dtype):
    rb = row_bytes(attrs["dim"], attrs["dtype"])
    tables = attrs["tables"]
    return OpCost(
        flops_per_item=sum(_pool_flops(attrs["mode"], t["pooling"], attrs["dim"]) for t in tables),
        params=sum(t["rows"] for t in tables) * attrs["dim"],
        weight_bytes=sum(t["rows"] for t in tables) * rb,
        input_bytes_per_item=_io_bytes(shapes, dtypes),
        output_bytes_per_item=numel(out) * DTYPE_BYTES[out_dtype],
        embedding_bytes_per_item=sum(t["pooling"] for t in tables) * rb,
    )


# dense -----------------------------------------------------------------------------------------


def _dense_infer(attrs, shapes, dtypes):
    shape = shapes[0]
    if not shape or shape[-1] != attrs["in_features"]:
        raise ShapeError(f"dense expects last dim {attrs['in_features']}, input is {list(shape)}")
    return shape[:-1] + (attrs["out_features"],), attrs["dtype"]


def _dense_cost(attrs, shapes, dtypes, out, out_dtype):
    lead = numel(shapes[0][:-1])
    fin, fout = attrs["in_features"], attrs["out_features"]
    macs = lead * fin * fout
    flops = 2 * macs + lead * fout * (int(attrs["bias"]) + ACTIVATION_FLOPS[attrs["activation"]])
    params = fin * fout + (fout if attrs["bias"] else 0)
    return OpCost(
        macs_per_item=macs,
        flops_per_item=flops,
        params=params,
        weight_bytes=params * DTYPE_BYTES[attrs["dtype"]],
        input_bytes_per_item=_io_bytes(shapes, dtypes),
        output_bytes_per_item=numel(out) * DTYPE_BYTES[out_dtype],
    )


# interaction, concat, elementwise --------------------------------------------------------------


def _vectors(shapes: list[Shape]) -> tuple[int, int]:
    """(number of vectors, their common dim) of inputs shaped (d,) or (n, d)."""
    count, dims = 0, set()
    for shape in shapes:
        if len(shape) == 1:
            count += 1
        elif len(shape) == 2:
            count += shape[0]
        else:
            raise ShapeError(f"inputs must be vectors (d,) or rows (n, d), got {list(shape)}")
        dims.add(shape[-1])
    if len(dims) != 1:
        raise ShapeError(f"stacked vectors need one dim, inputs have dims {sorted(dims)}")
    return count, dims.pop()


def interaction_pairs(n: int, self_interaction: bool) -> int:
    return n * (n + 1) // 2 if self_interaction else n * (n - 1) // 2


def _interaction_infer(attrs, shapes, dtypes):
    if attrs["mode"] == "cat":
        return (sum(numel(s) for s in shapes),), dtypes[0]
    n, d = _vectors(shapes)
    pairs = interaction_pairs(n, attrs["self_interaction"])
    if attrs["dense_first"]:
        if len(shapes[0]) != 1:
            raise ShapeError("dense_first needs the first input to be one vector (d,)")
        return (pairs + d,), dtypes[0]
    return (pairs,), dtypes[0]


def _interaction_cost(attrs, shapes, dtypes, out, out_dtype):
    io = dict(
        input_bytes_per_item=_io_bytes(shapes, dtypes),
        output_bytes_per_item=numel(out) * DTYPE_BYTES[out_dtype],
    )
    if attrs["mode"] == "cat":
        return OpCost(**io)
    n, d = _vectors(shapes)
    macs = interaction_pairs(n, attrs["self_interaction"]) * d
    return OpCost(macs_per_item=macs, flops_per_item=2 * macs, **io)


def _concat_infer(attrs, shapes, dtypes):
    if len(set(dtypes)) != 1:
        raise ShapeError(f"concat inputs must share a dtype, got {sorted(set(dtypes))}")
    if attrs["layout"] == "rows":
        count, dim = _vectors(shapes)
        return (count, dim), dtypes[0]
    return (sum(numel(s) for s in shapes),), dtypes[0]


def _copy_cost(attrs, shapes, dtypes, out, out_dtype):
    return OpCost(
        input_bytes_per_item=_io_bytes(shapes, dtypes),
        output_bytes_per_item=numel(out) * DTYPE_BYTES[out_dtype],
    )


def _elementwise_infer(attrs, shapes, dtypes):
    fn = attrs["fn"]
    want = 2 if fn in BINARY_FNS else 1
    if len(shapes) != want:
        raise ShapeError(f"elementwise {fn} takes {want} inputs, got {len(shapes)}")
    if want == 2 and shapes[0] != shapes[1]:
        raise ShapeError(
            f"elementwise {fn} needs equal shapes, got {list(shapes[0])} and {list(shapes[1])}"
        )
    return shapes[0], dtypes[0]


def _elementwise_cost(attrs, shapes, dtypes, out, out_dtype):
    per_elem = ACTIVATION_FLOPS.get(attrs["fn"], 1)
    return OpCost(
        flops_per_item=numel(out) * per_elem,
        input_bytes_per_item=_io_bytes(shapes, dtypes),
        output_bytes_per_item=numel(out) * DTYPE_BYTES[out_dtype],
    )


# attention (DIN local activation unit) ---------------------------------------------------------

ATTENTION_FEATURES = {"kq_prod": 3, "kq_diff_prod": 4}


def _attention_infer(attrs, shapes, dtypes):
    query, keys = shapes
    if len(query) != 1 or len(keys) != 2 or keys[1] != query[0]:
        raise ShapeError(
            f"attention takes a query (d,) and keys (L, d), got {list(query)} and {list(keys)}"
        )
    return query, dtypes[0]


def attention_layers(attrs: Mapping[str, Any], dim: int) -> list[tuple[int, int]]:
    """(in, out) of each FC of the attention MLP, ending in the scalar weight."""
    sizes = [ATTENTION_FEATURES[attrs["features"]] * dim, *attrs["mlp"], 1]
    return list(zip(sizes[:-1], sizes[1:], strict=True))


def _attention_cost(attrs, shapes, dtypes, out, out_dtype):
    length, dim = shapes[1]
    layers = attention_layers(attrs, dim)
    mlp_macs = sum(i * o for i, o in layers)
    # per key: the feature products, the MLP; then the weighted sum over keys
    macs = length * (mlp_macs + dim) + (length * dim if attrs["features"] == "kq_diff_prod" else 0)
    act = sum(o * ACTIVATION_FLOPS[attrs["activation"]] for _, o in layers[:-1])
    flops = 2 * macs + length * (sum(o for _, o in layers) + act)
    params = sum(i * o + o for i, o in layers)
    return OpCost(
        macs_per_item=macs,
        flops_per_item=flops,
        params=params,
        weight_bytes=params * DTYPE_BYTES[attrs["dtype"]],
        input_bytes_per_item=_io_bytes(shapes, dtypes),
        output_bytes_per_item=numel(out) * DTYPE_BYTES[out_dtype],
    )


# recurrent -------------------------------------------------------------------------------------


def _recurrent_infer(attrs, shapes, dtypes):
    shape = shapes[0]
    if len(shape) != 2:
        raise ShapeError(f"recurrent input must be (steps, features), got {list(shape)}")
    steps = shape[0]
    if attrs["return_sequence"]:
        return (steps, attrs["hidden"]), attrs["dtype"]
    return (attrs["hidden"],), attrs["dtype"]


def recurrent_layer_dims(attrs: Mapping[str, Any], input_features: int) -> list[tuple[int, int]]:
    """(input features, hidden) of each stacked layer."""
    h = attrs["hidden"]
    return [(input_features if i == 0 else h, h) for i in range(attrs["layers"])]


def _recurrent_cost(attrs, shapes, dtypes, out, out_dtype):
    steps, fin = shapes[0]
    gates = RECURRENT_GATES[attrs["cell"]]
    dims = recurrent_layer_dims(attrs, fin)
    per_step = sum(gates * (i * h + h * h) for i, h in dims)
    macs = steps * per_step
    hidden_total = sum(h for _, h in dims)
    # two bias adds per gate (PyTorch keeps b_ih and b_hh) and ~4 FLOPs per gate nonlinearity
    flops = 2 * macs + steps * gates * hidden_total * (2 + 4)
    params = sum(gates * (i * h + h * h + 2 * h) for i, h in dims)
    return OpCost(
        macs_per_item=macs,
        flops_per_item=flops,
        params=params,
        weight_bytes=params * DTYPE_BYTES[attrs["dtype"]],
        input_bytes_per_item=_io_bytes(shapes, dtypes),
        output_bytes_per_item=numel(out) * DTYPE_BYTES[out_dtype],
    )


# top_k, output ---------------------------------------------------------------------------------


def _topk_infer(attrs, shapes, dtypes):
    if numel(shapes[0]) != 1:
        raise ShapeError(
            f"top_k ranks items by one score each, got per-item shape {list(shapes[0])}"
        )
    return shapes[0], dtypes[0]


def _topk_cost(attrs, shapes, dtypes, out, out_dtype):
    # heap selection: about log2(k) comparisons per candidate item
    return OpCost(
        flops_per_item=math.log2(max(attrs["k"], 2)),
        input_bytes_per_item=_io_bytes(shapes, dtypes),
    )


def _output_infer(attrs, shapes, dtypes):
    return (), dtypes[0]


def _no_cost(attrs, shapes, dtypes, out, out_dtype):
    return OpCost()


_FLOAT = _one_of(*FLOAT_DTYPES)

OPS: dict[str, OpDef] = {
    op.name: op
    for op in [
        OpDef(
            "input",
            "A graph input: dense features or the indices of one sparse feature, per item.",
            0,
            0,
            {
                "shape": Attr(_int_list, required=True),
                "dtype": Attr(_one_of(*DTYPE_BYTES), "fp32"),
                "role": Attr(_one_of("dense", "sparse"), "dense"),
            },
            _input_infer,
            _input_cost,
        ),
        OpDef(
            "embedding_bag",
            "Gather `pooling` rows of a table and pool them (sum/mean), or keep them (none). "
            "`dtype` is the row storage type, `output_dtype` the activations'; a row may hold "
            "`vectors` vectors of `dim` (a Cartesian-merged table).",
            1,
            1,
            {
                "rows": Attr(_pos_int, required=True),
                "dim": Attr(_pos_int, required=True),
                "pooling": Attr(_pos_int, 1),
                "dtype": Attr(_FLOAT, "fp32"),
                "mode": Attr(_one_of("sum", "mean", "none"), "sum"),
                "vectors": Attr(_pos_int, 1),
                "output_dtype": Attr(_one_of("fp32", "fp16", "bf16"), "fp32"),
            },
            _bag_infer,
            _bag_cost,
        ),
        OpDef(
            "embedding_bag_group",
            "Several same-dim pooled lookups done as one grouped op (FBGEMM TBE style).",
            1,
            None,
            {
                "tables": Attr(_tables, required=True),
                "dim": Attr(_pos_int, required=True),
                "dtype": Attr(_FLOAT, "fp32"),
                "mode": Attr(_one_of("sum", "mean"), "sum"),
                "output_dtype": Attr(_one_of("fp32", "fp16", "bf16"), "fp32"),
            },
            _group_infer,
            _group_cost,
        ),
        OpDef(
            "dense",
            "Fully connected layer y = act(x W + b) over the last dim.",
            1,
            1,
            {
                "in_features": Attr(_pos_int, required=True),
                "out_features": Attr(_pos_int, required=True),
                "bias": Attr(_boolean, True),
                "activation": Attr(_one_of(*ACTIVATIONS), "none"),
                "dtype": Attr(_FLOAT, "fp32"),
            },
            _dense_infer,
            _dense_cost,
        ),
        OpDef(
            "interaction",
            "DLRM feature interaction: pairwise dots of the vectors (dot) or their "
            "concatenation (cat).",
            2,
            None,
            {
                "mode": Attr(_one_of("dot", "cat"), "dot"),
                "self_interaction": Attr(_boolean, False),
                "dense_first": Attr(_boolean, True),
            },
            _interaction_infer,
            _interaction_cost,
        ),
        OpDef(
            "concat",
            "Concatenate the inputs: flattened (flat) or as rows of a (n, d) sequence (rows).",
            1,
            None,
            {"layout": Attr(_one_of("flat", "rows"), "flat")},
            _concat_infer,
            _copy_cost,
        ),
        OpDef(
            "elementwise",
            "Elementwise unary (activation) or binary (add/sub/mul) function.",
            1,
            2,
            {"fn": Attr(_one_of(*UNARY_FNS, *BINARY_FNS), required=True)},
            _elementwise_infer,
            _elementwise_cost,
        ),
        OpDef(
            "attention",
            "DIN local activation unit: an MLP scores each key against the query; keys are "
            "summed with those weights.",
            2,
            2,
            {
                "mlp": Attr(_int_list_or_empty, []),
                "features": Attr(_one_of(*ATTENTION_FEATURES), "kq_prod"),
                "activation": Attr(_one_of(*ACTIVATIONS), "sigmoid"),
                "dtype": Attr(_FLOAT, "fp32"),
            },
            _attention_infer,
            _attention_cost,
        ),
        OpDef(
            "recurrent",
            "Stacked recurrent layers (rnn/gru/lstm) over a (steps, features) sequence.",
            1,
            1,
            {
                "cell": Attr(_one_of(*RECURRENT_GATES), "gru"),
                "hidden": Attr(_pos_int, required=True),
                "layers": Attr(_pos_int, 1),
                "return_sequence": Attr(_boolean, False),
                "dtype": Attr(_FLOAT, "fp32"),
            },
            _recurrent_infer,
            _recurrent_cost,
        ),
        OpDef(
            "top_k",
            "Keep the k best-scoring items of the batch (the funnel between stages).",
            1,
            1,
            {"k": Attr(_pos_int, required=True)},
            _topk_infer,
            _topk_cost,
        ),
        OpDef("output", "The graph's results.", 1, None, {}, _output_infer, _no_cost),
    ]
}


def get_op(name: str) -> OpDef:
    from codesign.errors import UnknownNameError

    try:
        return OPS[name]
    except KeyError:
        raise UnknownNameError(f"unknown op {name!r} (known: {', '.join(sorted(OPS))})") from None
