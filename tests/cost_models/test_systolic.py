"""The systolic-array GEMM model against SCALE-Sim 3.0.0's conventions.

Three layers of evidence:

1. a property test against a fold-by-fold tally written independently here, the way SCALE-Sim's
   ``compute/systolic_compute_{os,ws,is}.py`` walk the folds (no SCALE-Sim needed);
2. golden rows from ../shared/docs/REFERENCE-TOOLS.md §1, "Results on MLP-sized layers"
   (SCALE-Sim 3.0.0 output, CALC mode, 256 KB SRAMs), checked by arithmetic only;
3. the acceptance test: SCALE-Sim 3.0.0 itself on small GEMMs, with exact equality of compute
   cycles and the three SRAM counters.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codesign.cost_models.systolic import (
    DATAFLOWS,
    GemmCost,
    dram_traffic_words,
    gemm_cost,
    partitioned_gemm_cost,
)

# --- 1. independent fold-by-fold reference -----------------------------------------------------


def _tiles(extent: int, size: int) -> list[int]:
    """Used lengths of the folds that cover ``extent`` with tiles of ``size``."""
    return [min(size, extent - start) for start in range(0, extent, size)]


def reference(m: int, k: int, n: int, rows: int, cols: int, df: str) -> dict[str, float]:
    """Walk the folds (column fold outer, row fold inner) and tally what each one costs."""
    spatial = {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}
    sr, sc, t = spatial[df]
    cycles = 0
    ifmap = filt = ofmap = 0
    map_eff: list[float] = []
    comp_util: list[float] = []
    for col_used in _tiles(sc, cols):
        for row_used in _tiles(sr, rows):
            if df == "os":  # rows hold M, cols hold N, K streams through
                fold_cycles = (t - 1 + rows) + cols - 1  # skewed demand rows
                util_cycles = fold_cycles
                ifmap += row_used * t
                filt += col_used * t
                ofmap += row_used * col_used + rows + cols  # SCALE-Sim's padded-shape quirk
            else:  # weights (ws) or inputs (is) held in place: R load cycles, then T stream
                fold_cycles = rows + (t + rows - 1) + cols - 1
                util_cycles = rows + (rows + cols + t - 2) + cols - 1  # demand shape, unskewed
                if df == "ws":  # rows hold K, cols hold N, M streams through
                    ifmap += t * row_used
                    filt += row_used * col_used
                    ofmap += t * col_used
                else:  # rows hold K, cols hold M, N streams through
                    ifmap += row_used * col_used
                    filt += t * row_used
                    ofmap += t * col_used
            cycles += fold_cycles
            map_eff.append(row_used * col_used / (rows * cols))
            comp_util.append(row_used * col_used * t / (rows * cols * util_cycles))
    return {
        "folds": len(map_eff),
        "compute_cycles": cycles - 1,
        "sram_ifmap_reads": ifmap,
        "sram_filter_reads": filt,
        "sram_ofmap_writes": ofmap,
        "mapping_efficiency": sum(map_eff) / len(map_eff),
        "compute_utilization": sum(comp_util) / len(comp_util),
    }


dims = st.integers(min_value=1, max_value=300)
array_dims = st.one_of(st.integers(min_value=1, max_value=40), st.sampled_from([64, 128, 256]))


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    m=dims,
    k=dims,
    n=dims,
    rows=array_dims,
    cols=array_dims,
    df=st.sampled_from(DATAFLOWS),
)
def test_matches_fold_by_fold_reference(
    m: int, k: int, n: int, rows: int, cols: int, df: str
) -> None:
    cost = gemm_cost(m, k, n, rows=rows, cols=cols, dataflow=df)
    ref = reference(m, k, n, rows, cols, df)
    for name in ("folds", "compute_cycles", "sram_ifmap_reads", "sram_filter_reads"):
        assert getattr(cost, name) == ref[name], name
    assert cost.sram_ofmap_writes == ref["sram_ofmap_writes"]
    assert cost.mapping_efficiency == pytest.approx(ref["mapping_efficiency"], rel=1e-12)
    assert cost.compute_utilization == pytest.approx(ref["compute_utilization"], rel=1e-12)
    assert cost.macs == m * k * n
    assert cost.overall_utilization == pytest.approx(
        m * k * n / (rows * cols * max(cost.compute_cycles, 1))
    )
    assert 0 < cost.mapping_efficiency <= 1
    assert 0 < cost.compute_utilization <= 1
    # The formulas of ../shared/docs/REFERENCE-TOOLS.md §1, as written there.
    sr, sc, t = {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[df]
    per_fold = rows + cols + t - 2 if df == "os" else 2 * rows + cols + t - 2
    assert cost.compute_cycles == math.ceil(sr / rows) * math.ceil(sc / cols) * per_fold - 1


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    m=st.integers(min_value=1, max_value=2000),
    k=dims,
    n=dims,
    rows=array_dims,
    cols=array_dims,
    df=st.sampled_from(DATAFLOWS),
    parts=st.integers(min_value=1, max_value=70),
)
def test_partitioned_splits_batch_evenly(
    m: int, k: int, n: int, rows: int, cols: int, df: str, parts: int
) -> None:
    whole = gemm_cost(m, k, n, rows=rows, cols=cols, dataflow=df)
    split = partitioned_gemm_cost(m, k, n, rows=rows, cols=cols, dataflow=df, parts=parts)
    sizes = [p.m for p in split.part_costs]
    assert sum(sizes) == m
    assert len(sizes) == min(parts, m)
    assert max(sizes) - min(sizes) <= 1
    assert split.compute_cycles == max(p.compute_cycles for p in split.part_costs)
    assert split.compute_cycles <= whole.compute_cycles
    assert split.sram_ifmap_reads == sum(p.sram_ifmap_reads for p in split.part_costs)
    assert split.sram_filter_reads == sum(p.sram_filter_reads for p in split.part_costs)
    assert split.sram_ofmap_writes == sum(p.sram_ofmap_writes for p in split.part_costs)
    assert split.macs == whole.macs == m * k * n
    # SCALE-Sim's overall utilization divides by the 0-indexed last cycle, so it may pass 1.
    assert split.macs <= parts * rows * cols * (split.compute_cycles + 1)


def test_partitioned_with_one_part_is_the_whole_gemm() -> None:
    whole = gemm_cost(300, 64, 100, rows=16, cols=8, dataflow="ws")
    one = partitioned_gemm_cost(300, 64, 100, rows=16, cols=8, dataflow="ws", parts=1)
    assert one.part_costs == (whole,)
    for name in GemmCost.__dataclass_fields__:
        assert getattr(one, name) == pytest.approx(getattr(whole, name)), name


def test_partitioned_example() -> None:
    # M=10 over 4 parts: 3, 3, 2, 2 rows; os on 2x4 takes ceil(3/2)*ceil(5/4) folds per part.
    split = partitioned_gemm_cost(10, 7, 5, rows=2, cols=4, dataflow="os", parts=4)
    assert [p.m for p in split.part_costs] == [3, 3, 2, 2]
    assert split.compute_cycles == 2 * 2 * (2 + 4 + 7 - 2) - 1
    assert split.sram_ifmap_reads == 10 * 7 * 2


# --- DRAM estimate ------------------------------------------------------------------------------

sram_words = st.one_of(st.just(0), st.integers(min_value=1, max_value=1 << 20))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    m=dims,
    k=dims,
    n=dims,
    rows=array_dims,
    cols=array_dims,
    df=st.sampled_from(DATAFLOWS),
    ifmap=sram_words,
    filt=sram_words,
    ofmap=sram_words,
)
def test_dram_traffic_at_least_compulsory_and_monotone(
    m: int, k: int, n: int, rows: int, cols: int, df: str, ifmap: int, filt: int, ofmap: int
) -> None:
    def traffic(scale: float):
        return dram_traffic_words(
            m,
            k,
            n,
            rows=rows,
            cols=cols,
            dataflow=df,
            ifmap_sram_words=int(ifmap * scale),
            filter_sram_words=int(filt * scale),
            ofmap_sram_words=int(ofmap * scale),
        )

    t = traffic(1.0)
    assert t.ifmap_read_words >= m * k
    assert t.filter_read_words >= k * n
    assert t.read_words >= m * k + k * n
    assert t.write_words >= m * n
    assert t.total_words == t.read_words + t.write_words
    smaller = traffic(0.5)
    assert smaller.read_words >= t.read_words
    assert smaller.write_words >= t.write_words


@pytest.mark.parametrize("df", DATAFLOWS)
def test_dram_traffic_is_compulsory_when_everything_fits(df: str) -> None:
    big = 1 << 30
    t = dram_traffic_words(
        256,
        512,
        256,
        rows=32,
        cols=32,
        dataflow=df,
        ifmap_sram_words=big,
        filter_sram_words=big,
        ofmap_sram_words=big,
    )
    assert (t.ifmap_read_words, t.filter_read_words) == (256 * 512, 512 * 256)
    assert (t.ofmap_write_words, t.ofmap_read_words) == (256 * 256, 0)


def test_dram_traffic_refetch_without_sram() -> None:
    # No SRAM: os re-reads A per N fold and B per M fold; ws spills partial sums per K fold.
    none = {"ifmap_sram_words": 0, "filter_sram_words": 0, "ofmap_sram_words": 0}
    os_ = dram_traffic_words(64, 40, 48, rows=16, cols=8, dataflow="os", **none)
    assert os_.ifmap_read_words == 64 * 40 * 6
    assert os_.filter_read_words == 40 * 48 * 4
    ws = dram_traffic_words(64, 40, 48, rows=16, cols=8, dataflow="ws", **none)
    assert ws.ofmap_write_words == 64 * 48 * 3
    assert ws.ofmap_read_words == 64 * 48 * 2


# --- input validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"m": 0}, "m must be a positive integer, got 0"),
        ({"k": -3}, "k must be a positive integer, got -3"),
        ({"n": 2.5}, "n must be a positive integer"),
        ({"n": True}, "n must be a positive integer"),
        ({"rows": 0}, "rows must be a positive integer"),
        ({"cols": "8"}, "cols must be a positive integer"),
        ({"dataflow": "rs"}, "unknown dataflow 'rs'; expected one of os, ws, is"),
        ({"dataflow": "OS"}, "unknown dataflow"),
    ],
)
def test_rejects_bad_input(kwargs: dict, message: str) -> None:
    args = {"m": 4, "k": 4, "n": 4, "rows": 4, "cols": 4, "dataflow": "os"} | kwargs
    m, k, n = args.pop("m"), args.pop("k"), args.pop("n")
    with pytest.raises(ValueError, match=message):
        gemm_cost(m, k, n, **args)


def test_rejects_bad_parts_and_sram() -> None:
    with pytest.raises(ValueError, match="parts must be a positive integer"):
        partitioned_gemm_cost(4, 4, 4, rows=4, cols=4, dataflow="os", parts=0)
    with pytest.raises(ValueError, match="filter_sram_words must be a non-negative integer"):
        dram_traffic_words(
            4,
            4,
            4,
            rows=4,
            cols=4,
            dataflow="os",
            ifmap_sram_words=1,
            filter_sram_words=-1,
            ofmap_sram_words=1,
        )


def test_as_dict_round_trips() -> None:
    cost = gemm_cost(3, 5, 7, rows=4, cols=2, dataflow="is")
    assert GemmCost(**cost.as_dict()) == cost
    assert cost.as_dict()["dataflow"] == "is"


# --- 2. golden rows: ../shared/docs/REFERENCE-TOOLS.md §1, "Results on MLP-sized layers" ----
# SCALE-Sim 3.0.0, CALC mode, 256 KB per SRAM. Columns: array, df, (M, N, K) as in the table,
# folds, compute cycles, SRAM ifmap reads, filter reads, ofmap writes.
GOLDEN = [
    (32, "os", (256, 256, 512), 64, 36735, 1048576, 1048576, 69632),
    (32, "ws", (256, 256, 512), 128, 44799, 1048576, 131072, 1048576),
    (32, "is", (256, 256, 512), 128, 44799, 131072, 1048576, 1048576),
    (32, "os", (256, 64, 256), 16, 5087, 131072, 131072, 17408),
    (32, "ws", (256, 64, 256), 16, 5599, 131072, 16384, 131072),
    (32, "is", (256, 64, 256), 64, 10111, 65536, 131072, 131072),
    (128, "os", (256, 256, 512), 4, 3063, 262144, 262144, 66560),
    (128, "ws", (256, 256, 512), 8, 5103, 262144, 131072, 262144),
    (128, "is", (256, 256, 512), 8, 5103, 131072, 262144, 262144),
    (128, "os", (256, 64, 256), 2, 1019, 65536, 32768, 16896),
    (128, "ws", (256, 64, 256), 2, 1275, 65536, 16384, 32768),
    (128, "is", (256, 64, 256), 4, 1783, 65536, 32768, 32768),
    (128, "os", (256, 1024, 1024), 16, 20447, 2097152, 2097152, 266240),
    (128, "ws", (256, 1024, 1024), 64, 40831, 2097152, 1048576, 2097152),
    (128, "is", (256, 1024, 1024), 16, 22495, 262144, 2097152, 2097152),
    (128, "os", (1024, 1024, 1024), 64, 81791, 8388608, 8388608, 1064960),
    (128, "ws", (1024, 1024, 1024), 64, 89983, 8388608, 1048576, 8388608),
    (128, "is", (1024, 1024, 1024), 64, 89983, 1048576, 8388608, 8388608),
]


@pytest.mark.parametrize(
    ("array", "df", "mnk", "folds", "cycles", "ifmap", "filt", "ofmap"),
    GOLDEN,
    ids=[f"{g[0]}x{g[0]}-{g[1]}-{'x'.join(map(str, g[2]))}" for g in GOLDEN],
)
def test_golden_reference_tools_table(
    array: int,
    df: str,
    mnk: tuple[int, int, int],
    folds: int,
    cycles: int,
    ifmap: int,
    filt: int,
    ofmap: int,
) -> None:
    m, n, k = mnk  # the table lists M, N, K (SCALE-Sim's topology column order)
    cost = gemm_cost(m, k, n, rows=array, cols=array, dataflow=df)
    assert cost.folds == folds
    assert cost.compute_cycles == cycles
    assert (cost.sram_ifmap_reads, cost.sram_filter_reads, cost.sram_ofmap_writes) == (
        ifmap,
        filt,
        ofmap,
    )


# --- 3. acceptance: SCALE-Sim 3.0.0 itself -------------------------------------------------------
# (M, K, N): non-multiples of the array, K=1, N=1, M=1, and a few that fill it exactly.
SHAPES = [
    (1, 64, 32),
    (1, 1, 1),
    (37, 1, 100),
    (37, 100, 1),
    (100, 37, 1),
    (8, 8, 8),
    (16, 24, 8),
    (20, 30, 40),
    (64, 17, 9),
    (13, 64, 48),
    (33, 65, 17),
    (5, 200, 3),
]
ARRAYS = [(8, 8), (16, 8)]  # square and non-square, so swapped rows/cols would show


@pytest.mark.parametrize("df", DATAFLOWS)
@pytest.mark.parametrize(("rows", "cols"), ARRAYS, ids=[f"{r}x{c}" for r, c in ARRAYS])
@pytest.mark.parametrize("mkn", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_equals_scalesim(
    mkn: tuple[int, int, int], rows: int, cols: int, df: str, tmp_path: Path
) -> None:
    pytest.importorskip("scalesim")
    from codesign.testing.scalesim import run_scalesim_gemm

    m, k, n = mkn
    ref = run_scalesim_gemm(m, k, n, rows=rows, cols=cols, dataflow=df, workdir=tmp_path)
    ours = gemm_cost(m, k, n, rows=rows, cols=cols, dataflow=df)
    assert ref.stall_cycles == 0  # CALC mode
    assert (
        ours.compute_cycles,
        ours.sram_ifmap_reads,
        ours.sram_filter_reads,
        ours.sram_ofmap_writes,
    ) == (ref.compute_cycles, ref.sram_ifmap_reads, ref.sram_filter_reads, ref.sram_ofmap_writes)
    # SCALE-Sim averages per-fold floats, so these agree to rounding, not bit for bit.
    assert ours.mapping_efficiency * 100 == pytest.approx(ref.mapping_efficiency_percent, rel=1e-9)
    assert ours.compute_utilization * 100 == pytest.approx(ref.compute_util_percent, rel=1e-9)
    assert ours.overall_utilization * 100 == pytest.approx(ref.overall_util_percent, rel=1e-9)


def test_scalesim_runner_writes_only_under_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("scalesim")
    from codesign.testing.scalesim import run_scalesim_gemm

    cwd = tmp_path / "cwd"
    work = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    run_scalesim_gemm(5, 6, 7, rows=4, cols=4, dataflow="ws", workdir=work)
    assert list(cwd.iterdir()) == []
    written = sorted(p.name for p in work.rglob("*") if p.is_file())
    reports = ["BANDWIDTH_REPORT.csv", "COMPUTE_REPORT.csv", "DETAILED_ACCESS_REPORT.csv"]
    assert [name for name in written if name.endswith("REPORT.csv")] == reports
    assert not [name for name in written if "TRACE" in name]  # save_disk_space=True
