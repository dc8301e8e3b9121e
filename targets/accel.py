"""RPAccel-like accelerator: systolic sub-arrays, weight/activation SRAM, static + dynamic
embedding caches, top-k filter units, PCIe to the host, and sub-batch pipelining.

Our model (default):
- **GEMMs** (dense, dot interaction, attention, RNN steps) use SCALE-Sim 3.0.0's cycle and
  SRAM-access conventions (:mod:`codesign.cost_models.systolic`). The batch is split across
  ``arrays`` identical sub-arrays of ``rows`` x ``cols``.
- **Weights** stay in weight SRAM when the graph's dense weights fit. Otherwise every query
  reloads each layer: weight bytes / DRAM bandwidth + DRAM latency.
- **Activations** spill to DRAM when a layer's inputs and outputs exceed the activation SRAM.
- **Embedding rows** hit the static cache (hottest rows pinned) or the dynamic LRU cache. Hit
  rates are analytical under Zipf(``zipf_alpha``); capacity is split across tables by traffic.
  Hits stream from SRAM at ``sram_bytes_per_cycle``. Misses cost DRAM latency plus bytes /
  bandwidth. The two overlap.
- **Vector ops** run on the SIMD units.
- **top_k** runs on ``topk_units`` filter units (one score per unit per cycle), or on the host
  at RecPipe's measured sort times. Only the kept items cross PCIe back.
- **Sub-batching** (``sub_batch`` < batch): the embedding phase of sub-batch i+1 overlaps the
  array phase of sub-batch i. Latency = fill + (n - 1) x the slower phase.
- **Area and power** are component counts times the per-unit figures of the preset's technology
  table (:mod:`codesign.targets.technology`; by default ``tech/rpaccel-12nm.yaml``, RecPipe's
  GF 12LP synthesis figures, BACKGROUND §1.8). Energy = power x latency + DRAM bytes x the
  table's DRAM energy per byte.

``recpipe_compat=true`` reproduces the public ``RecPipeAccelModel.run_query`` instead:
- a fixed 0.5 L1 miss rate;
- fp32 weights loaded per layer in SRAM-sized slices;
- ``tiles * (min(out, S) + min(in, S) + items)`` cycles per layer;
- its PCIe terms, whose milliseconds it counts as cycles;
- its sort times, with the on-chip sort divided by the clock a second time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from codesign.cost_models import workload
from codesign.errors import CodesignError
from codesign.ir.graph import Graph
from codesign.ir.ops import DTYPE_BYTES
from codesign.targets.base import (
    DesignSpace,
    HardwareCost,
    Knob,
    OpEstimate,
    OpView,
    Schedule,
    op_views,
)
from codesign.targets.presets import Preset, PresetTarget
from codesign.targets.technology import DEFAULT_TECH, Component, TechTable, resolve_tech

#: The accel type's default clock: RecPipe simulates the chip at 8 ns per cycle
#: (configs/accel_configs/hardconf_*.json). Silicon figures live in technology tables.
DEFAULT_CLOCK_HZ = 125e6
#: RecPipe's measured host sort times (RecPipeAccelModel.SortingUnit), items -> seconds.
HOST_SORT_S = ((512, 0.03e-3), (1024, 0.07e-3), (4096, 0.35e-3))

PE_PER_SIMD_RECONFIG = 16  # 1024 SIMD units for 16 x 32x32 arrays (§1.8 composition)
PE_PER_CROSSBAR = 64  # 256 crossbars for 16 x 32x32 arrays


class InfeasibleDesign(CodesignError):
    """A configuration that cannot exist (e.g. above its area budget)."""


def accel_knobs(d: Mapping[str, Any], target: str) -> DesignSpace:
    """The accelerator's knobs, their defaults from ``d`` (a preset's values). A knob the
    preset leaves out takes the accel type's default: RPAccel's 128x128 array with 4 MiB of
    weight and 4 MiB of activation SRAM, RecPipe's hardconf_1 clock and DRAM (125 MHz,
    32 GiB/s, 100 cycles), and no embedding caches or top-k units."""
    return DesignSpace(
        (
            Knob(
                "rows",
                "int",
                d.get("rows", 128),
                1,
                1024,
                log=True,
                help="PE rows per sub-array",
                search="stage",
                grid=(8, 16, 32, 64, 128, 256),
            ),
            Knob(
                "cols",
                "int",
                d.get("cols", 128),
                1,
                1024,
                log=True,
                help="PE columns per sub-array",
                search="stage",
                grid=(8, 16, 32, 64, 128, 256),
            ),
            Knob(
                "arrays",
                "int",
                d.get("arrays", 1),
                1,
                256,
                help="identical sub-arrays the batch is split over",
            ),
            Knob("dataflow", "choice", d.get("dataflow", "ws"), choices=("os", "ws", "is")),
            Knob(
                "clock_hz",
                "float",
                d.get("clock_hz", DEFAULT_CLOCK_HZ),
                1e6,
                1e10,
                unit="Hz",
                help="array clock (dynamic power scales with it from the tech table's clock)",
                search="chip",
                grid=(125e6, 250e6, 500e6, 1e9),
            ),
            Knob(
                "precision_bytes",
                "choice",
                d.get("precision_bytes", 2),
                choices=(1, 2, 4),
                help="bytes per weight/activation on chip (the RTL is 16-bit)",
            ),
            Knob(
                "weight_sram_bytes",
                "int",
                d.get("weight_sram_bytes", 4 * 2**20),
                0,
                2**34,
                unit="B",
            ),
            Knob(
                "activation_sram_bytes",
                "int",
                d.get("activation_sram_bytes", 4 * 2**20),
                0,
                2**34,
                unit="B",
            ),
            Knob(
                "static_cache_bytes",
                "int",
                d.get("static_cache_bytes", 0),
                0,
                2**34,
                unit="B",
                help="embedding SRAM pinning the hottest rows (per engine)",
                search="stage",
                grid=(0, 2**18, 2**20, 2**22, 2**24),
            ),
            Knob(
                "dynamic_cache_bytes",
                "int",
                d.get("dynamic_cache_bytes", 0),
                0,
                2**34,
                unit="B",
                help="embedding SRAM managed as an LRU cache (per engine)",
                search="stage",
                grid=(0, 2**18, 2**20, 2**22, 2**24),
            ),
            Knob(
                "sram_bytes_per_cycle",
                "int",
                d.get("sram_bytes_per_cycle", 64),
                1,
                4096,
                unit="B/cycle",
            ),
            Knob(
                "dram_bandwidth_bytes_per_s",
                "float",
                d.get("dram_bandwidth_bytes_per_s", 32 * 2**30),
                1e6,
                1e13,
                unit="B/s",
            ),
            Knob("dram_latency_cycles", "int", d.get("dram_latency_cycles", 100), 0, 10**6),
            Knob(
                "topk_units",
                "int",
                d.get("topk_units", 0),
                0,
                65536,
                help="top-k filter units (one score each per cycle)",
                search="stage",
                grid=(0, 16, 64, 256, 1024),
            ),
            Knob(
                "topk_on_chip",
                "bool",
                d.get("topk_on_chip", True),
                help="filter on chip and return only the kept items",
            ),
            Knob(
                "sub_batch",
                "int",
                d.get("sub_batch", 0),
                0,
                2**20,
                help="items per sub-batch for pipelining (0: whole batch)",
                search="stage",
                grid=(0, 64, 256, 1024),
            ),
            Knob(
                "pcie_bandwidth_bytes_per_s",
                "float",
                d.get("pcie_bandwidth_bytes_per_s", 12e9),
                1e6,
                1e12,
                unit="B/s",
            ),
            Knob("pcie_latency_s", "float", d.get("pcie_latency_s", 5e-6), 0.0, 1e-2, unit="s"),
            Knob("zipf_alpha", "float", d.get("zipf_alpha", 1.09), 0.01, 3.0),
            Knob(
                "embedding_hit_rate",
                "float",
                d.get("embedding_hit_rate", -1.0),
                -1.0,
                1.0,
                help="measured cache hit rate (e.g. from --trace); -1: analytical Zipf model",
            ),
            Knob(
                "reconfigurable",
                "bool",
                d.get("reconfigurable", True),
                help="RPAccel arrays (crossbars, more SIMD) vs a baseline TPU-like array",
            ),
            Knob(
                "area_budget_mm2",
                "float",
                d.get("area_budget_mm2", 0.0),
                0.0,
                1e5,
                unit="mm2",
                help="0: no budget",
            ),
            Knob(
                "pe_budget",
                "int",
                d.get("pe_budget", 0),
                0,
                2**24,
                help="PEs one chip holds for its partitions (0: rows x cols x arrays)",
                search="chip",
                grid=(4096, 16384, 65536),
            ),
            Knob(
                "embedding_sram_budget_bytes",
                "int",
                d.get("embedding_sram_budget_bytes", 0),
                0,
                2**34,
                unit="B",
                help="embedding SRAM one chip holds for its partitions' caches "
                "(0: static_cache_bytes + dynamic_cache_bytes)",
                search="chip",
                grid=(2**22, 2**24, 2**26),
            ),
            Knob(
                "recpipe_compat",
                "bool",
                d.get("recpipe_compat", False),
                help="reproduce RecPipeAccelModel's conventions",
            ),
        ),
        target=target,
    )


class AccelTarget(PresetTarget):
    kind = "accel"
    knobs = staticmethod(accel_knobs)
    filters_on_device = True

    def __init__(self, preset: Preset) -> None:
        super().__init__(preset)
        #: The per-unit area, power and DRAM energy figures the silicon is priced with.
        self.tech: TechTable = resolve_tech(
            preset.tech or DEFAULT_TECH,
            preset_path=preset.path,
            source=preset.path or preset.name,
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tech": self.tech.name, "tech_path": self.tech.path}

    # --- resources: one chip, partitioned among the engines placed on it ---------------------
    # (numpy-friendly: the evaluator passes arrays of points; scalars stay Python numbers)

    vectorized_hooks = True

    @staticmethod
    def pes(point: Mapping[str, Any]) -> Any:
        return point["rows"] * point["cols"] * point["arrays"]

    def resources(self, point: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "pes": self.pes(point) * 1.0,
            "embedding_sram_bytes": (point["static_cache_bytes"] + point["dynamic_cache_bytes"])
            * 1.0,
            "topk_units": point["topk_units"] * 1.0,
            "logic_area_mm2": self._logic_area_mm2(point),
        }

    def capacity(self, chip: Mapping[str, Any]) -> dict[str, Any]:
        """The chip's PEs, embedding SRAM and top-k units, and, when it has an
        ``area_budget_mm2``, the area left for its partitions' logic (PEs, SIMD units,
        crossbars, top-k units) once the chip's own SRAM is placed: every design on the chip
        must fit it (:meth:`chip_cost` is that logic plus that SRAM)."""
        embedding = chip["static_cache_bytes"] + chip["dynamic_cache_bytes"]
        embedding_budget = _either(chip["embedding_sram_budget_bytes"], embedding)
        out = {
            "pes": _num(_either(chip["pe_budget"], self.pes(chip)) * 1.0),
            "embedding_sram_bytes": _num(embedding_budget * 1.0),
            "topk_units": chip["topk_units"] * 1.0,
        }
        budget = chip["area_budget_mm2"]
        if np.any(np.asarray(budget) > 0):
            left = np.maximum(0.0, budget - self._sram_area_mm2(chip, embedding_budget))
            out["logic_area_mm2"] = _num(np.where(np.asarray(budget) > 0, left, np.inf))
        return out

    def _logic_area_mm2(self, point: Mapping[str, Any]) -> Any:
        """Area of one engine's PEs, SIMD units, crossbars and top-k units (mm²)."""
        parts = self._parts(point)
        return _num(sum(parts[n][0] * parts[n][1] for n in LOGIC_PARTS if n in parts) / 1e6)

    def _sram_area_mm2(self, chip: Mapping[str, Any], embedding_bytes: Any) -> Any:
        """Area of a chip's activation and weight SRAM and ``embedding_bytes`` of embedding
        SRAM (mm², whole macros), as :meth:`chip_cost` places them."""
        parts = self._parts(chip)
        area = sum(parts[n][0] * parts[n][1] for n in ("activation_sram", "weight_sram"))
        macro = self.tech["embedding_sram"]
        return _num((area + _ceil(embedding_bytes / macro.macro_bytes) * macro.area_um2) / 1e6)

    def partition(self, chip: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
        """A partition holding ``share`` = its PEs / the chip's PEs gets that share of the
        chip's DRAM bandwidth, weight and activation SRAM, embedding caches and top-k units
        (RecPipe's hardconf_4, a quarter of the chip, has a quarter of its 32 GiB/s), and the
        chip's clock. A stage's own knobs override any of these (caches and top-k units then
        count against the chip's capacity)."""
        capacity = self.capacity(chip)
        share = _num(np.minimum(1.0, self.pes(point) / capacity["pes"]))
        embedding = chip["static_cache_bytes"] + chip["dynamic_cache_bytes"]
        scale = _num(
            np.where(
                np.asarray(embedding) > 0,
                capacity["embedding_sram_bytes"] / np.maximum(embedding, 1),
                0.0,
            )
        )
        return {
            "clock_hz": chip["clock_hz"],
            "dram_bandwidth_bytes_per_s": _num(
                np.maximum(1e6, chip["dram_bandwidth_bytes_per_s"] * share)
            ),
            "weight_sram_bytes": _floor(chip["weight_sram_bytes"] * share),
            "activation_sram_bytes": _floor(chip["activation_sram_bytes"] * share),
            "static_cache_bytes": _floor(chip["static_cache_bytes"] * scale * share),
            "dynamic_cache_bytes": _floor(chip["dynamic_cache_bytes"] * scale * share),
            "topk_units": _floor(chip["topk_units"] * share),
        }

    def chip_cost(
        self, stages: Sequence[tuple[Mapping[str, Any], Any]], chip: Mapping[str, Any]
    ) -> HardwareCost:
        """The PEs, SIMD units, crossbars and top-k units of every partition (``stages``:
        (engine point, engines) pairs), and the chip's own activation, weight and embedding
        SRAM (its budget). One partition configured as the whole chip costs exactly
        :meth:`hw_cost` of the chip."""
        parts = self._parts(chip)
        for name in ("pe", "simd", "crossbar", "topk"):
            if name in parts:
                count = sum(self._parts(p)[name][0] * engines for p, engines in stages)
                parts[name] = (count, *parts[name][1:])
        nbytes = self.capacity(chip)["embedding_sram_bytes"]
        parts["embedding_sram"] = _units(self.tech["embedding_sram"], nbytes)
        return _priced(parts, chip["clock_hz"], self.tech.clock_hz)

    # --- silicon -----------------------------------------------------------------------------

    def hw_cost(self, point: Mapping[str, Any]) -> HardwareCost:
        cost = _priced(self._parts(point), point["clock_hz"], self.tech.clock_hz)
        budget = point["area_budget_mm2"]
        if budget and cost.area_mm2 > budget:
            raise InfeasibleDesign(
                f"{self.name}: area {cost.area_mm2:.2f} mm2 exceeds area_budget_mm2 {budget:g} "
                "(fix: fewer/smaller arrays, less SRAM, or a larger budget)"
            )
        return cost

    def _parts(self, point: Mapping[str, Any]) -> dict[str, Part]:
        """Component name: (count, area um2, dynamic power mW at the tech table's clock,
        leakage mW) per unit, from the preset's technology table."""
        tech = self.tech
        pes = self.pes(point)
        reconf = point["reconfigurable"]
        array = tech["systolic_array" if reconf else "systolic_array_fixed"]
        parts: dict[str, Part] = {
            "pe": (
                pes,
                array.area_um2 / array.pes,
                array.power_mw / array.pes,
                array.leakage_mw / array.pes,
            ),
            "simd": _each(tech["simd_unit"], self.simd_units(point)),
        }
        if reconf:
            parts["crossbar"] = _each(tech["crossbar"], _ceil(pes / PE_PER_CROSSBAR))
        parts["topk"] = _each(tech["topk_unit"], point["topk_units"])
        activation = tech["activation_sram" if reconf else "activation_sram_fixed"]
        parts["activation_sram"] = _units(activation, point["activation_sram_bytes"])
        parts["weight_sram"] = _units(tech["weight_sram"], point["weight_sram_bytes"])
        parts["embedding_sram"] = _units(
            tech["embedding_sram"], point["static_cache_bytes"] + point["dynamic_cache_bytes"]
        )
        return parts

    @staticmethod
    def simd_units(point: Mapping[str, Any]) -> Any:
        if point["reconfigurable"]:
            pes = point["rows"] * point["cols"] * point["arrays"]
            return _num(np.maximum(1, pes // PE_PER_SIMD_RECONFIG))
        return point["cols"] * point["arrays"]

    # --- ops --------------------------------------------------------------------------------

    def op_cost(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        if op.op in self.free_ops:
            return OpEstimate(op.node.name, op.op, 0.0, bound="overhead")
        if point["recpipe_compat"]:
            return self._compat_op(op, point)
        power = self._power(point)
        if op.op in workload.GATHER_OPS:
            est = self._gather(op, point)
        elif workload.gemms(op):
            est = self._gemm(op, point)
        elif op.op == "top_k":
            est = self._topk(op, point)
        else:
            cycles = math.prod(op.output_shape or (1,)) * op.batch / self.simd_units(point)
            est = OpEstimate(
                op.node.name,
                op.op,
                cycles / point["clock_hz"],
                compute_s=cycles / point["clock_hz"],
                sram_bytes=workload.vector_bytes(op),
            )
        energy = est.latency_s * power + est.dram_bytes * self.tech.dram_j_per_byte
        return dataclasses.replace(est, energy_j=energy)

    def _power(self, point: Mapping[str, Any]) -> float:
        return self.hw_cost({**point, "area_budget_mm2": 0.0}).power_w

    def _gemm(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        from codesign.cost_models.systolic import partitioned_gemm_cost

        clock = point["clock_hz"]
        prec = point["precision_bytes"]
        cycles = sram_words = 0
        detail: dict[str, Any] = {"gemms": []}
        for g in workload.gemms(op):
            c = partitioned_gemm_cost(
                g.m,
                g.k,
                g.n,
                rows=point["rows"],
                cols=point["cols"],
                dataflow=point["dataflow"],
                parts=point["arrays"],
            )
            cycles += c.compute_cycles * g.repeat
            sram_words += (
                c.sram_ifmap_reads + c.sram_filter_reads + c.sram_ofmap_writes
            ) * g.repeat
            detail["gemms"].append(
                {
                    "m": g.m,
                    "k": g.k,
                    "n": g.n,
                    "repeat": g.repeat,
                    "compute_cycles": c.compute_cycles,
                }
            )
        compute_s = cycles / clock
        dram = 0.0
        weight_s = 0.0
        weight_bytes = op.work.params * prec
        if weight_bytes and op.graph_dense_params * prec > point["weight_sram_bytes"]:
            dram += weight_bytes  # weights do not stay resident: reload every query
            weight_s = (
                point["dram_latency_cycles"] / clock
                + weight_bytes / point["dram_bandwidth_bytes_per_s"]
            )
        acts = workload.vector_bytes(op) * prec / 4
        spill_s = 0.0
        if acts > point["activation_sram_bytes"]:
            dram += acts
            spill_s = acts / point["dram_bandwidth_bytes_per_s"]
        latency = max(compute_s, spill_s) + weight_s
        detail["weights_resident"] = weight_s == 0.0
        return OpEstimate(
            op.node.name,
            op.op,
            latency,
            compute_s=compute_s,
            memory_s=spill_s + weight_s,
            bound="compute" if compute_s >= spill_s + weight_s else "memory",
            dram_bytes=dram,
            sram_bytes=sram_words * prec,
            detail=detail,
        )

    def _gather(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        from codesign.cost_models.embedding_cache import static_plus_lru_hit_rate

        tables = workload.gathers(op)
        traffic = sum(t.lookups * t.row_bytes for t in tables) or 1.0
        hit_bytes = miss_bytes = 0.0
        rates = []
        for t in tables:
            share = op.embedding_share * t.lookups * t.row_bytes / traffic
            static_rows = min(t.rows, int(point["static_cache_bytes"] * share // t.row_bytes))
            dynamic_rows = min(
                t.rows - static_rows, int(point["dynamic_cache_bytes"] * share // t.row_bytes)
            )
            if point["embedding_hit_rate"] >= 0:
                hit = point["embedding_hit_rate"]
            else:
                hit = static_plus_lru_hit_rate(
                    t.rows, static_rows, dynamic_rows, point["zipf_alpha"]
                ).total
            rates.append(hit)
            hit_bytes += t.lookups * t.row_bytes * hit
            miss_bytes += t.lookups * t.row_bytes * (1.0 - hit)
        clock = point["clock_hz"]
        sram_s = hit_bytes / point["sram_bytes_per_cycle"] / clock
        dram_s = (point["dram_latency_cycles"] / clock if miss_bytes else 0.0) + (
            miss_bytes / point["dram_bandwidth_bytes_per_s"]
        )
        return OpEstimate(
            op.node.name,
            op.op,
            max(sram_s, dram_s),
            memory_s=max(sram_s, dram_s),
            bound="memory",
            dram_bytes=miss_bytes,
            sram_bytes=hit_bytes,
            detail={"hit_rate": sum(rates) / len(rates) if rates else 0.0},
        )

    def _topk(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        items = op.batch
        if point["topk_on_chip"] and point["topk_units"]:
            t = math.ceil(items / point["topk_units"]) / point["clock_hz"]
            return OpEstimate(op.node.name, op.op, t, compute_s=t, detail={"where": "chip"})
        t = host_sort_s(items)
        return OpEstimate(
            op.node.name, op.op, t, overhead_s=t, bound="overhead", detail={"where": "host"}
        )

    # --- whole graph --------------------------------------------------------------------------

    def schedule(
        self, graph: Graph, estimates: Sequence[OpEstimate], point: Mapping[str, Any]
    ) -> Schedule:
        if point["recpipe_compat"]:
            return self._compat_schedule(graph, estimates, point)
        kept = _kept_items(graph, point)
        in_bytes = sum(math.prod(n.shape) * DTYPE_BYTES[n.dtype] for n in graph.find("input"))
        in_bytes *= graph.batch
        out_bytes = kept * 4
        extra = []
        for name, nbytes in (("host_to_accel", in_bytes), ("accel_to_host", out_bytes)):
            t = point["pcie_latency_s"] + nbytes / point["pcie_bandwidth_bytes_per_s"]
            extra.append(
                OpEstimate(
                    name,
                    "transfer",
                    t,
                    memory_s=t,
                    bound="transfer",
                    pcie_bytes=nbytes,
                    energy_j=t * self._power(point),
                )
            )
        body = sum(e.latency_s for e in estimates)
        detail: dict[str, Any] = {"items_returned": kept}
        sub = point["sub_batch"]
        if sub and sub < graph.batch:
            body, detail["sub_batch"] = self._pipelined(graph, point, sub)
        latency = body + sum(e.latency_s for e in extra)
        return Schedule(latency_s=latency, extra=tuple(extra), detail=detail)

    def _pipelined(self, graph: Graph, point: Mapping[str, Any], sub: int):
        """Embedding phase of sub-batch i+1 overlaps the array phase of sub-batch i."""
        views = [dataclasses.replace(v, batch=sub) for v in op_views(graph)]
        gather_s = sum(
            self.op_cost(v, point).latency_s for v in views if v.op in workload.GATHER_OPS
        )
        array_s = sum(
            self.op_cost(v, point).latency_s
            for v in views
            if v.op not in workload.GATHER_OPS and v.op != "top_k"
        )
        topk_s = sum(self.op_cost(v, point).latency_s for v in op_views(graph) if v.op == "top_k")
        count = math.ceil(graph.batch / sub)
        latency = gather_s + array_s + (count - 1) * max(gather_s, array_s) + topk_s
        return latency, {
            "sub_batches": count,
            "gather_phase_s": gather_s,
            "array_phase_s": array_s,
            "fill_s": gather_s + array_s,
        }

    # --- RecPipe compatibility ----------------------------------------------------------------

    def _compat_op(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        ns = 1e9 / point["clock_hz"]  # RecPipe's "clock": ns per cycle
        bw_bytes_per_ns = point["dram_bandwidth_bytes_per_s"] / 1e9
        if op.op == "dense":
            fin, fout, items = op.attrs["in_features"], op.attrs["out_features"], op.batch
            size = point["rows"]
            weight_bytes = 4 * fin * fout
            # RecPipe loads weights in SRAM-sized slices; an SRAM of 0 bytes streams them whole
            sram = point["weight_sram_bytes"] or weight_bytes
            slices = math.ceil(weight_bytes / sram)
            load = point["dram_latency_cycles"] + min(sram, weight_bytes) / bw_bytes_per_ns / ns
            load_cycles = load * slices
            tiles = math.ceil(fin / size) * math.ceil(fout / size)
            sa_cycles = tiles * (min(fout, size) + min(fin, size) + items)
            cycles = load_cycles + sa_cycles
            return OpEstimate(
                op.node.name,
                op.op,
                cycles * ns / 1e9,
                compute_s=sa_cycles * ns / 1e9,
                memory_s=load_cycles * ns / 1e9,
                dram_bytes=weight_bytes,
                detail={"recpipe_cycles": cycles},
            )
        if op.op in workload.GATHER_OPS:
            # RecPipe: fp32 rows (elementsize 4) whatever the table's storage type
            nbytes = op.work.embedding_bytes_per_item * op.batch * 4 / _row_dtype_bytes(op)
            # bandwidth part only; the single DRAM latency is added once per graph in schedule
            dram_cycles = nbytes * 0.5 / bw_bytes_per_ns / ns
            sram_cycles = nbytes * 0.5 / 64
            cycles = dram_cycles + sram_cycles
            return OpEstimate(
                op.node.name,
                op.op,
                cycles * ns / 1e9,
                memory_s=cycles * ns / 1e9,
                bound="memory",
                dram_bytes=nbytes * 0.5,
                sram_bytes=nbytes * 0.5,
                detail={"recpipe_cycles": cycles},
            )
        # RecPipe charges nothing for interaction, concat and activations
        return OpEstimate(op.node.name, op.op, 0.0, bound="overhead", detail={"recpipe_cycles": 0})

    def _compat_schedule(self, graph, estimates, point) -> Schedule:
        ns = 1e9 / point["clock_hz"]
        items = graph.batch
        kept = _kept_items(graph, point)
        extra_cycles = {
            "input_pcie": (5 + 12 / 4096 * items) * 1000.0,
            "output_pcie": (5 + 5 / 4096 * (kept if point["topk_on_chip"] else items)) * 1000.0,
        }
        if any(op.op in workload.GATHER_OPS for op in graph.nodes):
            extra_cycles["embedding_dram_latency"] = float(point["dram_latency_cycles"])
        if graph.find("top_k"):
            if point["topk_on_chip"]:
                sort_cycles = items / (64 / 4) / ns  # sic: RecPipe divides cycles by the clock
            else:
                sort_cycles = host_sort_s(items) * 1e9 / ns
            extra_cycles["sort"] = sort_cycles
        extra = tuple(
            OpEstimate(
                name,
                "recpipe",
                c * ns / 1e9,
                overhead_s=c * ns / 1e9,
                bound="overhead",
                detail={"recpipe_cycles": c},
            )
            for name, c in extra_cycles.items()
        )
        total = sum(e.latency_s for e in estimates) + sum(e.latency_s for e in extra)
        return Schedule(latency_s=total, extra=extra, detail={"recpipe_compat": True})


def host_sort_s(items: Any) -> Any:
    """RecPipe's measured host sort time: 0.03 ms below 512 items, 0.07 ms up to 1024, 0.35 ms
    up to 4096; beyond that (undefined in RecPipe) we scale the last point linearly. ``items``
    may be an array (one time per element)."""
    (_, below_512), (_, to_1024), (_, to_4096) = HOST_SORT_S
    if np.ndim(items) == 0:
        if items < 512:
            return below_512
        if items <= 1024:
            return to_1024
        return to_4096 if items <= 4096 else to_4096 * items / 4096
    n = np.asarray(items, dtype=np.float64)
    return np.where(
        n < 512,
        below_512,
        np.where(n <= 1024, to_1024, np.where(n <= 4096, to_4096, to_4096 * n / 4096)),
    )


def _row_dtype_bytes(op: OpView) -> float:
    """Bytes per embedding value as stored (int8 rows include their 8-byte scale/bias)."""
    dim = op.attrs["dim"] * op.attrs.get("vectors", 1)
    return workload.gathers(op)[0].row_bytes / dim


def _kept_items(graph: Graph, point: Mapping[str, Any]) -> int:
    topk = graph.find("top_k")
    if topk and point["topk_on_chip"]:
        return min(graph.batch, topk[0].attrs["k"])
    return graph.batch


def _num(value: Any) -> Any:
    """A Python number for a scalar (numpy 0-d results included), the array otherwise."""
    return value.item() if np.ndim(value) == 0 and hasattr(value, "item") else value


def _either(value: Any, fallback: Any) -> Any:
    """``value`` where it is non-zero, else ``fallback`` (scalars or arrays)."""
    if np.ndim(value) == 0 and np.ndim(fallback) == 0:
        return value or fallback
    return np.where(np.asarray(value) > 0, value, fallback)


def _floor(value: Any) -> Any:
    if np.ndim(value) == 0:
        return int(math.floor(value))
    return np.floor(value).astype(np.int64)


def _ceil(value: Any) -> Any:
    if np.ndim(value) == 0:
        return math.ceil(value)
    return np.ceil(value)


#: The parts of an engine that its partition of the chip brings (the SRAM is the chip's).
LOGIC_PARTS = ("pe", "simd", "crossbar", "topk")
#: A component's (count, area um2, dynamic power mW at the tech clock, leakage mW) per unit.
Part = tuple[Any, float, float, float]


def _each(component: Component, count: Any) -> Part:
    return (count, component.area_um2, component.power_mw, component.leakage_mw)


def _units(macro: Component, nbytes: Any) -> Part:
    """Whole SRAM macros holding ``nbytes``."""
    return _each(macro, _ceil(nbytes / macro.macro_bytes))


def _priced(parts: Mapping[str, Part], clock_hz: Any, tech_clock_hz: float) -> HardwareCost:
    """Area and power of the parts; dynamic power scales with the clock as it does at a fixed
    voltage (``clock_hz / tech_clock_hz``), leakage does not."""
    scale = clock_hz / tech_clock_hz
    breakdown = {}
    for name, (count, area_um2, power_mw, leakage_mw) in parts.items():
        power_w = count * power_mw / 1e3 * scale
        if leakage_mw:
            power_w = power_w + count * leakage_mw / 1e3
        breakdown[name] = {"count": count, "area_mm2": count * area_um2 / 1e6, "power_w": power_w}
    area = sum(b["area_mm2"] for b in breakdown.values())
    power = sum(b["power_w"] for b in breakdown.values())
    return HardwareCost(area_mm2=area, power_w=power, breakdown=breakdown)
