"""The target contract (codesign.testing.target_contract) over every built-in target, plus a few
checks that the contract itself catches broken targets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from codesign.plugins import load_target, target_entries
from codesign.targets.base import (
    BaseTarget,
    DesignSpace,
    HardwareCost,
    Knob,
    OpEstimate,
    OpView,
)
from codesign.testing.target_contract import TargetContract

BUILTINS = sorted(name for name, entry in target_entries().items() if entry.builtin)


def test_all_eleven_builtins_are_covered():
    assert len(BUILTINS) == 11
    assert {"cpu/host", "gpu/nvidia/t4", "accel/rpaccel"} <= set(BUILTINS)


class TestBuiltinTargets(TargetContract):
    @pytest.fixture(params=BUILTINS)
    def target(self, request: pytest.FixtureRequest) -> Any:
        return load_target(request.param)


# --- the contract catches broken targets ------------------------------------------------------


class _Tiny(BaseTarget):
    """A minimal well-behaved target: every op costs 1 us per 16 items."""

    name = "test/tiny"
    description = "contract self-test target"
    supported_ops = frozenset(
        {"dense", "interaction", "embedding_bag", "embedding_bag_group", "concat", "top_k"}
    )

    def design_space(self) -> DesignSpace:
        return DesignSpace(
            (
                Knob("scale", "float", 1.0, 0.5, 4.0),
                Knob("mode", "choice", "a", choices=("a", "b")),
            ),
            target=self.name,
        )

    def op_cost(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        t = 1e-6 * point["scale"] * op.batch / 16
        return OpEstimate(op.node.name, op.op, t, energy_j=t)

    def hw_cost(self, point: Mapping[str, Any]) -> HardwareCost:
        return HardwareCost(area_mm2=1.0, power_w=1.0)


class TestContractOnMinimalTarget(TargetContract):
    def make_target(self) -> Any:
        return _Tiny()


class _NegativeLatency(_Tiny):
    def op_cost(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        return dataclasses.replace(super().op_cost(op, point), latency_s=-1.0)


class _MutatesPoint(_Tiny):
    def op_cost(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        point["scale"] = 2.0  # type: ignore[index]
        return super().op_cost(op, point)


class _CrashesAtLowScale(_Tiny):
    def op_cost(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        if point["scale"] == 0.5:
            raise ZeroDivisionError("division by zero")
        return super().op_cost(op, point)


class _BadDefault(_Tiny):
    def design_space(self) -> DesignSpace:
        return DesignSpace((Knob("scale", "float", 9.0, 0.5, 4.0),), target=self.name)


class _ShrinksWithBatch(_Tiny):
    def op_cost(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        return OpEstimate(op.node.name, op.op, 1.0 / op.batch)


@pytest.mark.parametrize(
    ("target", "check", "needle"),
    [
        (_NegativeLatency(), "test_estimate_is_finite_and_non_negative", "latency_s = -1.0"),
        (_MutatesPoint(), "test_point_is_not_modified", "modified the point"),
        (_CrashesAtLowScale(), "test_knob_extremes_fail_cleanly", "scale=0.5 raised"),
        (_BadDefault(), "test_design_space_is_well_formed", "above high"),
        (_ShrinksWithBatch(), "test_latency_grows_with_batch", "below batch 16"),
    ],
)
def test_contract_catches(target, check, needle):
    contract = TestContractOnMinimalTarget()
    method = getattr(contract, check)
    args = ("dlrm",) if "variant" in method.__code__.co_varnames else ()
    with pytest.raises((AssertionError, pytest.fail.Exception)) as info:
        method(target, *args)
    assert needle in str(info.value)
