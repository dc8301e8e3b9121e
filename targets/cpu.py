"""CPU target: a per-op roofline (compute and memory ceilings) with efficiency factors.

- Dense-like ops (dense, dot interaction, attention, recurrent) are GEMMs. Compute time is
  FLOPs / (threads x frequency x SIMD lanes x 2 x FMA units x efficiency), with
  ``efficiency = compute_efficiency x occupancy x lane use``:

  - occupancy: a GEMM kernel keeps a register tile of ``gemm_tile_rows`` output rows x
    ``gemm_tile_vectors`` SIMD vectors of accumulators; the FMA pipes stay busy only with
    ``fma_latency_cycles x fma_units`` independent accumulators in flight, so
    ``occupancy = min(1, min(m, tile rows) x min(vectors of n, tile vectors) / (latency x units))``
    (batch 1 fills one row of the tile: a quarter of the pipes on AVX2 with 4-cycle FMAs).
    A batched activation GEMM (the dot interaction: one small n x d x n Gram matrix per item)
    has no tile across items: ``compute_efficiency`` alone scales it, and the MACs counted are
    those the fused kernel performs (``tvm_measured.interaction_macs``): the Gram matrix in
    register tiles of 4 rows x 2 SIMD vectors, padded to whole tiles, without the column tiles
    right of the kept triangle (for n <= 2 x lanes that is the full padded product, e.g. 28 x 32
    x d per item for n = 27 on AVX-512, against the IR's 351 x d). Its memory time is reading
    the n parts and writing the output once, at cache bandwidth (DRAM when larger than half
    the LLC).
  - lane use: ``n / (ceil(n / lanes) x lanes)``: an output narrower than a SIMD vector (the
    CTR head, n = 1) leaves lanes idle.
- GEMM weights are streamed once per ``gemm_tile_rows`` rows of the batch (the register tile's
  rows reuse each weight; the next rows read it again), from the cache level they fit in: a
  fraction ``min(1, capacity / weight bytes)`` of the stream hits the L1 (where ``l1_bytes``
  is set, at ``l1_bytes_per_cycle``), then the private L2 at
  ``l2_bytes_per_cycle`` per core, then the LLC at ``llc_bytes_per_cycle``, the rest DRAM. Weight
  streaming and compute overlap (roofline: the larger wins). Where the measured kernel packs W
  into tile-wide panels (``tvm_measured.gemm_packs``) the copy runs first (3 x W's bytes) and
  each pass reads one panel; the epilogue (bias, activation, the output's store) runs after
  each tile. Neither overlaps the main loop. N is padded to whole tiles.
- Threads: a GEMM uses ``min(cores, ceil(MACs / min_macs_per_thread))`` threads. Below that
  size, splitting costs more than it gains.
- Embedding gathers: a batch of ``lookups`` Zipf(``zipf_alpha``) ids touches ``U`` distinct
  rows (expected value); repeats within the batch are near-cache hits (L1 in the share of the
  batch's touched rows ``l1_bytes`` holds, else L2). Distinct rows hit the L1, the L2
  and the LLC (each table gets an LLC share in proportion to its gathered bytes) with the
  analytical LRU hit rate, and miss to DRAM in whole 64-byte lines. Tables larger than the TLB's
  reach (``tlb_entries`` 4 KiB pages) pay ``page_walk_s`` for each distinct row beyond the pages
  the TLB holds. The bags written and the id array (4 bytes per lookup) move at near-cache
  speed. Memory time is the larger of bandwidth time and DRAM latency time (misses x DRAM
  latency / (threads x outstanding misses per core)), plus page walks; it overlaps the kernel's
  issue time: one load-add per SIMD vector of each gathered row (a 16-byte row is one
  instruction, not a quarter of one), at ``fma_units x compute_efficiency`` per cycle.
- Activations come from DRAM only when they do not fit in the last-level cache.
- Concat is TVM's nested select over the inputs: per output element a copy and a chain of
  compares (``concat_selects``), vectorized; cache-resident data moves at that speed.
- Top-k is a scalar heap selection (TVM's runtime ``topk``), not a byte stream: one predictable
  compare per candidate (``n x topk_scan_cycles / (frequency x compute_efficiency)``),
  ``k ln(n / k)`` heap insertions of ``2 log2 k`` data-dependent compares each and a final
  ``k log2 k`` sort at ``sort_compare_s`` each, plus ``extern_call_s`` for the call into the
  runtime library.
- Every op pays ``op_overhead_s`` (framework dispatch), and ``parallel_launch_s`` for each
  parallel loop its kernel starts on the runtime's thread pool (``parallel_launches``: a loop
  of one iteration is compiled away, so a batch-1 gather starts none; measured: a bag's
  latency steps from 7 to 30 ns between batch 1 and 2, then grows by its lookups).
- Energy is an upper bound: TDP x latency.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from codesign.cost_models import workload
from codesign.targets.base import DesignSpace, HardwareCost, Knob, OpEstimate, OpView
from codesign.targets.presets import Preset, PresetTarget

CACHE_LINE_BYTES = 64
#: Cache hits are charged at this multiple of DRAM bandwidth (LLC vs DRAM on server parts).
CACHE_BANDWIDTH_RATIO = 4.0
#: Independent outstanding misses one core sustains (line-fill buffers).
MISSES_IN_FLIGHT_PER_CORE = 10
PAGE_BYTES = 4096
#: Bytes of one embedding id (int32) in the gather's id array.
ID_BYTES = 4


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
                help="threads used for this model (one engine)",
                search="stage",
                grid=tuple(2**e for e in range(12) if 2**e <= d["cores"]),
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
                "gemm_tile_rows",
                "int",
                d.get("gemm_tile_rows", 6),
                1,
                64,
                help="output rows of a GEMM kernel's register tile (6x16 AVX2 kernels: 6)",
            ),
            Knob(
                "gemm_tile_vectors",
                "int",
                d.get("gemm_tile_vectors", 2),
                1,
                16,
                help="SIMD vectors of output columns in the register tile",
            ),
            Knob(
                "fma_latency_cycles",
                "int",
                d.get("fma_latency_cycles", 4),
                1,
                16,
                unit="cycles",
                help="FMA latency: independent accumulators per pipe needed to keep it busy",
            ),
            Knob(
                "l1_bytes",
                "int",
                d.get("l1_bytes", 0),
                0,
                2**24,
                unit="B",
                help="private L1 data cache a re-read stream (GEMM weights) can hit; 0 leaves "
                "the level out (presets: their L2 figures cover it; cpu/host: read from the OS)",
            ),
            Knob(
                "l1_bytes_per_cycle",
                "float",
                d.get("l1_bytes_per_cycle", 64.0),
                1.0,
                512.0,
                unit="B/cycle",
                help="sustained L1-to-core load bandwidth per core",
            ),
            Knob(
                "l2_bytes",
                "int",
                d.get("l2_bytes", 2**20),
                0,
                2**30,
                unit="B",
                help="private (per-core) L2 cache",
            ),
            Knob(
                "l2_bytes_per_cycle",
                "float",
                d.get("l2_bytes_per_cycle", 32.0),
                1.0,
                256.0,
                unit="B/cycle",
                help="sustained L2-to-core bandwidth per core",
            ),
            Knob(
                "llc_bytes_per_cycle",
                "float",
                d.get("llc_bytes_per_cycle", 16.0),
                0.5,
                256.0,
                unit="B/cycle",
                help="sustained LLC-to-core bandwidth per core",
            ),
            Knob(
                "tlb_entries",
                "int",
                d.get("tlb_entries", 2048),
                16,
                2**20,
                help="second-level data TLB entries (4 KiB pages)",
            ),
            Knob(
                "page_walk_s",
                "float",
                d.get("page_walk_s", 20e-9),
                0.0,
                1e-6,
                unit="s",
                help="cost of a TLB miss (page walk hitting the caches)",
            ),
            Knob(
                "topk_scan_cycles",
                "float",
                d.get("topk_scan_cycles", 1.0),
                0.01,
                100.0,
                unit="cycles",
                help="cycles per candidate of top-k's scan (build the candidate's pair, compare "
                "it with the heap's root), at compute_efficiency",
            ),
            Knob(
                "sort_compare_s",
                "float",
                d.get("sort_compare_s", 4e-9),
                0.0,
                1e-6,
                unit="s",
                help="one data-dependent comparison of a heap or sort (a compare and, about "
                "half the time, a mispredicted branch: ~20 cycles / 2)",
            ),
            Knob(
                "extern_call_s",
                "float",
                d.get("extern_call_s", 1e-6),
                0.0,
                1e-3,
                unit="s",
                help="fixed cost of an op run as a call into a runtime library rather than "
                "generated code (top-k: packed-call argument unpacking, heap-buffer allocation)",
            ),
            Knob("min_macs_per_thread", "int", d.get("min_macs_per_thread", 200_000), 1, 10**9),
            Knob("op_overhead_s", "float", d.get("op_overhead_s", 2e-6), 0.0, 1e-2, unit="s"),
            Knob(
                "parallel_launch_s",
                "float",
                d.get("parallel_launch_s", 0.0),
                0.0,
                1e-3,
                unit="s",
                help="cost of starting one parallel loop on the thread pool (fitted by "
                "calibration; 0 in presets, whose op_overhead_s covers it)",
            ),
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

    # one socket, shared by the engines placed on it: each takes ``cores`` of its cores

    vectorized_hooks = True  # the hooks below work on numpy arrays of points too

    def resources(self, point: Mapping[str, Any]) -> dict[str, Any]:
        return {"cores": point["cores"] * 1.0}

    def capacity(self, chip: Mapping[str, Any]) -> dict[str, Any]:
        return {"cores": chip["cores"] * 1.0}

    def chip_cost(
        self, stages: Sequence[tuple[Mapping[str, Any], Any]], chip: Mapping[str, Any]
    ) -> HardwareCost:
        """The socket's TDP in proportion to the cores its engines use (provisioned power)."""
        used = sum(p["cores"] * engines for p, engines in stages)
        return HardwareCost(area_mm2=None, power_w=chip["tdp_w"] * 1.0 * used / chip["cores"])

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
        compute_s = stream_s = serial_s = 0.0
        threads_used = 1
        gemms = workload.gemms(op)
        weight_bytes_each = op.work.weight_bytes / max(1, sum(g.weights for g in gemms))
        for g in gemms:
            macs = _computed_macs(op, g, point["simd_lanes_fp32"])
            threads = max(1, min(point["cores"], math.ceil(macs / point["min_macs_per_thread"])))
            threads_used = max(threads_used, threads)
            eff = point["compute_efficiency"] * gemm_efficiency(g, point)
            compute_s += 2 * macs / (self.peak_flops(point, threads) * eff)
            if g.weights:
                passes = math.ceil(g.m / point["gemm_tile_rows"]) * g.repeat
                stream, pack = _weight_stream_s(g, weight_bytes_each, point, threads)
                stream_s += passes * stream
                serial_s += (pack + _epilogue_s(g, point, threads)) * g.repeat
        acts = workload.vector_bytes(op)
        dram = acts if acts > point["llc_bytes"] / 2 else 0.0
        memory_s = stream_s + dram / (
            point["dram_bandwidth_bytes_per_s"] * point["memory_efficiency"]
        )
        if op.op == "interaction" and not dram:
            # the fused kernel copies its parts (transposed, element by element) into a scratch
            # and gathers the kept pairs into its output before and after the Gram tiles: not
            # overlapped with them, at cache speed
            serial_s += acts / (
                point["dram_bandwidth_bytes_per_s"]
                * point["memory_efficiency"]
                * CACHE_BANDWIDTH_RATIO
            )
        if op.work.weight_bytes > point["llc_bytes"]:
            dram += op.work.weight_bytes
        serial_s += parallel_launches(op, point) * point["parallel_launch_s"]
        return _estimate(op, point, compute_s, memory_s, dram, threads_used, serial_s)

    def _gather(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        tables = workload.gathers(op)
        traffic = sum(t.lookups * t.row_bytes for t in tables) or 1.0
        threads = max(1, min(point["cores"], op.batch))
        freq = point["frequency_hz"] * threads
        l1_bw = point["l1_bytes_per_cycle"] * freq
        l2_bw = point["l2_bytes_per_cycle"] * freq
        llc_bw = point["llc_bytes_per_cycle"] * freq
        dram_bw = point["dram_bandwidth_bytes_per_s"] * point["memory_efficiency"]
        alpha = point["zipf_alpha"]
        l1_cap = point["l1_bytes"]
        misses = walks = hits_bytes = dram_bytes = near_bytes = l1_bytes = 0.0
        vector_bytes = 4 * point["simd_lanes_fp32"]
        vector_ops = 0.0
        for t in tables:
            line_bytes = math.ceil(t.row_bytes / CACHE_LINE_BYTES) * CACHE_LINE_BYTES
            # per lookup one load-add per SIMD vector of the row (the stores are output bytes)
            vector_ops += t.lookups * math.ceil(t.row_bytes / vector_bytes)
            distinct = expected_distinct(t.rows, t.lookups, alpha)
            # a repeat hits the L1 in the share of the batch's touched rows it holds
            touched = distinct * line_bytes
            repeat_l1 = min(1.0, l1_cap / touched) if touched else 0.0
            repeats = (t.lookups - distinct) * t.row_bytes
            l1_bytes += repeats * repeat_l1
            near_bytes += repeats * (1.0 - repeat_l1)
            # the LLC is shared in proportion to gathered bytes across the whole graph
            share = op.embedding_share * t.lookups * t.row_bytes / traffic
            llc_rows = min(t.rows, int(point["llc_bytes"] * share // line_bytes))
            l2_rows = min(llc_rows, int(point["l2_bytes"] // line_bytes))
            hit_llc = _lru_hit_rate(t.rows, llc_rows, alpha) if llc_rows else 0.0
            hit_l2 = _lru_hit_rate(t.rows, l2_rows, alpha) if l2_rows else 0.0
            l1_rows = min(l2_rows, int(l1_cap // line_bytes))
            hit_l1 = _lru_hit_rate(t.rows, l1_rows, alpha) if l1_rows else 0.0
            l1_bytes += distinct * hit_l1 * line_bytes
            near_bytes += distinct * (hit_l2 - hit_l1) * line_bytes
            hits_bytes += distinct * (hit_llc - hit_l2) * line_bytes
            misses += distinct * (1.0 - hit_llc)
            dram_bytes += distinct * (1.0 - hit_llc) * line_bytes
            pages = math.ceil(t.table_bytes / PAGE_BYTES)
            if pages > point["tlb_entries"]:
                # a batch's distinct rows sit on distinct pages; the TLB keeps tlb_entries
                walks += max(0.0, distinct - point["tlb_entries"])
        # the bags written and the id array read (one int32 per lookup), at near-cache speed
        near_bytes += op.output_bytes_per_item * op.batch + ID_BYTES * sum(
            t.lookups for t in tables
        )
        bandwidth_s = (
            l1_bytes / l1_bw + near_bytes / l2_bw + hits_bytes / llc_bw + dram_bytes / dram_bw
        )
        latency_s = misses * point["dram_latency_s"] / (threads * MISSES_IN_FLIGHT_PER_CORE)
        walk_s = walks * point["page_walk_s"] / threads
        compute_s = vector_ops / (freq * point["fma_units"] * point["compute_efficiency"])
        memory_s = max(bandwidth_s, latency_s) + walk_s
        launch_s = parallel_launches(op, point) * point["parallel_launch_s"]
        est = _estimate(op, point, compute_s, memory_s, dram_bytes, threads, launch_s)
        est.detail.update(
            miss_rows=misses,
            cache_hit_bytes=hits_bytes,
            page_walks=walks,
            latency_bound=latency_s > bandwidth_s,
        )
        return est

    def _vector(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        nbytes = workload.vector_bytes(op)
        threads = max(1, min(point["cores"], op.batch // 64 or 1))
        bw = point["dram_bandwidth_bytes_per_s"] * point["memory_efficiency"]
        ratio = 1.0 if nbytes > point["llc_bytes"] / 2 else CACHE_BANDWIDTH_RATIO
        memory_s = nbytes / (bw * ratio)
        dram = nbytes if ratio == 1.0 else 0.0
        if op.op == "top_k":
            # one scalar heap selection over the batch's candidates (not split across threads)
            scan, heap = topk_compares(op.batch, op.attrs["k"])
            compute_s = (
                scan
                * point["topk_scan_cycles"]
                / (point["frequency_hz"] * point["compute_efficiency"])
                + heap * point["sort_compare_s"]
                + point["extern_call_s"]
            )
            return _estimate(op, point, compute_s, memory_s, dram, 1)
        compute_s = (
            op.work.flops_per_item
            * op.batch
            / (self.peak_flops(point, threads) * point["compute_efficiency"])
        )
        if _is_concat(op):
            # per output element a copy and its chain of selects, vectorized over the elements
            # (cache-resident copies go at that speed, not the caches')
            memory_s = memory_s if dram else 0.0
            compute_s += (
                op.batch
                * concat_selects([math.prod(s) for s in op.input_shapes])
                / (
                    point["frequency_hz"]
                    * threads
                    * point["simd_lanes_fp32"]
                    * point["compute_efficiency"]
                )
            )
        launch_s = parallel_launches(op, point) * point["parallel_launch_s"]
        return _estimate(op, point, compute_s, memory_s, dram, threads, launch_s)


def _estimate(
    op: OpView,
    point: Mapping[str, Any],
    compute_s: float,
    memory_s: float,
    dram_bytes: float,
    threads: int,
    serial_s: float = 0.0,
) -> OpEstimate:
    """``compute_s`` and ``memory_s`` overlap (the larger counts); ``serial_s`` (a phase that
    runs before or after the main loop, such as the GEMM's weight packing) and the fixed
    ``op_overhead_s`` add to it."""
    overhead = point["op_overhead_s"]
    latency = max(compute_s, memory_s) + serial_s + overhead
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


def parallel_launches(op: OpView, point: Mapping[str, Any]) -> int:
    """Parallel loops of more than one iteration that ``op``'s measured kernels start
    (``tvm_measured`` schedules): a dense layer's fused tile loop, plus the packing loop where
    it packs W into more than one panel; the dot interaction's, a gather's (per table) and a
    concat's loop over the batch. Top-k runs in the runtime library (no pool)."""
    if op.op in workload.GATHER_OPS:
        return len(workload.gathers(op)) if op.batch > 1 else 0
    if op.op in workload.GEMM_OPS and workload.gemms(op):
        if op.op == "interaction":
            return 1 if op.batch > 1 else 0
        from codesign.cost_models.tvm_measured import gemm_packs

        lanes = point["simd_lanes_fp32"]
        count = 0
        for g in workload.gemms(op):
            if not g.weights:
                count += g.repeat if g.m > 1 else 0
                continue
            count += g.repeat * gemm_launches(
                g.m, g.n, point["gemm_tile_rows"], point["gemm_tile_vectors"] * lanes, gemm_packs
            )
        return count
    return 1 if _is_concat(op) and op.batch > 1 else 0


def gemm_launches(m: Any, n: Any, tile_rows: Any, tile_cols: Any, packs: Any) -> Any:
    """Parallel loops the dense kernel starts for an m x n output (numpy-friendly): the fused
    loop over row x column tiles when it has more than one tile, the packing loop over panels
    when W is packed into more than one."""
    cols = np.minimum(tile_cols, n)
    rows = np.minimum(tile_rows, m)
    panels = -(-n // cols)
    tiles = -(-m // rows) * panels
    return (tiles > 1).astype(int) + (packs(m, n, tile_rows, tile_cols) & (panels > 1))


def _computed_macs(op: OpView, g: workload.Gemm, lanes: int) -> float:
    """MACs the CPU kernel performs for ``g``: a dot interaction's fused kernel computes the
    Gram matrix in padded register tiles, skipping the tiles right of the kept triangle
    (:func:`tvm_measured.interaction_macs`; ``g`` is one item's n x d x n product)."""
    if op.op == "interaction" and not g.weights:
        from codesign.cost_models.tvm_measured import interaction_macs

        self_interaction = bool(op.attrs.get("self_interaction", False))
        return float(interaction_macs(g.n, g.k, self_interaction, lanes)) * op.batch
    return g.macs


def _is_concat(op: OpView) -> bool:
    return op.op == "concat" or (op.op == "interaction" and op.attrs.get("mode") == "cat")


def concat_selects(widths: Sequence[int]) -> float:
    """Scalar operations per item of TVM's concatenate (``topi.concatenate``): each output
    element is a nested ``if_then_else`` over the inputs, tested from the last input back, so
    an element of input ``i`` of ``N`` costs ``min(N - i, N - 1)`` compares, plus its copy."""
    count = len(widths)
    return float(sum(w * (1 + min(count - i, count - 1)) for i, w in enumerate(widths)))


def topk_compares(n: int, k: int) -> tuple[float, float]:
    """(scan, heap) comparisons of selecting the top ``k`` of ``n`` candidates with a running
    k-heap, as TVM's runtime ``topk`` does (``src/runtime/contrib/sort/sort.cc``): every
    candidate is compared once with the heap's root (a predictable branch); in random order
    candidate ``i > k`` enters the heap with probability ``k / i``, so ``k ln(n / k)`` enter,
    each with a push and a pop (``2 log2 k`` compares); the kept ``k`` are sorted at the end
    (``k log2 k``). Heap compares are data-dependent branches, charged at ``sort_compare_s``."""
    k = max(1, min(k, n))
    depth = math.log2(max(k, 2))
    entered = k * math.log(n / k) if n > k else 0.0
    return float(n), 2.0 * depth * entered + k * depth


def gemm_efficiency(g: workload.Gemm, point: Mapping[str, Any]) -> float:
    """Register-tile occupancy x SIMD lane use of one GEMM (see the module docstring)."""
    if not g.weights:
        return 1.0  # per-item pairwise dots: no tile across items; compute_efficiency says all
    lanes = point["simd_lanes_fp32"]
    cols = min(g.n, point["gemm_tile_vectors"] * lanes)  # the tile's columns, clipped to n
    vectors = math.ceil(cols / lanes)
    in_flight = min(g.m, point["gemm_tile_rows"]) * vectors
    occupancy = min(1.0, in_flight / (point["fma_latency_cycles"] * point["fma_units"]))
    # n is padded to whole tiles, each tile to whole vectors
    return occupancy * g.n / (math.ceil(g.n / cols) * vectors * lanes)


def _weight_stream_s(
    g: workload.Gemm, weight_bytes: float, point: Mapping[str, Any], threads: int
) -> tuple[float, float]:
    """(one pass over the weights, packing them) of a GEMM kernel in register tiles of
    ``gemm_tile_rows`` x ``gemm_tile_vectors`` SIMD vectors. Where the kernel packs W into
    tile-wide panels (:func:`tvm_measured.gemm_packs`, the same condition), each call first
    copies W (read from the level that holds it; the panels' lines are read for ownership,
    then written: three times W's bytes at that level's speed), then each
    pass reads one panel at a time, from the level that holds a panel; otherwise each pass
    re-reads all of W."""
    from codesign.cost_models.tvm_measured import gemm_packs

    cols = point["gemm_tile_vectors"] * point["simd_lanes_fp32"]
    if not gemm_packs(g.m, g.n, point["gemm_tile_rows"], cols):
        return weight_bytes * _seconds_per_byte(weight_bytes, point, threads), 0.0
    panel = weight_bytes * min(1.0, cols / g.n)
    # the copy's footprint is W and its packed copy
    pack_s = 3.0 * weight_bytes * _seconds_per_byte(2.0 * weight_bytes, point, threads)
    return weight_bytes * _seconds_per_byte(panel, point, threads), pack_s


def _epilogue_s(g: workload.Gemm, point: Mapping[str, Any], threads: int) -> float:
    """The dense kernel's epilogue, after each register tile's reduction: the tile (still in
    L1) gets the bias and the activation and is stored to the output, whose lines are read for
    ownership and then written (twice the output's bytes, n padded to whole tiles, at the
    speed of the level that holds the output)."""
    cols = min(g.n, point["gemm_tile_vectors"] * point["simd_lanes_fp32"])
    out_bytes = 4.0 * g.m * math.ceil(g.n / cols) * cols
    return 2.0 * out_bytes * _seconds_per_byte(out_bytes, point, threads)


def _seconds_per_byte(footprint_bytes: float, point: Mapping[str, Any], threads: int) -> float:
    """Time per byte of a stream re-read over a ``footprint_bytes`` working set: the fraction
    ``capacity / footprint`` of it that a cache holds hits there (L2, then LLC), the rest
    comes from DRAM. With ``l1_bytes`` set, the L1 comes first the same way."""
    freq = point["frequency_hz"] * threads
    in_l1 = min(1.0, point["l1_bytes"] / footprint_bytes) if footprint_bytes else 1.0
    in_l2 = min(1.0, point["l2_bytes"] / footprint_bytes) if footprint_bytes else 1.0
    in_llc = min(1.0, point["llc_bytes"] / footprint_bytes) if footprint_bytes else 1.0
    in_l2 = max(in_l2, in_l1)
    in_llc = max(in_llc, in_l2)
    return (
        in_l1 / (point["l1_bytes_per_cycle"] * freq)
        + (in_l2 - in_l1) / (point["l2_bytes_per_cycle"] * freq)
        + (in_llc - in_l2) / (point["llc_bytes_per_cycle"] * freq)
        + (1.0 - in_llc) / (point["dram_bandwidth_bytes_per_s"] * point["memory_efficiency"])
    )


@cache
def _lru_hit_rate(rows: int, capacity_rows: int, alpha: float) -> float:
    """``embedding_cache.lru_hit_rate``, memoized: a fit evaluates the same tables many times."""
    from codesign.cost_models.embedding_cache import lru_hit_rate

    return float(lru_hit_rate(rows, capacity_rows, alpha))


@cache
def expected_distinct(rows: int, lookups: int, alpha: float) -> float:
    """Expected distinct rows among ``lookups`` independent Zipf(``alpha``) draws over ``rows``
    rows: ``sum_i 1 - (1 - p_i)^lookups``, summed exactly over the first 1024 ranks and over
    log-spaced rank buckets (popularity at the bucket's geometric middle) beyond."""
    if rows <= 0 or lookups <= 0:
        return 0.0
    head = min(rows, 1024)
    ranks = [float(r) for r in range(1, head + 1)]
    counts = [1.0] * head
    if rows > head:
        edges = _log_edges(head, rows, 256)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            counts.append(float(hi - lo))
            ranks.append(math.sqrt((lo + 1) * hi))
    weights = [c * r**-alpha for c, r in zip(counts, ranks, strict=True)]
    total = sum(weights)
    out = 0.0
    for c, r in zip(counts, ranks, strict=True):
        p = r**-alpha / total
        out += c * -math.expm1(lookups * math.log1p(-min(p, 1.0 - 1e-12)))
    return min(out, float(lookups), float(rows))


def _log_edges(lo: int, hi: int, n: int) -> list[int]:
    step = (hi / lo) ** (1.0 / n)
    edges = sorted({lo, hi, *(int(round(lo * step**i)) for i in range(1, n))})
    return [e for e in edges if lo <= e <= hi]


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
    from codesign.cost_models.tvm_measured import gemm_tile

    tile_rows, tile_cols = gemm_tile(lanes)
    return {
        "cores": cores,
        "frequency_hz": freq,
        "simd_lanes_fp32": lanes,
        "fma_units": 2 if lanes >= 8 else 1,
        # the register tile of the measured dense kernel (tvm_measured.gemm_tile)
        "gemm_tile_rows": tile_rows,
        "gemm_tile_vectors": max(1, tile_cols // lanes),
        "llc_bytes": _llc_bytes() or 8 * 2**20,
        "dram_bandwidth_bytes_per_s": measure_copy_bandwidth(),
        "dram_latency_s": 90e-9,  # typical loaded DRAM latency of server parts; not measured
        "l1_bytes": _cache_bytes(1) or 0,
        "l2_bytes": _cache_bytes(2) or 2**20,
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
    return _cache_bytes(None)


def _cache_bytes(level_wanted: int | None) -> int | None:
    """Size of cpu0's cache at ``level_wanted`` (data or unified), or of its last level."""
    best = None
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
            kind = (index / "type").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        value = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        if level_wanted is not None:
            if level == level_wanted:
                return value
            continue
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
