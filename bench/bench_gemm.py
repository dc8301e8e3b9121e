"""Time our closed-form systolic model against SCALE-Sim 3.0.0 on MLP-sized GEMMs.

Run ``python bench/bench_gemm.py --quick`` (a few seconds) or without ``--quick`` (the shapes
of ../shared/docs/REFERENCE-TOOLS.md §1 plus RM-large's MLP layers at batch 256 and 4096;
SCALE-Sim runs predicted to take longer than ``--max-sim-s`` are skipped and marked).

Prints one row per (shape, array, dataflow): our cycles, SCALE-Sim's, whether cycles and the
three SRAM counters are equal, the time per evaluation of each, the speedup, and the ratio of
our DRAM estimate (``dram_traffic_words``) to SCALE-Sim's DRAM counters (reads, writes).
Not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import timeit
from dataclasses import dataclass

from codesign.cost_models.systolic import DATAFLOWS, dram_traffic_words, gemm_cost
from codesign.testing.scalesim import ScaleSimResult, run_scalesim_gemm

# KB per operand SRAM, as in ../shared/docs/REFERENCE-TOOLS.md §1; SCALE-Sim's word is one byte.
SRAM_KB = 256
# SCALE-Sim's wall time grows with simulated cycles x array width (same doc: 8.9 s for 36735
# cycles on 32x32); used only to skip runs predicted to be too long.
SIM_S_PER_CYCLE_COL = 8e-6

RM_LARGE_MLP = [(13, 512), (512, 256), (256, 128), (128, 64), (64, 32), (383, 96), (96, 1)]


@dataclass(frozen=True)
class Case:
    label: str
    m: int
    k: int
    n: int
    rows: int
    cols: int
    dataflow: str


def cases(quick: bool) -> list[Case]:
    out: list[Case] = []

    def add(label: str, m: int, k: int, n: int, arrays: list[int]) -> None:
        for a in arrays:
            for df in DATAFLOWS:
                out.append(Case(label, m, k, n, a, a, df))

    if quick:
        add("ref 256,64,256", 256, 256, 64, [128])
        add("rm-large top1 b256", 256, 383, 96, [128])
        return out
    # ../shared/docs/REFERENCE-TOOLS.md §1 table, given there as (M, N, K).
    add("ref 256,256,512", 256, 512, 256, [32, 128])
    add("ref 256,64,256", 256, 256, 64, [32, 128])
    add("ref 256,1024,1024", 256, 1024, 1024, [128])
    for batch in (256, 4096):
        for i, (k, n) in enumerate(RM_LARGE_MLP):
            add(f"rm-large mlp{i} b{batch}", batch, k, n, [32, 128])
    return out


def our_time_us(case: Case) -> float:
    timer = timeit.Timer(
        lambda: gemm_cost(
            case.m, case.k, case.n, rows=case.rows, cols=case.cols, dataflow=case.dataflow
        )
    )
    number = 2000
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def dram_ratios(case: Case, ref: ScaleSimResult) -> tuple[float, float]:
    words = SRAM_KB * 1024
    ours = dram_traffic_words(
        case.m,
        case.k,
        case.n,
        rows=case.rows,
        cols=case.cols,
        dataflow=case.dataflow,
        ifmap_sram_words=words,
        filter_sram_words=words,
        ofmap_sram_words=words,
    )
    ref_reads = ref.dram_ifmap_reads + ref.dram_filter_reads
    # SCALE-Sim reads no partial sums back, so compare operand reads only.
    our_reads = ours.ifmap_read_words + ours.filter_read_words
    return our_reads / ref_reads, ours.write_words / max(ref.dram_ofmap_writes, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two shapes, a few seconds")
    parser.add_argument(
        "--max-sim-s",
        type=float,
        default=30.0,
        help="skip SCALE-Sim runs predicted to take longer than this (default 30 s)",
    )
    args = parser.parse_args(argv)

    header = (
        f"{'shape':<22} {'MxKxN':<15} {'array':<7} {'df':<3} {'our cycles':>11} "
        f"{'SCALE-Sim':>11} {'equal':>5} {'our us':>7} {'SS s':>7} {'speedup':>9} "
        f"{'DRAM rd':>8} {'DRAM wr':>8}"
    )
    print(header)
    print("-" * len(header))
    mismatches = 0
    with tempfile.TemporaryDirectory(prefix="bench-gemm-") as tmp:
        for i, case in enumerate(cases(args.quick)):
            ours = gemm_cost(
                case.m, case.k, case.n, rows=case.rows, cols=case.cols, dataflow=case.dataflow
            )
            us = our_time_us(case)
            shape = f"{case.m}x{case.k}x{case.n}"
            array = f"{case.rows}x{case.cols}"
            row = (
                f"{case.label:<22} {shape:<15} {array:<7} {case.dataflow:<3} "
                f"{ours.compute_cycles:>11}"
            )
            predicted_s = ours.compute_cycles * case.cols * SIM_S_PER_CYCLE_COL
            if predicted_s > args.max_sim_s:
                print(
                    f"{row} {'skipped':>11} {'-':>5} {us:>7.1f} ~{predicted_s:>5.0f}s", flush=True
                )
                continue
            print(
                f"[{i}] SCALE-Sim {shape} {case.rows}x{case.cols} {case.dataflow}", file=sys.stderr
            )
            ref = run_scalesim_gemm(
                case.m,
                case.k,
                case.n,
                rows=case.rows,
                cols=case.cols,
                dataflow=case.dataflow,
                workdir=f"{tmp}/{i}",
                ifmap_sram_kb=SRAM_KB,
                filter_sram_kb=SRAM_KB,
                ofmap_sram_kb=SRAM_KB,
            )
            equal = (
                ours.compute_cycles,
                ours.sram_ifmap_reads,
                ours.sram_filter_reads,
                ours.sram_ofmap_writes,
            ) == (
                ref.compute_cycles,
                ref.sram_ifmap_reads,
                ref.sram_filter_reads,
                ref.sram_ofmap_writes,
            )
            mismatches += not equal
            rd, wr = dram_ratios(case, ref)
            speedup = ref.wall_s / (us * 1e-6)
            print(
                f"{row} {ref.compute_cycles:>11} {'yes' if equal else 'NO':>5} {us:>7.1f} "
                f"{ref.wall_s:>7.2f} {speedup:>9.2e} {rd:>8.3f} {wr:>8.3f}",
                flush=True,
            )
    print(
        "\nequal: compute cycles and SRAM ifmap/filter reads and ofmap writes all identical. "
        "DRAM rd/wr: our dram_traffic_words estimate over SCALE-Sim's DRAM counters "
        f"({SRAM_KB} KB per SRAM, CALC mode)."
    )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
