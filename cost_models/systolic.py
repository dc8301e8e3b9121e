"""Closed-form cost of a GEMM on a weight/input/output-stationary systolic array.

The numbers follow SCALE-Sim 3.0.0's conventions exactly, so that SCALE-Sim can serve as the
reference (``tests/cost_models/test_systolic.py`` checks equality against SCALE-Sim itself), while
one evaluation here takes microseconds instead of SCALE-Sim's seconds to minutes.

Notation: ``C[m, n] = A[m, k] @ B[k, n]``; A is the ifmap (inputs, M is the batch), B the filter
(weights). The array has ``rows x cols`` PEs. SCALE-Sim maps the GEMM onto the array as a spatial
``Sr x Sc`` tile grid and a temporal extent ``T`` (../shared/docs/REFERENCE-TOOLS.md §1):

====  ===  ===  ===  ==========================
df    Sr   Sc   T    cycles per fold
====  ===  ===  ===  ==========================
os    M    N    K    ``R + C + T - 2``
ws    K    N    M    ``2R + C + T - 2``
is    K    M    N    ``2R + C + T - 2``
====  ===  ===  ===  ==========================

``folds = ceil(Sr/R) * ceil(Sc/C)`` and ``compute_cycles = folds * per_fold - 1`` (SCALE-Sim's
"Total Cycles" in CALC mode, where stalls are zero; the ``- 1`` is its 0-indexed last cycle).
SCALE-Sim walks the folds column fold outer, row fold inner; the DRAM estimate below uses that
order.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass
from typing import Any

DATAFLOWS = ("os", "ws", "is")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _positive_int(name: str, value: object) -> int:
    if type(value) is int and value > 0:  # the common case, kept fast
        return value
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"{name} must be a positive integer, got {number}")
    return number


def _check_dataflow(dataflow: object) -> str:
    if not isinstance(dataflow, str) or dataflow not in DATAFLOWS:
        raise ValueError(f"unknown dataflow {dataflow!r}; expected one of {', '.join(DATAFLOWS)}")
    return dataflow


@dataclass(frozen=True)
class GemmCost:
    """Cost of ``C[m, n] = A[m, k] @ B[k, n]`` on one ``rows x cols`` array (SCALE-Sim units).

    - ``compute_cycles``: SCALE-Sim's "Total Cycles" (compute plus stalls; stalls are zero in its
      CALC bandwidth mode).
    - ``sram_*``: SCALE-Sim's SRAM access counters in words (its word is one byte). For ``os`` the
      ofmap writes include SCALE-Sim's counting quirk of ``rows + cols`` extra writes per fold
      (``systolic_compute_os.py`` adds the padded tile's shape sum).
    - ``mapping_efficiency``: SCALE-Sim's "Mapping Efficiency %" / 100, the mean over folds of the
      fraction of PEs holding a mapped element.
    - ``compute_utilization``: SCALE-Sim's "Compute Util %" / 100, the mean over folds of
      ``used PEs * T / (rows * cols * fold cycles)``. SCALE-Sim's fold cycles here come from the
      demand-matrix shape, ``R + C + T - 2`` for os but ``2R + 2C + T - 3`` for ws and is (one
      more skew than those folds really take); we reproduce that.
    - ``overall_utilization``: SCALE-Sim's "Overall Util %" / 100,
      ``macs / (rows * cols * compute_cycles)`` (``compute_cycles`` taken as at least 1). As the
      divisor is the 0-indexed last cycle, it can pass 1 on degenerate shapes (a 1x1 array).
    """

    m: int
    k: int
    n: int
    rows: int
    cols: int
    dataflow: str
    folds: int
    compute_cycles: int
    sram_ifmap_reads: int
    sram_filter_reads: int
    sram_ofmap_writes: int
    macs: int
    mapping_efficiency: float
    compute_utilization: float
    overall_utilization: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gemm_cost(m: int, k: int, n: int, rows: int, cols: int, dataflow: str) -> GemmCost:
    """``gemm_cost`` on validated arguments."""
    if dataflow == "os":
        sr, sc, t = m, n, k
        per_fold = rows + cols + t - 2
        util_fold_cycles = per_fold
    elif dataflow == "ws":
        sr, sc, t = k, n, m
        per_fold = 2 * rows + cols + t - 2
        util_fold_cycles = per_fold + cols - 1
    else:  # "is"
        sr, sc, t = k, m, n
        per_fold = 2 * rows + cols + t - 2
        util_fold_cycles = per_fold + cols - 1
    row_folds = _ceil_div(sr, rows)
    col_folds = _ceil_div(sc, cols)
    folds = row_folds * col_folds
    compute_cycles = folds * per_fold - 1

    if dataflow == "os":
        ifmap_reads = m * k * col_folds  # A re-read for every column (N) fold
        filter_reads = k * n * row_folds  # B re-read for every row (M) fold
        ofmap_writes = m * n + folds * (rows + cols)  # SCALE-Sim's quirk, see the class doc
    elif dataflow == "ws":
        ifmap_reads = m * k * col_folds
        filter_reads = k * n
        ofmap_writes = m * n * row_folds  # one partial sum per K fold
    else:
        ifmap_reads = m * k
        filter_reads = k * n * col_folds  # B re-read for every column (M) fold
        ofmap_writes = m * n * row_folds

    macs = m * k * n
    pes = rows * cols
    used = sr * sc  # sum over folds of the PEs holding a mapped element
    return GemmCost(
        m=m,
        k=k,
        n=n,
        rows=rows,
        cols=cols,
        dataflow=dataflow,
        folds=folds,
        compute_cycles=compute_cycles,
        sram_ifmap_reads=ifmap_reads,
        sram_filter_reads=filter_reads,
        sram_ofmap_writes=ofmap_writes,
        macs=macs,
        mapping_efficiency=used / (folds * pes),
        compute_utilization=macs / (folds * pes * util_fold_cycles),
        overall_utilization=macs / (pes * max(compute_cycles, 1)),
    )


def gemm_cost(m: int, k: int, n: int, *, rows: int, cols: int, dataflow: str) -> GemmCost:
    """Cost of ``A[m, k] @ B[k, n]`` on a ``rows x cols`` array with ``dataflow`` (os/ws/is).

    Raises ValueError for a non-positive size or an unknown dataflow.
    """
    return _gemm_cost(
        _positive_int("m", m),
        _positive_int("k", k),
        _positive_int("n", n),
        _positive_int("rows", rows),
        _positive_int("cols", cols),
        _check_dataflow(dataflow),
    )


@dataclass(frozen=True)
class PartitionedGemmCost:
    """Cost of one GEMM whose M rows are split across ``parts`` identical arrays in parallel.

    Fields with the same names as :class:`GemmCost` mean the same for the whole group:
    ``compute_cycles`` is the slowest part's; the SRAM counters, ``folds`` and ``macs`` are sums;
    ``mapping_efficiency`` and ``compute_utilization`` are means over all folds of all parts (as
    if SCALE-Sim had listed them together); ``overall_utilization`` divides ``macs`` by all
    ``parts * rows * cols`` PEs times ``compute_cycles``, so idle parts count against it.
    ``part_costs`` holds the non-empty parts (fewer than ``parts`` when ``m < parts``).
    """

    m: int
    k: int
    n: int
    rows: int
    cols: int
    dataflow: str
    parts: int
    folds: int
    compute_cycles: int
    sram_ifmap_reads: int
    sram_filter_reads: int
    sram_ofmap_writes: int
    macs: int
    mapping_efficiency: float
    compute_utilization: float
    overall_utilization: float
    part_costs: tuple[GemmCost, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def partitioned_gemm_cost(
    m: int, k: int, n: int, *, rows: int, cols: int, dataflow: str, parts: int
) -> PartitionedGemmCost:
    """Split M (the batch) as evenly as possible over ``parts`` arrays running in parallel.

    Part ``i`` gets ``m // parts`` rows, plus one for the first ``m % parts`` parts; every part
    holds all of B (weights are replicated, so filter SRAM reads add up per part). Cycles are the
    maximum over parts, SRAM counts the sum. Parts left without rows (``m < parts``) stay idle.
    """
    m = _positive_int("m", m)
    k = _positive_int("k", k)
    n = _positive_int("n", n)
    rows = _positive_int("rows", rows)
    cols = _positive_int("cols", cols)
    dataflow = _check_dataflow(dataflow)
    parts = _positive_int("parts", parts)

    base, extra = divmod(m, parts)
    sizes = [base + 1] * extra + [base] * (parts - extra)
    # At most two distinct sizes: cost each once.
    cache: dict[int, GemmCost] = {}
    costs = []
    for size in sizes:
        if size == 0:
            continue
        if size not in cache:
            cache[size] = _gemm_cost(size, k, n, rows, cols, dataflow)
        costs.append(cache[size])

    folds = sum(c.folds for c in costs)
    compute_cycles = max(c.compute_cycles for c in costs)
    macs = m * k * n
    return PartitionedGemmCost(
        m=m,
        k=k,
        n=n,
        rows=rows,
        cols=cols,
        dataflow=dataflow,
        parts=parts,
        folds=folds,
        compute_cycles=compute_cycles,
        sram_ifmap_reads=sum(c.sram_ifmap_reads for c in costs),
        sram_filter_reads=sum(c.sram_filter_reads for c in costs),
        sram_ofmap_writes=sum(c.sram_ofmap_writes for c in costs),
        macs=macs,
        mapping_efficiency=sum(c.mapping_efficiency * c.folds for c in costs) / folds,
        compute_utilization=sum(c.compute_utilization * c.folds for c in costs) / folds,
        overall_utilization=macs / (parts * rows * cols * max(compute_cycles, 1)),
        part_costs=tuple(costs),
    )


@dataclass(frozen=True)
class DramTraffic:
    """Estimated DRAM words moved for one GEMM (see :func:`dram_traffic_words`)."""

    ifmap_read_words: int
    filter_read_words: int
    ofmap_write_words: int
    ofmap_read_words: int  # partial sums read back when they cannot stay on chip

    @property
    def read_words(self) -> int:
        return self.ifmap_read_words + self.filter_read_words + self.ofmap_read_words

    @property
    def write_words(self) -> int:
        return self.ofmap_write_words

    @property
    def total_words(self) -> int:
        return self.read_words + self.write_words

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dram_traffic_words(
    m: int,
    k: int,
    n: int,
    *,
    rows: int,
    cols: int,
    dataflow: str,
    ifmap_sram_words: int,
    filter_sram_words: int,
    ofmap_sram_words: int,
    active_fraction: float = 0.5,
) -> DramTraffic:
    """A simple estimate of DRAM traffic, in words, for SCALE-Sim's fold order.

    Each SRAM is double-buffered: only ``active_fraction`` of it (SCALE-Sim's ``active_buf_frac``,
    0.5) holds the working set. Folds run column fold outer, row fold inner. An operand that is
    reused across a loop is fetched once if everything that loop touches fits its active SRAM,
    otherwise once per iteration of that loop (a cyclic stream larger than an LRU/FIFO buffer
    never hits, so there is no partial credit):

    - os (outer N folds, inner M folds): A is swept once per N fold, so ``m*k`` words if A fits,
      else ``m*k*ceil(n/cols)``; each ``k x cols`` slice of B is reused over the M folds, so
      ``k*n`` if it fits, else ``k*n*ceil(m/rows)``; C leaves finished, ``m*n`` writes.
    - ws (outer N folds, inner K folds): B is read once (``k*n``); A is swept once per N fold as
      in os; the ``m x cols`` partial-sum tile accumulates over the K folds: ``m*n`` writes if it
      fits the ofmap SRAM, else every K fold writes partial sums (``m*n*ceil(k/rows)``) and all
      but the first are read back.
    - is (outer M folds, inner K folds): A is read once (``m*k``); B is swept once per M fold,
      ``k*n`` if it fits, else ``k*n*ceil(m/cols)``; the ``cols x n`` tile of C accumulates as in
      ws.

    No exactness against SCALE-Sim's DRAM counters is claimed: SCALE-Sim never accumulates partial
    sums on chip (its ws/is ofmap DRAM writes equal its SRAM writes) and it fetches in sets of
    1% of the SRAM. ``bench/bench_gemm.py`` prints the ratios.
    """
    m = _positive_int("m", m)
    k = _positive_int("k", k)
    n = _positive_int("n", n)
    rows = _positive_int("rows", rows)
    cols = _positive_int("cols", cols)
    dataflow = _check_dataflow(dataflow)
    sram_words = {
        "ifmap_sram_words": ifmap_sram_words,
        "filter_sram_words": filter_sram_words,
        "ofmap_sram_words": ofmap_sram_words,
    }
    for name, value in sram_words.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if not 0.0 < active_fraction <= 1.0:
        raise ValueError(f"active_fraction must be in (0, 1], got {active_fraction!r}")
    ifmap_cap = ifmap_sram_words * active_fraction
    filter_cap = filter_sram_words * active_fraction
    ofmap_cap = ofmap_sram_words * active_fraction

    a_words, b_words, c_words = m * k, k * n, m * n
    psum_reads = 0
    if dataflow == "os":
        ifmap = a_words if a_words <= ifmap_cap else a_words * _ceil_div(n, cols)
        b_slice = k * min(n, cols)
        filt = b_words if b_slice <= filter_cap else b_words * _ceil_div(m, rows)
        writes = c_words
    else:
        k_folds = _ceil_div(k, rows)
        if dataflow == "ws":
            ifmap = a_words if a_words <= ifmap_cap else a_words * _ceil_div(n, cols)
            filt = b_words
            c_tile = m * min(n, cols)
        else:
            ifmap = a_words
            filt = b_words if b_words <= filter_cap else b_words * _ceil_div(m, cols)
            c_tile = min(m, cols) * n
        if c_tile <= ofmap_cap:
            writes = c_words
        else:
            writes = c_words * k_folds
            psum_reads = c_words * (k_folds - 1)
    return DramTraffic(
        ifmap_read_words=ifmap,
        filter_read_words=filt,
        ofmap_write_words=writes,
        ofmap_read_words=psum_reads,
    )
