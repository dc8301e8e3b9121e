"""Whole-stage TVM models: a stage's IR graph lowered to one Relax module, built for this CPU,
checked against numpy and timed end to end with the Relax VM.

Each op becomes a ``call_tir`` of the same hand-scheduled kernel that per-op measurement times
(:func:`tvm_measured.lower`); the glue between them (reshapes; the interaction takes its
parts as separate buffers, so nothing is stacked) is plain Relax, legalized by the default CPU
pipeline. The kernels are marked opaque,
so the pipeline does not fuse into them: the end-to-end time minus the sum of the per-op
times is the cost of the glue, the VM's calls and the memory traffic between kernels.

tvm is imported lazily (through :func:`tvm_measured._tvm`); the key, the inputs and the numpy
reference need only numpy.

Weights (dense weights, embedding tables) are arguments of ``main`` after the stage inputs, so
the module holds no constants; tables are capped in rows as per-op measurement caps them, and
embedding ids are int32 (the kernels' index type) drawn with the same Zipf skew.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from codesign.cost_models import tvm_measured as tm

#: Bump when the stage lowering (glue, argument order) changes: old stage rows stop matching.
STAGE_LOWERING_VERSION = 2
OP_CLASS = "stage"
#: TIR op pattern "opaque": FuseOps leaves the hand-scheduled kernels alone.
_OPAQUE = 8


@dataclass(frozen=True)
class StageSpec:
    """A whole stage at one batch: the key's op part is the graph's hash and the batch."""

    model: str
    graph_hash: str
    batch: int

    @classmethod
    def of(cls, graph: Any, model: str) -> StageSpec:
        text = json.dumps(graph.to_dict(), sort_keys=True, separators=(",", ":"))
        return cls(model, hashlib.sha256(text.encode()).hexdigest()[:16], graph.batch)

    @property
    def op_class(self) -> str:
        return OP_CLASS

    def signature(self) -> str:
        return json.dumps(
            {
                "kind": "stage",
                "model": self.model,
                "graph_hash": self.graph_hash,
                "batch": self.batch,
                "lowering": STAGE_LOWERING_VERSION,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    def label(self) -> str:
        return f"stage {self.model} B{self.batch}"


# --- one interpreter, two back ends (numpy reference, Relax) ------------------------------------


def kernel_specs(graph: Any) -> dict[str, tm.KernelSpec]:
    """Each op's kernel spec; raises :class:`tvm_measured.UnsupportedKernel` naming the first op
    without a fixed-shape lowering (the whole stage cannot be built then)."""
    specs: dict[str, tm.KernelSpec] = {}
    for name, spec, why in tm.specs_for_graph(graph):
        if spec is None:
            raise tm.UnsupportedKernel(f"node {name}: {why}")
        specs[name] = spec
    return specs


def stage_arrays(graph: Any, specs: dict[str, tm.KernelSpec], *, seed: int = 0) -> dict[str, Any]:
    """Random inputs and weights, by argument name: ``<input>`` for each stage input,
    ``<node>.w`` / ``<node>.b`` for a dense's weights, ``<node>.table`` for a bag's table."""
    arrays: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    for i, node in enumerate(graph.nodes):
        spec = specs.get(node.name)
        if node.op == "input" and node.dtype.startswith("fp"):
            arrays[node.name] = rng.standard_normal((graph.batch, *node.shape), dtype=np.float32)
        elif node.op == "dense":
            args = tm.random_inputs(spec, seed + i)
            arrays[f"{node.name}.w"] = args[1]
            if spec.p["bias"]:
                arrays[f"{node.name}.b"] = args[2]
        elif node.op == "embedding_bag":
            table, ids = tm.random_inputs(spec, seed + i)
            arrays[f"{node.name}.table"] = table
            src = graph.node(node.inputs[0])
            old = arrays.get(src.name)
            ids = ids.reshape(graph.batch, *src.shape)
            # an id input shared by bags of different sizes holds ids valid in all of them
            arrays[src.name] = ids if old is None else np.minimum(old, ids)
    return arrays


def argument_names(graph: Any, arrays: dict[str, Any]) -> list[str]:
    """``main``'s parameters: the stage inputs in graph order, then the weights."""
    inputs = [n.name for n in graph.nodes if n.op == "input" and n.name in arrays]
    return inputs + [k for k in arrays if k not in inputs]


class _Numpy:
    def reshape(self, x, shape):
        return np.reshape(x, shape)

    def kernel(self, name, spec, args):
        return tm.reference(spec, list(args)).astype(np.float32)


class _Relax:
    def __init__(self, tvm: Any, bb: Any) -> None:
        self.tvm, self.bb = tvm, bb
        self.funcs: dict[str, Any] = {}

    def reshape(self, x, shape):
        return self.bb.emit(self.tvm.relax.op.reshape(x, shape))

    def kernel(self, name, spec, args):
        relax = self.tvm.relax
        gv = self.funcs.get(spec.signature())
        if gv is None:
            func_name = f"k{len(self.funcs)}_{spec.kind}"
            func = tm.lower(spec)["main"]
            func = func.with_attr("global_symbol", func_name).with_attr("op_pattern", _OPAQUE)
            gv = self.bb.add_func(func, func_name)
            self.funcs[spec.signature()] = gv
        out = relax.TensorType(tm.output_shape(spec), "float32")
        return self.bb.emit(relax.call_tir(gv, list(args), out_ty=out))


def interpret(graph: Any, specs: dict[str, tm.KernelSpec], values: dict[str, Any], be: Any) -> Any:
    """Evaluate ``graph`` on back end ``be`` from ``values`` (stage inputs and weights by
    argument name); returns the output's value. Per-item shapes get the batch in front."""
    batch = graph.batch
    env: dict[str, Any] = {}

    def reshape(x: Any, have: tuple[int, ...], want: tuple[int, ...]) -> Any:
        return x if tuple(have) == tuple(want) else be.reshape(x, want)

    for node in graph.nodes:
        ins = [env[i] for i in node.inputs if i in env]
        shapes = [graph.node(i).shape for i in node.inputs]
        spec = specs.get(node.name)
        if node.op == "input":
            env[node.name] = values[node.name]
            continue
        if node.op == "output":
            return ins[0]
        if node.op == "dense":
            p = spec.p
            args = [
                reshape(ins[0], (batch, *shapes[0]), (p["m"], p["k"])),
                values[f"{node.name}.w"],
            ]
            if p["bias"]:
                args.append(values[f"{node.name}.b"])
            y = be.kernel(node.name, spec, args)
            env[node.name] = reshape(y, (p["m"], p["n"]), (batch, *node.shape))
        elif node.op == "embedding_bag":
            ids = reshape(ins[0], (batch, *shapes[0]), (batch, spec.p["pooling"]))
            y = be.kernel(node.name, spec, [values[f"{node.name}.table"], ids])
            env[node.name] = reshape(y, (batch, spec.p["dim"]), (batch, *node.shape))
        elif spec.kind == "interaction":
            # the fused kernel takes each part as it is: no stacking glue
            d = spec.p["d"]
            parts = [
                reshape(x, (batch, *s), (batch, d) if r == 1 else (batch, r, d))
                for x, s, r in zip(ins, shapes, spec.p["parts"], strict=True)
            ]
            env[node.name] = be.kernel(node.name, spec, parts)
        elif spec.kind == "concat":
            flat = [
                reshape(x, (batch, *s), (batch, int(np.prod(s))))
                for x, s in zip(ins, shapes, strict=True)
            ]
            y = be.kernel(node.name, spec, flat)
            env[node.name] = reshape(y, (batch, sum(spec.p["widths"])), (batch, *node.shape))
        elif spec.kind == "top_k":
            scores = reshape(ins[0], (batch, *shapes[0]), (1, batch))
            env[node.name] = be.kernel(node.name, spec, [scores])
        else:  # pragma: no cover - kernel_specs admits only the kinds above
            raise tm.UnsupportedKernel(f"node {node.name}: {spec.kind} in a stage")
    raise tm.UnsupportedKernel("the graph has no output node")


def reference(graph: Any, arrays: dict[str, Any]) -> np.ndarray:
    """The stage's output computed in numpy (each kernel's numpy reference, chained)."""
    return np.asarray(interpret(graph, kernel_specs(graph), arrays, _Numpy()))


def lower_stage(graph: Any, arrays: dict[str, Any]) -> Any:
    """The stage as a Relax ``IRModule``: ``main(inputs..., weights...)`` returning the output,
    plus one scheduled TIR function per distinct kernel."""
    tvm = tm._tvm()
    relax = tvm.relax
    specs = kernel_specs(graph)
    names = argument_names(graph, arrays)
    params = {
        n: relax.Var(n.replace(".", "_"), relax.TensorType(arrays[n].shape, str(arrays[n].dtype)))
        for n in names
    }
    bb = relax.BlockBuilder()
    with bb.function("main", [params[n] for n in names]):
        with bb.dataflow():
            out = interpret(graph, specs, params, _Relax(tvm, bb))
            out = bb.emit_output(out)
        bb.emit_func_output(out)
    return bb.get()


def build_stage(graph: Any, arrays: dict[str, Any]) -> Any:
    """Compile the stage for the host CPU (Relax's default CPU pipeline); returns the
    executable."""
    tvm = tm._tvm()
    try:
        mod = lower_stage(graph, arrays)
        return tvm.compile(mod, target=tm.make_target())
    except tm.UnsupportedKernel:
        raise
    except Exception as exc:  # TVM raises its own error types; report one line
        raise tm.MeasureError(f"stage build failed: {tm._one_line(exc)}") from exc


def measure_stage(
    graph: Any, model: str, timing: tm.TimingConfig | None = None, *, seed: int = 0
) -> tm.Measurement:
    """Build the stage, check it against numpy, time ``main`` with the VM (in this process).

    Failures come back as a :class:`tvm_measured.Measurement` with a status and a reason:
    ``unsupported`` (an op has no lowering), ``build_error``, ``mismatch``, ``run_error``."""
    timing = timing or tm.TimingConfig()
    spec = StageSpec.of(graph, model)
    tkey = tm.target_key("cpu", threads=timing.threads)
    try:
        specs = kernel_specs(graph)
    except tm.UnsupportedKernel as exc:
        return tm.Measurement(spec, tkey, "unsupported", error=str(exc))  # type: ignore[arg-type]
    with tm.pinned_threads(timing.threads):
        arrays = stage_arrays(graph, specs, seed=seed)
        start = time.perf_counter()
        try:
            exe = build_stage(graph, arrays)
        except tm.MeasureError as exc:
            return tm.Measurement(spec, tkey, "build_error", error=str(exc))  # type: ignore[arg-type]
        compile_s = time.perf_counter() - start

        def fail(status: str, why: str) -> tm.Measurement:
            return tm.Measurement(spec, tkey, status, compile_s=compile_s, error=why)  # type: ignore[arg-type]

        tvm = tm._tvm()
        dev = tvm.cpu(0)
        try:
            vm = tvm.relax.VirtualMachine(exe, dev)
            args = [tvm.runtime.tensor(arrays[n], dev) for n in argument_names(graph, arrays)]
            got = vm["main"](*args).numpy()
        except Exception as exc:
            return fail("run_error", tm._one_line(exc))
        want = reference(graph, arrays)
        scale = max(float(np.abs(want).max()) if want.size else 1.0, 1.0)
        err = float(np.abs(got - want).max()) if want.size else 0.0
        if got.shape != want.shape or not np.isfinite(got).all() or err > 1e-3 * scale:
            return fail(
                "mismatch",
                f"{spec.label()}: output differs from numpy (shape {got.shape} vs {want.shape}, "
                f"max abs err {err:.3g})",
            )
        try:
            timer = vm.time_evaluator(
                "main",
                dev,
                number=1,
                repeat=timing.repeat,
                min_repeat_ms=max(1, round(timing.min_repeat_ms)),
            )
            for _ in range(timing.warmup):
                vm["main"](*args)
            result = timer(*args)
        except Exception as exc:
            return fail("run_error", tm._one_line(exc))
    samples = [float(s) for s in result.results]
    return tm.Measurement(
        spec,  # type: ignore[arg-type]
        tkey,
        "ok",
        latency_s=float(np.median(samples)),
        stdev_s=float(np.std(samples)),
        compile_s=compile_s,
        max_abs_err=err,
        extra={"samples": len(samples), "kernels": len({s.signature() for s in specs.values()})},
    )


# --- through the measurement database ------------------------------------------------------------


def measure_stage_isolated(
    graph: Any, model: str, timing: tm.TimingConfig | None = None, *, timeout_s: float = 120.0
) -> tm.Measurement:
    """:func:`measure_stage` in a worker process: a crash or a run past ``timeout_s`` (build
    and check included) becomes status ``run_error`` / ``timeout``."""
    import concurrent.futures as cf
    import multiprocessing as mp

    timing = timing or tm.TimingConfig()
    spec = StageSpec.of(graph, model)
    tkey = tm.target_key("cpu", threads=timing.threads)
    pool = cf.ProcessPoolExecutor(
        max_workers=1,
        mp_context=mp.get_context("spawn"),
        initializer=tm._worker_init,
        initargs=(timing.threads,),
    )
    try:
        future = pool.submit(_worker_stage, graph.to_json(indent=None), model, timing)
        try:
            return future.result(timeout=timeout_s + tm._import_allowance([]))
        except cf.TimeoutError:
            return tm.Measurement(spec, tkey, "timeout", error=f"exceeded {timeout_s:g} s")  # type: ignore[arg-type]
        except Exception as exc:  # the worker died (segfault, out of memory)
            why = f"worker died: {tm._one_line(exc)}"
            return tm.Measurement(spec, tkey, "run_error", error=why)  # type: ignore[arg-type]
    finally:
        tm._kill(pool)


def _worker_stage(graph_json: str, model: str, timing: tm.TimingConfig) -> tm.Measurement:
    from codesign.ir.graph import Graph

    return measure_stage(Graph.from_json(graph_json), model, timing)


def stage_row(
    graph: Any,
    model: str,
    db: Any,
    *,
    timing: tm.TimingConfig | None = None,
    timeout_s: float = 120.0,
    isolate: bool = True,
    retry_failed: bool = False,
) -> tuple[Any, bool]:
    """The stage's row of the measurement database (op class ``stage``), measuring it when
    missing (or failed, with ``retry_failed``); returns ``(row, cached)``."""
    from codesign.cost_models.calibration import host_key
    from codesign.cost_models.measure_db import row_from_measurement

    timing = timing or tm.TimingConfig()
    key = host_key(timing.threads)
    spec = StageSpec.of(graph, model)
    row = db.get(spec.signature(), **key)
    if row is not None and (row.ok or not retry_failed):
        return row, True
    if isolate:
        m = measure_stage_isolated(graph, model, timing, timeout_s=timeout_s)
    else:
        m = measure_stage(graph, model, timing)
    row = row_from_measurement(
        m,
        tvm_version=key["tvm_version"],
        cpu_model=key["cpu_model"],
        schedule=key["schedule_version"],
    )
    db.put(row)
    return row, False


@dataclass
class StageComparison:
    """One stage at one batch: end-to-end measured, the sum of its ops measured one by one,
    and the CPU model's analytical (and, when a calibration exists, calibrated) estimate."""

    model: str
    batch: int
    row: Any
    cached: bool
    ops_sum_s: float | None
    ops_missing: list[str]
    analytical_s: float
    calibrated_s: float | None

    @property
    def stage_s(self) -> float | None:
        return self.row.latency_s if self.row.ok else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "batch": self.batch,
            "status": self.row.status,
            "error": self.row.error,
            "cached": self.cached,
            "stage_s": self.stage_s,
            "compile_s": self.row.compile_s,
            "ops_sum_s": self.ops_sum_s,
            "ops_missing": self.ops_missing,
            "analytical_s": self.analytical_s,
            "calibrated_s": self.calibrated_s,
        }


def compare_stage(
    model: str,
    batch: int,
    db: Any,
    *,
    timing: tm.TimingConfig | None = None,
    timeout_s: float = 120.0,
    isolate: bool = True,
    retry_failed: bool = False,
    target: str = "cpu/host",
) -> StageComparison:
    """Measure ``model`` at ``batch`` as one stage (through ``db``) and set it beside the sum
    of its per-op measurements (read from ``db``; measure those first) and the estimates."""
    from codesign.cost_models import calibration as cb
    from codesign.cost_models.analytical import estimate
    from codesign.plugins import load_target

    timing = timing or tm.TimingConfig()
    from codesign.ir.frontends.lower import lower
    from codesign.ir.frontends.zoo import resolve

    graph = lower(resolve(model), batch=batch)
    row, cached = stage_row(
        graph,
        model,
        db,
        timing=timing,
        timeout_s=timeout_s,
        isolate=isolate,
        retry_failed=retry_failed,
    )
    key = cb.host_key(timing.threads)
    total, missing = 0.0, []
    for name, spec, _why in tm.specs_for_graph(graph):
        op_row = db.get(spec.signature(), **key) if spec is not None else None
        if op_row is None or not op_row.ok:
            missing.append(name if spec is None else f"{name} ({spec.label()})")
        else:
            total += op_row.latency_s
    cpu = load_target(target)
    point = cb.base_point(cpu, timing.threads)
    analytical = estimate(graph, cpu, point).latency_s
    calibrated = None
    path = db.path.parent / cb.CALIBRATION_FILE
    if path.exists():
        try:
            cal = cb.Calibration.load(path)
        except cb.CalibrationError:
            cal = None
        if cal is not None and cal.threads == timing.threads and cal.cpu_model == tm.cpu_model():
            # the stage as the VM runs it: on the host figures the calibration recorded (not
            # this start's re-timed bandwidth), without the deployment's per-batch overhead
            # (feature gathers, copies, hand-offs: fitted by `plan run --calibrate`)
            cal.stage_overhead = {}
            calibrated = cb.calibrated_estimate(
                graph, cpu, cal, {"cores": timing.threads}
            ).latency_s
    return StageComparison(
        model=model,
        batch=batch,
        row=row,
        cached=cached,
        ops_sum_s=None if missing else total,
        ops_missing=missing,
        analytical_s=analytical,
        calibrated_s=calibrated,
    )


def fit_dispatch(db: Any, *, threads: int) -> dict[str, Any]:
    """The whole-stage glue: over this host's ``--whole-stage`` rows (of the current stage
    lowering, every op of the stage measured too), ``per_call_s`` and ``per_byte_s`` (both
    >= 0, non-negative least squares) with stage time - sum of its kernels' times = kernel
    calls x ``per_call_s`` + bytes the kernels write x ``per_byte_s``: the Relax VM's
    dispatch per ``call_tir``, and its fresh output tensors (allocated, and faulted in page
    by page, at every run). Empty when there is no such row."""
    from codesign.cost_models import calibration as cb
    from codesign.ir.frontends.lower import lower
    from codesign.ir.frontends.zoo import resolve

    key = cb.host_key(threads)
    samples = []
    for row in db.rows(**key):
        if row.op_class != OP_CLASS or not row.ok or not row.latency_s:
            continue
        sig = json.loads(row.signature)
        if sig.get("lowering") != STAGE_LOWERING_VERSION:
            continue
        try:
            graph = lower(resolve(sig["model"]), batch=int(sig["batch"]))
        except Exception:  # a model renamed or removed since: not this stage any more
            continue
        if StageSpec.of(graph, sig["model"]).graph_hash != sig["graph_hash"]:
            continue
        specs = [spec for _, spec, _ in tm.specs_for_graph(graph) if spec]
        ops = [db.get(spec.signature(), **key) for spec in specs]
        if not ops or any(op is None or not op.ok for op in ops):
            continue
        calls, written = cb.stage_glue_terms(graph)
        samples.append(
            {
                "model": sig["model"],
                "batch": int(sig["batch"]),
                "stage_s": row.latency_s,
                "kernels_s": float(sum(op.latency_s for op in ops)),
                "calls": calls,
                "bytes": written,
            }
        )
    if not samples:
        return {}
    from scipy.optimize import nnls

    glue = np.array([x["stage_s"] - x["kernels_s"] for x in samples])
    terms = np.array([[x["calls"], x["bytes"]] for x in samples], float)
    # relative errors: each row divided by its stage time, so small stages count as much
    weight = 1.0 / np.array([x["stage_s"] for x in samples])
    scale = (terms * weight[:, None]).max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(terms * weight[:, None] / scale, glue * weight)
    coef = coef / scale
    fitted = terms @ coef
    stage = np.array([x["stage_s"] for x in samples])
    kernels = stage - glue
    return {
        "per_call_s": float(coef[0]),
        "per_byte_s": float(coef[1]),
        "samples": samples,
        "mape_kernels_only": float(np.mean(np.abs(kernels - stage) / stage)),
        "mape": float(np.mean(np.abs(kernels + fitted - stage) / stage)),
    }
