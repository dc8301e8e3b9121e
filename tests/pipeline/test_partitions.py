"""RecPipe's heterogeneous partitions of one chip: stage 1 on two 64x64 arrays, stage 2 on eight
32x32 arrays of one 128x128-PE RPAccel, each partition with its share of the chip's DRAM
bandwidth and SRAM. The service times `codesign pipeline evaluate` reports are checked against a
hand calculation from RecPipe's accelerator equations (BACKGROUND §1.7, ``RecPipeAccelModel``:
tiles x (min(out, S) + min(in, S) + items) cycles per layer plus weight loads in SRAM-sized
slices, embeddings half from DRAM at the partition's bandwidth and half from SRAM at 64 B per
cycle, one 100-cycle DRAM latency, the on-chip sort and the PCIe terms)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from codesign import api
from codesign.ir.frontends.lower import lower
from codesign.pipeline import evaluate, load_pipeline

EXAMPLE = (
    Path(__file__).resolve().parents[2]
    / "examples"
    / "pipelines"
    / "recpipe-criteo-2stage-accel-hetero.yaml"
)
CHIP_BANDWIDTH = 34359738368  # rpaccel preset: 32 GiB/s
CHIP_WEIGHT_SRAM = 4194304
CLOCK_NS = 8.0  # 125 MHz


def recpipe_service_s(model: str, items: int, keep: int, *, size: int, share: float) -> float:
    """RecPipeAccelModel.run_query for one query on a ``size`` x ``size`` partition holding
    ``share`` of the chip (so ``share`` of its DRAM bandwidth and weight SRAM), by hand."""
    bw_bytes_per_ns = CHIP_BANDWIDTH * share / 1e9
    sram = int(CHIP_WEIGHT_SRAM * share)
    cycles = 0.0
    embedding_bytes = 0.0
    for node in lower(model, batch=1).nodes:
        if node.op == "dense":
            fin, fout = node.attrs["in_features"], node.attrs["out_features"]
            weight_bytes = 4 * fin * fout
            slices = math.ceil(weight_bytes / sram)
            load = 100 + min(sram, weight_bytes) / bw_bytes_per_ns / CLOCK_NS
            tiles = math.ceil(fin / size) * math.ceil(fout / size)
            cycles += load * slices + tiles * (min(fout, size) + min(fin, size) + items)
        elif node.op == "embedding_bag":
            # fp32 rows (4 B x dim) per lookup, for every item
            embedding_bytes += 4 * node.attrs["dim"] * node.attrs["pooling"] * items
    cycles += embedding_bytes * 0.5 / bw_bytes_per_ns / CLOCK_NS + embedding_bytes * 0.5 / 64
    cycles += 100  # one DRAM latency for the embedding phase
    cycles += items / (64 / 4) / CLOCK_NS  # on-chip sort (RecPipe divides by the clock again)
    cycles += (5 + 12 / 4096 * items) * 1000 + (5 + 5 / 4096 * keep) * 1000  # PCIe in, out
    return cycles * CLOCK_NS / 1e9


def _stages(extra_engines: int = 0) -> list[dict]:
    """The example's stages as spec mappings (with more engines per stage, if asked)."""
    return [
        {
            "name": st.name,
            "model": st.model,
            "items": st.items,
            "keep": st.keep,
            "target": st.target,
            "engines": st.engines + extra_engines,
            "knobs": st.knobs,
        }
        for st in load_pipeline(EXAMPLE).stages
    ]


def _pipeline(compat: bool):
    return load_pipeline(
        {
            "version": 1,
            "kind": "pipeline",
            "chips": {"accel/rpaccel": {"pe_budget": 16384, "recpipe_compat": compat}},
            "stages": _stages(),
            "load": {"queries": 2000, "warmup": 256, "sla_ms": 25},
        }
    )


def test_example_expresses_recpipes_heterogeneous_partitions():
    p = load_pipeline(EXAMPLE)
    shapes = [(st.engines, st.knobs["rows"], st.knobs["cols"]) for st in p.stages]
    assert shapes == [(2, 64, 64), (8, 32, 32)]
    assert sum(e * r * c for e, r, c in shapes) == 128 * 128


def test_partition_service_times_match_recpipes_equations_by_hand():
    result = evaluate(_pipeline(compat=True), 100.0)
    got = {s["name"]: s["service_s_full_query"] for s in result["stages"]}
    # a 64x64 array is a quarter of the chip, a 32x32 array a sixteenth
    want_s = recpipe_service_s("rm-small", 4096, 256, size=64, share=1 / 4)
    want_l = recpipe_service_s("rm-large", 256, 64, size=32, share=1 / 16)
    assert got["S"] == pytest.approx(want_s, rel=1e-9)
    assert got["L"] == pytest.approx(want_l, rel=1e-9)
    # the bandwidth share matters: the whole chip's bandwidth would give another answer
    assert got["S"] != pytest.approx(
        recpipe_service_s("rm-small", 4096, 256, size=64, share=1.0), rel=1e-3
    )


def test_native_model_gives_each_partition_its_share():
    """codesign's own accelerator model: each engine is costed exactly as `codesign cost` with
    the partition's share of bandwidth, weight/activation SRAM, embedding caches and top-k
    units set by hand."""
    result = evaluate(_pipeline(compat=False), 100.0)
    got = {s["name"]: s["service_s_full_query"] for s in result["stages"]}
    for name, model, items, keep, rows, share in (
        ("S", "rm-small", 4096, 256, 64, 1 / 4),
        ("L", "rm-large", 256, 64, 32, 1 / 16),
    ):
        knobs = {
            "rows": rows,
            "cols": rows,
            "dram_bandwidth_bytes_per_s": CHIP_BANDWIDTH * share,
            "weight_sram_bytes": int(CHIP_WEIGHT_SRAM * share),
            "activation_sram_bytes": int(4194304 * share),
            "static_cache_bytes": int(8388608 * share),
            "dynamic_cache_bytes": int(8388608 * share),
            "topk_units": int(1024 * share),
        }
        by_hand = api.cost_model(model, "accel/rpaccel", batch=items, keep=keep, overrides=knobs)
        assert got[name] == pytest.approx(by_hand["latency_s"], rel=1e-9)


def test_partitions_over_the_chip_are_refused():
    from codesign.errors import SpecError

    data = {"version": 1, "kind": "pipeline", "stages": _stages(extra_engines=1)}
    with pytest.raises(SpecError, match=r"stages\[1\]\.engines.*pes"):
        load_pipeline(data)
