"""Layer patterns shared by the model importers (PyTorch and ONNX): abstract values and the IR
they lower to.

An importer interprets a foreign graph one op at a time and keeps, per value, one of the
abstract values below: an IR activation (batch first; the IR keeps the per-item shape without
the batch), a constant, a parameter, integer ids from the inputs (shape only), or a pending
pattern (a concatenation, a stack of vectors, its transpose, their Gram matrix, the lower
triangle of that) that becomes one IR node when a consumer needs it. :class:`PatternLowering`
holds what the patterns mean for the IR (a Linear and its activation are one ``dense``; an
``EmbeddingBag`` is an index ``input`` and an ``embedding_bag``; DLRM's concat, stack, ``bmm``
and triangle gather are one ``interaction``); a front end maps its own ops onto its methods and
says how often a foreign value is used (:meth:`PatternLowering.use_count`), which decides
whether an activation may fuse into the layer before it.

Pattern methods raise :class:`PatternError`; the front end adds where (node, op) and raises
:class:`codesign.errors.ImportFailure`. Nothing here imports torch or onnx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from codesign.ir.graph import Graph, Node

ACTIVATIONS = ("relu", "sigmoid", "tanh")
BINARY = ("add", "sub", "mul")
BAG_MODES = ("sum", "mean")


class PatternError(Exception):
    """Raised by pattern code; the importer adds the node and op and raises ImportFailure."""


# --- abstract values ----------------------------------------------------------------------------


class Value:
    """Base of the abstract values an importer tracks per foreign value."""


@dataclass(eq=False)
class Const(Value):
    """A value known at import time (literal, buffer, lifted constant, or folded from those)."""

    value: Any


@dataclass(eq=False)
class Param(Value):
    """A weight: only its name, shape and IR dtype matter (its data is never read)."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(eq=False)
class Ids(Value):
    """Integer data from the user inputs (ids, offsets): only its shape matters."""

    shape: tuple[int, ...]
    dtype: str


@dataclass(eq=False)
class Act(Value):
    """A batch-first activation equal to the output of an IR node."""

    node: Node


@dataclass(eq=False)
class DenseIn(Value):
    """A float user input; its IR ``input`` node is made at the first use.

    ``dtype`` is the IR dtype, or None when the IR has none (an error only if it is used).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str | None
    owner: Any
    built: Node | None = None


@dataclass(eq=False)
class Cat(Value):
    """``cat(parts, dim=1)`` of (B, w) activations, not yet an IR node."""

    parts: list[Node]
    widths: list[int]
    name: str
    owner: Any
    built: Node | None = None


@dataclass(eq=False)
class Stack(Value):
    """Vectors (B, d) stacked to (B, n, d)."""

    parts: list[Node]
    dim: int
    name: str
    owner: Any
    built: Node | None = None


@dataclass(eq=False)
class StackT(Value):
    """A stack with its two inner dims swapped: (B, d, n)."""

    stack: Stack


@dataclass(eq=False)
class Gram(Value):
    """``bmm(T, T^T)`` of a stack: all pairwise dots, (B, n, n)."""

    stack: Stack


@dataclass(eq=False)
class Pairs(Value):
    """The lower triangle of a Gram matrix, flattened: DLRM's dot interaction."""

    stack: Stack
    self_interaction: bool
    owner: Any
    built: Node | None = None


@dataclass(eq=False)
class Multi(Value):
    items: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class Dead(Value):
    """An output the IR does not model (e.g. embedding_bag's offset2bag); fine if unused."""

    why: str


# --- the lowering -------------------------------------------------------------------------------


class PatternLowering:
    """Builds the IR graph from recognised patterns; front ends subclass it.

    ``owners`` maps an IR node's name to the foreign values equal to it (for activation fusion
    and the front end's final shape check).
    """

    def __init__(self, graph: Graph, batch: int) -> None:
        self.graph = graph
        self.batch = batch
        self.owners: dict[str, list[Any]] = {}

    # --- hooks for the front end -------------------------------------------------------------

    def use_count(self, owner: Any) -> int:
        """How many consumers the foreign value ``owner`` has."""
        raise NotImplementedError

    # --- bookkeeping ---------------------------------------------------------------------------

    def add(self, op: str, inputs: list[Node], attrs: dict, *, name: str, owner: Any) -> Node:
        ir_node = self.graph.add_node(op, inputs, attrs, name=name)
        if owner is not None:
            self.own(ir_node, owner)
        return ir_node

    def own(self, ir_node: Node, owner: Any) -> None:
        owners = self.owners.setdefault(ir_node.name, [])
        if owner not in owners:
            owners.append(owner)

    def replace_owner(self, ir_node: Node, owner: Any) -> None:
        """``owner`` now holds the node's value (a fused activation, a folded pooling)."""
        self.owners[ir_node.name] = [owner]

    def single_use(self, ir_node: Node) -> bool:
        return sum(self.use_count(o) for o in self.owners.get(ir_node.name, [])) == 1

    def item_shape(self, shape: tuple[int, ...], what: str) -> tuple[int, ...]:
        """Per-item shape of a batch-first value of full ``shape``."""
        if not shape:
            raise PatternError(f"value {what} is not a batch-first tensor")
        if shape[0] != self.batch:
            raise PatternError(
                f"value {what} has leading dim {shape[0]}, not the batch {self.batch}"
            )
        return tuple(shape[1:])

    # --- materialising values ------------------------------------------------------------------

    def act(self, value: Any, user: str) -> Node:
        """The IR node holding ``value``, building pending patterns on demand; ``user`` names
        the consumer in messages."""
        if isinstance(value, Act):
            return value.node
        if isinstance(value, DenseIn):
            if value.built is None:
                shape = self.item_shape(value.shape, value.name)
                if not shape:
                    raise PatternError(f"float input {value.name} has no feature dim per item")
                if value.dtype is None:
                    raise PatternError(f"float input {value.name} has a dtype the IR lacks")
                value.built = self.add(
                    "input",
                    [],
                    {"shape": list(shape), "dtype": value.dtype, "role": "dense"},
                    name=value.name,
                    owner=value.owner,
                )
            return value.built
        if isinstance(value, Cat):
            if value.built is None:
                value.built = self._build_cat(value)
            return value.built
        if isinstance(value, Stack):
            if value.built is None:
                value.built = self.add(
                    "concat", value.parts, {"layout": "rows"}, name=value.name, owner=value.owner
                )
            return value.built
        if isinstance(value, Pairs):
            if value.built is None:
                value.built = self.interaction(value, dense_first=False, owner=value.owner)
            return value.built
        why = {
            Const: "a constant tensor used as an activation",
            Param: "a parameter used outside a Linear/Embedding",
            Ids: "integer ids used outside an embedding lookup",
            StackT: "a transposed stack not multiplied with its stack",
            Gram: "a full Gram matrix (only its triangle gathered by index is supported)",
            Dead: "an output the IR does not model",
        }.get(type(value), f"an unsupported value ({type(value).__name__})")
        raise PatternError(f"{why} reaches {user}")

    def _build_cat(self, cat: Cat) -> Node:
        first, rest = cat.parts[0], cat.parts[1:]
        dlrm = first.op == "dense" and rest and all(p.op == "embedding_bag" for p in rest)
        if dlrm:
            return self.add(
                "interaction",
                cat.parts,
                {"mode": "cat", "self_interaction": False, "dense_first": True},
                name="interact",
                owner=cat.owner,
            )
        return self.add("concat", cat.parts, {"layout": "flat"}, name=cat.name, owner=cat.owner)

    def interaction(self, pairs: Pairs, *, dense_first: bool, owner: Any) -> Node:
        return self.add(
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

    # --- layers --------------------------------------------------------------------------------

    def linear(self, x: Any, weight: Any, bias: Any, *, name: str, owner: Any, user: str) -> Act:
        """``x @ weight.T + bias`` with ``weight`` of shape (out, in) -> ``dense``."""
        node = self.act(x, user)
        if not isinstance(weight, Param) or len(weight.shape) != 2:
            raise PatternError("the weight must be a parameter of shape (out, in)")
        if bias is not None and not isinstance(bias, Param):
            raise PatternError("the bias must be a parameter")
        out_features, in_features = weight.shape
        attrs = {
            "in_features": in_features,
            "out_features": out_features,
            "bias": bias is not None,
            "activation": "none",
            "dtype": weight.dtype,
        }
        return Act(self.add("dense", [node], attrs, name=name, owner=owner))

    def activation(self, x: Any, fn: str, *, name: str, owner: Any, user: str) -> Act:
        """A ReLU/Sigmoid/Tanh: fused into the dense before it when that is its only user."""
        node = self.act(x, user)
        if node.op == "dense" and node.attrs["activation"] == "none" and self.single_use(node):
            node.attrs["activation"] = fn
            self.replace_owner(node, owner)  # the Linear's own value is no longer in the IR
            return Act(node)
        return Act(self.add("elementwise", [node], {"fn": fn}, name=name, owner=owner))

    def binary(
        self,
        lhs: Any,
        rhs: Any,
        fn: str,
        *,
        shapes: tuple[tuple[int, ...], tuple[int, ...]],
        name: str,
        owner: Any,
        user: str,
    ) -> Act:
        """``add``/``sub``/``mul`` of two activations of equal (full) ``shapes``."""
        if not isinstance(rhs, Value) or not isinstance(lhs, Value):
            raise PatternError(
                "a scalar operand has no IR equivalent (elementwise takes two tensors)"
            )
        inputs = [self.act(lhs, user), self.act(rhs, user)]
        if shapes[0] != shapes[1]:
            raise PatternError("elementwise inputs must have equal shapes (no broadcasting)")
        return Act(self.add("elementwise", inputs, {"fn": fn}, name=name, owner=owner))

    # --- embeddings ----------------------------------------------------------------------------

    def lookup(
        self,
        weight: Any,
        ids: Ids,
        *,
        pooling: int,
        mode: str,
        out_dtype: str,
        name: str,
        meta: dict | None = None,
    ) -> Node:
        """An index ``input`` of ``pooling`` ids per item and its ``embedding_bag``."""
        if not isinstance(weight, Param) or len(weight.shape) != 2:
            raise PatternError("the table must be a parameter of shape (rows, dim)")
        if ids.dtype not in ("int32", "int64"):
            raise PatternError(f"ids must be int32/int64, got {ids.dtype}")
        rows, dim = weight.shape
        idx = self.add(
            "input",
            [],
            {"shape": [pooling], "dtype": ids.dtype, "role": "sparse"},
            name=f"{name}_ids",
            owner=None,
        )
        bag = self.add(
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
        bag.meta.update(meta or {})
        return bag

    def embedding_bag(
        self, weight: Any, ids: Any, *, bags: int, mode: str, out_dtype: str, name: str
    ) -> Node:
        """``EmbeddingBag`` over 1-D ``ids`` split into ``bags`` bags: pooling is ids per bag
        (the rounded mean, half up, when the bags differ in size)."""
        if mode not in BAG_MODES:
            raise PatternError(f"{mode} pooling has no IR equivalent (sum and mean do)")
        if not isinstance(ids, Ids) or len(ids.shape) != 1:
            raise PatternError(
                "ids must be a 1-D integer input (with offsets) or 2-D (batch, pooling)"
            )
        if bags != self.batch:
            raise PatternError(
                f"{bags} bags for a batch of {self.batch}: one bag per item expected"
            )
        exact = ids.shape[0] / bags
        pooling = max(1, int(exact + 0.5))  # half up
        meta = {} if exact == pooling else {"pooling_mean": exact}
        return self.lookup(
            weight, ids, pooling=pooling, mode=mode, out_dtype=out_dtype, name=name, meta=meta
        )

    def embedding(self, weight: Any, ids: Any, *, out_dtype: str, name: str, owner: Any) -> Act:
        """``Embedding``: (batch,) ids -> a bag of pooling 1; (batch, length) ids -> a lookup of
        mode none (a following sum/mean folds into it, see :meth:`pool`)."""
        if not isinstance(ids, Ids) or len(ids.shape) not in (1, 2) or ids.shape[0] != self.batch:
            raise PatternError("ids must be (batch,) or (batch, length) integers from the inputs")
        pooling = ids.shape[1] if len(ids.shape) == 2 else 1
        mode = "none" if len(ids.shape) == 2 else "sum"
        bag = self.lookup(weight, ids, pooling=pooling, mode=mode, out_dtype=out_dtype, name=name)
        self.own(bag, owner)
        return Act(bag)

    def pool(
        self, x: Any, mode: str, *, dims: list[int], keepdim: bool, owner: Any, user: str
    ) -> Act:
        """A sum/mean over the ids of an unpooled lookup folds into its ``embedding_bag``."""
        node = self.act(x, user)
        ok = (
            node.op == "embedding_bag"
            and node.attrs["mode"] == "none"
            and dims in ([1], [-2])
            and not keepdim
            and mode in BAG_MODES
            and self.single_use(node)
        )
        if not ok:
            raise PatternError("only a sum/mean over the ids of an embedding lookup is supported")
        node.attrs["mode"] = mode
        self.replace_owner(node, owner)  # the unpooled lookup is no longer in the IR
        return Act(node)

    # --- concatenation and the DLRM interaction ------------------------------------------------

    def cat(
        self,
        values: list[Any],
        shapes: list[tuple[int, ...]],
        *,
        name: str,
        owner: Any,
        user: str,
    ) -> Value:
        """``cat(values, dim=1)`` of (B, w) values (full ``shapes``): a pending :class:`Cat`,
        or DLRM's ``cat([x, pairs])`` as one dense-first dot ``interaction``."""
        if (
            len(values) == 2
            and isinstance(values[1], Pairs)
            and values[1].built is None
            and isinstance(values[0], Act | DenseIn)
            and self.act(values[0], user) is values[1].stack.parts[0]
        ):
            return Act(self.interaction(values[1], dense_first=True, owner=owner))
        parts, widths = [], []
        for value, full in zip(values, shapes, strict=True):
            shape = self.item_shape(full, user)
            if len(shape) != 1:
                raise PatternError(
                    f"only (batch, features) tensors can be concatenated, got {shape}"
                )
            if isinstance(value, Cat) and value.built is None:
                parts += value.parts
                widths += value.widths
            else:
                parts.append(self.act(value, user))
                widths.append(shape[0])
        return Cat(parts, widths, name, owner)

    def stack(
        self, values: list[Any], shapes: list[tuple[int, ...]], *, name: str, owner: Any, user: str
    ) -> Stack:
        """(B, d) vectors stacked along dim 1 (a (B, 1, d) value is a stack of one); stacks
        concatenated along dim 1 join."""
        parts: list[Node] = []
        dims = set()
        for value, full in zip(values, shapes, strict=True):
            shape = self.item_shape(full, user)
            if isinstance(value, Stack) and value.built is None:
                parts += value.parts
                dims.add(value.dim)
            elif len(shape) == 1:
                parts.append(self.act(value, user))
                dims.add(shape[0])
            else:
                raise PatternError(f"stacked tensors must be (batch, d), got {shape}")
        if len(dims) != 1:
            raise PatternError(f"stacked tensors must share one d, got {sorted(dims)}")
        return Stack(parts, dims.pop(), name, owner)

    def view(
        self,
        value: Any,
        src: tuple[int, ...],
        out: tuple[int, ...],
        *,
        name: str,
        owner: Any,
    ) -> Any:
        """A reshape to per-item shape ``out``: a concatenation of n equal parts viewed as a
        (n, d) stack, a stack flattened back to a concatenation, or a no-op."""
        if isinstance(value, Cat) and value.built is None and len(out) == 2:
            n, d = out
            if n == len(value.parts) and all(w == d for w in value.widths):
                return Stack(list(value.parts), d, name, owner)
            raise PatternError(
                f"viewing a concatenation of widths {value.widths} as {n} vectors of {d} "
                "splits or merges its parts"
            )
        if (
            isinstance(value, Stack)
            and value.built is None
            and out == (len(value.parts) * value.dim,)
        ):
            return Cat(list(value.parts), [value.dim] * len(value.parts), name, owner)
        if out == src:
            if isinstance(value, Act):
                self.own(value.node, owner)
            return value
        raise PatternError(f"reshaping {list(src)} to {list(out)} per item has no IR equivalent")

    def transpose(self, value: Any, *, swaps_inner: bool) -> StackT:
        if isinstance(value, Stack) and swaps_inner:
            return StackT(value)
        raise PatternError("only transposing the two inner dims of a stack of vectors is supported")

    def matmul(self, lhs: Any, rhs: Any) -> Gram:
        if isinstance(lhs, Stack) and isinstance(rhs, StackT) and rhs.stack is lhs:
            return Gram(lhs)
        raise PatternError(
            "only T @ T.transpose(1, 2) of a stack of vectors (DLRM dot) is supported"
        )

    def triangle(self, gram: Any, li: list[int], lj: list[int], *, owner: Any) -> Pairs:
        """The gather ``Z[:, li, lj]`` of a Gram matrix: the strict or the full lower triangle,
        each pair once, is DLRM's dot interaction."""
        if not isinstance(gram, Gram):
            raise PatternError("advanced indexing is only understood as the DLRM triangle gather")
        n = len(gram.stack.parts)
        if len(li) != len(lj):
            raise PatternError("li and lj differ in length")
        picked = {(max(i, j), min(i, j)) for i, j in zip(li, lj, strict=True)}
        strict = {(i, j) for i in range(n) for j in range(i)}
        full = strict | {(i, i) for i in range(n)}
        if len(picked) == len(li) and picked == strict:
            return Pairs(gram.stack, False, owner)
        if len(picked) == len(li) and picked == full:
            return Pairs(gram.stack, True, owner)
        raise PatternError(
            f"gathers {len(li)} entries of a {n}x{n} Gram matrix: neither the strict "
            f"({n * (n - 1) // 2}) nor the full ({n * (n + 1) // 2}) triangle, each pair once"
        )
