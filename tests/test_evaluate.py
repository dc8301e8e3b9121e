"""The evaluator (codesign.evaluate) against a scalar reference built from the per-op model.

For random designs (1-3 stages on a CPU socket, a GPU or RPAccel partitions, with random batch
sizes, engines and knobs), every pool's service time, the energy per query and the chips' power
and area are recomputed here op by op: ``analytical.estimate`` on ``lower(model, batch, keep)``
for each inference batch, RecPipe's host sort, sub-batch fusion by its formula, and each chip's
``chip_cost``. The vectorized evaluator must agree to 1e-9."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from codesign import evaluate as ev
from codesign.cost_models.analytical import estimate
from codesign.design import LoadSettings, Pipeline, Stage
from codesign.ir.frontends.lower import lower
from codesign.plugins import load_target
from codesign.targets.accel import host_sort_s
from codesign.targets.base import filters_on_device, target_chip_cost

TARGETS = ("cpu/cascadelake", "gpu/nvidia/t4", "accel/rpaccel", "accel/tpu-like")


def _random_pipeline(rng: np.random.Generator) -> Pipeline | None:
    n = int(rng.integers(1, 4))
    items = [4096]
    for _ in range(n - 1):
        items.append(max(64, items[-1] >> int(rng.integers(1, 4))))
    stages = []
    for i in range(n):
        target = str(rng.choice(TARGETS))
        keep = items[i + 1] if i + 1 < n else 64
        knobs: dict = {}
        if target.startswith("cpu"):
            knobs["cores"] = int(rng.choice([1, 2, 4]))
        if target.startswith("accel"):
            knobs.update(
                rows=int(rng.choice([16, 32, 64])),
                cols=int(rng.choice([16, 32, 64])),
                sub_batch=int(rng.choice([0, 0, 64, 256])),
            )
            if rng.random() < 0.5:
                knobs["static_cache_bytes"] = int(rng.choice([0, 2**18, 2**20]))
        split = int(rng.integers(0, 3))
        batch = -(-items[i] // 2**split)
        stages.append(
            Stage(
                model=str(rng.choice(["rm-small", "rm-med", "rm-large"])),
                items=items[i],
                keep=keep,
                target=target,
                knobs=knobs,
                engines=int(rng.choice([1, 2])),
                batch=batch if batch < items[i] else 0,
                name=f"s{i}",
            )
        )
    return Pipeline("random", tuple(stages), LoadSettings(queries=400, warmup=50))


def _batch_cost(model, target, point, batch, keep):
    report = estimate(lower(model, batch=batch, keep=keep or None), load_target(target), point)
    return report.latency_s, report.energy_j


def _reference(p: Pipeline) -> tuple[list[float], float, float, float]:
    """(service per pool, energy per query, power, area), op by op."""
    placed = ev.place(p)
    services, energy = [], 0.0
    for group in ev.fused_groups(p):
        if len(group) == 1:
            i = group[0]
            st, point = p.stages[i], placed.points[i]
            on_device = filters_on_device(load_target(st.target))
            batch = st.batch or st.items
            full, rest = divmod(st.items, batch)
            k = st.keep if on_device and st.keep < st.items else 0
            lat, e = _batch_cost(st.model, st.target, point, batch, min(k, batch))
            service, energy_i = full * lat, full * e
            if rest:
                lat, e = _batch_cost(st.model, st.target, point, rest, min(k, rest))
                service, energy_i = service + lat, energy_i + e
            if not on_device and st.keep < st.items:
                service += host_sort_s(st.items)
            services.append(service)
            energy += energy_i
            continue
        head = p.stages[group[0]]
        sub = int(placed.points[group[0]]["sub_batch"])
        count = math.ceil(head.items / sub)
        per_sub = []
        for i in group:
            st = p.stages[i]
            share = max(1, round(sub * st.items / head.items))
            keep = max(1, round(share * st.keep / st.items))
            point = {**placed.points[i], "sub_batch": 0}
            lat, e = _batch_cost(st.model, st.target, point, share, keep if keep < share else 0)
            per_sub.append(lat)
            energy += count * e
        services.append(sum(per_sub) + (count - 1) * max(per_sub))
    power = area = 0.0
    for target in dict.fromkeys(st.target for st in p.stages):
        stages = [
            (placed.points[i], st.engines) for i, st in enumerate(p.stages) if st.target == target
        ]
        cost = target_chip_cost(load_target(target), stages, placed.chips[target])
        power += cost.power_w
        area += cost.area_mm2 or 0.0
    return services, energy, power, area


def test_evaluator_equals_the_per_op_reference_on_random_designs():
    rng = np.random.default_rng(7)
    designs = []
    while len(designs) < 150:
        p = _random_pipeline(rng)
        try:
            ev.place(p)
        except ev.Unbuildable:
            continue
        designs.append(p)
    context = ev.Context(qps=10.0, queries=400, warmup=50)
    results = ev.evaluate_batch(designs, context)
    fused = 0
    for p, m in zip(designs, results, strict=True):
        services, energy, power, area = _reference(p)
        fused += len(services) < len(p.stages)
        got = [pool.service_s_full_query for pool in m.pools]
        assert got == pytest.approx(services, rel=1e-9)
        assert m.energy_j == pytest.approx(energy, rel=1e-9)
        assert m.power_w == pytest.approx(power, rel=1e-9)
        assert m.area_mm2 == pytest.approx(area, rel=1e-9)
        assert m.unloaded_latency_s == pytest.approx(sum(services), rel=1e-9)
    assert fused >= 5  # sub-batch fusion was exercised


def test_batch_and_one_by_one_agree_and_are_deterministic():
    rng = np.random.default_rng(3)
    designs = [p for p in (_random_pipeline(rng) for _ in range(40)) if p is not None]
    context = ev.Context(qps=50.0, queries=400, warmup=50, sla_s=0.05, max_qps=True)
    together = ev.evaluate_batch(designs, context)
    for p, m in zip(designs, together, strict=True):
        alone = ev.evaluate_batch([p], context)[0]
        if isinstance(m, ev.Unbuildable):
            assert isinstance(alone, ev.Unbuildable) and str(alone) == str(m)
            continue
        assert alone == m


def test_unbuildable_designs_say_which_stage_and_resource():
    stage = Stage("rm-small", 4096, 64, "accel/rpaccel", {"rows": 128, "cols": 128}, 2)
    with pytest.raises(ev.Unbuildable, match=r"stages\[0\]\.engines: .* 32768 pes .* 16384"):
        ev.evaluate(Pipeline("p", (stage,)), ev.Context(qps=1.0))


def test_one_skeleton_with_some_designs_over_the_chip():
    """Designs of one shape priced together, some over the chip: those fail with their reason,
    the others get the metrics they get alone."""
    context = ev.Context(qps=20.0, queries=400, warmup=50)
    designs = [
        Pipeline(
            "p",
            (Stage("rm-small", 4096, 64, "accel/rpaccel", {"rows": r, "cols": 128}, engines),),
        )
        for r, engines in ((32, 1), (128, 2), (64, 2), (128, 1), (64, 4))
    ]
    together = ev.evaluate_batch(designs, context)
    assert [isinstance(m, ev.Unbuildable) for m in together] == [
        False, True, False, False, True,
    ]  # fmt: skip
    for p, m in zip(designs, together, strict=True):
        alone = ev.evaluate_batch([p], context)[0]
        assert repr(alone) == repr(m)  # NaN-aware: the same metrics, or the same reason


def test_context_and_designs_pickle():
    import pickle

    p = _random_pipeline(np.random.default_rng(0))
    context = ev.Context(qps=10.0, quality=ev.QualitySpec(source="table"))
    assert pickle.loads(pickle.dumps((p, context))) == (p, context)


def test_a_funnel_the_quality_table_cannot_answer_is_infeasible_and_the_batch_goes_on():
    """Table quality follows the funnel: S>L 4096>128 is RecPipe's measured row (0.9240),
    4096>256 lies between 4096>128 and 4096>512 (an estimate), 4096>1024 has no neighbours
    above: that design is :class:`ev.NoQuality` naming the funnel, and the others of the same
    batch are priced as they are alone."""
    context = ev.Context(qps=20.0, queries=400, warmup=50, quality=ev.QualitySpec(source="table"))

    def design(pool: int) -> Pipeline:
        return Pipeline(
            "p",
            (
                Stage("rm-small", 4096, pool, "cpu/cascadelake", {"cores": 2}, 2),
                Stage("rm-large", pool, 64, "cpu/cascadelake", {"cores": 2}, 2),
            ),
        )

    designs = [design(128), design(1024), design(256)]
    exact, missing, between = ev.evaluate_batch(designs, context)
    assert isinstance(missing, ev.NoQuality) and missing.kind == "quality"
    assert "funnel rm-small>rm-large 4096>1024" in str(missing) and "replay" in str(missing)
    assert (exact.quality, exact.quality_estimate) == (0.9240, False)
    assert "quality_estimate" not in exact.as_dict()
    assert between.quality_estimate and between.as_dict()["quality_estimate"] == 1.0
    assert between.quality == pytest.approx(0.9243)  # halfway in log2 from 128 to 512
    for p, m in zip(designs, (exact, missing, between), strict=True):
        assert repr(ev.evaluate_batch([p], context)[0]) == repr(m)
    with pytest.raises(ev.NoQuality, match="4096>1024"):
        ev.evaluate(design(1024), context)


def test_a_fitted_service_spread_sets_the_simulated_tail(tmp_path, monkeypatch):
    """With a service shape in the calibration (``plan run --calibrate``), calibrated host
    stages draw each query's service from it: at a load so light that no query waits, the
    p95 latency is the shape's 95th percentile times the mean service. A uniform shape on
    [0.5, 1.5] has that percentile at 1.45; the draws are rescaled to mean 1 over the
    queries, so the bound is loose by the sampling error of that mean (about 1 %)."""
    from codesign.cost_models.calibration import spread_probabilities

    cal = _empty_host_calibration(tmp_path, monkeypatch)
    stage = Stage("rm-small", 64, 8, "cpu/host", {"cores": 1}, cost_model="calibrated")
    context = ev.Context(qps=0.01, queries=2000, warmup=0)
    constant = ev.evaluate(Pipeline("p", (stage,)), context)
    assert constant.p95_latency_s == pytest.approx(constant.unloaded_latency_s, rel=1e-6)
    cal.stage_overhead = {"service_quantiles": (0.5 + spread_probabilities(41)).tolist()}
    cal.save(tmp_path / "calibration.json")
    spread = ev.evaluate(Pipeline("p", (stage,)), context)
    ratio = spread.p95_latency_s / constant.unloaded_latency_s
    assert ratio == pytest.approx(1.45, rel=0.02)
    assert spread.pools[0].mean_service_s == pytest.approx(constant.unloaded_latency_s, rel=1e-6)
    analytical = ev.evaluate(Pipeline("p", (replace(stage, cost_model="analytical"),)), context)
    assert analytical.p95_latency_s == pytest.approx(analytical.unloaded_latency_s, rel=1e-6)
    cal.stage_overhead = {"cold_s": 3e-4, "cold_tau_s": 100.0}
    cal.save(tmp_path / "calibration.json")
    cold = ev.evaluate(Pipeline("p", (stage,)), context)
    # the cold term at 0.01 QPS per engine: 3e-4 x exp(-0.01 x 100)
    extra = 3e-4 * math.exp(-1.0)
    assert cold.unloaded_latency_s == pytest.approx(constant.unloaded_latency_s + extra)
    assert cold.p95_latency_s == pytest.approx(constant.unloaded_latency_s + extra, rel=1e-6)


def test_the_frontend_stretches_engines_that_take_every_core(tmp_path, monkeypatch):
    """A fitted frontend of 0.2 cores shares the host with engines that take every core:
    their service is 1 / (1 - 0.2 / cores) longer; with a core left free it is not."""
    cal = _empty_host_calibration(tmp_path, monkeypatch)
    cal.stage_overhead = {"frontend_cores": 0.2, "frontend_cores_per_qps": 0.0}
    cal.save(tmp_path / "calibration.json")
    cores = int(load_target("cpu/host").design_space().defaults()["cores"])
    context = ev.Context(qps=0.01, queries=500, warmup=0)

    def p95(engines: int) -> tuple[float, float]:
        stage = Stage("rm-small", 64, 8, "cpu/host", {"cores": 1}, engines, cost_model="calibrated")
        m = ev.evaluate(Pipeline("p", (stage,)), context)
        return m.p95_latency_s, m.unloaded_latency_s

    full, unloaded = p95(cores)
    assert full == pytest.approx(unloaded / (1 - 0.2 / cores), rel=1e-6)
    if cores > 1:
        spare, unloaded = p95(cores - 1)
        assert spare == pytest.approx(unloaded, rel=1e-6)


def test_the_shared_term_is_paid_by_pools_of_several_engines_only(tmp_path, monkeypatch):
    """A fitted ``shared_s`` of 20 us is added to each query of a pool with two engines, and
    not to a pool with one."""
    cal = _empty_host_calibration(tmp_path, monkeypatch)
    context = ev.Context(qps=0.01, queries=500, warmup=0)

    def unloaded(engines: int) -> float:
        stage = Stage("rm-small", 64, 8, "cpu/host", {"cores": 1}, engines, cost_model="calibrated")
        return ev.evaluate(Pipeline("p", (stage,)), context).unloaded_latency_s

    before = {e: unloaded(e) for e in (1, 2)}
    cal.stage_overhead = {"shared_s": 20e-6}
    cal.save(tmp_path / "calibration.json")
    assert unloaded(1) == pytest.approx(before[1], rel=1e-12)
    assert unloaded(2) == pytest.approx(before[2] + 20e-6, rel=1e-9)


def test_the_ingress_delay_is_added_to_every_query_of_a_calibrated_host_design(
    tmp_path, monkeypatch
):
    """A fitted ``ingress_s`` of 25 us (the frontend's delay before stage 1) adds 25 us to
    the unloaded latency and to each percentile, and nothing to the pools' service."""
    cal = _empty_host_calibration(tmp_path, monkeypatch)
    stage = Stage("rm-small", 64, 8, "cpu/host", {"cores": 1}, cost_model="calibrated")
    context = ev.Context(qps=50.0, queries=2000, warmup=0)
    before = ev.evaluate(Pipeline("p", (stage,)), context)
    cal.stage_overhead = {"ingress_s": 25e-6}
    cal.save(tmp_path / "calibration.json")
    after = ev.evaluate(Pipeline("p", (stage,)), context)
    for key in ("unloaded_latency_s", "p50_latency_s", "p95_latency_s", "p99_latency_s"):
        assert getattr(after, key) == pytest.approx(getattr(before, key) + 25e-6, rel=1e-9)
    assert after.pools[0].mean_service_s == pytest.approx(before.pools[0].mean_service_s)


def _empty_host_calibration(tmp_path, monkeypatch):
    """An empty calibration of cpu/host in a cache directory of the test's own, saved; the
    test sets its ``stage_overhead`` and saves it again."""
    from codesign.cost_models.calibration import Calibration

    monkeypatch.setenv("CODESIGN_CACHE_DIR", str(tmp_path))
    cal = Calibration(knobs={}, target="cpu/host", threads=1, cpu_model="x", tvm_version="0.27")
    cal.save(tmp_path / "calibration.json")
    return cal
