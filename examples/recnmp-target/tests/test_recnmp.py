"""codesign-recnmp: codesign's target contract, plus what near-memory pooling should show."""

from __future__ import annotations

import math

import pytest

from codesign.cost_models.analytical import estimate
from codesign.cost_models.workload import GATHER_OPS
from codesign.ir import lower
from codesign.plugins import load_target, target_entries
from codesign.testing.target_contract import TargetContract
from codesign_recnmp import NAME, RecNMPTarget
from codesign_recnmp.target import NMP_LOGIC_AREA_MM2, SRAM_UM2_PER_BYTE


class TestRecNMPContract(TargetContract):
    def make_target(self) -> RecNMPTarget:
        return RecNMPTarget()


def _gather_s(report) -> float:
    return sum(e.latency_s for e in report.ops if e.op in GATHER_OPS)


@pytest.fixture(scope="module")
def rmc2():
    return lower("dlrm-rmc2", batch=256)


def test_registered_under_its_entry_point(monkeypatch):
    monkeypatch.delenv("CODESIGN_NO_PLUGINS", raising=False)
    entry = target_entries()[NAME]
    assert entry.distribution == "codesign-recnmp" and not entry.builtin
    assert isinstance(load_target(NAME), RecNMPTarget)


@pytest.mark.parametrize("zipf_alpha", [0.3, 0.8, 1.0])
def test_embedding_latency_beats_cascade_lake_on_rmc2(rmc2, zipf_alpha):
    """RecNMP's premise: lookups with little locality are DRAM-bound on the host, and rank-level
    parallelism wins. Both targets see the same row popularity (Zipf ``zipf_alpha``)."""
    nmp = estimate(rmc2, RecNMPTarget(), {"zipf_alpha": zipf_alpha})
    cpu = estimate(rmc2, load_target("cpu/cascadelake"), {"zipf_alpha": zipf_alpha})
    assert _gather_s(nmp) < _gather_s(cpu)
    assert nmp.latency_s < cpu.latency_s


def test_highly_skewed_lookups_favour_the_cpus_caches(rmc2):
    """At FBGEMM's default skew (1.09) the hot rows of a batch sit in the host's 40 MB LLC and
    repeat within the batch, so the CPU's gathers catch up; NMP's advantage shrinks with skew."""
    gap = []
    for alpha in (0.3, 1.09):
        nmp = estimate(rmc2, RecNMPTarget(), {"zipf_alpha": alpha})
        cpu = estimate(rmc2, load_target("cpu/cascadelake"), {"zipf_alpha": alpha})
        gap.append(_gather_s(cpu) / _gather_s(nmp))
    assert gap[0] > 2 * gap[1]


def test_only_pooled_vectors_cross_the_channel(rmc2):
    report = estimate(rmc2, RecNMPTarget())
    bag = next(e for e in report.ops if e.op in GATHER_OPS)
    # 120 lookups of 256-byte rows per item: the channel carries indices and partial sums only
    assert bag.detail["channel_bytes"] < 0.2 * (bag.dram_bytes + bag.sram_bytes)
    assert bag.detail["where"] == "nmp"


def test_more_ranks_per_dimm_gather_faster(rmc2):
    target = RecNMPTarget()
    times = [_gather_s(estimate(rmc2, target, {"ranks_per_dimm": r})) for r in (1, 2, 4, 8)]
    assert times == sorted(times, reverse=True) and times[0] > 2 * times[-1]


def test_rankcache_and_hot_entry_profiling_cut_dram_bytes(rmc2):
    target = RecNMPTarget()
    none = estimate(rmc2, target, {"rankcache_bytes": 0}).dram_bytes
    lru = estimate(rmc2, target, {"hot_entry_profiling": False}).dram_bytes
    hot = estimate(rmc2, target, {}).dram_bytes
    assert none > lru > hot


def test_area_is_per_rank_nmp_logic_plus_rankcache():
    target = RecNMPTarget()
    point = target.design_space().resolve()
    ranks = 6 * 2 * 2
    expected = ranks * (NMP_LOGIC_AREA_MM2 + 128 * 1024 * SRAM_UM2_PER_BYTE / 1e6)
    hw = target.hw_cost(point)
    assert hw.area_mm2 == pytest.approx(expected, rel=1e-12)
    doubled = target.hw_cost(target.design_space().resolve({"ranks_per_dimm": 4}))
    assert doubled.area_mm2 == pytest.approx(2 * expected, rel=1e-12)
    assert hw.power_w > point["host_power_w"]


def test_schedule_overlaps_embeddings_with_the_bottom_mlp(rmc2):
    report = estimate(rmc2, RecNMPTarget())
    busy = report.schedule
    assert report.latency_s < sum(e.latency_s for e in report.ops)
    assert report.latency_s >= max(busy["nmp_busy_s"], busy["host_busy_s"]) * (1 - 1e-12)
    assert busy["overlap_s"] > 0
    assert math.isclose(
        busy["nmp_busy_s"] + busy["host_busy_s"], sum(e.latency_s for e in report.ops)
    )


def test_more_dimms_trade_rank_bandwidth_for_channel_partial_sums(rmc2):
    target = RecNMPTarget()
    bags = [
        next(e for e in estimate(rmc2, target, {"dimms_per_channel": d}).ops if e.op in GATHER_OPS)
        for d in (1, 4)
    ]
    assert bags[1].detail["channel_bytes"] > bags[0].detail["channel_bytes"]
    assert bags[1].memory_s - bags[1].detail["channel_s"] < (
        bags[0].memory_s - bags[0].detail["channel_s"]
    )
