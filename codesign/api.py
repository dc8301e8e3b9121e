"""The library entry: what the CLI calls, usable from Python as well.

Every function here takes plain arguments, returns plain data (dicts of JSON types, with units
in key names), and raises :class:`codesign.errors.CodesignError` for bad input.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from codesign.cost_models.select import COST_MODELS as _COST_MODELS
from codesign.cost_models.select import MEASURED_TARGETS, estimate_with
from codesign.errors import CodesignError
from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.zoo import list_models as _zoo_list
from codesign.ir.frontends.zoo import resolve
from codesign.ir.graph import Graph
from codesign.ir.ops import OpCost

SKIPPED_IN_TABLE = ("input", "output")


def list_models() -> list[dict[str, Any]]:
    """The zoo: name, family, arch, description, and headline numbers at batch 1."""
    rows = []
    for entry in _zoo_list():
        totals = model_totals(lower(entry.name, batch=1))
        rows.append(
            {
                "name": entry.name,
                "family": entry.family,
                "arch": entry.arch,
                "description": entry.description,
                "macs_per_item": totals["macs_per_item"],
                "embedding_bytes_per_item": totals["embedding_bytes_per_item"],
                "model_size_bytes": totals["model_size_bytes"],
            }
        )
    return rows


def load_graph(model: str | Path, *, batch: int = 1, passes: Sequence[str] = ()) -> Graph:
    """A zoo model (by name), a spec file or an ONNX model (``.onnx``, imported by
    ``codesign.ir.frontends.onnx_import``), lowered for ``batch`` items per query, with the
    named passes (see ``codesign.ir.passes.PASSES``) applied in order."""
    if _is_onnx(model):
        from codesign.ir.frontends.onnx_import import import_onnx

        graph = import_onnx(Path(model), batch=batch)
    else:
        graph = lower(resolve(model), batch=batch)
    if passes:
        from codesign.ir.passes import run_passes

        graph = run_passes(graph, list(passes)).graph
    return graph


def _is_onnx(model: str | Path) -> bool:
    return str(model).lower().endswith(".onnx")


def model_totals(graph: Graph) -> dict[str, Any]:
    """Whole-model numbers; MACs are also split by op type (``macs_per_item_by_op``)."""
    by_op: dict[str, float] = defaultdict(float)
    emb_table_bytes = lookups = 0
    total = OpCost()
    for node in graph.nodes:
        cost = graph.cost(node)
        total = total + cost
        if cost.macs_per_item:
            by_op[node.op] += cost.macs_per_item
        if node.op == "embedding_bag":
            emb_table_bytes += cost.weight_bytes
            lookups += node.attrs["pooling"]
        elif node.op == "embedding_bag_group":
            emb_table_bytes += cost.weight_bytes
            lookups += sum(t["pooling"] for t in node.attrs["tables"])
    batch = graph.batch
    activation_per_item = total.input_bytes_per_item + total.output_bytes_per_item
    return {
        "batch": batch,
        "model_size_bytes": total.weight_bytes,
        "embedding_table_bytes": emb_table_bytes,
        "dense_weight_bytes": total.weight_bytes - emb_table_bytes,
        "params": total.params,
        "macs_per_item": total.macs_per_item,
        "macs_per_item_by_op": dict(by_op),
        "flops_per_item": total.flops_per_item,
        "embedding_lookups_per_item": lookups,
        "embedding_bytes_per_item": total.embedding_bytes_per_item,
        "activation_bytes_per_item": activation_per_item,
        "macs_per_batch": total.macs_per_item * batch,
        "flops_per_batch": total.flops_per_item * batch,
        "embedding_bytes_per_batch": total.embedding_bytes_per_item * batch,
        "activation_bytes_per_batch": activation_per_item * batch,
    }


def describe_model(
    model: str | Path, *, batch: int = 1, passes: Sequence[str] = ()
) -> dict[str, Any]:
    """Per-op rows and totals of a model: what ``codesign models show`` prints."""
    graph = load_graph(model, batch=batch, passes=passes)
    if _is_onnx(model):
        header = {
            "model": graph.name,
            "arch": graph.meta.get("arch", ""),
            "description": "",
            "source": graph.meta.get("source", ""),
            "notes": "",
            "spec_hash": None,
        }
    else:
        spec = resolve(model)
        header = {
            "model": spec.name,
            "arch": spec.arch,
            "description": spec.description,
            "source": spec.source,
            "notes": spec.notes,
            "spec_hash": graph.meta["spec_hash"],
        }
    ops = []
    for node in graph.nodes:
        if node.op in SKIPPED_IN_TABLE:
            continue
        cost = graph.cost(node)
        ops.append(
            {
                "name": node.name,
                "op": node.op,
                "shape": list(node.shape),
                "dtype": node.dtype,
                "params": cost.params,
                "weight_bytes": cost.weight_bytes,
                "macs_per_item": cost.macs_per_item,
                "flops_per_item": cost.flops_per_item,
                "embedding_bytes_per_item": cost.embedding_bytes_per_item,
                "activation_bytes_per_item": cost.input_bytes_per_item + cost.output_bytes_per_item,
            }
        )
    return {
        **header,
        "batch": batch,
        "passes": list(passes),
        "ops": ops,
        "totals": model_totals(graph),
    }


# --- targets and costs --------------------------------------------------------------------------


def list_targets() -> list[dict[str, Any]]:
    """Registered targets, read from entry-point metadata only (no plugin is imported)."""
    from codesign.plugins import target_entries
    from codesign.targets.presets import preset_dir, read_preset

    presets = {}
    for path in sorted(preset_dir().glob("*.yaml")):
        preset = read_preset(path)
        presets[preset.name] = preset
    rows = []
    for entry in target_entries().values():
        preset = presets.get(entry.name) if entry.builtin else None
        rows.append(
            {
                "name": entry.name,
                "kind": preset.type if preset else entry.name.split("/")[0],
                "distribution": entry.distribution,
                "version": entry.version,
                "builtin": entry.builtin,
                "description": preset.description if preset else f"plugin ({entry.value})",
            }
        )
    return rows


def describe_target(name: str) -> dict[str, Any]:
    """Knobs (ranges, defaults) and the default configuration's area and power."""
    from codesign.plugins import load_target

    target = load_target(name)
    point = target.design_space().resolve()
    hw = target.hw_cost(point)
    extra = target.describe() if hasattr(target, "describe") else {}
    return {
        "name": target.name,
        "kind": getattr(target, "kind", ""),
        "description": target.description,
        "knobs": [k.as_dict() for k in target.design_space().knobs],
        "area_mm2": hw.area_mm2,
        "power_w": hw.power_w,
        "hardware_breakdown": hw.breakdown,
        **extra,
    }


def cost_model(
    model: str | Path,
    target: str,
    *,
    batch: int = 1,
    overrides: Mapping[str, Any] | None = None,
    keep: int | None = None,
    passes: Sequence[str] = (),
    trace: str | Path | None = None,
    cost_model: str = "analytical",
    db: str | Path | None = None,
) -> dict[str, Any]:
    """Per-op and total latency, energy and bytes of ``model`` on ``target``.

    With ``trace`` (embedding row ids, ``.npy`` or one integer per line), the embedding hit rate
    is measured by replaying the trace through the target's static cache and LRU instead of the
    analytical Zipf model (targets with an ``embedding_hit_rate`` knob).
    """
    from codesign.plugins import load_target

    tgt = load_target(target)
    if cost_model in ("calibrated", "tvm") and tgt.name not in MEASURED_TARGETS:
        raise CodesignError(
            f"--cost-model {cost_model} prices this machine's CPU (TVM measures it, calibration "
            f"is fitted to it), not {tgt.name} (fix: use --target cpu/host, or --cost-model "
            "analytical)"
        )
    graph = lower(resolve(model), batch=batch, keep=keep)
    if passes:
        from codesign.ir.passes import run_passes

        graph = run_passes(graph, list(passes)).graph
    overrides = dict(overrides or {})
    report_trace = None
    if trace is not None:
        report_trace = _trace_hit_rate(graph, tgt, overrides, Path(trace))
        overrides["embedding_hit_rate"] = report_trace["hit_rate"]
    report = estimate_with(cost_model, graph, tgt, overrides, db).as_dict()
    if not passes and cost_model == "analytical":
        # the totals as the evaluator prices stages (its compiled path equals the per-op sum)
        from codesign.evaluate import price_batches

        lat, energy = price_batches(model, target, overrides, [batch], keep=keep or 0)
        report["latency_s"], report["energy_j"] = float(lat[0]), float(energy[0])
    if report_trace is not None:
        report["trace"] = report_trace
    return report


COST_MODELS = _COST_MODELS


def _trace_hit_rate(graph: Graph, tgt: Any, overrides: Mapping[str, Any], path: Path) -> dict:
    import numpy as np

    from codesign.cost_models.embedding_cache import hit_rates_from_trace
    from codesign.errors import CodesignError
    from codesign.targets.base import op_views

    space = tgt.design_space()
    if "embedding_hit_rate" not in space.names():
        raise CodesignError(
            f"--trace: target {tgt.name} has no embedding caches to replay it through "
            "(use an accelerator target)"
        )
    try:
        ids = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, dtype=np.int64, ndmin=1)
        ids = np.asarray(ids).reshape(-1).astype(np.int64, casting="same_kind")
    except (OSError, ValueError, TypeError) as exc:
        raise CodesignError(
            f"--trace {path}: cannot read row ids ({' '.join(str(exc).split())}) "
            "(fix: pass a .npy array or a text file with one integer id per line)"
        ) from None
    if ids.size < 10 or (ids < 0).any():
        raise CodesignError(f"--trace {path}: needs at least 10 non-negative row ids")
    point = space.resolve(overrides)
    from codesign.cost_models import workload

    gathers = [g for v in op_views(graph) for g in workload.gathers(v)]
    row_bytes = sum(g.row_bytes for g in gathers) / max(1, len(gathers))
    static_rows = int(point["static_cache_bytes"] // max(row_bytes, 1) // max(1, len(gathers)))
    dynamic_rows = int(point["dynamic_cache_bytes"] // max(row_bytes, 1) // max(1, len(gathers)))
    # the static cache pins the rows hottest in the first half (past traffic); both caches are
    # measured on the second half, after the LRU has warmed up on the first
    half = ids.size // 2
    rates = hit_rates_from_trace(ids, static_rows, dynamic_rows, warmup=half, profile=ids[:half])
    return {
        "path": str(path),
        "lookups": int(ids.size),
        "static_rows": static_rows,
        "dynamic_rows": dynamic_rows,
        "hit_rate": float(rates.total),
        "static_hit_rate": float(rates.static),
        "dynamic_hit_rate": float(rates.dynamic),
    }


def cost_gemm(
    m: int, k: int, n: int, target: str, *, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One GEMM (M x K times K x N, no bias) on ``target``; accelerators also report the
    systolic array's compute cycles and SRAM accesses in SCALE-Sim's convention."""
    from codesign.cost_models.analytical import estimate
    from codesign.ir.frontends.checker import Checker
    from codesign.plugins import load_target

    chk = Checker(source="cost gemm")
    for label, value in (("m", m), ("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**24:
            chk.add(label, f"must be an integer in 1..{2**24}, got {value!r}", f"pass --{label} N")
    chk.raise_if_any()
    tgt = load_target(target)
    graph = Graph("gemm", batch=m, meta={"model": f"gemm {m}x{k}x{n}"})
    x = graph.add_node("input", attrs={"shape": [k]}, name="a")
    y = graph.add_node(
        "dense", [x], {"in_features": k, "out_features": n, "bias": False}, name="gemm"
    )
    graph.add_node("output", [y], name="output")
    graph.infer().lint()
    report = estimate(graph, tgt, overrides)
    op = report.ops[0]
    out: dict[str, Any] = {
        "m": m,
        "k": k,
        "n": n,
        "target": tgt.name,
        "macs": m * k * n,
        "latency_s": op.latency_s,
        "compute_s": op.compute_s,
        "memory_s": op.memory_s,
        "energy_j": op.energy_j,
        "dram_bytes": op.dram_bytes,
        "bound": op.bound,
    }
    point = report.point
    if {"rows", "cols", "arrays", "dataflow"} <= set(point):  # a systolic array
        from codesign.cost_models.systolic import partitioned_gemm_cost

        c = partitioned_gemm_cost(
            m,
            k,
            n,
            rows=point["rows"],
            cols=point["cols"],
            dataflow=point["dataflow"],
            parts=point["arrays"],
        )
        out.update(
            compute_cycles=c.compute_cycles,
            sram_ifmap_reads=c.sram_ifmap_reads,
            sram_filter_reads=c.sram_filter_reads,
            sram_ofmap_writes=c.sram_ofmap_writes,
            dataflow=point["dataflow"],
            rows=point["rows"],
            cols=point["cols"],
            arrays=point["arrays"],
        )
    elif "frequency_hz" in point:
        out["compute_cycles"] = round(op.compute_s * point["frequency_hz"])
    out["point"] = point
    out["provenance"] = report.provenance
    return out
