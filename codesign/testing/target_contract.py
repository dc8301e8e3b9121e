"""The contract every codesign target must meet, as a reusable pytest suite.

Modelled on Optuna's shipped sampler test suites: a plugin author subclasses
:class:`TargetContract` in a test module, says how to build the target, and gets every check::

    from codesign.testing.target_contract import TargetContract
    from my_plugin import MyTarget

    class TestMyTarget(TargetContract):
        def make_target(self):
            return MyTarget()

What is checked, for any target:

- it satisfies the :class:`~codesign.targets.base.Target` protocol; ``name`` and
  ``description`` are non-empty;
- its design space: unique knob names usable with ``--set name=value``, kinds among int, float,
  bool and choice, ranges with ``low <= default <= high``, defaults that ``resolve()`` accepts
  (also as text, the way ``--set`` passes them);
- ``resolve()`` rejects an unknown knob, an out-of-range value, a bad choice, a non-boolean and a
  non-number with a one-line :class:`~codesign.targets.base.KnobError` naming the knob and what
  is valid;
- ``hw_cost(defaults)``: power finite and >= 0, area ``None`` or finite and > 0, each
  breakdown entry with ``count``, ``area_mm2`` and ``power_w`` (what ``targets show`` prints);
- on a tiny DLRM (also int8 grouped tables, also with a top-k), every node is supported, or the
  analytical model refuses the graph with a one-line
  :class:`~codesign.targets.base.UnsupportedOpError`;
- where supported: finite, non-negative latency, energy and bytes for every op and extra step;
  a total latency that is finite and > 0 (and, unless the schedule overlaps ops, at least the
  slowest op); latency that does not fall when the batch grows (16 -> 256); identical results
  on a second call; a report that ``json.dumps`` accepts;
- ``op_cost``, ``hw_cost`` and ``schedule`` do not modify the point (they get a read-only one);
- every knob at each end of its range (each choice, both booleans) either costs the graph with
  finite numbers or fails with a one-line :class:`~codesign.errors.CodesignError`, never with
  another exception.

Class attributes let a target opt out where its model says otherwise (``overlaps_ops``,
``latency_grows_with_batch``). The whole suite takes well under a second per target.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import pytest

from codesign.errors import CodesignError
from codesign.ir.frontends.lower import lower
from codesign.ir.graph import Graph
from codesign.targets.base import (
    DesignSpace,
    HardwareCost,
    Knob,
    KnobError,
    OpEstimate,
    Schedule,
    Target,
    UnsupportedOpError,
    op_views,
    target_capacity,
    target_chip_cost,
    target_partition,
    target_resources,
)

__all__ = ["KNOB_KINDS", "TINY_DLRM", "TargetContract", "tiny_dlrm"]

KNOB_KINDS = ("int", "float", "bool", "choice")

#: A DLRM small enough to cost in milliseconds: two dense MLPs, five tables (one with pooling 3),
#: dot interaction. codesign's own tests/conftest.py uses it too.
TINY_DLRM: dict[str, Any] = {
    "version": 1,
    "kind": "model",
    "name": "tiny-dlrm",
    "arch": "dlrm",
    "dense_features": 8,
    "embedding": {
        "dim": 4,
        "tables": [
            {"rows": [10, 20, 1000], "pooling": 1, "name": "small"},
            {"rows": 500, "count": 2, "pooling": 3, "name": "multi"},
        ],
    },
    "bottom_mlp": [16, 4],
    "top_mlp": [8, 1],
    "interaction": "dot",
}

#: Graph variants every numeric check runs on: name -> (passes, keep).
GRAPH_VARIANTS: dict[str, tuple[tuple[str, ...], int | None]] = {
    "dlrm": ((), None),
    "dlrm-int8-grouped": (("quantize-embeddings", "group-embeddings"), None),
    "dlrm-top-k": ((), 4),
}

_FREE_OPS = ("input", "output")
_OP_FIELDS = (
    "latency_s",
    "energy_j",
    "compute_s",
    "memory_s",
    "overhead_s",
    "dram_bytes",
    "sram_bytes",
    "pcie_bytes",
)
_REPORT_FIELDS = ("latency_s", "energy_j", "dram_bytes", "sram_bytes", "pcie_bytes")


def tiny_dlrm(
    batch: int = 16,
    *,
    keep: int | None = None,
    passes: Sequence[str] = (),
    spec: Mapping[str, Any] = TINY_DLRM,
) -> Graph:
    """The tiny DLRM lowered for ``batch`` items, with optional passes and a top-k."""
    graph = lower(copy.deepcopy(dict(spec)), batch=batch, keep=keep)
    if passes:
        from codesign.ir.passes import run_passes

        graph = run_passes(graph, list(passes)).graph
    return graph


def _one_line(text: str) -> bool:
    return bool(text.strip()) and "\n" not in text.strip()


def _finite_non_negative(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _estimate(graph: Graph, target: Any, overrides: Mapping[str, Any] | None = None) -> Any:
    from codesign.cost_models.analytical import estimate

    return estimate(graph, target, overrides)


class TargetContract:
    """Subclass and implement :meth:`make_target` (or override the ``target`` fixture)."""

    #: True where ``schedule`` overlaps ops (pipelining), so the total may be below the slowest
    #: op's latency as costed alone.
    overlaps_ops: ClassVar[bool] = False
    #: False where latency may legitimately fall as the batch grows (e.g. a schedule that
    #: switches strategy with batch size).
    latency_grows_with_batch: ClassVar[bool] = True
    #: Batches compared by the batch test (small, large).
    batches: ClassVar[tuple[int, int]] = (16, 256)
    #: The model spec costed; override to use a model closer to your target's domain.
    model_spec: ClassVar[Mapping[str, Any]] = TINY_DLRM

    def make_target(self) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__}: implement make_target() returning the target under test"
        )

    @pytest.fixture
    def target(self) -> Any:
        return self.make_target()

    # --- helpers ------------------------------------------------------------------------------

    def graph(self, batch: int = 16, variant: str = "dlrm") -> Graph:
        passes, keep = GRAPH_VARIANTS[variant]
        return tiny_dlrm(batch, keep=keep, passes=passes, spec=self.model_spec)

    @staticmethod
    def _supported(target: Any, graph: Graph) -> bool:
        return all(target.supports(node) for node in graph.nodes)

    def _require_support(self, target: Any, graph: Graph) -> None:
        if not self._supported(target, graph):
            missing = sorted({n.op for n in graph.nodes if not target.supports(n)})
            pytest.skip(f"{target.name} does not run {', '.join(missing)}")

    @staticmethod
    def _check_report(target: Any, graph: Graph, report: Any, *, overlaps: bool) -> None:
        name = target.name
        views = [v for v in op_views(graph) if v.op not in _FREE_OPS]
        assert len(report.ops) == len(views), f"{name}: one estimate per op expected"
        for view, est in zip(views, report.ops, strict=True):
            assert isinstance(est, OpEstimate), f"{name}: op_cost must return an OpEstimate"
            assert (est.name, est.op) == (view.node.name, view.op), (
                f"{name}: op_cost({view.node.name}) returned an estimate named "
                f"{est.name!r} ({est.op}); use op.node.name and op.op"
            )
        for est in (*report.ops, *report.extra):
            assert isinstance(est, OpEstimate), f"{name}: schedule extras must be OpEstimates"
            for field in _OP_FIELDS:
                value = getattr(est, field)
                assert _finite_non_negative(value), (
                    f"{name}: {est.name} ({est.op}) {field} = {value!r}; "
                    "must be a finite number >= 0"
                )
            assert isinstance(est.bound, str) and est.bound, f"{name}: {est.name} bound is empty"
            assert isinstance(est.detail, dict), f"{name}: {est.name} detail must be a dict"
        for field in _REPORT_FIELDS:
            value = getattr(report, field)
            assert _finite_non_negative(value), f"{name}: report {field} = {value!r}"
        assert report.latency_s > 0, f"{name}: total latency must be > 0"
        if not overlaps:
            slowest = max((e.latency_s for e in report.ops), default=0.0)
            assert report.latency_s >= slowest * (1 - 1e-9), (
                f"{name}: total latency {report.latency_s:g} s is below the slowest op "
                f"({slowest:g} s); set overlaps_ops = True if the schedule overlaps ops"
            )

    # --- the protocol -------------------------------------------------------------------------

    def test_satisfies_target_protocol(self, target: Any) -> None:
        assert isinstance(target, Target), (
            f"{target!r} lacks part of the Target protocol "
            "(name, description, design_space, supports, op_cost, hw_cost)"
        )
        for method in ("design_space", "supports", "op_cost", "hw_cost"):
            assert callable(getattr(target, method)), f"{method} must be a method"
        if hasattr(target, "schedule"):
            assert callable(target.schedule), "schedule, where present, must be a method"

    def test_name_and_description(self, target: Any) -> None:
        assert isinstance(target.name, str) and target.name, "name must be a non-empty string"
        assert target.name == target.name.strip() and not any(c.isspace() for c in target.name), (
            f"name {target.name!r} must not contain whitespace (it is typed on the command line)"
        )
        assert isinstance(target.description, str) and target.description.strip(), (
            f"{target.name}: description must be a non-empty string"
        )

    # --- the design space ---------------------------------------------------------------------

    def test_design_space_is_well_formed(self, target: Any) -> None:
        space = target.design_space()
        assert isinstance(space, DesignSpace), "design_space() must return a DesignSpace"
        names = [k.name for k in space.knobs]
        assert len(names) == len(set(names)), f"{target.name}: duplicate knob names {names}"
        assert space.names() == target.design_space().names(), "design_space() must be stable"
        for knob in space.knobs:
            self._check_knob(target.name, knob)

    @staticmethod
    def _check_knob(target: str, knob: Knob) -> None:
        where = f"{target}: knob {knob.name!r}"
        assert isinstance(knob, Knob), f"{where} must be a Knob"
        assert knob.name and knob.name.strip() == knob.name, f"{where}: empty or padded name"
        assert (
            "=" not in knob.name
            and "," not in knob.name
            and not any(c.isspace() for c in knob.name)
        ), f"{where}: a name must work in --set name=value"
        assert knob.kind in KNOB_KINDS, f"{where}: kind {knob.kind!r} not in {KNOB_KINDS}"
        d = knob.default
        if knob.kind == "bool":
            assert isinstance(d, bool), f"{where}: default {d!r} is not a bool"
        elif knob.kind == "choice":
            assert knob.choices, f"{where}: a choice knob needs choices"
            assert len({str(c) for c in knob.choices}) == len(knob.choices), (
                f"{where}: choices {knob.choices} are not distinct as text"
            )
            assert d in knob.choices, f"{where}: default {d!r} not in {knob.choices}"
        else:
            assert not isinstance(d, bool) and isinstance(d, int | float), (
                f"{where}: default {d!r} is not a number"
            )
            if knob.kind == "int":
                assert isinstance(d, int), f"{where}: default {d!r} is not an int"
            assert math.isfinite(d), f"{where}: default {d!r} is not finite"
            for label, bound in (("low", knob.low), ("high", knob.high)):
                assert bound is None or (isinstance(bound, int | float) and math.isfinite(bound)), (
                    f"{where}: {label} {bound!r} must be None or a finite number"
                )
            if knob.low is not None:
                assert knob.low <= d, f"{where}: default {d} below low {knob.low}"
            if knob.high is not None:
                assert d <= knob.high, f"{where}: default {d} above high {knob.high}"
            if knob.log:
                assert knob.low is not None and knob.low > 0, f"{where}: log scale needs low > 0"
        assert isinstance(knob.unit, str) and isinstance(knob.help, str)
        json.dumps(knob.as_dict(), allow_nan=False)

    def test_defaults_resolve(self, target: Any) -> None:
        space = target.design_space()
        defaults = space.defaults()
        assert space.resolve() == defaults, f"{target.name}: resolve() must return the defaults"
        assert space.resolve(defaults) == defaults, f"{target.name}: defaults must validate"
        # --set passes text: every default must survive str() and back
        as_text = {name: str(value) for name, value in defaults.items()}
        assert space.resolve(as_text) == defaults, (
            f"{target.name}: defaults given as text (as from --set) resolve differently"
        )

    def test_unknown_knob_is_rejected(self, target: Any) -> None:
        space = target.design_space()
        with pytest.raises(KnobError) as info:
            space.resolve({"no_such_knob_zz": "1"})
        message = str(info.value)
        assert _one_line(message), f"{target.name}: error must be one line: {message!r}"
        assert "no_such_knob_zz" in message, f"{target.name}: error must name the knob"
        for name in space.names():
            assert name in message, f"{target.name}: error must list valid knob {name!r}"

    def test_out_of_range_values_are_rejected(self, target: Any) -> None:
        for knob in target.design_space().knobs:
            for bad in self._out_of_range(knob):
                for given in (bad, str(bad)):
                    self._expect_knob_error(target, knob, given)

    def test_non_numbers_are_rejected(self, target: Any) -> None:
        for knob in target.design_space().knobs:
            if knob.kind not in ("int", "float"):
                continue
            for given in ("abc", "nan", "inf", "-inf", "", True):
                self._expect_knob_error(target, knob, given)

    @staticmethod
    def _out_of_range(knob: Knob) -> list[Any]:
        if knob.kind == "bool":
            return ["maybe", 2]
        if knob.kind == "choice":
            return ["__not_a_choice__"]
        out: list[Any] = []
        if knob.high is not None:
            step = max(1.0, abs(knob.high))
            out.append(int(knob.high) + 1 if knob.kind == "int" else knob.high + step)
        if knob.low is not None:
            step = max(1.0, abs(knob.low))
            out.append(math.floor(knob.low) - 1 if knob.kind == "int" else knob.low - step)
        return out

    @staticmethod
    def _expect_knob_error(target: Any, knob: Knob, given: Any) -> None:
        space = target.design_space()
        try:
            space.resolve({knob.name: given})
        except KnobError as exc:
            message = str(exc)
        else:
            pytest.fail(f"{target.name}: knob {knob.name} accepted {given!r}")
        assert _one_line(message), f"{target.name}: error must be one line: {message!r}"
        assert knob.name in message, f"{target.name}: error {message!r} must name {knob.name}"
        if knob.kind in ("choice", "bool") or given in ("abc",):
            valid = knob.describe_range()
            assert valid in message, f"{target.name}: error {message!r} must list {valid}"
        elif isinstance(given, int | float) or str(given).lstrip("-").replace(".", "").isdigit():
            valid = knob.describe_range()
            assert valid in message, f"{target.name}: error {message!r} must give range {valid}"

    # --- silicon ------------------------------------------------------------------------------

    def test_hw_cost_at_defaults(self, target: Any) -> None:
        point = target.design_space().resolve()
        hw = target.hw_cost(point)
        assert isinstance(hw, HardwareCost), "hw_cost must return a HardwareCost"
        assert _finite_non_negative(hw.power_w), f"{target.name}: power_w = {hw.power_w!r}"
        assert hw.area_mm2 is None or (_finite_non_negative(hw.area_mm2) and hw.area_mm2 > 0), (
            f"{target.name}: area_mm2 = {hw.area_mm2!r}; None or a finite number > 0"
        )
        for part, numbers in hw.breakdown.items():
            missing = {"count", "area_mm2", "power_w"} - set(numbers)
            assert not missing, (
                f"{target.name}: breakdown {part!r} lacks {sorted(missing)} "
                "(`codesign targets show` prints count, area_mm2 and power_w per component)"
            )
            for key, value in numbers.items():
                assert _finite_non_negative(value), f"{target.name}: breakdown {part}.{key}"
        json.dumps(hw.as_dict(), allow_nan=False)
        assert target.hw_cost(point) == hw, f"{target.name}: hw_cost must be deterministic"

    # --- resources: how the search places engines on chips ------------------------------------

    def test_resources_and_capacity_are_well_formed(self, target: Any) -> None:
        point = target.design_space().resolve()
        used = target_resources(target, point)
        offered = target_capacity(target, point)
        for label, amounts in (("resources", used), ("capacity", offered)):
            assert isinstance(amounts, dict), f"{target.name}: {label} must return a dict"
            for key, value in amounts.items():
                assert isinstance(key, str) and _finite_non_negative(value), (
                    f"{target.name}: {label}[{key!r}] = {value!r}; a finite number >= 0"
                )
        for key, value in offered.items():
            assert key in used, f"{target.name}: capacity names {key!r} but resources do not"
            assert used[key] <= value * (1 + 1e-12), (
                f"{target.name}: one engine at the defaults needs {used[key]} {key}, more than "
                f"the chip's {value}"
            )
        overrides = target_partition(target, point, point)
        target.design_space().resolve(overrides)  # names real knobs, in range

    def test_one_engine_as_the_whole_chip_costs_hw_cost(self, target: Any) -> None:
        """Power and area reach plans through chip_cost: one engine configured as the whole
        chip must cost what hw_cost says (a plugin without the hook gets hw_cost per engine)."""
        point = target.design_space().resolve()
        hw = target.hw_cost(point)
        chip = target_chip_cost(target, [(point, 1)], point)
        assert chip.power_w == pytest.approx(hw.power_w, rel=1e-12), target.name
        if hw.area_mm2 is None:
            assert chip.area_mm2 is None, target.name
        else:
            assert chip.area_mm2 == pytest.approx(hw.area_mm2, rel=1e-12), target.name

    # --- costing a model ----------------------------------------------------------------------

    @pytest.mark.parametrize("variant", list(GRAPH_VARIANTS))
    def test_ops_supported_or_refused_in_one_line(self, target: Any, variant: str) -> None:
        graph = self.graph(16, variant)
        flags = {n.name: target.supports(n) for n in graph.nodes}
        assert all(isinstance(f, bool) for f in flags.values()), "supports() must return bool"
        for node in graph.nodes:
            if node.op in _FREE_OPS:
                assert flags[node.name], f"{target.name}: must support graph {node.op} markers"
        if all(flags.values()):
            _estimate(graph, target)
            return
        with pytest.raises(UnsupportedOpError) as info:
            _estimate(graph, target)
        message = str(info.value)
        assert _one_line(message), f"{target.name}: error must be one line: {message!r}"
        first = next(name for name, ok in flags.items() if not ok)
        assert first in message, f"{target.name}: error must name the unsupported node"

    @pytest.mark.parametrize("variant", list(GRAPH_VARIANTS))
    def test_estimate_is_finite_and_non_negative(self, target: Any, variant: str) -> None:
        graph = self.graph(16, variant)
        self._require_support(target, graph)
        report = _estimate(graph, target)
        self._check_report(target, graph, report, overlaps=self.overlaps_ops)
        point = target.design_space().resolve()
        assert report.hardware == target.hw_cost(point)

    def test_latency_grows_with_batch(self, target: Any) -> None:
        if not self.latency_grows_with_batch:
            pytest.skip(f"{type(self).__name__} opts out (latency_grows_with_batch = False)")
        small, large = self.batches
        graphs = [self.graph(small), self.graph(large)]
        self._require_support(target, graphs[0])
        lo, hi = (_estimate(g, target).latency_s for g in graphs)
        assert hi >= lo * (1 - 1e-12), (
            f"{target.name}: latency at batch {large} ({hi:g} s) is below batch {small} "
            f"({lo:g} s); set latency_grows_with_batch = False if that is intended"
        )

    def test_estimates_are_deterministic(self, target: Any) -> None:
        graph = self.graph(16)
        self._require_support(target, graph)
        first = _estimate(graph, target).as_dict()
        second = _estimate(self.graph(16), target).as_dict()
        assert first == second, f"{target.name}: two identical estimates differ"

    def test_report_is_json_serialisable(self, target: Any) -> None:
        graph = self.graph(16, "dlrm-top-k")
        self._require_support(target, graph)
        data = _estimate(graph, target).as_dict()
        text = json.dumps(data, allow_nan=False)
        assert json.loads(text)["latency_s"] == data["latency_s"]
        if hasattr(target, "describe"):
            json.dumps(target.describe(), allow_nan=False)

    def test_point_is_not_modified(self, target: Any) -> None:
        graph = self.graph(16)
        self._require_support(target, graph)
        frozen = MappingProxyType(target.design_space().resolve())
        snapshot = dict(frozen)
        estimates = []
        for view in op_views(graph):
            if view.op in _FREE_OPS:
                continue
            try:
                estimates.append(target.op_cost(view, frozen))
            except TypeError as exc:
                pytest.fail(f"{target.name}: op_cost({view.node.name}) modified the point: {exc}")
        target.hw_cost(frozen)
        if hasattr(target, "schedule"):
            result = target.schedule(graph, tuple(estimates), frozen)
            assert isinstance(result, Schedule | float | int), "schedule must return a Schedule"
        assert dict(frozen) == snapshot

    def test_knob_extremes_fail_cleanly(self, target: Any) -> None:
        graph = self.graph(16, "dlrm-top-k")
        self._require_support(target, graph)
        for knob in target.design_space().knobs:
            for value in self._extremes(knob):
                try:
                    report = _estimate(graph, target, {knob.name: value})
                except CodesignError as exc:
                    assert _one_line(str(exc)), f"{target.name}: {knob.name}={value!r}: {exc!r}"
                    continue
                except Exception as exc:  # the point of the test: nothing but CodesignError
                    pytest.fail(
                        f"{target.name}: {knob.name}={value!r} raised "
                        f"{type(exc).__name__}: {exc} (raise a CodesignError, or narrow the range)"
                    )
                try:
                    self._check_report(target, graph, report, overlaps=True)
                except AssertionError as exc:
                    raise AssertionError(f"at {knob.name}={value!r}: {exc}") from None

    @staticmethod
    def _extremes(knob: Knob) -> list[Any]:
        if knob.kind == "bool":
            return [True, False]
        if knob.kind == "choice":
            return list(knob.choices)
        return [v for v in (knob.low, knob.high) if v is not None]
