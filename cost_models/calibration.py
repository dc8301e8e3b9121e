"""Measure a model's kernels (through the database), fit the CPU analytical model's efficiency
factors per op class to the measurements, and report its accuracy on held-out shapes.

Op classes and the knobs fitted for each are ``FIT_KNOBS`` (``targets/cpu.py`` formulas,
evaluated unchanged): ``gemm`` (dense), ``interaction`` (DLRM dot interaction), ``gather``
(embedding bags) and ``vector`` (concat, top-k).

The fit minimizes the squared log error of predicted vs measured latency (bounded least
squares over log-knobs, from fixed starts: deterministic) on a training split; held-out shapes
(a fixed hash split of the signatures) give MAPE and Spearman's rank correlation. This module
never imports tvm itself: only measuring a kernel that the database lacks does (in a worker
process, through ``tvm_measured``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codesign.cost_models import tvm_measured as tm
from codesign.cost_models.measure_db import MeasureDB, Row, row_from_measurement
from codesign.errors import CodesignError

FIT_KNOBS: dict[str, tuple[str, ...]] = {
    "gemm": (
        "compute_efficiency",
        "llc_bytes",
        "l1_bytes_per_cycle",
        "l2_bytes_per_cycle",
        "llc_bytes_per_cycle",
        "memory_efficiency",
        "op_overhead_s",
        "parallel_launch_s",
    ),
    "interaction": (
        "compute_efficiency",
        "memory_efficiency",
        "op_overhead_s",
        "parallel_launch_s",
    ),
    "gather": (
        "compute_efficiency",
        "dram_latency_s",
        "memory_efficiency",
        "l1_bytes_per_cycle",
        "l2_bytes_per_cycle",
        "llc_bytes_per_cycle",
        "page_walk_s",
        "tlb_entries",
        "op_overhead_s",
        "parallel_launch_s",
    ),
    "vector": (
        "memory_efficiency",
        "compute_efficiency",
        "topk_scan_cycles",
        "sort_compare_s",
        "extern_call_s",
        "op_overhead_s",
        "parallel_launch_s",
    ),
}
#: Knob bounds during the fit (the CPU target's ranges, tightened where they are unphysical).
#: ``compute_efficiency`` is relative to the detected clock, which is the base clock where the
#: OS does not report the boost clock (virtual machines): a boosting part may exceed 1.
BOUNDS = {
    "compute_efficiency": (0.01, 2.0),
    "memory_efficiency": (0.01, 1.0),
    "op_overhead_s": (1e-9, 1e-3),
    "parallel_launch_s": (1e-10, 1e-5),
    "dram_latency_s": (1e-9, 1e-5),
    "llc_bytes": (2.0**18, 2.0**31),
    "l1_bytes_per_cycle": (8.0, 512.0),
    "l2_bytes_per_cycle": (1.0, 256.0),
    "llc_bytes_per_cycle": (0.5, 256.0),
    "page_walk_s": (1e-10, 1e-6),
    "tlb_entries": (16.0, 2.0**16),
    "topk_scan_cycles": (0.05, 20.0),
    "sort_compare_s": (1e-10, 1e-7),
    "extern_call_s": (1e-8, 1e-4),
}
#: Starting points of the fit: the target's defaults, then every knob scaled by these factors
#: (the loss has flat regions where one ceiling, compute or memory, hides the other's knob).
FIT_START_SCALES = (1.0, 0.2, 3.0)
#: Where a knob whose preset value is 0 (no such cost in the analytical model) starts the fit:
#: a thread-pool launch measured at 20-30 ns here (a bag at batch 1 vs 2-8).
FIT_START = {"parallel_launch_s": 2e-8}
HOLDOUT_FRACTION = 0.3
#: Host properties of the CPU target's default point that are measured at start-up (a timed
#: memory copy), not read from the OS: a calibration records them, and a later report of the
#: same database fits against the recorded values (same rows, same knobs).
HOST_MEASURED = ("dram_bandwidth_bytes_per_s",)
CALIBRATION_FILE = "calibration.json"


class CalibrationError(CodesignError):
    """Too few measurements to fit or report."""


# --- which kernels -----------------------------------------------------------------------------


#: MLP layers (in, out) of the zoo's models: DLRM RMC1-3 bottom/top, RM-small..large, WnD, NCF.
SWEEP_LAYERS = (
    (13, 512),
    (64, 4),
    (64, 32),
    (128, 64),
    (256, 128),
    (288, 256),
    (355, 64),
    (512, 256),
    (1024, 512),
    (1376, 1024),
    (2560, 1024),
)
#: CTR heads (in, 1) with a sigmoid.
SWEEP_HEADS = (64, 256)
SWEEP_BATCHES = (1, 4, 16, 64, 256, 1024, 4096)
#: Embedding tables (rows, dim): cache-resident, LLC-sized, beyond the LLC, narrow and wide.
SWEEP_TABLES = ((10_000, 32), (100_000, 64), (1_000_000, 32), (4_000_000, 4))
#: Top-k sizes: the held-out split takes whole k values, so the fit needs several to learn how
#: the heap's cost grows with k.
SWEEP_TOPK = (8, 16, 32, 64, 128)
#: Layers above this many FLOPs are left out at large batches (each would take seconds to time).
SWEEP_MAX_FLOP = 4e9


def sweep_specs() -> list[tm.KernelSpec]:
    """Built-in calibration set, shaped like the zoo's kernels: its MLP layers and CTR heads at
    batches 1..4096, embedding bags over batch, pooling, table size and width, dot interactions
    of RMC1/RM-large/RMC2-like feature counts, concats and top-k (about 250 kernels)."""
    K = tm.KernelSpec.make
    specs: list[tm.KernelSpec] = []
    for m in SWEEP_BATCHES:
        for k, n in SWEEP_LAYERS:
            if 2.0 * m * k * n <= SWEEP_MAX_FLOP:
                specs.append(K("dense", m=m, k=k, n=n, bias=True, activation="relu"))
        for k in SWEEP_HEADS:
            specs.append(K("dense", m=m, k=k, n=1, bias=True, activation="sigmoid"))
    for batch in (1, 16, 64, 256, 1024):
        for pooling in (1, 8, 32, 80):
            for rows, dim in SWEEP_TABLES:
                specs.append(
                    K(
                        "embedding_bag",
                        rows=rows,
                        dim=dim,
                        batch=batch,
                        pooling=pooling,
                        mode="sum",
                        alpha=tm.DEFAULT_ZIPF_ALPHA,
                    )
                )
    for batch in (1, 16, 64, 256, 1024):
        for n, d in ((9, 32), (27, 64), (5, 16), (27, 32), (27, 4)):
            specs.append(
                K(
                    "interaction",
                    batch=batch,
                    parts=[1] * n,
                    n=n,
                    d=d,
                    self_interaction=False,
                    dense_first=True,
                )
            )
    for batch in (1, 16, 64, 256, 1024, 4096):
        specs.append(K("concat", batch=batch, widths=[32] * 9))
        specs.append(K("concat", batch=batch, widths=[13, 64, 128]))
    for batch in (64, 256, 1024, 4096):
        for k in SWEEP_TOPK:
            if k < batch:
                specs.append(K("top_k", batch=batch, k=k))
    return specs


def model_specs(model: str, batches: Sequence[int], *, csr: bool = False) -> list[tm.KernelSpec]:
    """Distinct kernels of ``model`` lowered at each batch size (unsupported ops dropped)."""
    from codesign.ir.frontends.lower import lower
    from codesign.ir.frontends.zoo import resolve

    seen: dict[str, tm.KernelSpec] = {}
    for batch in batches:
        graph = lower(resolve(model), batch=batch)
        for _name, spec, _why in tm.specs_for_graph(graph, csr=csr):
            if spec is not None:
                seen.setdefault(spec.signature(), spec)
    return list(seen.values())


# --- measuring through the database ------------------------------------------------------------


@dataclass
class RunSummary:
    rows: list[Row]
    measured: int
    cached: int
    failed: int
    elapsed_s: float
    db_path: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "kernels": len(self.rows),
            "measured": self.measured,
            "cached": self.cached,
            "failed": self.failed,
            "elapsed_s": self.elapsed_s,
            "db": self.db_path,
            "rows": [r.as_dict() for r in self.rows],
        }


def host_key(threads: int) -> dict[str, Any]:
    return {
        "target": tm.target_key("cpu", threads=threads),
        "tvm_version": tm.tvm_version(),
        "cpu_model": tm.cpu_model(),
        "schedule_version": tm.SCHEDULE_VERSION,
    }


def measure_specs(
    specs: Sequence[tm.KernelSpec],
    db: MeasureDB,
    *,
    timing: tm.TimingConfig | None = None,
    timeout_s: float = 120.0,
    isolate: bool = True,
    retry_failed: bool = False,
    rounds: int = 1,
    on_progress: Callable[[tm.KernelSpec, str], None] | None = None,
) -> RunSummary:
    """Measure what the database lacks (each kernel in a worker process when ``isolate``),
    store every result, failures included, and return all rows. ``on_progress(spec, how)`` is
    called per kernel with how = cached, ok or the failure status.

    ``rounds`` > 1 measures the missing kernels that many times, in interleaved passes, and
    keeps the fastest ok result: on a shared machine other processes only ever add time, and a
    burst of load then spoils one pass of a kernel, not all of them."""
    timing = timing or tm.TimingConfig()
    key = host_key(timing.threads)
    start = time.perf_counter()
    rows: dict[str, Row] = {}
    todo: list[tm.KernelSpec] = []
    for spec in specs:
        row = db.get(spec.signature(), **key)
        if row is not None and (row.ok or not retry_failed):
            rows[spec.signature()] = row
            if on_progress:
                on_progress(spec, "cached")
        else:
            todo.append(spec)
    cached = len(rows)

    def store(m: tm.Measurement) -> None:
        row = row_from_measurement(
            m,
            tvm_version=key["tvm_version"],
            cpu_model=key["cpu_model"],
            schedule=key["schedule_version"],
        )
        db.put(row)
        rows[m.spec.signature()] = row
        if on_progress:
            on_progress(m.spec, m.status)

    best: dict[str, tm.Measurement] = {}

    def keep(m: tm.Measurement) -> None:
        old = best.get(m.spec.signature())
        if old is None or (m.ok and (not old.ok or m.latency_s < old.latency_s)):
            best[m.spec.signature()] = m

    for done in range(max(1, rounds)):
        last = done == max(1, rounds) - 1
        # a kernel that failed (build, mismatch, timeout) is not tried again in later passes
        batch = [s for s in todo if s.signature() not in best or best[s.signature()].ok]

        def result(m: tm.Measurement, last: bool = last) -> None:
            keep(m)
            final = best[m.spec.signature()]
            if last or not final.ok:
                store(final)

        if not batch:
            break
        if isolate:
            tm.measure_isolated(batch, timing, timeout_s=timeout_s, on_result=result)
        else:
            for spec in batch:
                result(tm.measure(spec, timing))

    ordered = [rows[s.signature()] for s in specs]
    return RunSummary(
        rows=ordered,
        measured=len(todo),
        cached=cached,
        failed=sum(not r.ok for r in ordered),
        elapsed_s=time.perf_counter() - start,
        db_path=str(db.path),
    )


# --- the analytical model on one kernel ---------------------------------------------------------


def graph_for_spec(spec: tm.KernelSpec) -> Any:
    """A one-op IR graph whose analytical cost is the kernel's (batch = the kernel's rows)."""
    from codesign.ir.graph import Graph

    p = spec.p
    if spec.kind == "dense":
        g = Graph("kernel", batch=p["m"])
        x = g.add_node("input", attrs={"shape": [p["k"]]}, name="x")
        y = g.add_node(
            "dense",
            [x],
            {
                "in_features": p["k"],
                "out_features": p["n"],
                "bias": p["bias"],
                "activation": p["activation"],
            },
            name="op",
        )
    elif spec.kind.startswith("embedding_bag"):
        g = Graph("kernel", batch=p["batch"])
        x = g.add_node(
            "input",
            attrs={"shape": [p["pooling"]], "dtype": "int32", "role": "sparse"},
            name="ids",
        )
        y = g.add_node(
            "embedding_bag",
            [x],
            {"rows": p["rows"], "dim": p["dim"], "pooling": p["pooling"], "mode": p["mode"]},
            name="op",
        )
    elif spec.kind == "interaction":
        g = Graph("kernel", batch=p["batch"])
        xs = [
            g.add_node("input", attrs={"shape": [p["d"]] if r == 1 else [r, p["d"]]}, name=f"v{i}")
            for i, r in enumerate(p["parts"])
        ]
        y = g.add_node(
            "interaction",
            xs,
            {
                "mode": "dot",
                "self_interaction": p["self_interaction"],
                "dense_first": p["dense_first"],
            },
            name="op",
        )
    elif spec.kind == "concat":
        g = Graph("kernel", batch=p["batch"])
        xs = [
            g.add_node("input", attrs={"shape": [w]}, name=f"x{i}")
            for i, w in enumerate(p["widths"])
        ]
        y = g.add_node("concat", xs, name="op")
    else:
        g = Graph("kernel", batch=p["batch"])
        x = g.add_node("input", attrs={"shape": [1]}, name="score")
        y = g.add_node("top_k", [x], {"k": p["k"]}, name="op")
    g.add_node("output", [y], name="output")
    g.infer()
    g.lint()
    return g


class _Predictor:
    """The target's own ``op_cost`` on one kernel, at any point (views built once)."""

    def __init__(self, target: Any, specs: Iterable[tm.KernelSpec]) -> None:
        from codesign.targets.base import op_views

        self.target = target
        self.views = {}
        for spec in specs:
            view = next(v for v in op_views(graph_for_spec(spec)) if v.node.name == "op")
            self.views[spec.signature()] = view

    def __call__(self, signature: str, point: Mapping[str, Any]) -> float:
        return self.target.op_cost(self.views[signature], point).latency_s


def base_point(target: Any, threads: int) -> dict[str, Any]:
    """The target's default point for measurements taken with ``threads`` threads."""
    return target.design_space().resolve({"cores": threads})


# --- fitting and accuracy ---------------------------------------------------------------------


#: The parameter of each kernel kind that is the batch (dense layers' rows are the batch).
_BATCH_PARAM = {"dense": "m"}


def shape_key(signature: str) -> str:
    """``signature`` without its batch: the kernel's shape, the same at every batch."""
    data = json.loads(signature)
    data.pop(_BATCH_PARAM.get(data.get("kind", ""), "batch"), None)
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _shape_rank(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")


def holdout_split(signatures: Iterable[str], fraction: float = HOLDOUT_FRACTION) -> set[str]:
    """The held-out signatures: of each kernel kind, the ``fraction`` of its distinct shapes
    (batch left out, :func:`shape_key`) that come first in a fixed hash order, at every
    batch, so a held-out shape is never seen by the fit. A kind with two shapes or more
    holds out at least one and keeps at least one (a class's kinds have their own formulas:
    each must be seen by the fit)."""
    by_class: dict[str, dict[str, list[str]]] = {}
    for sig in signatures:
        kind = json.loads(sig).get("kind", "")
        by_class.setdefault(kind, {}).setdefault(shape_key(sig), []).append(sig)
    held: set[str] = set()
    for shapes in by_class.values():
        if len(shapes) < 2:
            continue
        count = min(len(shapes) - 1, max(1, round(fraction * len(shapes))))
        for key in sorted(shapes, key=lambda k: (_shape_rank(k), k))[:count]:
            held.update(shapes[key])
    return held


def mape(pred: Sequence[float], meas: Sequence[float]) -> float:
    p, m = np.asarray(pred, float), np.asarray(meas, float)
    return float(np.mean(np.abs(p - m) / m)) if len(m) else math.nan


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) < 3:
        return math.nan
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass
class Calibration:
    """Fitted knobs per op class, and where they came from."""

    knobs: dict[str, dict[str, float]]
    target: str
    threads: int
    cpu_model: str
    tvm_version: str
    accuracy: dict[str, Any] = field(default_factory=dict)
    #: Host properties the fit was made against that are measured, not read (``HOST_MEASURED``).
    host: dict[str, float] = field(default_factory=dict)
    #: What a deployed stage pays per inference batch beyond its kernels (dispatch, copies into
    #: the runtime, the hand-off between stages): ``fixed_s`` + ``per_item_s`` x batch items,
    #: fitted by :func:`fit_stage_overhead` to ``codesign plan run --calibrate`` measurements
    #: (``samples``). Empty until a plan has been run.
    stage_overhead: dict[str, Any] = field(default_factory=dict)
    #: What a whole stage run by the Relax VM pays beyond its kernels (``per_call_s`` per
    #: kernel call, ``per_byte_s`` per byte the kernels write: dispatch, fresh output
    #: tensors), fitted by :func:`codesign.cost_models.tvm_stage.fit_dispatch` to
    #: ``--whole-stage`` rows and passed to :func:`report`.
    dispatch: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "knobs": self.knobs,
            "target": self.target,
            "threads": self.threads,
            "cpu_model": self.cpu_model,
            "tvm_version": self.tvm_version,
            "host": self.host,
            "accuracy": self.accuracy,
            "stage_overhead": self.stage_overhead,
            "dispatch": self.dispatch,
        }

    def overhead_s(self, batch_items: int) -> float:
        """The fitted per-batch stage overhead for ``batch_items`` items (0 before any fit)."""
        o = self.stage_overhead
        return float(o.get("fixed_s", 0.0)) + float(o.get("per_item_s", 0.0)) * batch_items

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        return cls(
            knobs={k: dict(v) for k, v in data["knobs"].items()},
            target=data["target"],
            threads=int(data["threads"]),
            cpu_model=data.get("cpu_model", ""),
            tvm_version=data.get("tvm_version", ""),
            accuracy=dict(data.get("accuracy", {})),
            host={k: float(v) for k, v in data.get("host", {}).items()},
            stage_overhead=dict(data.get("stage_overhead", {})),
            dispatch=dict(data.get("dispatch", {})),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise CalibrationError(
                f"calibration {path}: cannot read it ({exc}) "
                "(fix: run `codesign measure report` to fit one)"
            ) from None

    def point_for(self, op_class: str, point: Mapping[str, Any]) -> dict[str, Any]:
        return {**point, **self.knobs.get(op_class, {})}

    def overrides(self) -> dict[str, Any]:
        """One knob set for tools that take a single point (``--set``): the GEMM class's
        compute and weight-streaming knobs, the gather class's memory knobs, the median
        overhead."""
        g, e = self.knobs.get("gemm", {}), self.knobs.get("gather", {})
        out: dict[str, Any] = {}
        for name in ("compute_efficiency", "llc_bytes_per_cycle"):
            if name in g:
                out[name] = g[name]
        for name in ("memory_efficiency", "dram_latency_s", "l2_bytes_per_cycle", "page_walk_s"):
            if name in e:
                out[name] = e[name]
        if "tlb_entries" in e:
            out["tlb_entries"] = max(16, round(e["tlb_entries"]))
        overheads = [v["op_overhead_s"] for v in self.knobs.values() if "op_overhead_s" in v]
        if overheads:
            out["op_overhead_s"] = float(np.median(overheads))
        return out


def _fit_class(
    predict: _Predictor, rows: list[Row], point: dict[str, Any], knobs: tuple[str, ...]
) -> dict[str, float]:
    """Least squares on log latency over log knobs, within ``BOUNDS`` (trust-region reflective,
    deterministic): one run from each of ``FIT_START_SCALES``, the lowest loss kept (ties go to
    the earlier start)."""
    from scipy.optimize import least_squares

    lo = np.log([BOUNDS[k][0] for k in knobs])
    hi = np.log([BOUNDS[k][1] for k in knobs])
    meas = np.log([r.latency_s for r in rows])

    def unpack(z: np.ndarray) -> dict[str, float]:
        return {k: float(v) for k, v in zip(knobs, np.exp(np.clip(z, lo, hi)), strict=True)}

    def residuals(z: np.ndarray) -> np.ndarray:
        pt = {**point, **unpack(z)}
        return np.log([predict(r.signature, pt) for r in rows]) - meas

    best_z, best_cost = None, math.inf
    for scale in FIT_START_SCALES:
        start = [point[k] or FIT_START.get(k, 0.0) for k in knobs]
        z0 = np.clip(
            np.log([max(v, BOUNDS[k][0]) * scale for k, v in zip(knobs, start, strict=True)]),
            lo,
            hi,
        )
        # a 0.1 % step: integer-valued knobs (cache rows, TLB entries) move the prediction
        res = least_squares(
            residuals,
            z0,
            bounds=(lo, hi),
            method="trf",
            diff_step=1e-3,
            x_scale=1.0,
            xtol=1e-10,
            ftol=1e-10,
            gtol=1e-10,
            max_nfev=200 * (len(knobs) + 1),
        )
        if res.cost < best_cost - 1e-12:
            best_z, best_cost = res.x, res.cost
    return unpack(best_z)


def calibrate(
    rows: Sequence[Row],
    target: Any,
    *,
    threads: int,
    holdout: float = HOLDOUT_FRACTION,
    host: Mapping[str, float] | None = None,
) -> Calibration:
    """Fit knobs per op class on the training split of ``rows`` (ok rows of one host) and
    measure accuracy, before and after, on the held-out split. ``host`` replaces measured host
    properties of the target's default point (``HOST_MEASURED``), so that fits of the same rows
    do not move with a re-measured DRAM bandwidth."""
    # sorted: the same rows fit to the same knobs whatever order the database returns them in
    ok = sorted(
        (r for r in rows if r.ok and r.latency_s and r.latency_s > 0), key=lambda r: r.signature
    )
    if not ok:
        raise CalibrationError(
            "no successful measurements to calibrate from "
            "(fix: run `codesign measure sweep --target cpu/host` first)"
        )
    specs = [tm.KernelSpec.from_signature(r.signature) for r in ok]
    predict = _Predictor(target, specs)
    point = base_point(target, threads)
    point.update({k: float(v) for k, v in (host or {}).items() if k in HOST_MEASURED})
    knobs: dict[str, dict[str, float]] = {}
    accuracy: dict[str, Any] = {"classes": {}}
    held_meas: list[float] = []
    held_before: list[float] = []
    held_after: list[float] = []
    held_out = holdout_split([r.signature for r in ok], holdout)
    for op_class, names in FIT_KNOBS.items():
        mine = [r for r in ok if r.op_class == op_class]
        train = [r for r in mine if r.signature not in held_out]
        test = [r for r in mine if r.signature in held_out]
        if len(train) < len(names) + 1:
            continue
        knobs[op_class] = _fit_class(predict, train, point, names)
        fitted = {**point, **knobs[op_class]}
        entry: dict[str, Any] = {"train": len(train), "holdout": len(test)}
        for split, group in (("train", train), ("holdout", test)):
            meas = [r.latency_s for r in group]
            before = [predict(r.signature, point) for r in group]
            after = [predict(r.signature, fitted) for r in group]
            entry[split + "_mape_before"] = mape(before, meas)
            entry[split + "_mape"] = mape(after, meas)
            entry[split + "_spearman"] = spearman(after, meas)
            if split == "holdout":
                held_meas += meas
                held_before += before
                held_after += after
                entry["points"] = [
                    {"kernel": r.kernel, "measured_s": m, "predicted_s": a, "default_s": b}
                    for r, m, a, b in zip(group, meas, after, before, strict=True)
                ]
        accuracy["classes"][op_class] = entry
    accuracy["holdout"] = {
        "count": len(held_meas),
        "mape_before": mape(held_before, held_meas),
        "mape": mape(held_after, held_meas),
        "spearman_before": spearman(held_before, held_meas),
        "spearman": spearman(held_after, held_meas),
    }
    return Calibration(
        knobs=knobs,
        target=target.name,
        threads=threads,
        cpu_model=tm.cpu_model(),
        tvm_version=tm.tvm_version(),
        accuracy=accuracy,
        host={k: float(point[k]) for k in HOST_MEASURED},
    )


def report(
    db: MeasureDB,
    *,
    target: str = "cpu/host",
    threads: int = 1,
    save: bool = True,
    dispatch: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit on this host's measurements in ``db`` and return accuracy; saves the calibration
    next to the database (``calibration.json``) when ``save``."""
    from codesign.plugins import load_target

    key = host_key(threads)
    # per-kernel rows only: whole-stage rows (op class "stage") share the key
    kernel_classes = set(tm.OP_CLASS.values())
    rows = [r for r in db.rows(**key) if r.op_class in kernel_classes]
    path = db.path.parent / CALIBRATION_FILE
    earlier = _earlier(path)
    host = _recorded_host(earlier, target=target, threads=threads)
    cal = calibrate(rows, load_target(target), threads=threads, host=host)
    cal.dispatch = dict(dispatch or {})
    dropped = bool(earlier and earlier.stage_overhead)
    if save:
        cal.save(path)
    return {
        "db": str(db.path),
        "calibration": str(path) if save else None,
        "measurements": len(rows),
        # plan-run fits are relative to the knobs they were priced with: a refit drops them
        "dropped_stage_overhead": dropped,
        "failed": [
            {"kernel": r.kernel, "status": r.status, "error": r.error} for r in rows if not r.ok
        ],
        **cal.as_dict(),
    }


def _earlier(path: Path) -> Calibration | None:
    """The calibration saved at ``path`` before this fit (``None``: none, or unreadable)."""
    try:
        return Calibration.load(path) if path.exists() else None
    except CalibrationError:
        return None


def stage_glue_terms(graph: Any) -> tuple[int, float]:
    """(kernel calls, bytes the kernels write) of a whole stage of ``graph``: its ops with a
    TVM lowering, and their fp32 outputs."""
    specs = [spec for _, spec, _ in tm.specs_for_graph(graph) if spec is not None]
    written = sum(4.0 * float(np.prod(tm.output_shape(spec))) for spec in specs)
    return len(specs), written


def load_default() -> Calibration:
    """The calibration next to the default measurement database (``codesign measure report``
    writes it); :class:`CalibrationError` when there is none."""
    from codesign.cost_models.measure_db import default_path

    return Calibration.load(default_path().parent / CALIBRATION_FILE)


def _recorded_host(old: Calibration | None, *, target: str, threads: int) -> dict[str, float]:
    """Measured host properties of an earlier calibration ``old`` of the same target, CPU,
    thread count and TVM version (none when there is no such calibration)."""
    if old is None:
        return {}
    same = (old.target, old.threads, old.cpu_model, old.tvm_version) == (
        target,
        threads,
        tm.cpu_model(),
        tm.tvm_version(),
    )
    return dict(old.host) if same else {}


# --- cost models built on the above -----------------------------------------------------------


def calibrated_estimate(
    graph: Any,
    target: Any,
    calibration: Calibration,
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """The analytical estimate with each op costed at its class's fitted knobs
    (``cost_model`` = calibrated in the provenance), on the host properties the calibration
    recorded (``HOST_MEASURED``: the DRAM bandwidth measured when it was fitted, not the one
    re-measured at this start, which moves with the machine's load) unless ``overrides`` set
    them; plus the whole-stage glue (:func:`codesign.cost_models.tvm_stage.fit_dispatch`)
    and the deployed stage's terms (:func:`fit_stage_overhead`) where fitted."""
    from codesign.cost_models.analytical import estimate

    host = {k: v for k, v in calibration.host.items() if k not in (overrides or {})}
    report = _per_op_estimate(
        graph,
        target,
        overrides,
        lambda view, point: target.op_cost(
            view, calibration.point_for(_class_of(view.op, view.attrs), {**point, **host})
        ),
        model="calibrated",
        extra={"calibration": calibration.as_dict()["knobs"]},
        fallback=estimate,
    )
    overhead = calibration.overhead_s(graph.batch)
    dispatch = 0.0
    if calibration.dispatch:
        calls, written = stage_glue_terms(graph)
        d = calibration.dispatch
        dispatch = (
            float(d.get("per_call_s", 0.0)) * calls + float(d.get("per_byte_s", 0.0)) * written
        )
    if not overhead and not dispatch:
        return report
    import dataclasses

    return dataclasses.replace(
        report,
        latency_s=report.latency_s + dispatch + overhead,
        provenance={**report.provenance, "dispatch_s": dispatch, "stage_overhead_s": overhead},
    )


def spread_probabilities(points: int) -> np.ndarray:
    """The probabilities a service shape is kept at: the midpoints ``(i + 1/2) / points``, so
    that neither the fastest nor the slowest query of a run (a stall of tens of ms among
    10,000 queries) becomes a point of the shape; draws beyond them take the end points."""
    return (np.arange(points) + 0.5) / points


#: Time constants (seconds) tried for the cold term's fall with the per-engine arrival rate.
COLD_TAU_GRID_S = np.geomspace(1e-5, 1.0, 101)
#: The most a time constant may damp the cold term at the lightest load of the runs fitted
#: (rate x tau <= this: the term there is at least exp(-4), about 2 %, of ``cold_s``).
COLD_VISIBLE = 4.0


#: The most of a core's time the frontend is taken to leave the engines short of (beyond it
#: the plan is simply over the host's CPU).
FRONTEND_SHARE_CAP = 0.9


def _per_run(samples: Sequence[Mapping[str, Any]], key: str) -> dict[tuple, float]:
    """``key``'s finite values, one per run (its stages' samples repeat the run's figures),
    by (run, trial, qps)."""
    return {
        (x.get("run"), x.get("trial"), float(x.get("qps") or 0.0)): float(x[key])
        for x in samples
        if x.get(key) is not None and math.isfinite(float(x[key]))
    }


def fit_frontend(samples: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The cores the deployment's frontend (load generator, hand-off to stage 1) keeps busy at
    ``qps``: ``frontend_cores + frontend_cores_per_qps x qps`` (non-negative least squares
    over the runs' measured ``frontend_cpu_s`` per query x their ``qps``; one row per run).
    Zeros without measurements."""
    from scipy.optimize import nnls

    runs = {k: v for k, v in _per_run(samples, "frontend_cpu_s").items() if k[2]}
    if not runs:
        return {"frontend_cores": 0.0, "frontend_cores_per_qps": 0.0}
    qps = np.array([k[2] for k in runs])
    share = qps * np.array(list(runs.values()))
    design = np.column_stack([np.ones_like(qps), qps]) if len(set(qps)) > 1 else qps[:, None]
    coef, _ = nnls(design, share)
    if coef.size == 1:
        return {"frontend_cores": 0.0, "frontend_cores_per_qps": float(coef[0])}
    return {"frontend_cores": float(coef[0]), "frontend_cores_per_qps": float(coef[1])}


def frontend_inflation(frontend: Mapping[str, float], qps: float, host_cores: Any) -> float:
    """How much longer an engine serves when the frontend's work at ``qps`` shares its core
    (the engines having taken every one of the host's ``host_cores``): 1 / (1 - the
    frontend's cores / ``host_cores``), the share capped at :data:`FRONTEND_SHARE_CAP`."""
    cores = float(host_cores or 0)
    if cores <= 0:
        return 1.0
    busy = frontend.get("frontend_cores", 0.0) + frontend.get("frontend_cores_per_qps", 0.0) * qps
    return 1.0 / (1.0 - min(FRONTEND_SHARE_CAP, max(0.0, busy) / cores))


def fit_stage_overhead(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """What a deployed stage pays beyond its kernels, fitted to plan-run ``samples`` (each
    ``measured_s``: mean service per query, ``predicted_s``: the calibrated prediction without
    overhead, ``batches``, ``batch_items``, ``qps``, ``engines``; optionally the run's
    ``service_quantiles``):

    - ``fixed_s``, ``per_item_s`` (per inference batch: dispatch, copies into the runtime),
      ``handoff_s`` (per query of a stage that hands its top-k on to another: the put on a
      process queue), ``shared_s`` (per query of a stage whose several engines share its
      queue and run the same model side by side: their reads of one queue, and each one's
      gathers and caches beside an engine doing the same) and ``cold_s``, ``cold_tau_s`` (per
      query): the measured service is the prediction plus ``batches`` x (``fixed_s`` +
      ``per_item_s`` x ``batch_items``) plus ``handoff_s`` where it hands off, ``shared_s``
      where it has more than one engine, plus ``cold_s`` x exp(-``rate`` x ``cold_tau_s``),
      ``rate`` the queries per second each engine receives.
      A lightly loaded engine runs slower (it sleeps between queries: cold caches, a core
      that clocks down or is handed to other work); the busier it is, the nearer its hot
      speed. For each time constant of :data:`COLD_TAU_GRID_S` the rest is linear, solved by
      non-negative least squares on relative errors; the best is kept (the smallest of
      equals), among those that leave at least exp(-:data:`COLD_VISIBLE`) of the term at the
      lightest load fitted. With one batch size the per-item term is left at 0; with one load
      per stage the cold term cannot be told from the overhead and is 0.
    - ``service_quantiles``: the shape of the service from query to query (service / mean at
      even probabilities), the runs' shapes averaged quantile by quantile;
    - ``ingress_s``: the delay from a query's arrival to its reaching stage 1 (the runs'
      median ``send_late_s``, how late the load generator sent queries at p50), which the
      evaluator adds to every query's latency;
    - ``frontend_cores``, ``frontend_cores_per_qps`` (:func:`fit_frontend`): the CPU the
      deployment's frontend takes. Where a run's engines took every core of the host
      (``cores_used`` >= ``host_cores``), they shared them with it, and its measured service
      is divided by :func:`frontend_inflation` before the fit.

    The evaluator adds the cold term at the load it prices, stretches the service by the
    frontend's share where the engines take every core, and draws each query's service from
    the shape, scaled to that mean."""
    from scipy.optimize import nnls

    if not samples:
        raise CalibrationError("no plan-run samples to fit a stage overhead")
    frontend = fit_frontend(samples)
    # a run whose engines took every core shared them with its frontend: its engines' service
    # is the service on a core of their own x frontend_inflation
    inflation = np.array(
        [
            frontend_inflation(frontend, float(x.get("qps", 0.0)), x.get("host_cores"))
            if x.get("cores_used", 0) >= (x.get("host_cores") or math.inf)
            else 1.0
            for x in samples
        ]
    )
    measured = np.array([x["measured_s"] for x in samples], float)
    hot = measured / inflation  # the service on cores of their own
    before = np.array([x["predicted_s"] for x in samples], float)
    rate = np.array([float(x.get("qps", 0.0)) / max(1, int(x.get("engines", 1))) for x in samples])
    batches = np.array([x["batches"] for x in samples], float)
    # the linear terms, by name: per batch, per item of a batch (with two batch sizes or more),
    # per query of a stage that hands its top-k on to another (a put on a process queue)
    columns = {"fixed_s": batches}
    if len({x["batch_items"] for x in samples}) >= 2:
        columns["per_item_s"] = batches * np.array([x["batch_items"] for x in samples], float)
    handing = np.array([float(bool(x.get("hands_off"))) for x in samples])
    if 0.0 < handing.sum() < len(samples):
        columns["handoff_s"] = handing
    sharing = np.array([float(int(x.get("engines", 1)) > 1) for x in samples])
    if 0.0 < sharing.sum() < len(samples):
        columns["shared_s"] = sharing
    linear = np.column_stack(list(columns.values()))
    stages = {(x.get("model"), x.get("items"), x.get("batch_items")) for x in samples}
    loads = {
        (x.get("model"), x.get("items"), x.get("batch_items"), r)
        for x, r in zip(samples, rate, strict=True)
    }
    weight = 1.0 / hot
    target = (hot - before) * weight
    best = (math.inf, np.zeros(linear.shape[1] + 1), 0.0)
    # a time constant the runs can see: the term at the lightest load is at least
    # exp(-COLD_VISIBLE) of cold_s, so that cold_s is pinned by the data, not extrapolated
    # (at rates of 1,000-3,000 per second with tau = 16 ms, cold_s fitted to 2,000 s)
    taus = (
        [t for t in COLD_TAU_GRID_S if t * rate.min() <= COLD_VISIBLE]
        if len(loads) > len(stages)
        else [0.0]
    ) or [0.0]
    for tau in taus:
        cold = np.exp(-rate * tau) if tau > 0 else np.zeros_like(rate)
        design = np.column_stack([linear, cold]) * weight[:, None]
        coef, resid = nnls(design, target)
        if resid < best[0] - 1e-15:
            best = (resid, coef, float(tau))
    _, coef, tau = best
    cold_s = float(coef[-1]) if tau > 0 else 0.0
    terms = dict(zip(columns, coef[:-1].tolist(), strict=True))
    modelled = (before + linear @ coef[:-1] + cold_s * np.exp(-rate * tau)) * inflation
    shapes = [x["service_quantiles"] for x in samples if x.get("service_quantiles")]
    points = min((len(q) for q in shapes), default=0)
    # the pooled shape: each run's quantile function, averaged quantile by quantile, at the
    # coarsest resolution any run recorded
    spread = (
        np.mean(
            [
                np.interp(spread_probabilities(points), spread_probabilities(len(q)), q)
                for q in shapes
            ],
            axis=0,
        ).tolist()
        if points >= 2
        else []
    )
    # the frontend's delay before stage 1: how late the generator sent a query (its p50),
    # one value per run, their median
    late = _per_run(samples, "send_late_s")
    return {
        **frontend,
        "ingress_s": float(np.median(list(late.values()))) if late else 0.0,
        "fixed_s": terms["fixed_s"],
        "per_item_s": terms.get("per_item_s", 0.0),
        "handoff_s": terms.get("handoff_s", 0.0),
        "shared_s": terms.get("shared_s", 0.0),
        "cold_s": cold_s,
        "cold_tau_s": tau if cold_s else 0.0,
        "service_quantiles": spread,
        "samples": list(samples),
        "mape_before": float(np.mean(np.abs(before - measured) / measured)),
        "mape_after": float(np.mean(np.abs(modelled - measured) / measured)),
    }


def measured_estimate(
    graph: Any,
    target: Any,
    db: MeasureDB,
    overrides: Mapping[str, Any] | None = None,
    *,
    timing: tm.TimingConfig | None = None,
    isolate: bool = True,
) -> Any:
    """Each op's latency measured with TVM (through the database, measuring what it lacks);
    ops without a lowering keep the analytical estimate (``detail.source`` says which)."""
    import dataclasses

    from codesign.cost_models.analytical import estimate

    specs = {n: s for n, s, _ in tm.specs_for_graph(graph) if s is not None}
    summary = measure_specs(
        list({s.signature(): s for s in specs.values()}.values()),
        db,
        timing=timing,
        isolate=isolate,
    )
    by_sig = {r.signature: r for r in summary.rows}

    def cost(view: Any, point: Mapping[str, Any]) -> Any:
        est = target.op_cost(view, point)
        spec = specs.get(view.node.name)
        row = by_sig.get(spec.signature()) if spec else None
        if row is None or not row.ok:
            est.detail["source"] = "analytical"
            return est
        return dataclasses.replace(
            est,
            latency_s=row.latency_s,
            energy_j=row.latency_s * point.get("tdp_w", 0.0),
            bound="measured",
            detail={**est.detail, "source": "tvm", "kernel": row.kernel},
        )

    return _per_op_estimate(
        graph, target, overrides, cost, model="tvm", extra={}, fallback=estimate
    )


def _class_of(op: str, attrs: Mapping[str, Any]) -> str:
    if op in ("embedding_bag", "embedding_bag_group"):
        return "gather"
    if op == "interaction" and attrs.get("mode", "dot") == "dot":
        return "interaction"
    if op in ("dense", "attention", "recurrent"):
        return "gemm"
    return "vector"


def _per_op_estimate(graph, target, overrides, op_cost, *, model, extra, fallback):
    """``analytical.estimate`` with a different per-op cost; same schedule and totals."""
    import dataclasses

    from codesign.targets.base import op_views

    base = fallback(graph, target, overrides)  # validates support, point and hardware
    point = base.point
    ops = tuple(op_cost(v, point) for v in op_views(graph) if v.op not in ("input", "output"))
    sched = target.schedule(graph, ops, point)
    everything = ops + sched.extra
    return dataclasses.replace(
        base,
        ops=ops,
        extra=sched.extra,
        latency_s=sched.latency_s,
        energy_j=sum(e.energy_j for e in everything),
        dram_bytes=sum(e.dram_bytes for e in everything),
        schedule=dict(sched.detail),
        provenance={**base.provenance, "cost_model": model, **extra},
    )
