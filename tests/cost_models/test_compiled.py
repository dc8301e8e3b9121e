"""The compiled (vectorized) cost model against the scalar interpreter, point by point.

Property test: for every built-in target preset and a spread of zoo models, random design points
(batch, keep and knobs drawn with a seeded generator over their useful ranges) are costed at once
by ``CompiledModel.evaluate`` and one by one by ``estimate(lower(model, batch, keep), target,
point)``; latency, energy and DRAM bytes must agree to 1e-9 relative (1e-12 absolute for zeros).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from codesign.cost_models.analytical import estimate
from codesign.cost_models.compiled import BatchCost, _partitioned_cycles, compile_model
from codesign.cost_models.systolic import partitioned_gemm_cost
from codesign.errors import CodesignError
from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.spec import load_spec
from codesign.ir.graph import Graph
from codesign.targets.base import (
    BaseTarget,
    DesignSpace,
    HardwareCost,
    Knob,
    KnobError,
    OpEstimate,
    OpView,
)
from codesign.targets.builtin import builtin
from codesign.testing.target_contract import TINY_DLRM

MODELS = ("rm-small", "rm-med", "rm-large", "dlrm-rmc1", "ncf", "wnd", "din")
PRESETS = (
    "cpu-host",
    "cpu-cascadelake",
    "gpu-t4",
    "gpu-v100",
    "gpu-h100",
    "accel-rpaccel",
    "accel-tpu-like",
    "accel-hardconf-1",
    "accel-hardconf-4",
    "accel-hardconf-16",
    "accel-hardconf-64",
)
#: Points per (preset, model): the scalar reference is the slow side (CPU gathers of the RM
#: models cost ~12 ms a point), so those get fewer; 10,000+ points in all.
POINTS = 140
POINTS_CPU_RM = 60
RTOL = 1e-9
ATOL = 1e-12
SIZES = (1, 2, 3, 4, 7, 8, 12, 16, 32, 48, 64, 100, 128, 256)
ALPHAS = (0.8, 1.09, 1.3)
MIB = 2**20
#: Knobs whose values switch between code paths: always drawn per point when overridden.
MIXED_PER_POINT = ("embedding_hit_rate", "recpipe_compat", "topk_on_chip", "reconfigurable")


def _targets() -> dict[str, Any]:
    return {stem: builtin(stem) for stem in PRESETS}


TARGETS = _targets()


def _takes_keep(model: str) -> bool:
    try:
        lower(model, batch=1, keep=1)
    except CodesignError:
        return False
    return True


def _cpu_knobs(rng: np.random.Generator, n: int, cores: int) -> dict[str, np.ndarray]:
    return {
        "cores": rng.integers(1, cores + 1, n),
        "frequency_hz": rng.uniform(1e9, 4e9, n),
        "simd_lanes_fp32": rng.choice([4, 8, 16], n),
        "fma_units": rng.integers(1, 3, n),
        "llc_bytes": np.where(rng.random(n) < 0.1, 0, rng.integers(0, 64 * MIB, n)),
        "l2_bytes": np.where(rng.random(n) < 0.1, 0, rng.integers(0, 4 * MIB, n)),
        "dram_bandwidth_bytes_per_s": rng.uniform(2e10, 3e11, n),
        "dram_latency_s": rng.uniform(5e-8, 2e-7, n),
        "compute_efficiency": rng.uniform(0.1, 1.0, n),
        "memory_efficiency": rng.uniform(0.1, 1.0, n),
        "gemm_tile_rows": rng.integers(1, 17, n),
        "gemm_tile_vectors": rng.integers(1, 5, n),
        "fma_latency_cycles": rng.integers(1, 9, n),
        "l2_bytes_per_cycle": rng.uniform(8.0, 64.0, n),
        "llc_bytes_per_cycle": rng.uniform(4.0, 32.0, n),
        "tlb_entries": rng.choice([16, 1536, 2048, 65536], n),
        "page_walk_s": rng.uniform(0.0, 5e-8, n),
        "sort_compare_s": rng.uniform(0.0, 1e-8, n),
        "extern_call_s": rng.uniform(0.0, 1e-5, n),
        "min_macs_per_thread": rng.choice([1, 1000, 200_000, 10**7], n),
        "op_overhead_s": rng.uniform(0.0, 1e-5, n),
        "zipf_alpha": rng.choice(ALPHAS, n),
        "tdp_w": rng.uniform(10.0, 400.0, n),
        "parallel_launch_s": np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0.0, 1e-6, n)),
        "l1_bytes": np.where(rng.random(n) < 0.3, 0, rng.integers(0, 128 * 2**10, n)),
        "l1_bytes_per_cycle": rng.uniform(16.0, 128.0, n),
        "topk_scan_cycles": rng.uniform(0.2, 5.0, n),
    }


def _gpu_knobs(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "sms": rng.integers(1, 200, n),
        "peak_flops_fp32": rng.uniform(1e12, 1e14, n),
        "peak_flops_fp16": rng.uniform(1e13, 1e15, n),
        "memory_bandwidth_bytes_per_s": rng.uniform(1e11, 4e12, n),
        # small memories push tables off the device (the static-cache path)
        "memory_bytes": np.exp(rng.uniform(np.log(1e8), np.log(8e10), n)),
        "pcie_bandwidth_bytes_per_s": rng.uniform(5e9, 6e10, n),
        "pcie_latency_s": rng.uniform(0.0, 2e-5, n),
        "kernel_launch_s": rng.uniform(0.0, 1e-5, n),
        "compute_efficiency": rng.uniform(0.1, 1.0, n),
        "memory_efficiency": rng.uniform(0.1, 1.0, n),
        "zipf_alpha": rng.choice(ALPHAS, n),
        "tdp_w": rng.uniform(50.0, 800.0, n),
    }


def _accel_knobs(rng: np.random.Generator, n: int, batch: np.ndarray) -> dict[str, np.ndarray]:
    def cache_bytes() -> np.ndarray:
        return np.where(rng.random(n) < 0.25, 0, rng.integers(0, 32 * MIB, n))

    return {
        "rows": rng.choice(SIZES, n),
        "cols": rng.choice(SIZES, n),
        "arrays": rng.integers(1, 17, n),
        "dataflow": rng.choice(np.array(["os", "ws", "is"], dtype=object), n),
        "clock_hz": rng.uniform(5e7, 2e9, n),
        "precision_bytes": rng.choice([1, 2, 4], n),
        "weight_sram_bytes": np.where(rng.random(n) < 0.2, 0, rng.integers(0, 8 * MIB, n)),
        "activation_sram_bytes": np.where(rng.random(n) < 0.2, 0, rng.integers(0, 8 * MIB, n)),
        "static_cache_bytes": cache_bytes(),
        "dynamic_cache_bytes": cache_bytes(),
        "sram_bytes_per_cycle": rng.choice([8, 64, 512], n),
        "dram_bandwidth_bytes_per_s": rng.uniform(1e8, 1e11, n),
        "dram_latency_cycles": rng.integers(0, 400, n),
        "topk_units": np.where(rng.random(n) < 0.2, 0, rng.integers(1, 2049, n)),
        "topk_on_chip": rng.random(n) < 0.5,
        "sub_batch": np.where(rng.random(n) < 0.5, 0, rng.integers(1, batch + 1)),
        "pcie_bandwidth_bytes_per_s": rng.uniform(1e9, 6e10, n),
        "pcie_latency_s": rng.uniform(0.0, 2e-5, n),
        "zipf_alpha": rng.choice(ALPHAS, n),
        "embedding_hit_rate": np.where(rng.random(n) < 0.7, -1.0, rng.uniform(0.0, 1.0, n)),
        "reconfigurable": rng.random(n) < 0.5,
        "recpipe_compat": rng.random(n) < 0.5,
        "area_budget_mm2": np.zeros(n),  # the budget check (InfeasibleDesign) is out of scope
    }


def _draw(target: Any, model: str, n: int, seed: int):
    rng = np.random.default_rng(seed)
    size = rng.random(n)
    batch = np.where(
        size < 0.3,
        rng.integers(1, 65, n),
        np.where(size < 0.95, rng.integers(1, 4097, n), rng.integers(4097, 2**16 + 1, n)),
    )
    keep = np.zeros(n, dtype=np.int64)
    if _takes_keep(model):
        keep = np.where(rng.random(n) < 0.5, 0, rng.integers(1, batch + 1))
    if target.kind == "cpu":
        knobs = _cpu_knobs(rng, n, target.design_space().defaults()["cores"])
    elif target.kind == "gpu":
        knobs = _gpu_knobs(rng, n)
    else:
        knobs = _accel_knobs(rng, n, batch)
    # leave some knobs at their defaults, and pass some as one scalar for every point
    out: dict[str, Any] = {}
    for name, values in knobs.items():
        draw = rng.random()
        if draw < 0.15:
            continue
        if name in MIXED_PER_POINT:
            draw = max(draw, 0.3)
        first = values[0]
        out[name] = (
            (first.item() if isinstance(first, np.generic) else first) if draw < 0.3 else values
        )
    return batch, keep, out


def _scalar_point(knobs: Mapping[str, Any], i: int) -> dict[str, Any]:
    point = {}
    for name, values in knobs.items():
        value = values[i] if isinstance(values, np.ndarray) else values
        point[name] = value.item() if isinstance(value, np.generic) else value
    return point


def _check(model: Any, target: Any, batch, keep, knobs, got: BatchCost) -> None:
    graphs: dict[tuple[int, int], Graph] = {}
    bad = []
    for i in range(batch.size):
        key = (int(batch[i]), int(keep[i]))
        if key not in graphs:
            graphs[key] = lower(model, batch=key[0], keep=key[1] or None)
        report = estimate(graphs[key], target, _scalar_point(knobs, i))
        for name in ("latency_s", "energy_j", "dram_bytes"):
            want = getattr(report, name)
            have = float(getattr(got, name)[i])
            if not abs(have - want) <= max(RTOL * abs(want), ATOL):
                bad.append((i, name, have, want, key, _scalar_point(knobs, i)))
    assert not bad, f"{len(bad)} mismatches, first: {bad[0]}"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stem", PRESETS)
def test_compiled_equals_scalar(stem: str, model: str) -> None:
    target = TARGETS[stem]
    n = POINTS_CPU_RM if target.kind == "cpu" and model.startswith("rm-") else POINTS
    seed = PRESETS.index(stem) * 100 + MODELS.index(model)
    batch, keep, knobs = _draw(target, model, n, seed)
    compiled = compile_model(model, target)
    got = compiled.evaluate(batch=batch, keep=keep, knobs=knobs)
    for name in ("latency_s", "energy_j", "dram_bytes"):
        values = getattr(got, name)
        assert values.shape == (n,) and values.dtype == np.float64
    _check(model, target, batch, keep, knobs, got)
    again = compiled.evaluate(batch=batch, keep=keep, knobs=knobs)  # memoized second pass
    np.testing.assert_array_equal(again.latency_s, got.latency_s)


@pytest.mark.parametrize("stem", PRESETS)
def test_int8_tables_and_fp16_activations(stem: str) -> None:
    target = TARGETS[stem]
    for dtype, where in (("int8", "embedding"), ("fp16", "model")):
        spec = copy.deepcopy(TINY_DLRM)
        spec["name"] = f"tiny-{dtype}"
        if where == "embedding":
            spec["embedding"]["dtype"] = dtype
        else:
            spec["dtype"] = dtype
        model = load_spec(spec)
        batch, keep, knobs = _draw(target, "rm-small", 40, PRESETS.index(stem))
        got = compile_model(model, target).evaluate(batch=batch, keep=keep, knobs=knobs)
        _check(model, target, batch, keep, knobs, got)


def test_defaults_and_scalar_inputs() -> None:
    target = TARGETS["accel-rpaccel"]
    compiled = compile_model("rm-small", target)
    assert compile_model("rm-small", target) is compiled
    got = compiled.evaluate(batch=[256], keep=[16], knobs={})
    report = estimate(lower("rm-small", batch=256, keep=16), target)
    assert got.latency_s[0] == pytest.approx(report.latency_s, rel=RTOL)
    assert got.energy_j[0] == pytest.approx(report.energy_j, rel=RTOL)
    assert got.dram_bytes[0] == pytest.approx(report.dram_bytes, rel=RTOL)


def test_bad_inputs() -> None:
    compiled = compile_model("rm-small", TARGETS["cpu-cascadelake"])
    with pytest.raises(KnobError):
        compiled.evaluate(batch=[1], keep=[0], knobs={"corez": 2})
    with pytest.raises(ValueError):
        compiled.evaluate(batch=[4], keep=[5], knobs={})
    with pytest.raises(ValueError):
        compiled.evaluate(batch=[0], keep=[0], knobs={})
    with pytest.raises(ValueError):
        compiled.evaluate(batch=[2.5], keep=[0], knobs={})
    with pytest.raises(KnobError):
        compile_model("rm-small", TARGETS["accel-rpaccel"]).evaluate(
            batch=[4], knobs={"dataflow": np.array(["xs"], dtype=object)}
        )
    with pytest.raises(CodesignError):  # din scores two outputs: no top_k
        compile_model("din", TARGETS["cpu-cascadelake"]).evaluate(batch=[4], keep=[2])


def test_partitioned_cycles_match_systolic() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    m, k, nn = rng.integers(1, 5000, n), rng.integers(1, 600, n), rng.integers(1, 600, n)
    rows, cols = rng.choice(SIZES, n), rng.choice(SIZES, n)
    parts = rng.integers(1, 17, n)
    dataflow = rng.choice(np.array(["os", "ws", "is"], dtype=object), n)
    got = _partitioned_cycles(m, k, nn, rows, cols, dataflow, parts)
    want = [
        partitioned_gemm_cost(
            int(m[i]),
            int(k[i]),
            int(nn[i]),
            rows=int(rows[i]),
            cols=int(cols[i]),
            dataflow=str(dataflow[i]),
            parts=int(parts[i]),
        ).compute_cycles
        for i in range(n)
    ]
    np.testing.assert_array_equal(got, want)


class _TinyTarget(BaseTarget):
    """A plugin-style target: each op costs its FLOPs at ``flops_per_s``."""

    name = "test/tiny"
    description = "one FLOP rate"
    kind = "test"
    supported_ops = frozenset(
        {"dense", "interaction", "embedding_bag", "concat", "elementwise", "top_k"}
    )

    def design_space(self) -> DesignSpace:
        return DesignSpace((Knob("flops_per_s", "float", 1e9, 1e6, 1e15),), target=self.name)

    def op_cost(self, op: OpView, point: Mapping[str, Any]) -> OpEstimate:
        latency = op.work.flops_per_item * op.batch / point["flops_per_s"]
        return OpEstimate(
            op.node.name,
            op.op,
            latency,
            energy_j=latency,
            dram_bytes=float(op.work.embedding_bytes_per_item * op.batch),
        )

    def hw_cost(self, point: Mapping[str, Any]) -> HardwareCost:
        return HardwareCost(area_mm2=None, power_w=1.0)


def test_fallback_for_other_targets() -> None:
    target = _TinyTarget()
    compiled = compile_model("rm-small", target)
    batch = np.array([1, 64, 300, 64])
    keep = np.array([0, 8, 0, 8])
    rates = np.array([1e9, 2e10, 5e8, 2e10])
    got = compiled.evaluate(batch=batch, keep=keep, knobs={"flops_per_s": rates})
    for i in range(batch.size):
        graph = lower("rm-small", batch=int(batch[i]), keep=int(keep[i]) or None)
        report = estimate(graph, target, {"flops_per_s": float(rates[i])})
        assert got.latency_s[i] == report.latency_s
        assert got.energy_j[i] == report.energy_j
        assert got.dram_bytes[i] == report.dram_bytes
