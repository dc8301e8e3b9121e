"""The analytical cost model: an interpreter that walks the IR in topological order, asks the
target for each op's cost, lets the target combine them (``schedule``: transfers, overlap),
and returns per-op and total latency, energy and bytes moved, with provenance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from codesign import __version__
from codesign.ir.graph import Graph
from codesign.targets.base import (
    BaseTarget,
    HardwareCost,
    OpEstimate,
    Schedule,
    UnsupportedOpError,
    op_views,
)

COST_MODEL = "analytical"
COST_MODEL_VERSION = 1


@dataclass(frozen=True)
class CostReport:
    ops: tuple[OpEstimate, ...]
    extra: tuple[OpEstimate, ...]
    latency_s: float
    energy_j: float
    dram_bytes: float
    sram_bytes: float
    pcie_bytes: float
    hardware: HardwareCost
    point: dict[str, Any]
    provenance: dict[str, Any]
    schedule: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_s": self.latency_s,
            "energy_j": self.energy_j,
            "dram_bytes": self.dram_bytes,
            "sram_bytes": self.sram_bytes,
            "pcie_bytes": self.pcie_bytes,
            "area_mm2": self.hardware.area_mm2,
            "power_w": self.hardware.power_w,
            "ops": [e.as_dict() for e in self.ops],
            "extra": [e.as_dict() for e in self.extra],
            "schedule": self.schedule,
            "point": self.point,
            "provenance": self.provenance,
        }


def check_supported(graph: Graph, target: Any) -> None:
    """Raise :class:`UnsupportedOpError` (one line, the first ops named) when ``target``
    cannot run every op of ``graph``."""
    unsupported = [n for n in graph.nodes if not target.supports(n)]
    if unsupported:
        names = ", ".join(f"{n.name} ({n.op})" for n in unsupported[:3])
        raise UnsupportedOpError(
            f"target {target.name} cannot run {len(unsupported)} op(s): {names} "
            "(fix: choose another target or transform the graph)"
        )


def estimate(graph: Graph, target: Any, overrides: Mapping[str, Any] | None = None) -> CostReport:
    """Cost ``graph`` on ``target`` at the design point ``overrides`` (knob defaults otherwise)."""
    space = target.design_space()
    point = space.resolve(overrides)
    check_supported(graph, target)
    hardware = target.hw_cost(point)
    ops = tuple(
        target.op_cost(view, point)
        for view in op_views(graph)
        if view.op not in ("input", "output")
    )
    schedule = (
        target.schedule(graph, ops, point)
        if hasattr(target, "schedule")
        else BaseTarget.schedule(target, graph, ops, point)
    )
    if not isinstance(schedule, Schedule):
        schedule = Schedule(latency_s=float(schedule))
    everything = ops + schedule.extra
    return CostReport(
        ops=ops,
        extra=schedule.extra,
        latency_s=schedule.latency_s,
        energy_j=sum(e.energy_j for e in everything),
        dram_bytes=sum(e.dram_bytes for e in everything),
        sram_bytes=sum(e.sram_bytes for e in everything),
        pcie_bytes=sum(e.pcie_bytes for e in everything),
        hardware=hardware,
        point=point,
        provenance={
            "model": graph.meta.get("model", graph.name),
            "spec_hash": graph.meta.get("spec_hash"),
            "batch": graph.batch,
            "target": target.name,
            "target_kind": getattr(target, "kind", ""),
            "target_source": getattr(target, "source", ""),
            "cost_model": COST_MODEL,
            "cost_model_version": COST_MODEL_VERSION,
            "codesign_version": __version__,
        },
        schedule=dict(schedule.detail),
    )
