"""RecNMP-style near-memory embedding engine as a codesign target.

RecNMP (Ke et al., ISCA 2020) puts a small processing unit in the buffer chip of each DDR4 DIMM
rank. The host sends each SparseLengthsSum (an embedding bag: gather rows, sum them) as NMP
instructions; every rank gathers and sums the rows it holds, a small RankCache keeps hot rows,
and only partial sums come back over the memory channel. All ranks work at once, so the
internal bandwidth grows with the ranks while the channel carries far fewer bytes.

Our model, per op:

- **Embedding bags** (``embedding_bag``, ``embedding_bag_group``) run near memory. Rows are
  interleaved over all ``channels x dimms_per_channel x ranks_per_dimm`` ranks. Each table gets
  a share of the total RankCache in proportion to its traffic. With ``hot_entry_profiling`` the
  cache pins the hottest rows (static hit rate under Zipf(``zipf_alpha``)); without it, it is an
  LRU (Che's approximation). Misses read whole 64-byte bursts. The NMP time is the largest of:
  DRAM bandwidth time (all ranks in parallel), DRAM latency time (16 banks per rank in flight),
  RankCache time, and pooling FLOPs on the rank units. Then the channel carries the lookup
  indices down and the partial sums up (one per DIMM and bag: the DIMM-NMP adds its ranks'
  sums). Each op pays ``nmp_launch_s`` to build and issue its instruction packets.
- **Everything else** (MLPs, interaction, concat, top-k) runs on the host CPU as a roofline:
  FLOPs at ``host_gemm_flops_per_s``, bytes at the channels' bandwidth, plus
  ``host_op_overhead_s``.
- **Schedule**: the host and the NMP ranks are two resources. Ops start when their inputs are
  done and their resource is free (list scheduling in topological order), so the embedding
  bags overlap the bottom MLP as they do in RecNMP's co-located runs.
- **Silicon**: ``area_mm2`` counts only what NMP adds (rank units and RankCache);
  ``power_w`` adds the host's ``host_power_w``.
- **Energy**: host ops cost ``host_power_w`` x latency (an upper bound, as codesign's CPU
  target). NMP ops cost rank power x busy time, plus DRAM and channel bytes times per-byte
  energies.

Constants marked *assumption* are not taken from the paper. See the README.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from codesign.cost_models import workload
from codesign.cost_models.embedding_cache import lru_hit_rate, static_hit_rate
from codesign.ir.graph import Graph
from codesign.targets.base import (
    BaseTarget,
    DesignSpace,
    HardwareCost,
    Knob,
    OpEstimate,
    OpView,
    Schedule,
)

NAME = "nmp/recnmp"
SOURCE = (
    "Ke et al., RecNMP: Accelerating Personalized Recommendation with Near-Memory Processing, "
    "ISCA 2020 (arXiv:1912.12953); DDR4 from JEDEC JESD79-4; Cascade Lake 8280 host (Intel ARK)"
)

# --- DDR4 facts -------------------------------------------------------------------------------
#: One BL8 burst on a 64-bit rank: the smallest DRAM read.
BURST_BYTES = 64
#: DDR4 x4/x8 devices: 4 bank groups x 4 banks (JESD79-4); misses to different banks overlap.
BANKS_PER_RANK = 16
#: Bytes per lookup index sent to the DIMMs (int64 ids, as codesign's IR carries them).
INDEX_BYTES = 8

# --- assumptions (see README) -----------------------------------------------------------------
#: Assumption: area of one rank's NMP logic (FP32 adders and multipliers, instruction decoder,
#: partial-sum buffers) added to the DIMM buffer chip.
NMP_LOGIC_AREA_MM2 = 0.25
#: Assumption: power of one rank's NMP logic while busy.
NMP_LOGIC_POWER_W = 0.1
#: RankCache SRAM density and power, from the GF 12LP 256 KB macro RecPipe synthesised
#: (183,290 um^2, 8.4 mW): codesign's BACKGROUND §1.8. DIMM buffers use older nodes, so this
#: understates the area.
SRAM_UM2_PER_BYTE = 183_290.0 / (256 * 1024)
SRAM_W_PER_BYTE = 8.4e-3 / (256 * 1024)
#: Assumption: RankCache reads 64 bytes per 1.2 GHz buffer clock (DDR4-2400's I/O clock).
RANKCACHE_BYTES_PER_S = 64 * 1.2e9
#: DRAM access energy, about 20 pJ/bit (Horowitz, ISSCC 2014), as codesign's accelerator target.
DRAM_J_PER_BYTE = 160e-12
#: Assumption: off-DIMM channel I/O, about 5 pJ/bit.
CHANNEL_J_PER_BYTE = 40e-12


def recnmp_knobs() -> DesignSpace:
    return DesignSpace(
        (
            Knob(
                "channels",
                "int",
                6,
                1,
                16,
                help="host memory channels with NMP DIMMs (Cascade Lake: 6 per socket)",
            ),
            Knob(
                "dimms_per_channel",
                "int",
                2,
                1,
                4,
                help="NMP DIMMs per channel; each returns one partial sum per bag",
            ),
            Knob(
                "ranks_per_dimm",
                "int",
                2,
                1,
                8,
                help="ranks per DIMM, each with an NMP unit (dual-rank RDIMM: 2)",
            ),
            Knob(
                "rank_bandwidth_bytes_per_s",
                "float",
                19.2e9,
                1e9,
                1e11,
                log=True,
                unit="B/s",
                help="peak bandwidth of one rank, also one channel's (DDR4-2400: 19.2 GB/s)",
            ),
            Knob(
                "memory_efficiency",
                "float",
                0.7,
                0.05,
                1.0,
                help="fraction of peak bandwidth reached by random 64-byte reads",
            ),
            Knob(
                "dram_latency_s",
                "float",
                45e-9,
                1e-9,
                1e-6,
                log=True,
                unit="s",
                help="one random read at the DIMM buffer (activate + read + precharge)",
            ),
            Knob(
                "rankcache_bytes",
                "int",
                128 * 1024,
                0,
                2**26,
                unit="B",
                help="RankCache SRAM per rank",
            ),
            Knob(
                "hot_entry_profiling",
                "bool",
                True,
                help="cache only profiled hot rows (pinned) instead of an LRU",
            ),
            Knob(
                "nmp_flops_per_s",
                "float",
                9.6e9,
                1e8,
                1e12,
                log=True,
                unit="FLOP/s",
                help="pooling throughput of one rank's NMP unit (8 fp32 FMA lanes at 600 MHz)",
            ),
            Knob(
                "nmp_launch_s",
                "float",
                1e-6,
                0.0,
                1e-3,
                unit="s",
                help="host time to build and issue one op's NMP instruction packets",
            ),
            Knob(
                "host_gemm_flops_per_s",
                "float",
                2.9e12,
                1e9,
                1e15,
                log=True,
                unit="FLOP/s",
                help="host GEMM throughput (60% of a Xeon 8280's AVX-512 peak)",
            ),
            Knob(
                "host_op_overhead_s",
                "float",
                2e-6,
                0.0,
                1e-2,
                unit="s",
                help="framework dispatch per host op",
            ),
            Knob("host_power_w", "float", 205.0, 1.0, 2000.0, unit="W", help="host CPU TDP"),
            Knob(
                "zipf_alpha",
                "float",
                1.09,
                0.01,
                3.0,
                help="skew of embedding-row popularity (FBGEMM's inference default 1.09)",
            ),
        ),
        target=NAME,
    )


class RecNMPTarget(BaseTarget):
    """DDR4 DIMMs with a RecNMP unit per rank; dense ops on the host CPU."""

    name = NAME
    description = (
        "RecNMP-style near-memory embedding engine: SparseLengthsSum pooled in DIMM buffers "
        "(rank-level parallelism, RankCache), dense ops on the host CPU"
    )
    kind = "nmp"
    source = SOURCE
    supported_ops = frozenset(workload.GEMM_OPS | workload.GATHER_OPS | workload.VECTOR_OPS)

    def __init__(self) -> None:
        self._space = recnmp_knobs()

    def design_space(self) -> DesignSpace:
        return self._space

    def describe(self) -> dict[str, Any]:
        p = self._space.defaults()
        return {
            "source": self.source,
            "ranks": self.ranks(p),
            "internal_bandwidth_bytes_per_s": self.ranks(p) * p["rank_bandwidth_bytes_per_s"],
            "channel_bandwidth_bytes_per_s": p["channels"] * p["rank_bandwidth_bytes_per_s"],
        }

    @staticmethod
    def ranks(point: Mapping[str, Any]) -> int:
        return point["channels"] * point["dimms_per_channel"] * point["ranks_per_dimm"]

    # --- silicon -----------------------------------------------------------------------------

    def hw_cost(self, point: Mapping[str, Any]) -> HardwareCost:
        ranks = self.ranks(point)
        cache = point["rankcache_bytes"]
        breakdown = {
            "rank_nmp": {
                "count": ranks,
                "area_mm2": ranks * NMP_LOGIC_AREA_MM2,
                "power_w": ranks * NMP_LOGIC_POWER_W,
            },
            "rankcache": {
                "count": ranks if cache else 0,
                "area_mm2": ranks * cache * SRAM_UM2_PER_BYTE / 1e6,
                "power_w": ranks * cache * SRAM_W_PER_BYTE,
            },
        }
        area = sum(b["area_mm2"] for b in breakdown.values())
        nmp_power = sum(b["power_w"] for b in breakdown.values())
        return HardwareCost(
            area_mm2=area, power_w=nmp_power + point["host_power_w"], breakdown=breakdown
        )

    def _nmp_power_w(self, point: Mapping[str, Any]) -> float:
        ranks = self.ranks(point)
        return ranks * (NMP_LOGIC_POWER_W + point["rankcache_bytes"] * SRAM_W_PER_BYTE)

    @staticmethod
    def _channel_bytes_per_s(point: Mapping[str, Any]) -> float:
        return point["channels"] * point["rank_bandwidth_bytes_per_s"] * point["memory_efficiency"]

    # --- ops ---------------------------------------------------------------------------------

    def op_cost(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        if op.op in self.free_ops:
            return OpEstimate(op.node.name, op.op, 0.0, bound="overhead")
        if op.op in workload.GATHER_OPS:
            return self._near_memory_bag(op, point)
        return self._host(op, point)

    def _near_memory_bag(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        ranks = self.ranks(point)
        dimms = point["channels"] * point["dimms_per_channel"]
        hit_rate = static_hit_rate if point["hot_entry_profiling"] else lru_hit_rate
        tables = workload.gathers(op)
        traffic = sum(t.lookups * t.row_bytes for t in tables) or 1.0
        cache_bytes = ranks * point["rankcache_bytes"]
        out_bytes_per_bag = op.output_bytes_per_item / max(1, len(tables))
        lookups = misses = hit_bytes = dram_bytes = psum_bytes = 0.0
        for t in tables:
            share = op.embedding_share * t.lookups * t.row_bytes / traffic
            capacity = min(t.rows, int(cache_bytes * share // t.row_bytes))
            hit = float(hit_rate(t.rows, capacity, point["zipf_alpha"])) if capacity else 0.0
            lookups += t.lookups
            misses += t.lookups * (1.0 - hit)
            hit_bytes += t.lookups * hit * t.row_bytes
            dram_bytes += (
                t.lookups * (1.0 - hit) * math.ceil(t.row_bytes / BURST_BYTES) * BURST_BYTES
            )
            pooling = t.lookups / op.batch
            psum_bytes += min(pooling, dimms) * op.batch * out_bytes_per_bag
        internal = ranks * point["rank_bandwidth_bytes_per_s"] * point["memory_efficiency"]
        phases = {
            "dram_bandwidth": dram_bytes / internal,
            "dram_latency": misses * point["dram_latency_s"] / (ranks * BANKS_PER_RANK),
            "rankcache": hit_bytes / (ranks * RANKCACHE_BYTES_PER_S),
            "pooling": op.work.flops_per_item * op.batch / (ranks * point["nmp_flops_per_s"]),
        }
        nmp_s = max(phases.values())
        channel_bytes = lookups * INDEX_BYTES + psum_bytes
        channel_s = channel_bytes / self._channel_bytes_per_s(point)
        launch_s = point["nmp_launch_s"]
        energy = (
            nmp_s * self._nmp_power_w(point)
            + dram_bytes * DRAM_J_PER_BYTE
            + channel_bytes * CHANNEL_J_PER_BYTE
        )
        return OpEstimate(
            op.node.name,
            op.op,
            launch_s + nmp_s + channel_s,
            energy_j=energy,
            compute_s=phases["pooling"],
            memory_s=nmp_s + channel_s,
            overhead_s=launch_s,
            bound="compute" if nmp_s == phases["pooling"] else "memory",
            dram_bytes=dram_bytes,
            sram_bytes=hit_bytes,
            detail={
                "where": "nmp",
                "ranks": ranks,
                "hit_rate": hit_bytes / traffic if tables else 0.0,
                "limit": max(phases, key=phases.__getitem__),
                "channel_bytes": channel_bytes,
                "channel_s": channel_s,
            },
        )

    def _host(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        flops = sum(2 * g.macs for g in workload.gemms(op)) or op.work.flops_per_item * op.batch
        compute_s = flops / point["host_gemm_flops_per_s"]
        nbytes = op.work.weight_bytes + workload.vector_bytes(op)
        memory_s = nbytes / self._channel_bytes_per_s(point)
        overhead = point["host_op_overhead_s"]
        latency = max(compute_s, memory_s) + overhead
        return OpEstimate(
            op.node.name,
            op.op,
            latency,
            energy_j=latency * point["host_power_w"],
            compute_s=compute_s,
            memory_s=memory_s,
            overhead_s=overhead,
            bound="compute" if compute_s >= memory_s else "memory",
            dram_bytes=nbytes,
            detail={"where": "host"},
        )

    # --- whole graph --------------------------------------------------------------------------

    def schedule(
        self, graph: Graph, estimates: Sequence[OpEstimate], point: Mapping[str, Any]
    ) -> Schedule:
        """List scheduling on two resources (host, NMP ranks) in topological order."""
        by_name = {e.name: e for e in estimates}
        finish: dict[str, float] = {}
        free = {"host": 0.0, "nmp": 0.0}
        busy = {"host": 0.0, "nmp": 0.0}
        for node in graph.nodes:
            ready = max((finish[i.name] for i in graph.inputs_of(node)), default=0.0)
            est = by_name.get(node.name)
            if est is None:  # graph inputs and the output marker
                finish[node.name] = ready
                continue
            unit = "nmp" if node.op in workload.GATHER_OPS else "host"
            start = max(ready, free[unit])
            finish[node.name] = free[unit] = start + est.latency_s
            busy[unit] += est.latency_s
        latency = max(finish.values(), default=0.0)
        return Schedule(
            latency_s=latency,
            detail={
                "nmp_busy_s": busy["nmp"],
                "host_busy_s": busy["host"],
                "overlap_s": max(0.0, busy["nmp"] + busy["host"] - latency),
            },
        )
