"""GPU target: a per-op roofline with occupancy, kernel-launch overhead and host<->device
transfers.

- GEMMs run at the fp32 or fp16 tensor-core peak (by the op's dtype) x ``compute_efficiency``
  x occupancy. Occupancy = min(1, output tiles of 128x128 / SMs): a small batch does not fill
  the GPU.
- Embedding tables live in device memory. When they do not fit, each table keeps its hottest
  rows resident (in proportion to its traffic) and the misses cross PCIe, as with UVM caching.
  Gathers move at least one 32-byte sector per row.
- Each op is one kernel and pays ``kernel_launch_s``.
- ``schedule`` adds the PCIe copies: graph inputs (dense features and ids) in, scores out.
- Energy is an upper bound: TDP x latency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from codesign.cost_models import workload
from codesign.ir.graph import Graph
from codesign.ir.ops import DTYPE_BYTES
from codesign.targets.base import (
    DesignSpace,
    HardwareCost,
    Knob,
    OpEstimate,
    OpView,
    Schedule,
)
from codesign.targets.presets import PresetTarget

SECTOR_BYTES = 32
TILE = 128
#: Fraction of device memory available to embedding tables (the rest: activations, runtime).
TABLE_MEMORY_FRACTION = 0.9


def gpu_knobs(d: Mapping[str, Any], target: str) -> DesignSpace:
    return DesignSpace(
        (
            Knob("sms", "int", d["sms"], 1, 1024, help="streaming multiprocessors"),
            Knob("peak_flops_fp32", "float", d["peak_flops_fp32"], 1e9, 1e16, unit="FLOP/s"),
            Knob(
                "peak_flops_fp16",
                "float",
                d["peak_flops_fp16"],
                1e9,
                1e17,
                unit="FLOP/s",
                help="dense fp16/bf16 tensor-core peak",
            ),
            Knob(
                "memory_bandwidth_bytes_per_s",
                "float",
                d["memory_bandwidth_bytes_per_s"],
                1e9,
                1e14,
                unit="B/s",
            ),
            Knob("memory_bytes", "float", d["memory_bytes"], 1e8, 1e13, unit="B"),
            Knob(
                "pcie_bandwidth_bytes_per_s",
                "float",
                d["pcie_bandwidth_bytes_per_s"],
                1e8,
                1e12,
                unit="B/s",
            ),
            Knob("pcie_latency_s", "float", d.get("pcie_latency_s", 10e-6), 0.0, 1e-2, unit="s"),
            Knob("kernel_launch_s", "float", d.get("kernel_launch_s", 5e-6), 0.0, 1e-3, unit="s"),
            Knob("compute_efficiency", "float", d.get("compute_efficiency", 0.6), 0.01, 1.0),
            Knob("memory_efficiency", "float", d.get("memory_efficiency", 0.8), 0.01, 1.0),
            Knob("zipf_alpha", "float", d.get("zipf_alpha", 1.09), 0.01, 3.0),
            Knob("tdp_w", "float", d["tdp_w"], 1.0, 5000.0, unit="W"),
        ),
        target=target,
    )


class GPUTarget(PresetTarget):
    kind = "gpu"
    knobs = staticmethod(gpu_knobs)

    def hw_cost(self, point: Mapping[str, Any]) -> HardwareCost:
        return HardwareCost(area_mm2=None, power_w=float(point["tdp_w"]))

    def op_cost(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        if op.op in self.free_ops:
            return OpEstimate(op.node.name, op.op, 0.0, bound="overhead")
        bw = point["memory_bandwidth_bytes_per_s"] * point["memory_efficiency"]
        compute_s = memory_s = pcie_s = 0.0
        dram = pcie = 0.0
        detail: dict[str, Any] = {}
        if op.op in workload.GATHER_OPS:
            dram, pcie, detail = self._gather_traffic(op, point)
            memory_s = dram / bw
            pcie_s = pcie / point["pcie_bandwidth_bytes_per_s"]
        elif workload.gemms(op):
            fp16 = op.node.attrs.get("dtype", "fp32") in ("fp16", "bf16")
            peak = point["peak_flops_fp16"] if fp16 else point["peak_flops_fp32"]
            for g in workload.gemms(op):
                tiles = math.ceil(g.m / TILE) * math.ceil(g.n / TILE)
                occupancy = min(1.0, tiles / point["sms"])
                compute_s += 2 * g.macs / (peak * point["compute_efficiency"] * occupancy)
            dram = op.work.weight_bytes + workload.vector_bytes(op)
            memory_s = dram / bw
            detail["kernels"] = sum(g.repeat for g in workload.gemms(op))
        else:
            dram = workload.vector_bytes(op)
            memory_s = dram / bw
        kernels = detail.get("kernels", 1)
        overhead = kernels * point["kernel_launch_s"]
        latency = max(compute_s, memory_s + pcie_s) + overhead
        bound = (
            "compute"
            if compute_s >= memory_s + pcie_s
            else ("transfer" if pcie_s > memory_s else "memory")
        )
        if overhead > max(compute_s, memory_s + pcie_s):
            bound = "overhead"
        return OpEstimate(
            name=op.node.name,
            op=op.op,
            latency_s=latency,
            energy_j=latency * point["tdp_w"],
            compute_s=compute_s,
            memory_s=memory_s + pcie_s,
            overhead_s=overhead,
            bound=bound,
            dram_bytes=dram,
            pcie_bytes=pcie,
            detail=detail,
        )

    def _gather_traffic(self, op: OpView, point: Mapping[str, Any]):
        from codesign.cost_models.embedding_cache import static_hit_rate

        tables = workload.gathers(op)
        traffic = sum(t.lookups * t.row_bytes for t in tables) or 1.0
        budget = TABLE_MEMORY_FRACTION * point["memory_bytes"] * op.embedding_share
        dram = pcie = 0.0
        resident_fraction = []
        for t in tables:
            if t.table_bytes <= budget * (t.lookups * t.row_bytes / traffic):
                hit = 1.0
            else:
                rows = int(budget * (t.lookups * t.row_bytes / traffic) // t.row_bytes)
                hit = static_hit_rate(t.rows, rows, point["zipf_alpha"])
            sector = math.ceil(t.row_bytes / SECTOR_BYTES) * SECTOR_BYTES
            dram += t.lookups * hit * sector
            pcie += t.lookups * (1.0 - hit) * t.row_bytes
            resident_fraction.append(hit)
        return dram, pcie, {"device_hit_rate": min(resident_fraction, default=1.0)}

    def schedule(
        self, graph: Graph, estimates: Sequence[OpEstimate], point: Mapping[str, Any]
    ) -> Schedule:
        in_bytes = (
            sum(math.prod(n.shape) * DTYPE_BYTES[n.dtype] for n in graph.find("input"))
            * graph.batch
        )
        out_bytes = (
            sum(math.prod(n.shape) * DTYPE_BYTES[n.dtype] for n in graph.inputs_of(graph.output))
            * graph.batch
        )
        extra = []
        for name, nbytes in (("host_to_device", in_bytes), ("device_to_host", out_bytes)):
            t = point["pcie_latency_s"] + nbytes / point["pcie_bandwidth_bytes_per_s"]
            extra.append(
                OpEstimate(
                    name,
                    "transfer",
                    t,
                    energy_j=t * point["tdp_w"],
                    memory_s=t,
                    bound="transfer",
                    pcie_bytes=nbytes,
                )
            )
        total = sum(e.latency_s for e in estimates) + sum(e.latency_s for e in extra)
        return Schedule(latency_s=total, extra=tuple(extra))
