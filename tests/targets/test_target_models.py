"""Behaviour of the built-in targets' analytical models, with numbers derived by formula."""

from __future__ import annotations

import math

import pytest

from codesign.cost_models.analytical import estimate
from codesign.cost_models.embedding_cache import static_plus_lru_hit_rate
from codesign.cost_models.systolic import partitioned_gemm_cost
from codesign.ir import lower
from codesign.plugins import load_target
from codesign.targets.accel import InfeasibleDesign, host_sort_s
from codesign.targets.base import KnobError


def cost(model, target, batch, keep=None, **knobs):
    return estimate(lower(model, batch=batch, keep=keep), load_target(target), knobs)


def op(report, name):
    return next(o for o in report.ops if o.name == name)


def test_accel_dense_layer_uses_scalesim_cycles():
    r = cost("rm-large", "accel/rpaccel", 4096, rows=32, cols=32, dataflow="os")
    expected = partitioned_gemm_cost(4096, 383, 96, rows=32, cols=32, dataflow="os", parts=1)
    top0 = op(r, "top_0")
    assert top0.compute_s == pytest.approx(expected.compute_cycles / 125e6)
    # RM-large's dense weights (fp16) fit the 4 MB weight SRAM: no reload per query
    assert top0.detail["weights_resident"] and top0.dram_bytes == 0


def test_accel_weights_reload_when_sram_too_small():
    r = cost("rm-large", "accel/rpaccel", 256, weight_sram_bytes=1024)
    top0 = op(r, "top_0")
    assert not top0.detail["weights_resident"]
    assert top0.dram_bytes >= (383 * 96 + 96) * 2


def test_arrays_split_the_batch():
    one = op(cost("rm-large", "accel/rpaccel", 4096, rows=32, cols=32), "top_0").compute_s
    four = op(
        cost("rm-large", "accel/rpaccel", 4096, rows=32, cols=32, arrays=4), "top_0"
    ).compute_s
    assert four < one / 3


def test_embedding_hit_rates_follow_cache_model():
    r = cost("rm-small", "accel/rpaccel", 1024, static_cache_bytes=0, dynamic_cache_bytes=0)
    assert all(o.detail["hit_rate"] == 0 for o in r.ops if o.op == "embedding_bag")
    bigger = cost("rm-small", "accel/rpaccel", 1024)
    rates = [o.detail["hit_rate"] for o in bigger.ops if o.op == "embedding_bag"]
    assert max(rates) == pytest.approx(1.0) and min(rates) < 1.0
    assert bigger.dram_bytes < r.dram_bytes
    # the analytical model used per table: c_2 (10,131,227 rows) gets its traffic share of SRAM
    assert static_plus_lru_hit_rate(10_131_227, 0, 0, 1.09).total == 0


def test_on_chip_topk_returns_only_kept_items():
    on = cost("rm-small", "accel/rpaccel", 4096, keep=64)
    off = cost("rm-small", "accel/rpaccel", 4096, keep=64, topk_on_chip=False)
    back = {e.name: e for e in on.extra}["accel_to_host"]
    assert back.pcie_bytes == 64 * 4
    assert {e.name: e for e in off.extra}["accel_to_host"].pcie_bytes == 4096 * 4
    assert op(off, "top_k").latency_s == host_sort_s(4096) == 0.35e-3  # RecPipe's measured sort
    assert op(on, "top_k").latency_s == math.ceil(4096 / 1024) / 125e6


def test_sub_batch_pipelining_overlaps_phases():
    # embedding-bound: no caches and a slow DRAM, so overlapping gathers with the array pays off
    slow = {"static_cache_bytes": 0, "dynamic_cache_bytes": 0, "dram_bandwidth_bytes_per_s": 4e9}
    whole = cost("rm-large", "accel/rpaccel", 4096, **slow)
    piped = cost("rm-large", "accel/rpaccel", 4096, sub_batch=512, **slow)
    info = piped.schedule["sub_batch"]
    assert info["sub_batches"] == 8
    fill = info["gather_phase_s"] + info["array_phase_s"]
    body = fill + 7 * max(info["gather_phase_s"], info["array_phase_s"])
    transfers = sum(e.latency_s for e in piped.extra)
    assert piped.latency_s == pytest.approx(body + transfers)
    assert piped.latency_s < 0.5 * whole.latency_s


def test_sub_batches_pay_array_fill_when_compute_bound():
    # each sub-batch refills the systolic array (2R + C + T - 2 cycles per fold), so tiny
    # sub-batches lose when the embedding phase is already cheap
    whole = cost("rm-large", "accel/rpaccel", 4096)
    tiny = cost("rm-large", "accel/rpaccel", 4096, sub_batch=256)
    assert tiny.latency_s > whole.latency_s


def test_area_matches_published_compositions_and_budget():
    # BACKGROUND §1.8: RPAccel = 16 DYN_MMU32 + 1024 SIMD + 256 crossbars + 1024 top-k
    # + 1024 x 4 KB + 16 x 256 KB + 64 x 256 KB SRAM; baseline = 16 MMU32 + 128 SIMD
    # + 128 x 32 KB + 16 x 256 KB + 64 x 256 KB
    rpaccel_um2 = (
        16 * 527_807
        + 1024 * 106
        + 256 * 287
        + 1024 * 453
        + 1024 * 4_684
        + 16 * 183_290
        + 64 * 183_290
    )
    tpu_um2 = 16 * 506_891 + 128 * 106 + 128 * 29_142 + 16 * 183_290 + 64 * 183_290
    for name, um2 in (("accel/rpaccel", rpaccel_um2), ("accel/tpu-like", tpu_um2)):
        t = load_target(name)
        assert t.hw_cost(t.design_space().resolve()).area_mm2 == pytest.approx(um2 / 1e6)
    t = load_target("accel/rpaccel")
    with pytest.raises(InfeasibleDesign, match="exceeds area_budget_mm2"):
        t.hw_cost(t.design_space().resolve({"area_budget_mm2": 20}))


def test_cpu_latency_grows_with_batch_and_shrinks_with_cores():
    small = cost("rm-large", "cpu/cascadelake", 64)
    large = cost("rm-large", "cpu/cascadelake", 4096)
    assert large.latency_s > small.latency_s
    one_core = cost("rm-large", "cpu/cascadelake", 4096, cores=1)
    assert one_core.latency_s > 2 * large.latency_s
    # energy is TDP x latency on CPUs
    assert large.energy_j == pytest.approx(205 * sum(o.latency_s for o in large.ops))


def test_cpu_dense_is_compute_bound_at_formula_rate():
    r = cost("rm-large", "cpu/cascadelake", 4096, min_macs_per_thread=1)
    top0 = op(r, "top_0")
    macs = 4096 * 383 * 96
    peak = 28 * 2.7e9 * 16 * 2 * 2
    # targets/cpu.py: register tile min(4096, 6) rows x min(ceil(96/16), 2) vectors = 12
    # accumulators >= 4-cycle FMA x 2 units (occupancy 1); 96 = 6 full vectors (lane use 1)
    eff = 0.6 * 1.0 * 1.0
    assert top0.compute_s == pytest.approx(2 * macs / (peak * eff))


def test_cpu_gemm_batch_one_and_narrow_outputs_lose_simd_throughput():
    """Batch 1 keeps 1 x 2 accumulators of the 8 the FMA pipes need (occupancy 1/4); a 1-wide
    CTR head uses 1 of 16 lanes on AVX-512 (with 6 x 1 accumulators: occupancy 6/8)."""
    from codesign.cost_models.workload import Gemm
    from codesign.targets.cpu import gemm_efficiency

    point = load_target("cpu/cascadelake").design_space().defaults()
    assert gemm_efficiency(Gemm(1, 512, 256), point) == pytest.approx(0.25)
    assert gemm_efficiency(Gemm(4096, 512, 256), point) == pytest.approx(1.0)
    assert gemm_efficiency(Gemm(4096, 64, 1), point) == pytest.approx(6 / 8 / 16)


def test_expected_distinct_rows_matches_exact_sum():
    import numpy as np

    from codesign.targets.cpu import expected_distinct

    rows, lookups, alpha = 200_000, 5000, 1.09
    p = np.arange(1, rows + 1, dtype=float) ** -alpha
    p /= p.sum()
    exact = float(np.sum(-np.expm1(lookups * np.log1p(-p))))
    assert expected_distinct(rows, lookups, alpha) == pytest.approx(exact, rel=0.01)
    assert expected_distinct(10, 1000, alpha) == pytest.approx(10.0, rel=1e-6)


def test_gpu_adds_pcie_transfers_and_launch_overhead():
    r = cost("rm-small", "gpu/nvidia/t4", 1024)
    names = [e.name for e in r.extra]
    assert names == ["host_to_device", "device_to_host"]
    h2d = r.extra[0]
    in_bytes = 1024 * (13 * 4 + 26 * 8)  # dense fp32 features and int64 ids
    assert h2d.pcie_bytes == in_bytes
    assert h2d.latency_s == pytest.approx(10e-6 + in_bytes / 12e9)
    assert all(o.overhead_s >= 5e-6 for o in r.ops)
    h100 = cost("rm-large", "gpu/nvidia/h100", 4096)
    t4 = cost("rm-large", "gpu/nvidia/t4", 4096)
    assert h100.latency_s < t4.latency_s


def test_recpipe_compat_dense_layer_formula():
    # RecPipeAccelModel.ProcessingElement.process_item, one layer, hardconf_16 (S=32, 2 GiB/s)
    r = cost("rm-small", "accel/recpipe-hardconf-16", 4096)
    fin, fout, size, items = 355, 64, 32, 4096
    wb = 4 * fin * fout
    load = (100 + min(1e6, wb) / (2 * 2**30 / 1e9) / 8) * math.ceil(wb / 1e6)
    sa = math.ceil(fin / size) * math.ceil(fout / size) * (min(fout, size) + min(fin, size) + items)
    assert op(r, "top_0").latency_s == pytest.approx((load + sa) * 8e-9, rel=1e-12)


def test_unknown_and_bad_knobs():
    t = load_target("accel/rpaccel")
    with pytest.raises(KnobError, match="unknown knob 'rowz'.*did you mean 'rows'"):
        t.design_space().resolve({"rowz": 3})
    with pytest.raises(KnobError, match="out of range"):
        t.design_space().resolve({"rows": 0})
    with pytest.raises(KnobError, match="os|ws|is"):
        t.design_space().resolve({"dataflow": "xs"})


def _kernel_view(spec):
    from codesign.cost_models.calibration import graph_for_spec
    from codesign.targets.base import op_views

    return next(v for v in op_views(graph_for_spec(spec)) if v.node.name == "op")


def test_cpu_topk_is_a_heap_selection_not_a_byte_stream():
    """targets/cpu.py topk_compares: n scan compares, k ln(n/k) heap entries of 2 log2 k compares
    and a final k log2 k sort (TVM's runtime topk); e.g. n = 4096, k = 64: 64 ln 64 x 12 + 384."""
    from codesign.cost_models.tvm_measured import KernelSpec
    from codesign.targets.cpu import topk_compares

    scan, heap = topk_compares(4096, 64)
    assert scan == 4096
    assert heap == pytest.approx(2 * 6 * 64 * math.log(64) + 64 * 6)
    assert topk_compares(64, 64) == (64.0, 64 * 6)  # nothing enters after the first k
    target = load_target("cpu/cascadelake")
    point = {**target.design_space().defaults(), "cores": 1, "extern_call_s": 0.0}
    point["op_overhead_s"] = 0.0
    f = point["frequency_hz"] * point["compute_efficiency"]

    def latency(n, k):
        return target.op_cost(_kernel_view(KernelSpec.make("top_k", batch=n, k=k)), point)

    est = latency(4096, 64)
    assert est.compute_s == pytest.approx(4096 / f + heap * point["sort_compare_s"])
    # more kept items cost more at the same batch (a byte-stream model cannot tell k apart)
    assert latency(4096, 64).latency_s > 1.5 * latency(4096, 8).latency_s
    # growth with n: a linear scan plus k ln(n / k) heap entries, so at most linear in n
    a, b = latency(1024, 8), latency(8192, 8)
    assert 1.0 < b.latency_s / a.latency_s < 8.0
    assert b.compute_s - a.compute_s == pytest.approx(
        (8192 - 1024) / f + 2 * 3 * 8 * math.log(8) * point["sort_compare_s"]
    )


def test_cpu_dot_interaction_counts_what_the_fused_kernel_computes():
    """targets/cpu.py: the fused kernel computes the Gram matrix in register tiles of 4 rows x 2
    SIMD vectors (32 columns with AVX-512's 16 lanes), rows padded to 4 and columns to 32, and
    skips the column tiles right of the kept triangle; it reads the n parts and writes the
    output once, at cache bandwidth (4x the DRAM bandwidth x memory_efficiency)."""
    from codesign.cost_models.tvm_measured import KernelSpec

    target = load_target("cpu/cascadelake")
    point = {**target.design_space().defaults(), "cores": 1, "op_overhead_s": 0.0}
    assert point["simd_lanes_fp32"] == 16
    peak = target.peak_flops(point, 1) * point["compute_efficiency"]
    cache_bw = point["dram_bandwidth_bytes_per_s"] * point["memory_efficiency"] * 4
    # n = 5: 2 row tiles x 1 column tile = 8 x 32; n = 27: 7 x 1 = 28 x 32 (the IR counts
    # 351 pairs); n = 40: rows 0..31 need column tile 0 only, rows 32..39 both: 12 tiles of 4 x 32
    for n, d, tiles in ((5, 16, 2), (27, 64, 7), (40, 8, 12)):
        spec = KernelSpec.make(
            "interaction",
            batch=256,
            parts=[1] * n,
            n=n,
            d=d,
            self_interaction=False,
            dense_first=True,
        )
        est = target.op_cost(_kernel_view(spec), point)
        assert est.compute_s == pytest.approx(2 * 256 * tiles * 4 * 32 * d / peak)
        out_width = d + n * (n - 1) // 2
        # the copies in and out run before and after the Gram tiles: added, not overlapped
        copy_s = 4 * 256 * (n * d + out_width) / cache_bw
        assert est.latency_s == pytest.approx(est.compute_s + copy_s)
