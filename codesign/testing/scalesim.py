"""Run SCALE-Sim 3.0.0 on one GEMM, for tests and benchmarks that compare our systolic model.

SCALE-Sim is imported lazily (``pip install codesign[ref]``). The config, topology and layout
files follow ../shared/docs/REFERENCE-TOOLS.md §1: every section the 3.0.0 parser requires, no
inline comments, a trailing comma on each topology row, a header-only layout file, and
``save_disk_space=True`` so that only the three report CSVs are written, all under ``workdir``.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_CONFIG = """\
[general]
run_name = {run_name}
[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {ifmap_kb}
FilterSramSzkB: {filter_kb}
OfmapSramSzkB: {ofmap_kb}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth : {bandwidth}
Dataflow : {dataflow}
MemoryBanks: 1
ReadRequestBuffer: 512
WriteRequestBuffer: 512
[layout]
IfmapCustomLayout: False
FilterCustomLayout: False
IfmapSRAMBankBandwidth: {bandwidth}
IfmapSRAMBankNum: 1
IfmapSRAMBankPort: 2
FilterSRAMBankBandwidth: {bandwidth}
FilterSRAMBankNum: 1
FilterSRAMBankPort: 2
[sparsity]
SparsitySupport: false
[run_presets]
InterfaceBandwidth: {interface}
UseRamulatorTrace: False
"""


@dataclass(frozen=True)
class ScaleSimResult:
    """One layer's SCALE-Sim report items (counts in words; SCALE-Sim's word is one byte)."""

    compute_cycles: int  # "Total Cycles": compute plus stalls
    cycles_incl_prefetch: int  # "Total Cycles (incl. prefetch)"
    stall_cycles: int
    overall_util_percent: float
    mapping_efficiency_percent: float
    compute_util_percent: float
    sram_ifmap_reads: int
    sram_filter_reads: int
    sram_ofmap_writes: int
    dram_ifmap_reads: int
    dram_filter_reads: int
    dram_ofmap_writes: int
    wall_s: float  # wall time of the simulation itself (files written, run, reports read)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_scalesim_gemm(
    m: int,
    k: int,
    n: int,
    *,
    rows: int,
    cols: int,
    dataflow: str,
    workdir: str | Path | None = None,
    ifmap_sram_kb: int = 256,
    filter_sram_kb: int = 256,
    ofmap_sram_kb: int = 256,
    bandwidth_words_per_cycle: int | None = None,
    quiet: bool = True,
) -> ScaleSimResult:
    """Simulate ``A[m, k] @ B[k, n]`` on a ``rows x cols`` array with SCALE-Sim 3.0.0.

    ``bandwidth_words_per_cycle=None`` selects CALC mode (stall-free, SCALE-Sim's estimate of
    the bandwidth needed); a number selects USER mode with that DRAM bandwidth. Files go under
    ``workdir`` (a temporary directory, removed afterwards, when None). ``quiet`` swallows what
    SCALE-Sim prints on stdout.
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="scalesim-") as tmp:
            return run_scalesim_gemm(
                m,
                k,
                n,
                rows=rows,
                cols=cols,
                dataflow=dataflow,
                workdir=tmp,
                ifmap_sram_kb=ifmap_sram_kb,
                filter_sram_kb=filter_sram_kb,
                ofmap_sram_kb=ofmap_sram_kb,
                bandwidth_words_per_cycle=bandwidth_words_per_cycle,
                quiet=quiet,
            )

    from scalesim.scale_sim import scalesim  # lazy: optional reference tool

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    run_name = f"gemm_{m}x{k}x{n}_{rows}x{cols}_{dataflow}"
    cfg = work / f"{run_name}.cfg"
    topo = work / f"{run_name}_topo.csv"
    layout = work / f"{run_name}_layout.csv"
    cfg.write_text(
        _CONFIG.format(
            run_name=run_name,
            rows=rows,
            cols=cols,
            ifmap_kb=ifmap_sram_kb,
            filter_kb=filter_sram_kb,
            ofmap_kb=ofmap_sram_kb,
            bandwidth=bandwidth_words_per_cycle or 10,
            dataflow=dataflow,
            interface="CALC" if bandwidth_words_per_cycle is None else "USER",
        )
    )
    # SCALE-Sim's GEMM topology columns are M, N, K; the parser drops the last field.
    topo.write_text(f"Layer, M, N, K,\n{run_name}, {m}, {n}, {k},\n")
    layout.write_text("Layer name,\n")

    sink = io.StringIO() if quiet else None
    start = time.perf_counter()
    redirect = contextlib.redirect_stdout(sink) if sink is not None else contextlib.nullcontext()
    with redirect, warnings.catch_warnings():
        # SCALE-Sim 3.0.0 calls int() on a 1-element array (double_buffered_scratchpad_mem.py).
        warnings.filterwarnings("ignore", "Conversion of an array with ndim", DeprecationWarning)
        sim = scalesim(
            save_disk_space=True,
            verbose=False,
            config=str(cfg),
            topology=str(topo),
            layout=str(layout),
            input_type_gemm=True,
        )
        sim.run_scale(top_path=str(work / "out"))
        layer = sim.runner.single_layer_sim_object_list[0]
        incl_prefetch, cycles, stalls, util, map_eff, comp_util = layer.get_compute_report_items()
        detail = layer.get_detail_report_items()
    wall_s = time.perf_counter() - start
    return ScaleSimResult(
        compute_cycles=int(cycles),
        cycles_incl_prefetch=int(incl_prefetch),
        stall_cycles=int(stalls),
        overall_util_percent=float(util),
        mapping_efficiency_percent=float(map_eff),
        compute_util_percent=float(comp_util),
        sram_ifmap_reads=int(detail[2]),
        sram_filter_reads=int(detail[5]),
        sram_ofmap_writes=int(detail[8]),
        dram_ifmap_reads=int(detail[11]),
        dram_filter_reads=int(detail[14]),
        dram_ofmap_writes=int(detail[17]),
        wall_s=wall_s,
    )
