"""The Target protocol: what every piece of hardware (built-in or plugin) provides.

A target has four methods (``design_space``, ``supports``, ``op_cost``, ``hw_cost``) and one
optional hook (``schedule``, for targets that overlap ops, e.g. sub-batch pipelining). A *point*
is a dict of knob values, validated by the target's :class:`DesignSpace`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from codesign.errors import CodesignError
from codesign.ir.graph import Graph, Node
from codesign.ir.ops import DTYPE_BYTES, OpCost


class KnobError(CodesignError):
    """An unknown knob, or a value outside its range: one line naming it and the valid choices."""


class UnsupportedOpError(CodesignError):
    """A target cannot run an op of the graph."""


@dataclass(frozen=True)
class Knob:
    """One tunable of a target. ``kind`` is int, float, bool or choice."""

    name: str
    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    log: bool = False
    unit: str = ""
    help: str = ""
    #: How the co-design search treats this knob: "" (not searched; its default or the
    #: pipeline's value holds), "stage" (chosen per stage: every engine of the stage gets it)
    #: or "chip" (chosen once per chip or socket, shared by the stages placed on it).
    search: str = ""
    #: The values the search tries (empty: derived from the range, see :func:`search_grid`).
    grid: tuple[Any, ...] = ()

    def describe_range(self) -> str:
        if self.kind == "choice":
            return "|".join(str(c) for c in self.choices)
        if self.kind == "bool":
            return "true|false"
        return f"{_fmt(self.low)}..{_fmt(self.high)}"

    def parse(self, raw: Any, *, target: str = "") -> Any:
        """Validate (and, for text from ``--set``, convert) a value for this knob."""
        where = f"{target}: knob {self.name}" if target else f"knob {self.name}"
        value = raw
        if self.kind == "bool":
            if isinstance(raw, str):
                lowered = raw.strip().lower()
                if lowered in ("true", "1", "yes", "on"):
                    return True
                if lowered in ("false", "0", "no", "off"):
                    return False
            if isinstance(raw, bool):
                return raw
            raise KnobError(f"{where}: {raw!r} is not a boolean (valid: true|false)")
        if self.kind == "choice":
            text = raw.strip() if isinstance(raw, str) else raw
            for choice in self.choices:
                if text == choice or str(choice) == str(text):
                    return choice
            raise KnobError(f"{where}: {raw!r} is not one of {self.describe_range()}")
        if isinstance(raw, str):
            try:
                value = float(raw.strip().replace("_", ""))
            except ValueError:
                raise KnobError(
                    f"{where}: {raw!r} is not a number (valid: {self.describe_range()})"
                ) from None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and math.isnan(value))
        ):
            raise KnobError(f"{where}: {raw!r} is not a number (valid: {self.describe_range()})")
        if isinstance(value, int) and abs(value) > 2**63:  # past every range, and float's too
            raise KnobError(
                f"{where}: a {len(str(abs(value)))}-digit integer is out of range "
                f"(valid: {self.describe_range()})"
            )
        if math.isinf(value):
            raise KnobError(
                f"{where}: {raw!r} is not a finite number (valid: {self.describe_range()})"
            )
        if self.kind == "int":
            if float(value) != int(value):
                raise KnobError(f"{where}: {raw!r} is not an integer")
            value = int(value)
        else:
            value = float(value)
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise KnobError(
                f"{where}: {_fmt(value)} is out of range (valid: {self.describe_range()}"
                f"{' ' + self.unit if self.unit else ''})"
            )
        return value

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "default": self.default}
        if self.kind in ("int", "float"):
            out.update(low=self.low, high=self.high, log=self.log)
        if self.kind == "choice":
            out["choices"] = list(self.choices)
        if self.unit:
            out["unit"] = self.unit
        if self.help:
            out["help"] = self.help
        if self.search:
            out["search"] = self.search
            out["grid"] = list(search_grid(self))
        return out


def search_grid(knob: Knob) -> tuple[Any, ...]:
    """The values the search tries for ``knob``: its ``grid`` if set; else its choices, both
    booleans, powers of two within the range (log-scaled ints, at most 12, the largest kept),
    or 8 points of the range (floats, geometric when ``log``)."""
    if knob.grid:
        return tuple(knob.grid)
    if knob.kind == "choice":
        return tuple(knob.choices)
    if knob.kind == "bool":
        return (False, True)
    low = knob.low if knob.low is not None else knob.default
    high = knob.high if knob.high is not None else knob.default
    if knob.kind == "int":
        if knob.log:
            first = max(0, math.ceil(math.log2(max(low, 1))))
            last = math.floor(math.log2(max(high, 1)))
            return tuple(2**e for e in range(max(first, last - 11), last + 1))
        step = max(1, math.ceil((high - low + 1) / 8))
        return tuple(range(int(low), int(high) + 1, step))
    if knob.log and low > 0:
        ratio = (high / low) ** (1 / 7)
        return tuple(low * ratio**i for i in range(8))
    return tuple(low + (high - low) * i / 7 for i in range(8))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


@dataclass(frozen=True)
class DesignSpace:
    """The knobs of a target, with defaults; :meth:`resolve` validates a point."""

    knobs: tuple[Knob, ...]
    target: str = ""

    def __post_init__(self) -> None:
        names = [k.name for k in self.knobs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate knob names in {self.target}: {names}")

    def __getitem__(self, name: str) -> Knob:
        for knob in self.knobs:
            if knob.name == name:
                return knob
        raise self._unknown(name)

    def names(self) -> list[str]:
        return [k.name for k in self.knobs]

    def defaults(self) -> dict[str, Any]:
        return {k.name: k.default for k in self.knobs}

    def with_defaults(self, values: Mapping[str, Any]) -> DesignSpace:
        """A copy whose defaults are ``values`` (validated and converted, e.g. from a preset)."""
        parsed = self.resolve(values)
        return DesignSpace(
            tuple(dataclasses.replace(k, default=parsed[k.name]) for k in self.knobs),
            target=self.target,
        )

    def resolve(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated by ``overrides`` (values may be text, as from ``--set``)."""
        point = self.defaults()
        for name, raw in (overrides or {}).items():
            point[name] = self[name].parse(raw, target=self.target)
        return point

    def _unknown(self, name: str) -> KnobError:
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return KnobError(
            f"{self.target + ': ' if self.target else ''}unknown knob {name!r} "
            f"({hint}valid: {', '.join(self.names())})"
        )


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["rows=32", "dataflow=ws"]`` -> ``{"rows": "32", "dataflow": "ws"}``; a knob set twice
    is an error (which one was meant?)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise KnobError(f"--set {item!r}: write knob=value, e.g. --set rows=32")
        if name.strip() in out:
            raise KnobError(
                f"--set {item!r}: knob {name.strip()!r} is set twice (fix: pass each knob once)"
            )
        out[name.strip()] = value.strip()
    return out


# --- what a target returns ----------------------------------------------------------------------


@dataclass(frozen=True)
class OpView:
    """What a target sees of one op: the node, its inputs' shapes and dtypes, the batch and the
    IR's per-item work (MACs, bytes). Plugins need nothing else from the graph."""

    node: Node
    input_shapes: tuple[tuple[int, ...], ...]
    input_dtypes: tuple[str, ...]
    batch: int
    work: OpCost
    #: This op's fraction of the graph's embedding bytes gathered (caches are shared in
    #: proportion to traffic).
    embedding_share: float = 1.0
    #: Parameters of the graph's non-embedding ops (for weight-SRAM residency).
    graph_dense_params: int = 0

    @property
    def op(self) -> str:
        return self.node.op

    @property
    def attrs(self) -> dict[str, Any]:
        return self.node.attrs

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.node.shape

    @property
    def output_bytes_per_item(self) -> int:
        return math.prod(self.node.shape) * DTYPE_BYTES[self.node.dtype]


def op_views(graph: Graph) -> list[OpView]:
    work = {node.name: graph.cost(node) for node in graph.nodes}
    gathered = sum(w.embedding_bytes_per_item for w in work.values()) or 1.0
    dense_params = sum(
        w.params for n, w in work.items() if not graph.node(n).op.startswith("embedding")
    )
    views = []
    for node in graph.nodes:
        inputs = graph.inputs_of(node)
        views.append(
            OpView(
                node=node,
                input_shapes=tuple(i.shape for i in inputs),
                input_dtypes=tuple(i.dtype for i in inputs),
                batch=graph.batch,
                work=work[node.name],
                embedding_share=work[node.name].embedding_bytes_per_item / gathered,
                graph_dense_params=dense_params,
            )
        )
    return views


@dataclass(frozen=True)
class OpEstimate:
    """Time, energy and traffic of one op (or one extra step such as a transfer) on a target.

    ``bound`` says which ceiling set the latency: compute, memory, transfer or overhead.
    """

    name: str
    op: str
    latency_s: float
    energy_j: float = 0.0
    compute_s: float = 0.0
    memory_s: float = 0.0
    overhead_s: float = 0.0
    bound: str = "compute"
    dram_bytes: float = 0.0
    sram_bytes: float = 0.0
    pcie_bytes: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op": self.op,
            "latency_s": self.latency_s,
            "energy_j": self.energy_j,
            "compute_s": self.compute_s,
            "memory_s": self.memory_s,
            "overhead_s": self.overhead_s,
            "bound": self.bound,
            "dram_bytes": self.dram_bytes,
            "sram_bytes": self.sram_bytes,
            "pcie_bytes": self.pcie_bytes,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True)
class Schedule:
    """How the op estimates combine: end-to-end latency and any extra steps (transfers, sorts)."""

    latency_s: float
    extra: tuple[OpEstimate, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HardwareCost:
    """Silicon cost of a configuration: area (None where not meaningful) and power."""

    area_mm2: float | None
    power_w: float
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"area_mm2": self.area_mm2, "power_w": self.power_w, "breakdown": self.breakdown}


@runtime_checkable
class Target(Protocol):
    """The protocol plugins implement (subclassing :class:`BaseTarget` is the easy way)."""

    name: str
    description: str

    def design_space(self) -> DesignSpace: ...

    def supports(self, node: Node) -> bool: ...

    def op_cost(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate: ...

    def hw_cost(self, point: Mapping[str, Any]) -> HardwareCost: ...


class BaseTarget:
    """Convenience base: ``supports`` from a set of op names, sequential ``schedule``, and the
    resource hooks (:meth:`resources`, :meth:`capacity`, :meth:`partition`, :meth:`chip_cost`)
    with the defaults of a target whose every engine is a device of its own."""

    name: str = ""
    description: str = ""
    kind: str = ""  # cpu, gpu, accel, ...: a label for people; no code branches on it
    supported_ops: frozenset[str] = frozenset()
    #: Ops that carry no work of their own (graph inputs and the output marker).
    free_ops: frozenset[str] = frozenset({"input", "output"})
    #: Whether the resource hooks accept points whose values are numpy arrays (one design per
    #: element) and return arrays; otherwise the evaluator calls them design by design.
    vectorized_hooks: bool = False
    #: Whether the target filters a stage's top-k itself (a ``top_k`` op in its graph, e.g.
    #: RPAccel's filter units); otherwise the host sorts the scores (RecPipe's measured times).
    filters_on_device: bool = False

    # --- resources: what the search and pipelines need to place engines on chips ---------------

    def resources(self, point: Mapping[str, Any]) -> dict[str, float]:
        """What one engine configured at ``point`` takes from its chip or socket (e.g.
        ``{"cores": 4}``, ``{"pes": 4096, "embedding_sram_bytes": 2**21}``). Default: nothing
        shared (every engine is a device of its own)."""
        return {}

    def capacity(self, chip: Mapping[str, Any]) -> dict[str, float]:
        """What one chip or socket configured at ``chip`` offers the engines placed on it (the
        same keys as :meth:`resources`). Default ``{}``: no shared chip."""
        return {}

    def partition(self, chip: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
        """Knob values an engine at ``point`` inherits as its share of ``chip`` (bandwidth,
        SRAM split by the share of the chip it holds). Default: none."""
        return {}

    def chip_cost(
        self, stages: Sequence[tuple[Mapping[str, Any], int]], chip: Mapping[str, Any]
    ) -> HardwareCost:
        """Area and power of the silicon that the engines of ``stages`` ((engine point,
        engines) pairs) occupy on one chip configured at ``chip``. Default: each engine is a
        whole device, priced by :meth:`hw_cost`."""
        return sum_costs([self.hw_cost(p) for p, n in stages for _ in range(int(n))])  # type: ignore[attr-defined]

    def supports(self, node: Node) -> bool:
        return node.op in self.supported_ops or node.op in self.free_ops

    def schedule(
        self, graph: Graph, estimates: Sequence[OpEstimate], point: Mapping[str, Any]
    ) -> Schedule:
        return Schedule(latency_s=sum(e.latency_s for e in estimates))

    def describe(self) -> dict[str, Any]:
        """Facts shown by ``codesign targets show`` besides the knobs."""
        return {}


def sum_costs(costs: Sequence[HardwareCost]) -> HardwareCost:
    """Area (None when no part has one) and power of several devices together."""
    areas = [c.area_mm2 for c in costs if c.area_mm2 is not None]
    return HardwareCost(
        area_mm2=sum(areas) if areas else None, power_w=sum(float(c.power_w) for c in costs)
    )


# Plugins may implement only the four protocol methods; these give every target the hooks.


def target_resources(target: Any, point: Mapping[str, Any]) -> dict[str, float]:
    hook = getattr(target, "resources", None)
    return dict(hook(point)) if hook else {}


def target_capacity(target: Any, chip: Mapping[str, Any]) -> dict[str, float]:
    hook = getattr(target, "capacity", None)
    return dict(hook(chip)) if hook else {}


def target_partition(target: Any, chip: Mapping[str, Any], point: Mapping[str, Any]) -> dict:
    hook = getattr(target, "partition", None)
    return dict(hook(chip, point)) if hook else {}


def target_chip_cost(
    target: Any, stages: Sequence[tuple[Mapping[str, Any], int]], chip: Mapping[str, Any]
) -> HardwareCost:
    """Area and power of one chip whose stages are (engine point, engines) pairs."""
    hook = getattr(target, "chip_cost", None)
    if hook:
        return hook(stages, chip)
    return BaseTarget.chip_cost(target, stages, chip)  # the default: a device per engine


def filters_on_device(target: Any) -> bool:
    return bool(getattr(target, "filters_on_device", False))


def streams_sub_batches(target: Any) -> bool:
    """Whether the target pipelines sub-batches (it has a ``sub_batch`` knob)."""
    return "sub_batch" in target.design_space().names()
