"""A compiled, vectorized form of the analytical cost model: a batch of design points at once.

``compile_model(model, target)`` lowers the model once and keeps per-op features (GEMM shapes as
a function of the batch, gathered tables, vector bytes per item); ``CompiledModel.evaluate``
then computes the built-in targets' formulas (:mod:`codesign.targets.cpu`, ``gpu``, ``accel``)
with numpy over N points. Every point equals
``estimate(lower(model, batch=b, keep=k or None), target, point)`` in latency, energy and DRAM
bytes up to floating-point rounding (the tests hold it to 1e-9 relative): the steps where the
scalar model rounds or compares (integer ceil divisions of the systolic model, cache rows
floored from byte shares) are computed with the same IEEE operations in the same order.

The expensive per-table functions (Che's LRU hit rate, the static + LRU cache, the CPU's
expected distinct rows) are evaluated only on the distinct argument tuples among the points and
memoized across calls, so their cost grows with the number of distinct values, not with N:
with knobs on grids, 20,000 points of an RM model take tens of milliseconds; a new Che solve
costs ~50-100 us per distinct (table, cache rows) tuple, which dominates a first call whose
cache sizes are all different.

Not covered: ``area_budget_mm2`` (the scalar model raises ``InfeasibleDesign`` above the budget;
here costs are returned as if there were none), and knob range checks (values are taken as
already parsed). Any target other than the built-in CPU, GPU and accelerator classes (plugins,
subclasses) gets a fallback that loops over the points calling ``estimate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from codesign.cost_models import workload
from codesign.cost_models.analytical import estimate
from codesign.cost_models.embedding_cache import _che_hit_rate, lru_hit_rate, static_hit_rate
from codesign.cost_models.tvm_measured import gemm_packs, interaction_macs
from codesign.errors import CodesignError
from codesign.ir.frontends.lower import MAX_BATCH, lower
from codesign.ir.frontends.spec import ModelSpec, load_spec
from codesign.ir.graph import Graph
from codesign.ir.ops import DTYPE_BYTES
from codesign.targets import accel as accel_mod
from codesign.targets import cpu as cpu_mod
from codesign.targets import gpu as gpu_mod
from codesign.targets.base import KnobError, op_views

__all__ = ["BatchCost", "CompiledModel", "compile_model"]


@dataclass(frozen=True)
class BatchCost:
    """Per-point totals, as ``estimate`` reports them (ops plus the schedule's extra steps)."""

    latency_s: np.ndarray
    energy_j: np.ndarray
    dram_bytes: np.ndarray


# --- graph features -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Gemm:
    m_per_item: int  # m = batch * m_per_item
    k: int
    n: int
    repeat: int
    weights: bool


@dataclass(frozen=True)
class _Table:
    rows: int
    pooling: int  # lookups = batch * pooling
    row_bytes: int
    table_bytes: int


@dataclass(frozen=True)
class _Op:
    name: str
    op: str
    kind: str  # gather, gemm, topk or vector
    gemms: tuple[_Gemm, ...] = ()
    tables: tuple[_Table, ...] = ()
    embedding_share: float = 1.0
    macs_per_item: float = 0
    flops_per_item: float = 0
    params: int = 0
    weight_bytes: int = 0
    vector_bytes_per_item: int = 0
    output_bytes_per_item: int = 0
    output_numel: int = 1
    embedding_bytes_per_item: float = 0
    fp16: bool = False
    in_features: int = 0
    out_features: int = 0
    row_dtype_bytes: float = 4.0
    self_interaction: bool = False
    concat_selects_per_item: float = 0  # targets/cpu.py concat_selects (concat ops only)


@dataclass(frozen=True)
class _Features:
    ops: tuple[_Op, ...]  # every op but top_k, in topological order
    topk: _Op | None  # the top_k op ``keep`` adds (None: the model has no single score)
    topk_error: str
    dense_params: int
    input_bytes_per_item: int
    output_bytes_per_item: int
    has_gather: bool


def _features(spec: ModelSpec) -> _Features:
    topk_error = ""
    try:
        graph = lower(spec, batch=1, keep=1)
    except CodesignError as exc:
        topk_error = str(exc)
        graph = lower(spec, batch=1)
    ops: list[_Op] = []
    topk = None
    dense_params = 0
    for view in op_views(graph):
        dense_params = view.graph_dense_params
        if view.op in ("input", "output"):
            continue
        work = view.work
        common = dict(
            name=view.node.name,
            op=view.op,
            embedding_share=view.embedding_share,
            macs_per_item=work.macs_per_item,
            flops_per_item=work.flops_per_item,
            params=work.params,
            weight_bytes=work.weight_bytes,
            vector_bytes_per_item=int(workload.vector_bytes(view)),
            output_bytes_per_item=view.output_bytes_per_item,
            output_numel=math.prod(view.output_shape or (1,)),
            embedding_bytes_per_item=work.embedding_bytes_per_item,
            fp16=view.attrs.get("dtype", "fp32") in ("fp16", "bf16"),
        )
        if view.op in workload.GATHER_OPS:
            tables = tuple(
                _Table(t.rows, t.lookups, t.row_bytes, t.table_bytes)
                for t in workload.gathers(view)
            )
            dim = view.attrs["dim"] * view.attrs.get("vectors", 1)
            op = _Op(
                kind="gather", tables=tables, row_dtype_bytes=tables[0].row_bytes / dim, **common
            )
        elif workload.gemms(view):
            gemms = tuple(_Gemm(g.m, g.k, g.n, g.repeat, g.weights) for g in workload.gemms(view))
            op = _Op(
                kind="gemm",
                gemms=gemms,
                in_features=view.attrs.get("in_features", 0),
                out_features=view.attrs.get("out_features", 0),
                self_interaction=bool(view.attrs.get("self_interaction", False)),
                **common,
            )
        elif view.op == "top_k":
            topk = _Op(kind="topk", **common)
            continue
        else:
            selects = (
                cpu_mod.concat_selects([math.prod(s) for s in view.input_shapes])
                if cpu_mod._is_concat(view)
                else 0.0
            )
            op = _Op(kind="vector", concat_selects_per_item=selects, **common)
        ops.append(op)
    in_bytes = sum(math.prod(n.shape) * DTYPE_BYTES[n.dtype] for n in graph.find("input"))
    out_bytes = sum(
        math.prod(n.shape) * DTYPE_BYTES[n.dtype] for n in graph.inputs_of(graph.output)
    )
    return _Features(
        ops=tuple(ops),
        topk=topk,
        topk_error=topk_error,
        dense_params=dense_params,
        input_bytes_per_item=in_bytes,
        output_bytes_per_item=out_bytes,
        has_gather=any(o.kind == "gather" for o in ops),
    )


# --- memo of expensive per-table functions -------------------------------------------------------

_EMPTY_KEYS = np.zeros(0, dtype=np.int64)
_EMPTY_VALUES = np.zeros(0)
#: Entries kept per group before the group is dropped (bounds memory in long searches).
_MEMO_LIMIT = 2_000_000


class _Memo:
    """Values of an expensive function of one integer key, per group (the fixed arguments),
    computed only for keys not seen before."""

    def __init__(self) -> None:
        self._store: dict[Hashable, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(
        self,
        group: Hashable,
        keys: np.ndarray,
        compute: Callable[[np.ndarray], Any],
    ) -> np.ndarray:
        known_keys, known_values = self._store.get(group, (_EMPTY_KEYS, _EMPTY_VALUES))
        if keys.size > 1 and keys.min() == keys.max():  # one value for every point
            return np.broadcast_to(self(group, keys[:1], compute), keys.shape)
        if known_keys.size:
            pos = np.minimum(np.searchsorted(known_keys, keys), known_keys.size - 1)
            found = known_keys[pos] == keys
            if found.all():  # the warm path: no sort of the keys
                return known_values[pos]
            values = np.where(found, known_values[pos], 0.0)
            missing = ~found
        else:
            values = np.empty(keys.size)
            missing = np.ones(keys.size, dtype=bool)
        uniq, inverse = np.unique(keys[missing], return_inverse=True)
        new = np.asarray(compute(uniq), dtype=np.float64)
        values[missing] = new[inverse]
        all_keys = np.concatenate([known_keys, uniq])
        all_values = np.concatenate([known_values, new])
        order = np.argsort(all_keys, kind="stable")
        if all_keys.size <= _MEMO_LIMIT:
            self._store[group] = (all_keys[order], all_values[order])
        else:
            self._store.pop(group, None)
        return values


_MEMO = _Memo()


def _pick(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return values if mask is None else values[mask]


def _by_alpha(
    alpha: np.ndarray, fn: Callable[[np.ndarray | None, float], np.ndarray]
) -> np.ndarray:
    """``fn(mask, alpha)`` for each distinct alpha (usually one: ``mask`` None), per point."""
    first = alpha[0]
    if np.all(alpha == first):
        return fn(None, float(first))
    out = np.empty(alpha.size)
    for a in np.unique(alpha):
        mask = alpha == a
        out[mask] = fn(mask, float(a))
    return out


def _groups(keys: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """(value, indices) for each distinct value of ``keys``."""
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    return list(zip(uniq.tolist(), np.split(order, starts[1:]), strict=True))


def _lru(rows: int, capacity: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``cpu._lru_hit_rate(rows, capacity, alpha)`` per point (0 for an empty cache)."""
    solve = (capacity > 0) & (capacity < rows)
    if not solve.any():
        return np.where(capacity >= rows, 1.0, 0.0)
    sel = None if solve.all() else solve
    caps = _pick(capacity, sel)

    def per_alpha(mask: np.ndarray | None, a: float) -> np.ndarray:
        return _MEMO(
            ("lru", rows, a),
            _pick(caps, mask),
            lambda keys: lru_hit_rate(rows, keys.astype(np.float64), a),
        )

    values = _by_alpha(_pick(alpha, sel), per_alpha)
    if sel is None:
        return values
    out = np.where(capacity >= rows, 1.0, 0.0)
    out[solve] = values
    return out


def _static(rows: int, capacity: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``static_hit_rate(rows, capacity, alpha)`` per point, by its scalar path."""

    def per_alpha(mask: np.ndarray | None, a: float) -> np.ndarray:
        return _MEMO(
            ("static", rows, a),
            _pick(capacity, mask),
            lambda keys: [float(static_hit_rate(rows, c, a)) for c in keys.tolist()],
        )

    return _by_alpha(alpha, per_alpha)


def _static_plus_lru(rows: int, s: np.ndarray, d: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``static_plus_lru_hit_rate(rows, s, d, alpha).total`` per point (``s <= rows``)."""
    solve = s < rows
    if not solve.any():
        return np.ones(s.size)
    base = rows + 1
    if base * base >= 2**62:  # pragma: no cover - tables of 2**31 rows
        out = np.ones(s.size)
        for i in np.flatnonzero(solve):
            out[i] = _static_plus_lru_total(rows, int(s[i]), np.array([d[i]]), float(alpha[i]))[0]
        return out
    sel = None if solve.all() else solve
    keys = _pick(s, sel) * base + _pick(d, sel)

    def compute(keys: np.ndarray, a: float) -> np.ndarray:
        ss, dd = np.divmod(keys, base)
        values = np.empty(keys.size)
        for static_rows, index in _groups(ss):
            values[index] = _static_plus_lru_total(rows, static_rows, dd[index], a)
        return values

    def per_alpha(mask: np.ndarray | None, a: float) -> np.ndarray:
        return _MEMO(("static+lru", rows, a), _pick(keys, mask), lambda k: compute(k, a))

    values = _by_alpha(_pick(alpha, sel), per_alpha)
    if sel is None:
        return values
    out = np.ones(s.size)
    out[solve] = values
    return out


def _static_plus_lru_total(rows: int, s: int, d: np.ndarray, alpha: float) -> np.ndarray:
    """The arithmetic of ``static_plus_lru_hit_rate`` for one ``s < rows`` and many ``d``."""
    static = float(static_hit_rate(rows, s, alpha))
    conditional = _che_hit_rate(rows, s + 1, d.astype(np.float64), alpha)
    return static + (1.0 - static) * conditional


@lru_cache(maxsize=256)
def _distinct_terms(rows: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Counts and ``log1p(-p)`` of ``cpu.expected_distinct``'s rank buckets (same arithmetic)."""
    head = min(rows, 1024)
    ranks = [float(r) for r in range(1, head + 1)]
    counts = [1.0] * head
    if rows > head:
        edges = cpu_mod._log_edges(head, rows, 256)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            counts.append(float(hi - lo))
            ranks.append(math.sqrt((lo + 1) * hi))
    weights = [c * r**-alpha for c, r in zip(counts, ranks, strict=True)]
    total = sum(weights)
    log_miss = [math.log1p(-min(r**-alpha / total, 1.0 - 1e-12)) for r in ranks]
    return np.array(counts), np.array(log_miss)


def _expected_distinct_many(rows: int, lookups: np.ndarray, alpha: float) -> np.ndarray:
    counts, log_miss = _distinct_terms(rows, alpha)
    lookups = lookups.astype(np.float64)
    out = np.empty(lookups.size)
    chunk = max(1, 2**20 // counts.size)
    for start in range(0, lookups.size, chunk):
        part = lookups[start : start + chunk]
        out[start : start + chunk] = -np.expm1(part[:, None] * log_miss) @ counts
    return np.minimum(np.minimum(out, lookups), float(rows))


def _distinct(rows: int, lookups: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``cpu.expected_distinct(rows, lookups, alpha)`` per point (``lookups >= 1``)."""

    def per_alpha(mask: np.ndarray | None, a: float) -> np.ndarray:
        return _MEMO(
            ("distinct", rows, a),
            _pick(lookups, mask),
            lambda keys: _expected_distinct_many(rows, keys, a),
        )

    return _by_alpha(alpha, per_alpha)


# --- helpers ------------------------------------------------------------------------------------


def _ceil_div(a: Any, b: Any) -> Any:
    return -(-a // b)


def _rows_in(nbytes: np.ndarray, row_bytes: int) -> np.ndarray:
    """``int(nbytes // row_bytes)`` for float ``0 <= nbytes < 2**53``, as Python computes it
    (the floor of the exact quotient), without numpy's slow float floor division: the rounded
    quotient's floor is at most one too high, and ``q * row_bytes`` is exact."""
    q = np.floor(nbytes / row_bytes)
    return (q - (q * row_bytes > nbytes)).astype(np.int64)


def _gemm_cycles(m, k, n, rows, cols, dataflow):
    """``systolic._gemm_cost(...).compute_cycles`` per point (integer arithmetic)."""
    os_ = dataflow == "os"
    is_ = dataflow == "is"
    sr = np.where(os_, m, k)
    sc = np.where(is_, m, n)
    t = np.where(os_, k, np.where(is_, n, m))
    per_fold = np.where(os_, rows, 2 * rows) + cols + t - 2
    folds = _ceil_div(sr, rows) * _ceil_div(sc, cols)
    return folds * per_fold - 1


def _partitioned_cycles(m, k, n, rows, cols, dataflow, parts):
    """``systolic.partitioned_gemm_cost(...).compute_cycles``: the largest part's cycles (the
    cycle count does not fall as a part's rows grow)."""
    base, extra = np.divmod(m, parts)
    return _gemm_cycles(np.where(extra > 0, base + 1, base), k, n, rows, cols, dataflow)


# --- evaluators ---------------------------------------------------------------------------------


class CompiledModel:
    """A model lowered once for one target; :meth:`evaluate` costs a batch of design points."""

    def __init__(self, spec: ModelSpec, target: Any) -> None:
        self.spec = spec
        self.target = target
        self.space = target.design_space()

    def evaluate(
        self,
        *,
        batch: Any,
        keep: Any = None,
        knobs: Mapping[str, Any] | None = None,
    ) -> BatchCost:
        """Cost N points: ``batch`` items per query (N,), ``keep`` items kept by a top_k (N,;
        0: no top_k) and knob overrides (name -> scalar or (N,) array of parsed values)."""
        b = _integers("batch", np.atleast_1d(np.asarray(batch)))
        if b.ndim != 1:
            raise ValueError(f"batch must be one-dimensional, got shape {b.shape}")
        n = b.size
        k = np.zeros(n, dtype=np.int64) if keep is None else _integers("keep", np.asarray(keep))
        k = np.broadcast_to(k, (n,))
        if n and (b.min() < 1 or b.max() > MAX_BATCH):
            raise ValueError(f"batch must hold integers in 1..{MAX_BATCH}")
        if n and (k.min() < 0 or np.any(k > b)):
            raise ValueError("keep must hold integers in 0..batch (0: no top_k)")
        point = self._point(knobs or {}, n)
        if n == 0:
            empty = np.zeros(0)
            return BatchCost(empty, empty.copy(), empty.copy())
        return self._evaluate(b, k, point)

    def _point(self, knobs: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
        point: dict[str, np.ndarray] = {}
        for name in knobs:
            self.space[name]  # unknown names raise KnobError
        for knob in self.space.knobs:
            name = knob.name
            value = np.asarray(knobs.get(name, knob.default))
            if knob.kind == "bool":
                value = value.astype(bool)
            elif knob.kind == "int":
                value = value.astype(np.int64)
            elif knob.kind == "float":
                value = value.astype(np.float64)
            elif all(isinstance(c, int) for c in knob.choices):
                value = value.astype(np.int64)
            else:
                value = value.astype(str)
            if knob.kind == "choice" and not np.isin(value, knob.choices).all():
                raise KnobError(
                    f"{self.space.target}: knob {name}: values outside {knob.describe_range()}"
                )
            point[name] = np.broadcast_to(value, (n,))
        return point

    def _evaluate(self, b: np.ndarray, k: np.ndarray, point: dict[str, np.ndarray]) -> BatchCost:
        raise NotImplementedError


def _integers(name: str, values: np.ndarray) -> np.ndarray:
    if values.dtype.kind not in "iu" and not np.array_equal(values, np.floor(values)):
        raise ValueError(f"{name} must hold integers")
    return values.astype(np.int64)


class _FallbackModel(CompiledModel):
    """Any target: one ``estimate`` per point (exact by construction, at scalar speed)."""

    def _point(self, knobs: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
        return {
            name: np.broadcast_to(np.asarray(value, dtype=object), (n,))
            for name, value in knobs.items()
        }

    def _evaluate(self, b: np.ndarray, k: np.ndarray, point: dict[str, np.ndarray]) -> BatchCost:
        out = np.zeros((3, b.size))
        graphs: dict[tuple[int, int], Graph] = {}
        for i in range(b.size):
            key = (int(b[i]), int(k[i]))
            if key not in graphs:
                graphs[key] = lower(self.spec, batch=key[0], keep=key[1] or None)
            overrides = {name: _plain(values[i]) for name, values in point.items()}
            report = estimate(graphs[key], self.target, overrides)
            out[:, i] = report.latency_s, report.energy_j, report.dram_bytes
        return BatchCost(out[0], out[1], out[2])


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class _Vectorized(CompiledModel):
    def __init__(self, spec: ModelSpec, target: Any) -> None:
        super().__init__(spec, target)
        self.features = _features(spec)

    def _topk_mask(self, k: np.ndarray) -> np.ndarray:
        mask = k > 0
        if mask.any() and self.features.topk is None:
            raise CodesignError(f"keep: {self.features.topk_error}")
        return mask


class _CPUModel(_Vectorized):
    def _evaluate(self, b, k, p):
        f = self.features
        latency = np.zeros(b.size)
        dram = np.zeros(b.size)
        alpha = p["zipf_alpha"]
        by_batch = None
        if f.has_gather and np.all(alpha == alpha[0]):
            by_batch = np.unique(b, return_inverse=True)  # distinct rows depend on the batch
        for op in f.ops:
            serial_s = 0.0
            if op.kind == "gather":
                compute_s, memory_s, op_dram = self._gather(op, b, p, by_batch)
            elif op.kind == "gemm":
                compute_s, memory_s, op_dram, serial_s = self._gemm(op, b, p)
            else:
                compute_s, memory_s, op_dram = self._vector(op, b, None, p)
            serial_s = serial_s + self._launches(op, b, p) * p["parallel_launch_s"]
            latency += np.maximum(compute_s, memory_s) + serial_s + p["op_overhead_s"]
            dram += op_dram
        mask = self._topk_mask(k)
        if mask.any():
            compute_s, memory_s, op_dram = self._vector(f.topk, b, np.maximum(k, 1), p)
            latency += np.where(mask, np.maximum(compute_s, memory_s) + p["op_overhead_s"], 0.0)
            dram += np.where(mask, op_dram, 0.0)
        return BatchCost(latency, latency * p["tdp_w"], dram)

    @staticmethod
    def _peak(p, threads):
        return threads * p["frequency_hz"] * p["simd_lanes_fp32"] * 2 * p["fma_units"]

    @staticmethod
    def _launches(op: _Op, b, p):
        """targets/cpu.py parallel_launches: parallel loops of more than one iteration."""
        many = (b > 1).astype(float)
        if op.kind == "gather":
            return many * len(op.tables)
        if op.kind == "gemm":
            if op.op == "interaction":
                return many
            cols = p["gemm_tile_vectors"] * p["simd_lanes_fp32"]
            count = np.zeros(b.size)
            for g in op.gemms:
                m = b * g.m_per_item
                if not g.weights:
                    count = count + g.repeat * (m > 1)
                    continue
                count = count + g.repeat * cpu_mod.gemm_launches(
                    m, g.n, p["gemm_tile_rows"], cols, gemm_packs
                )
            return count
        return many if op.concat_selects_per_item else np.zeros(b.size)

    def _gemm(self, op: _Op, b, p):
        compute_s = 0.0
        stream_s = 0.0
        serial_s = 0.0
        weight_bytes_each = op.weight_bytes / max(1, sum(g.weights for g in op.gemms))
        lanes = p["simd_lanes_fp32"]
        for g in op.gemms:
            m = b * g.m_per_item
            if op.op == "interaction" and not g.weights:
                # the fused kernel's padded Gram tiles (targets/cpu.py _computed_macs)
                macs = interaction_macs(g.n, g.k, op.self_interaction, lanes) * b
            else:
                macs = m * g.k * g.n * g.repeat
            threads = np.maximum(
                1, np.minimum(p["cores"], np.ceil(macs / p["min_macs_per_thread"]))
            )
            if g.weights:
                cols = np.minimum(g.n, p["gemm_tile_vectors"] * lanes)
                vectors = _ceil_div(cols, lanes)
                in_flight = np.minimum(m, p["gemm_tile_rows"]) * vectors
                occupancy = np.minimum(1.0, in_flight / (p["fma_latency_cycles"] * p["fma_units"]))
                lane_use = g.n / (_ceil_div(g.n, cols) * vectors * lanes)
                eff = p["compute_efficiency"] * (occupancy * lane_use)
            else:
                eff = p["compute_efficiency"] * 1.0
            compute_s = compute_s + 2 * macs / (self._peak(p, threads) * eff)
            if g.weights:
                # targets/cpu.py _weight_stream_s and _epilogue_s
                passes = _ceil_div(m, p["gemm_tile_rows"]) * g.repeat
                spb = self._seconds_per_byte
                packs = gemm_packs(m, g.n, p["gemm_tile_rows"], p["gemm_tile_vectors"] * lanes)
                panel = weight_bytes_each * np.minimum(1.0, p["gemm_tile_vectors"] * lanes / g.n)
                stream = weight_bytes_each * np.where(
                    packs, spb(panel, p, threads), spb(weight_bytes_each, p, threads)
                )
                pack_s = np.where(
                    packs, 3.0 * weight_bytes_each * spb(2.0 * weight_bytes_each, p, threads), 0.0
                )
                out_bytes = 4.0 * m * _ceil_div(g.n, cols) * cols
                epilogue_s = 2.0 * out_bytes * spb(out_bytes, p, threads)
                stream_s = stream_s + passes * stream
                serial_s = serial_s + (pack_s + epilogue_s) * g.repeat
        acts = op.vector_bytes_per_item * b
        llc = p["llc_bytes"]
        dram = np.where(acts > llc / 2, acts, 0.0)
        memory_s = stream_s + dram / (p["dram_bandwidth_bytes_per_s"] * p["memory_efficiency"])
        if op.op == "interaction":
            cache_bw = (
                p["dram_bandwidth_bytes_per_s"]
                * p["memory_efficiency"]
                * cpu_mod.CACHE_BANDWIDTH_RATIO
            )
            serial_s = serial_s + np.where(acts > llc / 2, 0.0, acts / cache_bw)
        dram = dram + np.where(op.weight_bytes > llc, op.weight_bytes, 0.0)
        zeros = np.zeros(b.size)
        return compute_s + zeros, memory_s + zeros, dram, serial_s + zeros

    @staticmethod
    def _seconds_per_byte(footprint, p, threads):
        freq = p["frequency_hz"] * threads
        with np.errstate(divide="ignore", invalid="ignore"):
            in_l1 = np.where(footprint > 0, np.minimum(1.0, p["l1_bytes"] / footprint), 1.0)
            in_l2 = np.where(footprint > 0, np.minimum(1.0, p["l2_bytes"] / footprint), 1.0)
            in_llc = np.where(footprint > 0, np.minimum(1.0, p["llc_bytes"] / footprint), 1.0)
        in_l2 = np.maximum(in_l2, in_l1)
        in_llc = np.maximum(in_llc, in_l2)
        return (
            in_l1 / (p["l1_bytes_per_cycle"] * freq)
            + (in_l2 - in_l1) / (p["l2_bytes_per_cycle"] * freq)
            + (in_llc - in_l2) / (p["llc_bytes_per_cycle"] * freq)
            + (1.0 - in_llc) / (p["dram_bandwidth_bytes_per_s"] * p["memory_efficiency"])
        )

    def _gather(self, op: _Op, b, p, by_batch):
        lookups = [b * t.pooling for t in op.tables]
        traffic = sum(lk * t.row_bytes for lk, t in zip(lookups, op.tables, strict=True))
        threads = np.maximum(1, np.minimum(p["cores"], b))
        freq = p["frequency_hz"] * threads
        l1_bw = p["l1_bytes_per_cycle"] * freq
        l2_bw = p["l2_bytes_per_cycle"] * freq
        llc_bw = p["llc_bytes_per_cycle"] * freq
        dram_bw = p["dram_bandwidth_bytes_per_s"] * p["memory_efficiency"]
        alpha = p["zipf_alpha"]
        tlb = p["tlb_entries"]
        l1_cap = p["l1_bytes"]
        misses = walks = hits_bytes = dram_bytes = near_bytes = l1_bytes = 0.0
        vector_bytes = 4 * p["simd_lanes_fp32"]
        vector_ops = 0.0
        for lk, t in zip(lookups, op.tables, strict=True):
            line_bytes = math.ceil(t.row_bytes / cpu_mod.CACHE_LINE_BYTES) * (
                cpu_mod.CACHE_LINE_BYTES
            )
            # targets/cpu.py _gather: one load-add per SIMD vector of each gathered row
            vector_ops = vector_ops + lk * _ceil_div(t.row_bytes, vector_bytes)
            if by_batch is None:
                distinct = _distinct(t.rows, lk, alpha)
            else:
                batches, inverse = by_batch
                distinct = _distinct(t.rows, batches * t.pooling, alpha[: batches.size])[inverse]
            # targets/cpu.py _gather: repeats hit the L1 in the share of the touched rows it holds
            touched = distinct * line_bytes
            with np.errstate(divide="ignore", invalid="ignore"):
                repeat_l1 = np.where(touched > 0, np.minimum(1.0, l1_cap / touched), 0.0)
            repeats = (lk - distinct) * t.row_bytes
            l1_bytes = l1_bytes + repeats * repeat_l1
            near_bytes = near_bytes + repeats * (1.0 - repeat_l1)
            share = op.embedding_share * lk * t.row_bytes / traffic
            llc_rows = np.minimum(t.rows, _rows_in(p["llc_bytes"] * share, line_bytes))
            l2_rows = np.minimum(llc_rows, p["l2_bytes"] // line_bytes)
            hit_llc = _lru(t.rows, llc_rows, alpha)
            hit_l2 = _lru(t.rows, l2_rows, alpha)
            l1_rows = np.minimum(l2_rows, l1_cap // line_bytes)
            hit_l1 = _lru(t.rows, l1_rows, alpha)
            l1_bytes = l1_bytes + distinct * hit_l1 * line_bytes
            near_bytes = near_bytes + distinct * (hit_l2 - hit_l1) * line_bytes
            hits_bytes = hits_bytes + distinct * (hit_llc - hit_l2) * line_bytes
            misses = misses + distinct * (1.0 - hit_llc)
            dram_bytes = dram_bytes + distinct * (1.0 - hit_llc) * line_bytes
            pages = math.ceil(t.table_bytes / cpu_mod.PAGE_BYTES)
            walks = walks + np.where(pages > tlb, np.maximum(0.0, distinct - tlb), 0.0)
        pooling = sum(t.pooling for t in op.tables)
        near_bytes = near_bytes + (op.output_bytes_per_item * b + cpu_mod.ID_BYTES * pooling * b)
        bandwidth_s = (
            l1_bytes / l1_bw + near_bytes / l2_bw + hits_bytes / llc_bw + dram_bytes / dram_bw
        )
        latency_s = misses * p["dram_latency_s"] / (threads * cpu_mod.MISSES_IN_FLIGHT_PER_CORE)
        walk_s = walks * p["page_walk_s"] / threads
        compute_s = vector_ops / (freq * p["fma_units"] * p["compute_efficiency"])
        memory_s = np.maximum(bandwidth_s, latency_s) + walk_s
        return compute_s, memory_s, dram_bytes + np.zeros(b.size)

    def _vector(self, op: _Op, b, k, p):
        nbytes = op.vector_bytes_per_item * b
        threads = np.maximum(1, np.minimum(p["cores"], np.maximum(b // 64, 1)))
        bw = p["dram_bandwidth_bytes_per_s"] * p["memory_efficiency"]
        big = nbytes > p["llc_bytes"] / 2
        memory_s = nbytes / (bw * np.where(big, 1.0, cpu_mod.CACHE_BANDWIDTH_RATIO))
        dram = np.where(big, nbytes, 0.0)
        if k is not None:
            kk = np.maximum(1, np.minimum(k, b))
            depth = np.log2(np.maximum(kk, 2))
            with np.errstate(divide="ignore"):
                entered = np.where(b > kk, kk * np.log(b / kk), 0.0)
            heap = 2.0 * depth * entered + kk * depth
            compute_s = (
                b * p["topk_scan_cycles"] / (p["frequency_hz"] * p["compute_efficiency"])
                + heap * p["sort_compare_s"]
                + p["extern_call_s"]
            )
        else:
            compute_s = op.flops_per_item * b / (self._peak(p, threads) * p["compute_efficiency"])
            if op.concat_selects_per_item:
                # targets/cpu.py _vector: vectorized selects; cache-resident copies at their speed
                memory_s = np.where(big, memory_s, 0.0)
                compute_s = compute_s + b * op.concat_selects_per_item / (
                    p["frequency_hz"] * threads * p["simd_lanes_fp32"] * p["compute_efficiency"]
                )
        return compute_s, memory_s, dram


class _GPUModel(_Vectorized):
    def _evaluate(self, b, k, p):
        f = self.features
        bw = p["memory_bandwidth_bytes_per_s"] * p["memory_efficiency"]
        latency = np.zeros(b.size)
        dram = np.zeros(b.size)
        for op in f.ops:
            op_latency, op_dram = self._op(op, b, p, bw)
            latency += op_latency
            dram += op_dram
        mask = self._topk_mask(k)
        if mask.any():
            op_latency, op_dram = self._op(f.topk, b, p, bw)
            latency += np.where(mask, op_latency, 0.0)
            dram += np.where(mask, op_dram, 0.0)
        for nbytes in (f.input_bytes_per_item * b, f.output_bytes_per_item * b):
            latency += p["pcie_latency_s"] + nbytes / p["pcie_bandwidth_bytes_per_s"]
        return BatchCost(latency, latency * p["tdp_w"], dram)

    def _op(self, op: _Op, b, p, bw):
        compute_s = 0.0
        pcie_s = 0.0
        kernels = 1
        if op.kind == "gather":
            dram, pcie = self._gather(op, b, p)
            memory_s = dram / bw
            pcie_s = pcie / p["pcie_bandwidth_bytes_per_s"]
        elif op.kind == "gemm":
            peak = p["peak_flops_fp16"] if op.fp16 else p["peak_flops_fp32"]
            for g in op.gemms:
                m = b * g.m_per_item
                tiles = _ceil_div(m, gpu_mod.TILE) * _ceil_div(g.n, gpu_mod.TILE)
                occupancy = np.minimum(1.0, tiles / p["sms"])
                macs = m * g.k * g.n * g.repeat
                compute_s = compute_s + 2 * macs / (peak * p["compute_efficiency"] * occupancy)
            dram = op.weight_bytes + op.vector_bytes_per_item * b
            memory_s = dram / bw
            kernels = sum(g.repeat for g in op.gemms)
        else:
            dram = op.vector_bytes_per_item * b
            memory_s = dram / bw
        overhead = kernels * p["kernel_launch_s"]
        latency = np.maximum(compute_s, memory_s + pcie_s) + overhead
        return latency, dram

    def _gather(self, op: _Op, b, p):
        lookups = [b * t.pooling for t in op.tables]
        traffic = sum(lk * t.row_bytes for lk, t in zip(lookups, op.tables, strict=True))
        budget = gpu_mod.TABLE_MEMORY_FRACTION * p["memory_bytes"] * op.embedding_share
        dram = pcie = 0.0
        for lk, t in zip(lookups, op.tables, strict=True):
            room = budget * (lk * t.row_bytes / traffic)
            fits = t.table_bytes <= room
            rows = np.where(fits, 0, _rows_in(room, t.row_bytes))
            hit = np.ones(b.size)
            if not fits.all():
                hit[~fits] = _static(t.rows, rows[~fits], p["zipf_alpha"][~fits])
            sector = math.ceil(t.row_bytes / gpu_mod.SECTOR_BYTES) * gpu_mod.SECTOR_BYTES
            dram = dram + lk * hit * sector
            pcie = pcie + lk * (1.0 - hit) * t.row_bytes
        return dram, pcie


class _AccelModel(_Vectorized):
    def _evaluate(self, b, k, p):
        mask = self._topk_mask(k)
        on_chip = p["topk_on_chip"]
        kept = np.where(mask & on_chip, np.minimum(b, k), b)
        compat = p["recpipe_compat"]
        latency = np.zeros(b.size)
        energy = np.zeros(b.size)
        dram = np.zeros(b.size)
        if compat.any():
            lat, drm = self._compat(b, mask, kept, p)
            latency[compat] = lat[compat]
            dram[compat] = drm[compat]
        own = ~compat
        if own.all():
            return BatchCost(*self._own(b, k, mask, kept, p))
        if own.any():
            q = {name: values[own] for name, values in p.items()}
            lat, eng, drm = self._own(b[own], k[own], mask[own], kept[own], q)
            latency[own] = lat
            energy[own] = eng
            dram[own] = drm
        return BatchCost(latency, energy, dram)

    # --- codesign's model --------------------------------------------------------------------

    @staticmethod
    def _simd_units(p):
        pes = p["rows"] * p["cols"] * p["arrays"]
        return np.where(
            p["reconfigurable"],
            np.maximum(1, pes // accel_mod.PE_PER_SIMD_RECONFIG),
            p["cols"] * p["arrays"],
        )

    def _power(self, p):
        """``AccelTarget.hw_cost(point).power_w`` (the parts summed in the same order), from
        the target's technology table: dynamic power scaled by the clock, plus leakage."""
        tech = self.target.tech
        reconf = p["reconfigurable"]
        pes = p["rows"] * p["cols"] * p["arrays"]
        fixed, dyn = tech["systolic_array_fixed"], tech["systolic_array"]
        per_pe = np.where(reconf, dyn.power_mw / dyn.pes, fixed.power_mw / fixed.pes)
        leak_per_pe = np.where(reconf, dyn.leakage_mw / dyn.pes, fixed.leakage_mw / fixed.pes)
        counts = [
            (pes, per_pe, leak_per_pe),
            (self._simd_units(p), tech["simd_unit"].power_mw, tech["simd_unit"].leakage_mw),
        ]
        crossbars = np.where(reconf, np.ceil(pes / accel_mod.PE_PER_CROSSBAR), 0.0)
        counts.append((crossbars, tech["crossbar"].power_mw, tech["crossbar"].leakage_mw))
        counts.append((p["topk_units"], tech["topk_unit"].power_mw, tech["topk_unit"].leakage_mw))
        act, act_fixed = tech["activation_sram"], tech["activation_sram_fixed"]
        act_macros = np.where(
            reconf,
            np.ceil(p["activation_sram_bytes"] / act.macro_bytes),
            np.ceil(p["activation_sram_bytes"] / act_fixed.macro_bytes),
        )
        counts.append(
            (
                act_macros,
                np.where(reconf, act.power_mw, act_fixed.power_mw),
                np.where(reconf, act.leakage_mw, act_fixed.leakage_mw),
            )
        )
        emb = p["static_cache_bytes"] + p["dynamic_cache_bytes"]
        for macro, nbytes in (
            (tech["weight_sram"], p["weight_sram_bytes"]),
            (tech["embedding_sram"], emb),
        ):
            counts.append((np.ceil(nbytes / macro.macro_bytes), macro.power_mw, macro.leakage_mw))
        power = 0.0
        leakage = 0.0
        for count, power_mw, leakage_mw in counts:
            power = power + count * power_mw / 1e3
            leakage = leakage + count * leakage_mw / 1e3
        return power * (p["clock_hz"] / tech.clock_hz) + leakage

    def _own(self, b, k, mask, kept, p):
        f = self.features
        power = self._power(p)
        dataflow = p["dataflow"]
        gather_s, array_s, op_dram = self._phases(b, p, dataflow)
        topk_s = np.zeros(b.size)
        if mask.any():
            units = p["topk_units"]
            chip = p["topk_on_chip"] & (units > 0)
            topk_s = np.where(
                chip,
                _ceil_div(b, np.maximum(units, 1)) / p["clock_hz"],
                accel_mod.host_sort_s(b),
            )
            topk_s = np.where(mask, topk_s, 0.0)
        body = gather_s + array_s + topk_s
        op_energy = body * power + op_dram * self.target.tech.dram_j_per_byte
        transfer_s = 0.0
        for nbytes in (f.input_bytes_per_item * b, kept * 4):
            transfer_s = transfer_s + (
                p["pcie_latency_s"] + nbytes / p["pcie_bandwidth_bytes_per_s"]
            )
        energy = op_energy + transfer_s * power
        sub = p["sub_batch"]
        piped = (sub > 0) & (sub < b)
        if piped.any():
            q = {name: values[piped] for name, values in p.items()}
            sub_gather, sub_array, _ = self._phases(sub[piped], q, dataflow[piped])
            count = np.ceil(b[piped] / sub[piped])
            body[piped] = (
                sub_gather
                + sub_array
                + (count - 1) * np.maximum(sub_gather, sub_array)
                + topk_s[piped]
            )
        return body + transfer_s, energy, op_dram

    def _phases(self, b, p, dataflow):
        """Summed latency of the gathers, of the other ops (top_k aside), and DRAM bytes."""
        f = self.features
        clock = p["clock_hz"]
        gather_s = np.zeros(b.size)
        array_s = np.zeros(b.size)
        dram = np.zeros(b.size)
        simd = None
        for op in f.ops:
            if op.kind == "gather":
                lat, drm = self._gather(op, b, p)
                gather_s += lat
                dram += drm
            elif op.kind == "gemm":
                lat, drm = self._gemm(op, b, p, dataflow)
                array_s += lat
                dram += drm
            else:
                if simd is None:
                    simd = self._simd_units(p)
                array_s += op.output_numel * b / simd / clock
        return gather_s, array_s, dram

    def _gemm(self, op: _Op, b, p, dataflow):
        clock = p["clock_hz"]
        prec = p["precision_bytes"]
        cycles = 0
        for g in op.gemms:
            c = _partitioned_cycles(
                b * g.m_per_item, g.k, g.n, p["rows"], p["cols"], dataflow, p["arrays"]
            )
            cycles = cycles + c * g.repeat
        compute_s = cycles / clock
        weight_bytes = op.params * prec
        reload = (weight_bytes > 0) & (self.features.dense_params * prec > p["weight_sram_bytes"])
        dram = np.where(reload, weight_bytes, 0.0)
        weight_s = np.where(
            reload,
            p["dram_latency_cycles"] / clock + weight_bytes / p["dram_bandwidth_bytes_per_s"],
            0.0,
        )
        acts = op.vector_bytes_per_item * b * prec / 4
        spill = acts > p["activation_sram_bytes"]
        dram = dram + np.where(spill, acts, 0.0)
        spill_s = np.where(spill, acts / p["dram_bandwidth_bytes_per_s"], 0.0)
        return np.maximum(compute_s, spill_s) + weight_s, dram

    def _gather(self, op: _Op, b, p):
        lookups = [b * t.pooling for t in op.tables]
        traffic = sum(lk * t.row_bytes for lk, t in zip(lookups, op.tables, strict=True))
        measured = p["embedding_hit_rate"]
        use_measured = measured >= 0
        any_measured = use_measured.any()
        hit_bytes = miss_bytes = 0.0
        for lk, t in zip(lookups, op.tables, strict=True):
            share = op.embedding_share * lk * t.row_bytes / traffic
            static_rows = np.minimum(t.rows, _rows_in(p["static_cache_bytes"] * share, t.row_bytes))
            dynamic_rows = np.minimum(
                t.rows - static_rows,
                _rows_in(p["dynamic_cache_bytes"] * share, t.row_bytes),
            )
            if not any_measured:
                hit = _static_plus_lru(t.rows, static_rows, dynamic_rows, p["zipf_alpha"])
            else:
                hit = np.array(measured, dtype=np.float64)
                model = ~use_measured
                if model.any():
                    hit[model] = _static_plus_lru(
                        t.rows, static_rows[model], dynamic_rows[model], p["zipf_alpha"][model]
                    )
            hit_bytes = hit_bytes + lk * t.row_bytes * hit
            miss_bytes = miss_bytes + lk * t.row_bytes * (1.0 - hit)
        clock = p["clock_hz"]
        sram_s = hit_bytes / p["sram_bytes_per_cycle"] / clock
        dram_s = np.where(miss_bytes != 0, p["dram_latency_cycles"] / clock, 0.0) + (
            miss_bytes / p["dram_bandwidth_bytes_per_s"]
        )
        return np.maximum(sram_s, dram_s), miss_bytes + np.zeros(b.size)

    # --- recpipe_compat ----------------------------------------------------------------------

    def _compat(self, b, mask, kept, p):
        f = self.features
        clock = p["clock_hz"]
        ns = 1e9 / clock
        bw_per_ns = p["dram_bandwidth_bytes_per_s"] / 1e9
        latency = np.zeros(b.size)
        dram = np.zeros(b.size)
        for op in f.ops:
            if op.op == "dense":
                fin, fout, size = op.in_features, op.out_features, p["rows"]
                weight_bytes = 4 * fin * fout
                sram = np.where(p["weight_sram_bytes"] != 0, p["weight_sram_bytes"], weight_bytes)
                slices = np.ceil(weight_bytes / sram)
                load = p["dram_latency_cycles"] + np.minimum(sram, weight_bytes) / bw_per_ns / ns
                load_cycles = load * slices
                tiles = _ceil_div(fin, size) * _ceil_div(fout, size)
                sa_cycles = tiles * (np.minimum(fout, size) + np.minimum(fin, size) + b)
                latency += (load_cycles + sa_cycles) * ns / 1e9
                dram += weight_bytes
            elif op.kind == "gather":
                nbytes = op.embedding_bytes_per_item * b * 4 / op.row_dtype_bytes
                dram_cycles = nbytes * 0.5 / bw_per_ns / ns
                sram_cycles = nbytes * 0.5 / 64
                latency += (dram_cycles + sram_cycles) * ns / 1e9
                dram += nbytes * 0.5
        on_chip = p["topk_on_chip"]
        extra = [
            (5 + 12 / 4096 * b) * 1000.0,
            (5 + 5 / 4096 * np.where(on_chip, kept, b)) * 1000.0,
        ]
        if f.has_gather:
            extra.append(p["dram_latency_cycles"] * 1.0)
        if mask.any():
            sort = np.where(on_chip, b / (64 / 4) / ns, accel_mod.host_sort_s(b) * 1e9 / ns)
            extra.append(np.where(mask, sort, 0.0))
        for cycles in extra:
            latency += cycles * ns / 1e9
        return latency, dram


# --- entry point --------------------------------------------------------------------------------

_COMPILED: dict[Hashable, CompiledModel] = {}
_COMPILED_LIMIT = 256
_MODELS: dict[type, type[CompiledModel]] = {
    cpu_mod.CPUTarget: _CPUModel,
    gpu_mod.GPUTarget: _GPUModel,
    accel_mod.AccelTarget: _AccelModel,
}


def _spec(model: str | Path | ModelSpec | Mapping[str, Any]) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, str | Path):
        from codesign.ir.frontends.zoo import resolve

        return resolve(model)
    return load_spec(model)


def compile_model(model: str | ModelSpec, target: Any) -> CompiledModel:
    """The model lowered and analysed once for ``target`` (cached by spec hash, target name,
    type and knob defaults). Built-in CPU, GPU and accelerator targets get the vectorized
    model; any other target a fallback that calls ``estimate`` per point."""
    spec = _spec(model)
    cls = _MODELS.get(type(target), _FallbackModel)
    key: Hashable = (spec.spec_hash(), target.name, type(target), id(target))
    if cls is not _FallbackModel:  # presets: equal names, defaults and tech cost alike
        defaults = tuple(sorted(target.design_space().defaults().items()))
        tech = getattr(getattr(target, "tech", None), "digest", "")
        key = (spec.spec_hash(), target.name, type(target), defaults, tech)
    compiled = _COMPILED.get(key)
    if compiled is None:
        if cls is not _FallbackModel:
            from codesign.cost_models.analytical import check_supported

            check_supported(lower(spec, batch=1), target)
        compiled = cls(spec, target)
        if len(_COMPILED) >= _COMPILED_LIMIT:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = compiled
    return compiled
