"""CPU target: a per-op roofline (compute and memory ceilings) with efficiency factors.

- Dense-like ops (dense, dot interaction, attention, recurrent) are GEMMs. Compute time is
  FLOPs / (threads x frequency x SIMD lanes x 2 x FMA units x efficiency). Efficiency grows with
  the GEMM's row count: ``eff = compute_efficiency * m / (m + half_efficiency_rows)``, because
  small batches leave SIMD lanes and register tiles idle. The TVM-measured model calibrates
  ``compute_efficiency``.
- Threads: a GEMM uses ``min(cores, ceil(MACs / min_macs_per_thread))`` threads. Below that
  size, splitting costs more than it gains.
- Embedding gathers: each table gets a share of the last-level cache in proportion to its
  lookups. Rows hit in it with the analytical LRU hit rate under Zipf(``zipf_alpha``) traffic.
  Misses move whole 64-byte lines from DRAM. Time is the larger of bandwidth time and latency
  time: misses x DRAM latency / (threads x outstanding misses per core).
- Weights and activations come from DRAM only when they do not fit in the last-level cache.
- Every op pays ``op_overhead_s`` (framework dispatch).
- Energy is an upper bound: TDP x latency.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from codesign.cost_models import workload
from codesign.targets.base import DesignSpace, HardwareCost, Knob, OpEstimate, OpView
from codesign.targets.presets import Preset, PresetTarget

CACHE_LINE_BYTES = 64
#: Cache hits are charged at this multiple of DRAM bandwidth (LLC vs DRAM on server parts).
CACHE_BANDWIDTH_RATIO = 4.0
#: Independent outstanding misses one core sustains (line-fill buffers).
MISSES_IN_FLIGHT_PER_CORE = 10


def cpu_knobs(defaults: Mapping[str, Any], target: str) -> DesignSpace:
    d = defaults
    return DesignSpace(
        (
            Knob(
                "cores",
                "int",
                d["cores"],
                1,
                1024,
                unit="threads",
                help="threads used for this model",
            ),
            Knob("frequency_hz", "float", d["frequency_hz"], 1e8, 8e9, unit="Hz"),
            Knob(
                "simd_lanes_fp32",
                "int",
                d["simd_lanes_fp32"],
                1,
                64,
                help="fp32 lanes per SIMD instruction (AVX-512: 16, AVX2: 8)",
            ),
            Knob("fma_units", "int", d["fma_units"], 1, 4, help="FMA pipes per core"),
            Knob(
                "llc_bytes",
                "int",
                d["llc_bytes"],
                0,
                2**34,
                unit="B",
                help="last-level cache shared by the cores",
            ),
            Knob(
                "dram_bandwidth_bytes_per_s",
                "float",
                d["dram_bandwidth_bytes_per_s"],
                1e8,
                1e13,
                unit="B/s",
            ),
            Knob("dram_latency_s", "float", d["dram_latency_s"], 1e-9, 1e-5, unit="s"),
            Knob(
                "compute_efficiency",
                "float",
                d.get("compute_efficiency", 0.6),
                0.01,
                1.0,
                help="fraction of peak FLOP/s a large GEMM reaches (TVM calibrates it)",
            ),
            Knob(
                "memory_efficiency",
                "float",
                d.get("memory_efficiency", 0.7),
                0.01,
                1.0,
                help="fraction of peak DRAM bandwidth reached",
            ),
            Knob(
                "half_efficiency_rows",
                "int",
                d.get("half_efficiency_rows", 8),
                1,
                4096,
                help="GEMM rows (batch) at which efficiency is half its maximum",
            ),
            Knob("min_macs_per_thread", "int", d.get("min_macs_per_thread", 200_000), 1, 10**9),
            Knob("op_overhead_s", "float", d.get("op_overhead_s", 2e-6), 0.0, 1e-2, unit="s"),
            Knob(
                "zipf_alpha",
                "float",
                d.get("zipf_alpha", 1.09),
                0.01,
                3.0,
                help="skew of embedding-row popularity (FBGEMM's inference default 1.09)",
            ),
            Knob("tdp_w", "float", d["tdp_w"], 1.0, 2000.0, unit="W"),
        ),
        target=target,
    )


class CPUTarget(PresetTarget):
    kind = "cpu"
    knobs = staticmethod(cpu_knobs)

    def preset_defaults(self, preset: Preset) -> dict[str, Any]:
        defaults = dict(preset.knobs)
        if defaults.pop("detect", False):
            defaults = {**detect_host(), **defaults}
        return defaults

    def hw_cost(self, point: Mapping[str, Any]) -> HardwareCost:
        return HardwareCost(area_mm2=None, power_w=float(point["tdp_w"]))

    def peak_flops(self, point: Mapping[str, Any], threads: int) -> float:
        return threads * point["frequency_hz"] * point["simd_lanes_fp32"] * 2 * point["fma_units"]

    def describe(self) -> dict[str, Any]:
        p = self._space.defaults()
        return {"peak_flops_per_s": self.peak_flops(p, p["cores"]), "source": self.source}

    # --- ops --------------------------------------------------------------------------------

    def op_cost(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        if op.op in workload.GATHER_OPS:
            return self._gather(op, point)
        if op.op in workload.GEMM_OPS and workload.gemms(op):
            return self._gemm(op, point)
        if op.op in self.free_ops:
            return OpEstimate(op.node.name, op.op, 0.0, bound="overhead")
        return self._vector(op, point)

    def _gemm(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        compute_s = 0.0
        threads_used = 1
        for g in workload.gemms(op):
            threads = max(1, min(point["cores"], math.ceil(g.macs / point["min_macs_per_thread"])))
            threads_used = max(threads_used, threads)
            eff = point["compute_efficiency"] * g.m / (g.m + point["half_efficiency_rows"])
            compute_s += 2 * g.macs / (self.peak_flops(point, threads) * eff)
        dram = self._spill_bytes(op, point)
        memory_s = dram / (point["dram_bandwidth_bytes_per_s"] * point["memory_efficiency"])
        return _estimate(op, point, compute_s, memory_s, dram, threads_used)

    def _spill_bytes(self, op: OpView, point: Mapping[str, Any]) -> float:
        weights = op.work.weight_bytes
        acts = workload.vector_bytes(op)
        llc = point["llc_bytes"]
        return (weights if weights > llc / 2 else 0.0) + (acts if acts > llc / 2 else 0.0)

    def _gather(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        from codesign.cost_models.embedding_cache import lru_hit_rate

        tables = workload.gathers(op)
        traffic = sum(t.lookups * t.row_bytes for t in tables) or 1.0
        misses = hits_bytes = dram_bytes = 0.0
        for t in tables:
            # the LLC is shared in proportion to gathered bytes across the whole graph
            share = op.embedding_share * t.lookups * t.row_bytes / traffic
            capacity_rows = min(t.rows, int(point["llc_bytes"] * share // t.row_bytes))
            hit = lru_hit_rate(t.rows, capacity_rows, point["zipf_alpha"]) if capacity_rows else 0.0
            miss_rows = t.lookups * (1.0 - hit)
            misses += miss_rows
            hits_bytes += t.lookups * hit * t.row_bytes
            dram_bytes += miss_rows * math.ceil(t.row_bytes / CACHE_LINE_BYTES) * CACHE_LINE_BYTES
        threads = max(1, min(point["cores"], op.batch))
        bw = point["dram_bandwidth_bytes_per_s"] * point["memory_efficiency"]
        bandwidth_s = dram_bytes / bw + hits_bytes / (bw * CACHE_BANDWIDTH_RATIO)
        latency_s = misses * point["dram_latency_s"] / (threads * MISSES_IN_FLIGHT_PER_CORE)
        compute_s = op.work.flops_per_item * op.batch / self.peak_flops(point, threads)
        est = _estimate(op, point, compute_s, max(bandwidth_s, latency_s), dram_bytes, threads)
        est.detail.update(
            miss_rows=misses, cache_hit_bytes=hits_bytes, latency_bound=latency_s > bandwidth_s
        )
        return est

    def _vector(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        nbytes = workload.vector_bytes(op)
        threads = max(1, min(point["cores"], op.batch // 64 or 1))
        bw = point["dram_bandwidth_bytes_per_s"] * point["memory_efficiency"]
        ratio = 1.0 if nbytes > point["llc_bytes"] / 2 else CACHE_BANDWIDTH_RATIO
        memory_s = nbytes / (bw * ratio)
        compute_s = (
            op.work.flops_per_item
            * op.batch
            / (self.peak_flops(point, threads) * point["compute_efficiency"])
        )
        dram = nbytes if ratio == 1.0 else 0.0
        return _estimate(op, point, compute_s, memory_s, dram, threads)


def _estimate(
    op: OpView,
    point: Mapping[str, Any],
    compute_s: float,
    memory_s: float,
    dram_bytes: float,
    threads: int,
) -> OpEstimate:
    overhead = point["op_overhead_s"]
    latency = max(compute_s, memory_s) + overhead
    return OpEstimate(
        name=op.node.name,
        op=op.op,
        latency_s=latency,
        energy_j=latency * point["tdp_w"],
        compute_s=compute_s,
        memory_s=memory_s,
        overhead_s=overhead,
        bound="compute" if compute_s >= memory_s else "memory",
        dram_bytes=dram_bytes,
        detail={"threads": threads},
    )


# --- host detection ---------------------------------------------------------------------------


@cache
def detect_host() -> dict[str, Any]:
    """Cores, SIMD width, LLC size and frequency from the OS; DRAM bandwidth measured once
    (a 64 MB numpy copy, best of 5). Override any of them with ``--set``."""
    flags = _cpuinfo_field("flags") or ""
    lanes = 16 if "avx512f" in flags.split() else 8 if "avx2" in flags.split() else 4
    mhz = _cpuinfo_field("cpu MHz")
    freq = _sysfs_float("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", 1e3)
    if freq is None:
        freq = float(mhz) * 1e6 if mhz else 2.5e9
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return {
        "cores": cores,
        "frequency_hz": freq,
        "simd_lanes_fp32": lanes,
        "fma_units": 2 if lanes >= 8 else 1,
        "llc_bytes": _llc_bytes() or 8 * 2**20,
        "dram_bandwidth_bytes_per_s": measure_copy_bandwidth(),
        "dram_latency_s": 90e-9,  # typical loaded DRAM latency of server parts; not measured
        "tdp_w": 10.0 * cores,  # assumption: about 10 W per core; set tdp_w for your part
    }


def _cpuinfo_field(name: str) -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    match = re.search(rf"^{re.escape(name)}\s*:\s*(.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


def _sysfs_float(path: str, scale: float) -> float | None:
    try:
        return float(Path(path).read_text().strip()) * scale
    except (OSError, ValueError):
        return None


def _llc_bytes() -> int | None:
    best = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        value = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        if best is None or level > best[0]:
            best = (level, value)
    return best[1] if best else None


@cache
def measure_copy_bandwidth() -> float:
    """Bytes per second of a large memory copy (read + write traffic counted)."""
    import numpy as np

    src = np.ones(8 * 2**20, dtype=np.float64)  # 64 MB
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best
