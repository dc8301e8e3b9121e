"""The TVM-measured cost model: lower the IR's ops to TVM kernels, compile them for this machine
(or for CUDA), check them against numpy and time them.

``tvm`` is imported lazily, here (``_tvm()``) and, through it, by the whole-stage
(:mod:`tvm_stage`) and tuning (:mod:`tvm_tuning`) modules: listing, cache hits and the
analytical path never pay TVM's ~2.5 s import.

A :class:`KernelSpec` is the op's *signature*: its kind and every shape parameter that changes
the generated code or its run time (batch included). Measurements are keyed by it (see
:mod:`codesign.cost_models.measure_db`).

Schedules are hand-written (meta_schedule tuning is an optional variant, see
:mod:`tvm_tuning`): TVM 0.27 has no fast default CPU schedule (its Relax
CPU pipeline only legalizes; ``dlight.cpu`` covers GEMV and reductions), while a ten-line
register-tiled GEMM schedule reaches about single-thread OpenBLAS speed. The target is ``llvm``
with the host's ``mcpu`` (plain ``llvm`` emits generic x86-64 code, ~7x slower).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from codesign.errors import CodesignError

#: Bump when a schedule or a lowering changes: old measurements stop matching.
SCHEDULE_VERSION = 3
#: Embedding tables larger than this are measured at this size (rows capped); the signature
#: records the rows actually used.
MAX_TABLE_BYTES = 256 * 2**20
#: Zipf skew of the generated embedding ids (the CPU model's default ``zipf_alpha``).
DEFAULT_ZIPF_ALPHA = 1.09
KINDS = ("dense", "embedding_bag", "embedding_bag_csr", "interaction", "concat", "top_k")
#: Op class of each kernel kind: calibration fits one set of efficiency factors per class.
OP_CLASS = {
    "dense": "gemm",
    "interaction": "interaction",
    "embedding_bag": "gather",
    "embedding_bag_csr": "gather",
    "concat": "vector",
    "top_k": "vector",
}
CUDA_ARCHS = ("sm_70", "sm_80", "sm_90")


class MeasureError(CodesignError):
    """A kernel could not be lowered, built, checked or timed."""


class UnsupportedKernel(MeasureError):
    """The op (or this form of it) has no TVM lowering."""


# --- signatures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelSpec:
    """One kernel to build: ``kind`` (see :data:`KINDS`) and its shape parameters.

    Parameters (all plain JSON values):

    - dense: ``m, k, n, bias, activation``
    - embedding_bag / embedding_bag_csr: ``rows, dim, batch, pooling, mode, alpha``
      (the CSR form takes offsets, PyTorch ``EmbeddingBag(mode="sum")`` semantics)
    - interaction: ``batch, parts, n, d, self_interaction, dense_first`` (DLRM dot
      interaction; ``parts`` is the number of vectors each input holds, ``n`` their sum)
    - concat: ``batch, widths`` (a list)
    - top_k: ``batch, k``
    """

    kind: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def make(cls, kind: str, **params: Any) -> KernelSpec:
        if kind not in KINDS:
            raise UnsupportedKernel(f"no TVM lowering for kernel kind {kind!r}")
        frozen = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        return cls(kind, tuple(sorted(frozen.items())))

    @property
    def p(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def op_class(self) -> str:
        return OP_CLASS[self.kind]

    def signature(self) -> str:
        """Canonical JSON text (the database key's op part)."""
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}
        return json.dumps({"kind": self.kind, **params}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_signature(cls, text: str) -> KernelSpec:
        data = json.loads(text)
        return cls.make(data.pop("kind"), **data)

    def label(self) -> str:
        p = self.p
        if self.kind == "dense":
            return f"dense {p['m']}x{p['k']}x{p['n']} {p['activation']}"
        if self.kind.startswith("embedding_bag"):
            form = " csr" if self.kind.endswith("csr") else ""
            mode = "" if p["mode"] == "sum" else f" {p['mode']}"
            return f"bag{form}{mode} B{p['batch']} L{p['pooling']} D{p['dim']} E{p['rows']}"
        if self.kind == "interaction":
            return f"dot B{p['batch']} n{p['n']} d{p['d']}"
        if self.kind == "concat":
            return f"concat B{p['batch']} {'+'.join(map(str, p['widths']))}"
        return f"top_k B{p['batch']} k{p['k']}"

    def flops(self) -> float:
        p = self.p
        if self.kind == "dense":
            return 2.0 * p["m"] * p["k"] * p["n"]
        if self.kind.startswith("embedding_bag"):
            return float(p["batch"] * p["pooling"] * p["dim"])
        if self.kind == "interaction":
            return 2.0 * p["batch"] * _pairs(p["n"], p["self_interaction"]) * p["d"]
        return 0.0

    def bytes_moved(self) -> float:
        """Bytes the kernel must read and write at least (gathered rows for a bag)."""
        p = self.p
        if self.kind == "dense":
            return 4.0 * (p["m"] * p["k"] + p["k"] * p["n"] + p["m"] * p["n"])
        if self.kind.startswith("embedding_bag"):
            return 4.0 * p["batch"] * (p["pooling"] * (p["dim"] + 1) + p["dim"])
        if self.kind == "interaction":
            return 4.0 * p["batch"] * (p["n"] * p["d"] + _out_width(p))
        if self.kind == "concat":
            return 8.0 * p["batch"] * sum(p["widths"])
        return 4.0 * (p["batch"] + p["k"])


def _pairs(n: int, self_interaction: bool) -> int:
    return n * (n + 1) // 2 if self_interaction else n * (n - 1) // 2


def _out_width(p: Mapping[str, Any]) -> int:
    return _pairs(p["n"], p["self_interaction"]) + (p["d"] if p["dense_first"] else 0)


#: The fused dot-interaction kernel's register tile: rows of the Gram matrix x SIMD vectors of
#: columns (4 x 2 = 8 accumulators keep 2 FMA pipes of 4-cycle latency busy).
INTERACTION_TILE_ROWS = 4
INTERACTION_TILE_VECTORS = 2


def interaction_macs(n: int, d: int, self_interaction: bool, lanes: Any) -> Any:
    """MACs per item of the fused interaction kernel: the Gram matrix S·Sᵀ (S = the item's
    n x d vectors) in tiles of ``INTERACTION_TILE_ROWS`` rows x ``INTERACTION_TILE_VECTORS``
    SIMD vectors of ``lanes`` columns, rows and columns padded to whole tiles, skipping the
    column tiles right of the kept triangle (with n <= 2 x lanes: the full padded product).
    ``lanes`` may be a numpy array (the compiled cost model's points)."""
    rows, cols = INTERACTION_TILE_ROWS, INTERACTION_TILE_VECTORS * lanes
    col_tiles = -(-n // cols)
    last = 0 if self_interaction else 1  # row i keeps columns j <= i - last
    tiles = sum(
        np.minimum((io * rows + rows - 1 - last) // cols + 1, col_tiles)
        for io in range(-(-n // rows))
    )
    return tiles * rows * cols * d


def specs_for_graph(graph: Any, *, csr: bool = False) -> list[tuple[str, KernelSpec | None, str]]:
    """``(node name, spec or None, why not)`` for each op of ``graph`` (inputs/output skipped).

    Shapes are for the whole batch (``graph.batch`` items). ``csr`` lowers embedding bags in
    the offsets form instead of fixed pooling.
    """
    out: list[tuple[str, KernelSpec | None, str]] = []
    for node in graph.nodes:
        if node.op in ("input", "output"):
            continue
        inputs = [graph.node(i) for i in node.inputs]
        try:
            spec = spec_for_node(node, [i.shape for i in inputs], graph.batch, csr=csr)
            out.append((node.name, spec, ""))
        except UnsupportedKernel as exc:
            out.append((node.name, None, str(exc)))
    return out


def spec_for_node(
    node: Any, input_shapes: list[tuple[int, ...]], batch: int, *, csr: bool = False
) -> KernelSpec:
    a = node.attrs
    if node.op == "dense":
        if a.get("dtype", "fp32") != "fp32":
            raise UnsupportedKernel(f"dense {a['dtype']}: only fp32 is lowered")
        lead = math.prod(input_shapes[0][:-1])
        return KernelSpec.make(
            "dense",
            m=batch * lead,
            k=a["in_features"],
            n=a["out_features"],
            bias=bool(a.get("bias", True)),
            activation=a.get("activation", "none"),
        )
    if node.op == "embedding_bag":
        if a.get("dtype", "fp32") != "fp32" or a.get("mode", "sum") == "none":
            raise UnsupportedKernel("embedding_bag: only fp32 sum/mean pooling is lowered")
        dim = a["dim"] * a.get("vectors", 1)
        rows = min(a["rows"], max(1, MAX_TABLE_BYTES // (4 * dim)))
        return KernelSpec.make(
            "embedding_bag_csr" if csr else "embedding_bag",
            rows=rows,
            dim=dim,
            batch=batch,
            pooling=a.get("pooling", 1),
            mode=a.get("mode", "sum"),
            alpha=DEFAULT_ZIPF_ALPHA,
        )
    if node.op == "interaction":
        if a.get("mode", "dot") == "cat":
            return KernelSpec.make(
                "concat", batch=batch, widths=[math.prod(s) for s in input_shapes]
            )
        parts = [1 if len(s) == 1 else s[0] for s in input_shapes]
        return KernelSpec.make(
            "interaction",
            batch=batch,
            parts=parts,
            n=sum(parts),
            d=input_shapes[0][-1],
            self_interaction=bool(a.get("self_interaction", False)),
            dense_first=bool(a.get("dense_first", True)),
        )
    if node.op == "concat":
        return KernelSpec.make("concat", batch=batch, widths=[math.prod(s) for s in input_shapes])
    if node.op == "top_k":
        return KernelSpec.make("top_k", batch=batch, k=min(a["k"], batch))
    raise UnsupportedKernel(f"op {node.op} has no TVM lowering yet")


# --- inputs and the numpy reference --------------------------------------------------------------


def zipf_ids(rows: int, count: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """``count`` row ids with Zipf(``alpha``) popularity over ``rows`` rows; popular rows are
    scattered over the table (a multiplicative hash of the rank), as hashed ids are."""
    ranks = np.arange(1, rows + 1, dtype=np.float64)
    cdf = np.cumsum(ranks**-alpha)
    cdf /= cdf[-1]
    rank = np.searchsorted(cdf, rng.random(count), side="right").clip(0, rows - 1)
    return ((rank.astype(np.int64) * 2654435761) % rows).astype(np.int32)


def random_inputs(spec: KernelSpec, seed: int = 0) -> list[np.ndarray]:
    """The kernel's inputs, in argument order, random but reproducible."""
    rng = np.random.default_rng(seed)
    p = spec.p

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    if spec.kind == "dense":
        args = [normal(p["m"], p["k"]), normal(p["k"], p["n"]) / np.float32(math.sqrt(p["k"]))]
        return args + ([normal(p["n"])] if p["bias"] else [])
    if spec.kind.startswith("embedding_bag"):
        table = normal(p["rows"], p["dim"])
        ids = zipf_ids(p["rows"], p["batch"] * p["pooling"], p["alpha"], rng)
        if spec.kind == "embedding_bag":
            return [table, ids.reshape(p["batch"], p["pooling"])]
        offsets = np.arange(0, p["batch"] + 1, dtype=np.int32) * p["pooling"]
        return [table, ids, offsets]
    if spec.kind == "interaction":
        return [
            normal(p["batch"], p["d"]) if r == 1 else normal(p["batch"], r, p["d"])
            for r in p["parts"]
        ]
    if spec.kind == "concat":
        return [normal(p["batch"], w) for w in p["widths"]]
    if spec.kind == "top_k":
        return [rng.permutation(p["batch"]).astype(np.float32).reshape(1, p["batch"])]
    raise UnsupportedKernel(spec.kind)


def pair_indices(n: int, self_interaction: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each lower-triangle pair, in DLRM's order (row-major, i > j)."""
    offset = 0 if self_interaction else -1
    li, lj = np.tril_indices(n, offset)
    return li.astype(np.int32), lj.astype(np.int32)


def reference(spec: KernelSpec, args: list[np.ndarray]) -> np.ndarray:
    """What the kernel must compute, in numpy."""
    p = spec.p
    if spec.kind == "dense":
        y = args[0] @ args[1]
        if p["bias"]:
            y = y + args[2]
        return _np_activation(y, p["activation"])
    if spec.kind.startswith("embedding_bag"):
        table = args[0]
        ids = args[1].reshape(p["batch"], p["pooling"])
        out = table[ids].sum(axis=1)
        return out / p["pooling"] if p["mode"] == "mean" else out
    if spec.kind == "interaction":
        x = np.concatenate([a.reshape(p["batch"], -1, p["d"]) for a in args], axis=1)
        li, lj = pair_indices(p["n"], p["self_interaction"])
        z = np.einsum("bnd,bmd->bnm", x, x)[:, li, lj]
        return np.concatenate([x[:, 0, :], z], axis=1) if p["dense_first"] else z
    if spec.kind == "concat":
        return np.concatenate(args, axis=1)
    if spec.kind == "top_k":
        return -np.sort(-args[0], axis=-1)[:, : p["k"]]
    raise UnsupportedKernel(spec.kind)


def _np_activation(y: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(y, 0)
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-y))
    if activation == "tanh":
        return np.tanh(y)
    if activation == "softmax":
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return y


def output_shape(spec: KernelSpec) -> tuple[int, ...]:
    p = spec.p
    if spec.kind == "dense":
        return (p["m"], p["n"])
    if spec.kind.startswith("embedding_bag"):
        return (p["batch"], p["dim"])
    if spec.kind == "interaction":
        return (p["batch"], _out_width(p))
    if spec.kind == "concat":
        return (p["batch"], sum(p["widths"]))
    return (1, p["k"])


# --- TVM --------------------------------------------------------------------------------------


@functools.cache
def _tvm() -> Any:
    try:
        import tvm
    except ImportError as exc:  # pragma: no cover - tvm is a dependency
        raise MeasureError(f"TVM is not importable ({exc}) (fix: pip install apache-tvm)") from None
    return tvm


def tvm_version() -> str:
    """TVM's version without importing it (from the installed distribution's metadata)."""
    for dist in ("apache-tvm", "tvm"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(dist)
    return "unknown"


@functools.cache
def cpu_model() -> str:
    """The host CPU's model name, as /proc/cpuinfo says (platform.processor() otherwise)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def host_simd_lanes() -> int:
    """fp32 lanes of the widest SIMD unit (16 with AVX-512, 8 with AVX2)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((ln for ln in fh if ln.startswith("flags")), "").split()
    except OSError:
        flags = []
    return 16 if "avx512f" in flags else 8 if "avx2" in flags else 4


@functools.cache
def host_mcpu() -> str:
    """LLVM's name for this CPU (e.g. znver4); imports tvm."""
    return str(_tvm().target.codegen.llvm_get_system_cpu())


def target_key(target: str, *, threads: int, arch: str = "", schedule: str = "hand") -> str:
    """What identifies the code generator and the machine in the database key; a schedule
    other than the hand-written one (``ms:trials=N``, meta_schedule's) is a suffix."""
    if target == "cuda":
        return f"cuda:{arch}"
    key = f"llvm:{target}:threads={threads}"
    return key if schedule == "hand" else f"{key}:schedule={schedule}"


def make_target(kind: str = "llvm", *, arch: str = "sm_80") -> Any:
    tvm = _tvm()
    if kind == "cuda":
        return tvm.target.Target({"kind": "cuda", "arch": arch}, host={"kind": "llvm"})
    return tvm.target.Target({"kind": "llvm", "mcpu": host_mcpu()})


def lower(spec: KernelSpec, *, gpu: bool = False) -> Any:
    """The kernel as a scheduled ``IRModule`` with one ``main`` function."""
    tvm = _tvm()
    if gpu:
        return _gpu_schedule(tvm, lower_unscheduled(spec))
    return _BUILDERS[spec.kind](tvm, spec, schedule=True)


def lower_unscheduled(spec: KernelSpec) -> Any:
    """The kernel's ``IRModule`` before any schedule (what dlight and meta_schedule start
    from)."""
    return _BUILDERS[spec.kind](_tvm(), spec, schedule=False)


def build(spec: KernelSpec, *, kind: str = "llvm", arch: str = "sm_80") -> Any:
    """Compile ``spec`` for the host CPU (``llvm``) or for CUDA ``arch`` (no GPU needed)."""
    try:
        mod = lower(spec, gpu=kind == "cuda")
        return _tvm().compile(mod, target=make_target(kind, arch=arch))
    except UnsupportedKernel:
        raise
    except Exception as exc:  # TVM raises its own error types; report one line
        raise MeasureError(f"{spec.label()}: build failed: {_one_line(exc)}") from exc


def cuda_source(spec: KernelSpec, arch: str) -> str:
    """CUDA C source of ``spec`` built for ``arch`` (e.g. sm_90); no GPU needed."""
    lib = build(spec, kind="cuda", arch=arch)
    for mod in lib.mod.imports:
        if str(mod.kind) == "cuda":
            return mod.inspect_source()
    raise MeasureError(f"{spec.label()}: no CUDA module in the build for {arch}")


def cuda_ptx(source: str, arch: str) -> bytes:
    """PTX of CUDA ``source`` through nvcc (needs the CUDA toolkit, not a GPU)."""
    _tvm()
    from tvm.support import nvcc

    number = arch.removeprefix("sm_")
    try:
        with make_target("cuda", arch=arch):
            return nvcc.compile_cuda(
                source,
                target_format="ptx",
                arch=["-gencode", f"arch=compute_{number},code=sm_{number}"],
                compiler="nvcc",
            )
    except Exception as exc:
        raise MeasureError(f"nvcc for {arch} failed: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def gemm_tile(lanes: int) -> tuple[int, int]:
    """(rows, columns) of the dense kernel's register tile with ``lanes`` fp32 SIMD lanes: the
    accumulators must fit the vector registers, 4 x 64 = 16 zmm (AVX-512, 32 registers),
    6 x 16 = 12 ymm (AVX2, 16 registers; 4 x 64 spills and runs 4x slower, measured)."""
    return (4, 64) if lanes >= 16 else (6, 16)


def gemm_packs(m: Any, n: Any, tile_rows: Any, tile_cols: Any) -> Any:
    """Whether the dense kernel copies W (k x n) into tile-contiguous panels on each call, for
    an m x n output in register tiles of ``tile_rows`` x ``tile_cols`` (each clipped to the
    output): when N is padded to the tile, or when there is more than one panel and at least 4
    row tiles to reuse them. Works on numpy arrays (the compiled cost model's points)."""
    cols = np.minimum(tile_cols, n)
    rows = np.minimum(tile_rows, m)
    return (n % cols != 0) | ((n > cols) & (m >= 4 * rows))


def _schedule_gemm_block(sch: Any, blk: Any, m: int, n: int, epilogue: Any | None) -> None:
    """Register-tiled GEMM with W packed into tile-contiguous panels, vectorized N, parallel
    outer loops, and the epilogue (bias, activation) computed per tile while it is hot.

    Packing: W (k x n) is copied into ``Wp[n / tile_n, k, tile_n]`` so that each register
    tile's k x tile_n panel is one contiguous stream (row-major W strides by n floats, and at
    n = 1024 every row of a panel falls in the same L1 sets), and the loops run panel-outer,
    row-tile-inner so that a panel (k x 64 floats, 256 KiB at k = 1024) stays in L2 for all
    row tiles. The copy is skipped where W would be reused too little to pay for it (one panel,
    or fewer than 4 row tiles). N not a multiple of the tile is padded (``pad_einsum``): a
    predicated tail tile stops TVM vectorizing the whole loop (25x slower, measured)."""
    tile_m, tile_n = gemm_tile(host_simd_lanes())
    pack = bool(gemm_packs(m, n, tile_m, tile_n))
    tile_n = min(tile_n, n)
    tile_m = min(tile_m, m)
    pad = n % tile_n != 0
    if pad:
        # pads W (the producer block) and Y; the copy back out of padded Y joins the epilogue
        sch.pad_einsum(blk, [1, tile_n, 1])
        copy_out = sch.get_consumers(blk)[0]
        if epilogue is None:
            epilogue = copy_out
        else:
            sch.compute_inline(copy_out)
    i, j, k = sch.get_loops(blk)
    io, ii = sch.split(i, [None, tile_m])
    jo, ji = sch.split(j, [None, tile_n])
    ko, ki = sch.split(k, [None, 4])
    outer = (jo, io) if pack else (io, jo)
    sch.reorder(*outer, ko, ki, ii, ji)
    if epilogue is None:
        epilogue = sch.cache_write(blk, 0, "global")
    sch.reverse_compute_at(epilogue, outer[1])
    if pack:
        w_packed = sch.get_producers(blk)[-1] if pad else sch.cache_read(blk, 1, "global")
        sch.transform_layout(w_packed, ("write", 0), lambda kk, jj: (jj // tile_n, kk, jj % tile_n))
        pk, pj = sch.get_loops(w_packed)
        pjo, pji = sch.split(pj, [None, tile_n])
        sch.reorder(pjo, pk, pji)
        sch.parallel(pjo)
        sch.vectorize(pji)
    sch.parallel(sch.fuse(*outer))
    sch.vectorize(sch.get_loops(epilogue)[-1])
    sch.unroll(ii)
    sch.vectorize(ji)
    init = sch.decompose_reduction(blk, ko)
    sch.vectorize(sch.get_loops(init)[-1])


def _dense(tvm: Any, spec: KernelSpec, *, schedule: bool) -> Any:
    from tvm import te, topi

    p = spec.p
    m, k, n = p["m"], p["k"], p["n"]
    x = te.placeholder((m, k), "float32", name="X")
    w = te.placeholder((k, n), "float32", name="W")
    r = te.reduce_axis((0, k), name="k")
    y = te.compute((m, n), lambda i, j: te.sum(x[i, r] * w[r, j], axis=r), name="Y")
    args = [x, w]
    z = y
    if p["bias"]:
        b = te.placeholder((n,), "float32", name="B")
        args.append(b)
        z = te.compute((m, n), lambda i, j: z[i, j] + b[j], name="bias")
    act = p["activation"]
    if act == "relu":
        z = te.compute(
            (m, n), lambda i, j: te.max(z[i, j], tvm.tirx.const(0, "float32")), name="act"
        )
    elif act == "sigmoid":
        z = te.compute((m, n), lambda i, j: te.sigmoid(z[i, j]), name="act")
    elif act == "tanh":
        z = te.compute((m, n), lambda i, j: te.tanh(z[i, j]), name="act")
    elif act == "softmax":
        z = topi.nn.softmax(z, axis=-1)
    func = te.create_prim_func([*args, z]).with_attr("global_symbol", "main")
    mod = tvm.IRModule({"main": func})
    if not schedule:
        return mod
    sch = tvm.s_tir.Schedule(mod)
    blk = sch.get_sblock("Y")
    epilogue = None
    if act != "softmax" and (p["bias"] or act != "none"):
        names = (["bias"] if p["bias"] else []) + (["act"] if act != "none" else [])
        for name in names[:-1]:
            sch.compute_inline(sch.get_sblock(name))
        epilogue = sch.get_sblock(names[-1])
    _schedule_gemm_block(sch, blk, m, n, epilogue)
    return sch.mod


def _bag_fixed(tvm: Any, spec: KernelSpec, *, schedule: bool) -> Any:
    from tvm import te

    p = spec.p
    rows, dim, batch, pooling = p["rows"], p["dim"], p["batch"], p["pooling"]
    table = te.placeholder((rows, dim), "float32", name="table")
    idx = te.placeholder((batch, pooling), "int32", name="idx")
    r = te.reduce_axis((0, pooling), name="l")
    out = te.compute((batch, dim), lambda b, d: te.sum(table[idx[b, r], d], axis=r), name="bag")
    result = out
    if p["mode"] == "mean":
        scale = tvm.tirx.const(1.0 / pooling, "float32")
        result = te.compute((batch, dim), lambda b, d: out[b, d] * scale, name="mean")
    func = te.create_prim_func([table, idx, result]).with_attr("global_symbol", "main")
    mod = tvm.IRModule({"main": func})
    if not schedule:
        return mod
    sch = tvm.s_tir.Schedule(mod)
    blk = sch.get_sblock("bag")
    if p["mode"] == "mean":
        epilogue = sch.get_sblock("mean")
    else:
        epilogue = sch.cache_write(blk, 0, "global")
    b, d, l_ = sch.get_loops(blk)
    sch.reorder(b, l_, d)
    sch.reverse_compute_at(epilogue, b)
    sch.parallel(b)
    sch.vectorize(d)
    sch.vectorize(sch.get_loops(epilogue)[-1])
    init = sch.decompose_reduction(blk, l_)
    sch.vectorize(sch.get_loops(init)[-1])
    return sch.mod


def _bag_csr(tvm: Any, spec: KernelSpec, *, schedule: bool) -> Any:
    """PyTorch ``EmbeddingBag`` with offsets: bag b sums ``table[ids[offsets[b]:offsets[b+1]]]``;
    table rows, id count and batch are symbolic, so one build serves every shape of a dim."""
    from tvm.script import tirx as T

    dim = spec.p["dim"]
    mean = spec.p["mode"] == "mean"

    @T.prim_func
    def bag_csr(t: T.handle, i: T.handle, o: T.handle, y: T.handle):
        T.func_attr({"global_symbol": "main", "tirx.noalias": True})
        rows = T.int32()
        nnz = T.int32()
        batch = T.int32()
        table = T.match_buffer(t, (rows, dim), "float32")
        ids = T.match_buffer(i, (nnz,), "int32")
        offsets = T.match_buffer(o, (batch + 1,), "int32")
        out = T.match_buffer(y, (batch, dim), "float32")
        for b in T.parallel(batch):
            for d in T.vectorized(dim):
                out[b, d] = T.float32(0)
            for j in range(offsets[b], offsets[b + 1]):
                for d in T.vectorized(dim):
                    out[b, d] = out[b, d] + table[ids[j], d]
            if mean:
                for d in T.vectorized(dim):
                    out[b, d] = out[b, d] / T.Cast("float32", T.max(offsets[b + 1] - offsets[b], 1))

    return tvm.IRModule({"main": bag_csr})


def _interaction(tvm: Any, spec: KernelSpec, *, schedule: bool) -> Any:
    """DLRM dot interaction, fused: it takes the parts (each ``(batch, d)`` or ``(batch, rows,
    d)``) as separate buffers, so nothing stacks them first. Per item (parallel over the
    batch) the parts are copied transposed into a ``d x n`` scratch (padded with zero columns),
    the Gram matrix S·Sᵀ is computed in register tiles (``INTERACTION_TILE_ROWS`` rows x
    ``INTERACTION_TILE_VECTORS`` SIMD vectors of columns, vectorized over the column index as
    DLRM's bmm is; column tiles right of the kept triangle are skipped, see
    :func:`interaction_macs`), and the kept triangle is written in :func:`pair_indices`' order
    after the dense-first prefix. The same TVMScript serves as the unscheduled form."""
    p = spec.p
    batch, d, n = p["batch"], p["d"], p["n"]
    parts = p["parts"]
    if sum(parts) != n:
        raise UnsupportedKernel(f"{spec.label()}: parts {parts} do not add up to n = {n}")
    self_ = p["self_interaction"]
    rows, cols = INTERACTION_TILE_ROWS, INTERACTION_TILE_VECTORS * host_simd_lanes()
    n_cols = -(-n // cols) * cols
    n_rows = -(-n // rows) * rows
    off = d if p["dense_first"] else 0
    last = 0 if self_ else 1
    params = [
        f'x{i}: T.Buffer(({batch}, {d}), "float32")'
        if r == 1
        else f'x{i}: T.Buffer(({batch}, {r}, {d}), "float32")'
        for i, r in enumerate(parts)
    ]
    params.append(f'out: T.Buffer(({batch}, {_out_width(p)}), "float32")')
    src = [
        "@T.prim_func",
        f"def main({', '.join(params)}):",
        '    T.func_attr({"global_symbol": "main", "tirx.noalias": True})',
        f"    for b in T.parallel({batch}):",
        f'        st = T.decl_buffer(({d}, {n_cols}), "float32", scope="local")',
        f'        g = T.decl_buffer(({n_rows}, {n_cols}), "float32", scope="local")',
        f"        for k, c in T.grid({d}, {n_cols - n}):",
        f"            st[k, {n} + c] = T.float32(0)",
    ]
    row = 0
    for i, r in enumerate(parts):
        if r == 1:
            src += [f"        for k in range({d}):", f"            st[k, {row}] = x{i}[b, k]"]
        else:
            src += [
                f"        for r, k in T.grid({r}, {d}):",
                f"            st[k, {row} + r] = x{i}[b, r, k]",
            ]
        row += r
    if p["dense_first"]:
        first = "x0[b, k]" if parts[0] == 1 else "x0[b, 0, k]"
        src += [f"        for k in T.vectorized({d}):", f"            out[b, k] = {first}"]
    tile, col = f"io * {rows} + ii", f"jo * {cols} + jv"
    tiles = f"T.min((io * {rows} + {rows - 1 - last}) // {cols} + 1, {n_cols // cols})"

    def over_tile(indent: str, body: str) -> list[str]:
        return [
            f"{indent}for ii in T.unroll({rows}):",
            f"{indent}    for jv in T.vectorized({cols}):",
            f"{indent}        {body}",
        ]

    src += [
        f"        for io in range({n_rows // rows}):",
        f"            for jo in range({tiles}):",
        f'                acc = T.decl_buffer(({rows}, {cols}), "float32", scope="local")',
        *over_tile(" " * 16, "acc[ii, jv] = T.float32(0)"),
        f"                for k in range({d}):",
        *over_tile(" " * 20, f"acc[ii, jv] = acc[ii, jv] + st[k, {tile}] * st[k, {col}]"),
        *over_tile(" " * 16, f"g[{tile}, {col}] = acc[ii, jv]"),
        # row i's kept pairs are contiguous in the output, from i (i - 1) / 2 (i (i + 1) / 2
        # with self-interaction)
        f"        for i in range({last}, {n}):",
        f"            for j in range(i + {1 - last}):",
        f"                out[b, {off} + i * (i + {1 - 2 * last}) // 2 + j] = g[i, j]",
    ]
    from tvm.script import tirx as T

    func = tvm.script.from_source("\n".join(src), extra_vars={"T": T})
    return tvm.IRModule({"main": func})


def _concat(tvm: Any, spec: KernelSpec, *, schedule: bool) -> Any:
    from tvm import te, topi

    p = spec.p
    xs = [
        te.placeholder((p["batch"], w), "float32", name=f"x{i}") for i, w in enumerate(p["widths"])
    ]
    out = topi.concatenate(xs, axis=1)
    func = te.create_prim_func([*xs, out]).with_attr("global_symbol", "main")
    mod = tvm.IRModule({"main": func})
    if not schedule:
        return mod
    sch = tvm.s_tir.Schedule(mod)
    blk = sch.get_sblock(out.op.name)
    sch.parallel(sch.get_loops(blk)[0])
    return sch.mod


def _top_k(tvm: Any, spec: KernelSpec, *, schedule: bool) -> Any:
    from tvm import te, topi

    p = spec.p
    scores = te.placeholder((1, p["batch"]), "float32", name="scores")
    values = topi.topk(scores, k=p["k"], axis=-1, ret_type="values", is_ascend=False)
    func = te.create_prim_func([scores, values]).with_attr("global_symbol", "main")
    return tvm.IRModule({"main": func})


_BUILDERS = {
    "dense": _dense,
    "embedding_bag": _bag_fixed,
    "embedding_bag_csr": _bag_csr,
    "interaction": _interaction,
    "concat": _concat,
    "top_k": _top_k,
}


def _gpu_schedule(tvm: Any, mod: Any) -> Any:
    """Thread-bind the unscheduled kernel with dlight's generic GPU rules (correct code for a
    CUDA build; not tuned)."""
    from tvm.s_tir import dlight as dl

    target = make_target("cuda", arch="sm_80")
    with target:
        return dl.ApplyDefaultSchedule(
            dl.gpu.Matmul(),
            dl.gpu.GEMV(),
            dl.gpu.Reduction(),
            dl.gpu.GeneralReduction(),
            dl.gpu.Fallback(),
        )(mod)


# --- measurement ---------------------------------------------------------------------------


@dataclass
class Measurement:
    """One kernel timed on one target; ``status`` is ok, mismatch, build_error, run_error or
    timeout (with ``error`` saying why)."""

    spec: KernelSpec
    target: str
    status: str
    latency_s: float | None = None
    stdev_s: float | None = None
    compile_s: float | None = None
    error: str = ""
    max_abs_err: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.spec.label(),
            "signature": self.spec.signature(),
            "op_class": self.spec.op_class,
            "target": self.target,
            "status": self.status,
            "latency_s": self.latency_s,
            "stdev_s": self.stdev_s,
            "compile_s": self.compile_s,
            "error": self.error,
            "max_abs_err": self.max_abs_err,
            **self.extra,
        }


@dataclass(frozen=True)
class TimingConfig:
    """How a kernel is timed: ``repeat`` samples of at least ``min_repeat_ms`` each (TVM raises
    ``number`` until a sample lasts that long), after ``warmup`` untimed calls."""

    repeat: int = 5
    min_repeat_ms: float = 20.0
    warmup: int = 2
    threads: int = 1


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Pin TVM's (and BLAS') thread pool for the duration: TVM_NUM_THREADS is read when the
    pool starts, so set it before the first kernel of the process runs."""
    keys = ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    old = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ[k] = str(threads)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check(spec: KernelSpec, lib: Any, args: list[np.ndarray], *, rtol: float = 1e-4) -> float:
    """Run ``lib`` once and compare with numpy; returns the max abs error or raises."""
    tvm = _tvm()
    dev = tvm.cpu(0)
    nd_args = [tvm.runtime.tensor(a, dev) for a in args]
    out = tvm.runtime.empty(output_shape(spec), "float32", dev)
    lib["main"](*nd_args, out)
    got = out.numpy()
    want = reference(spec, args).astype(np.float32)
    scale = float(np.abs(want).max()) if want.size else 1.0
    err = float(np.abs(got - want).max()) if want.size else 0.0
    if not np.isfinite(got).all() or err > rtol * max(scale, 1.0) * max(1, _reduction(spec)):
        raise MeasureError(f"{spec.label()}: result differs from numpy (max abs err {err:.3g})")
    return err


def _reduction(spec: KernelSpec) -> int:
    p = spec.p
    return {"dense": p.get("k", 1), "interaction": p.get("d", 1)}.get(spec.kind, 1) ** 0.5


def measure(
    spec: KernelSpec,
    timing: TimingConfig | None = None,
    *,
    seed: int = 0,
    build_fn: Callable[[KernelSpec], Any] | None = None,
    schedule: str = "hand",
) -> Measurement:
    """Build, check against numpy, then time ``spec`` on the host CPU (in this process).
    ``build_fn`` replaces :func:`build` for another ``schedule`` variant (tuning).

    Failures come back as a :class:`Measurement` with a status and a reason, not as errors.
    """
    timing = timing or TimingConfig()
    tkey = target_key("cpu", threads=timing.threads, schedule=schedule)
    with pinned_threads(timing.threads):
        start = time.perf_counter()
        try:
            lib = (build_fn or build)(spec)
        except MeasureError as exc:
            return Measurement(spec, tkey, "build_error", error=str(exc))
        compile_s = time.perf_counter() - start
        try:
            args = random_inputs(spec, seed)
            err = check(spec, lib, args)
        except MeasureError as exc:
            return Measurement(spec, tkey, "mismatch", compile_s=compile_s, error=str(exc))
        except Exception as exc:
            return Measurement(spec, tkey, "run_error", compile_s=compile_s, error=_one_line(exc))
        tvm = _tvm()
        dev = tvm.cpu(0)
        nd_args = [tvm.runtime.tensor(a, dev) for a in args]
        out = tvm.runtime.empty(output_shape(spec), "float32", dev)
        try:
            timer = lib.mod.time_evaluator(
                "main",
                dev,
                number=1,
                repeat=timing.repeat,
                min_repeat_ms=max(1, round(timing.min_repeat_ms)),
            )
            for _ in range(timing.warmup):
                lib["main"](*nd_args, out)
            result = timer(*nd_args, out)
        except Exception as exc:
            return Measurement(spec, tkey, "run_error", compile_s=compile_s, error=_one_line(exc))
        samples = [float(s) for s in result.results]
        return Measurement(
            spec,
            tkey,
            "ok",
            latency_s=float(np.median(samples)),
            stdev_s=float(np.std(samples)),
            compile_s=compile_s,
            max_abs_err=err,
            extra={"samples": len(samples)},
        )


def measure_isolated(
    specs: list[KernelSpec],
    timing: TimingConfig | None = None,
    *,
    timeout_s: float = 120.0,
    on_result: Any = None,
) -> list[Measurement]:
    """Measure each spec in a worker process (one, reused): a crash or a kernel running past
    ``timeout_s`` fails that measurement (status ``timeout``/``run_error``) and a fresh worker
    takes the next one. ``on_result(measurement)`` is called as each finishes."""
    import concurrent.futures as cf
    import multiprocessing as mp

    timing = timing or TimingConfig()
    tkey = target_key("cpu", threads=timing.threads)
    ctx = mp.get_context("spawn")
    results: list[Measurement] = []
    pool: cf.ProcessPoolExecutor | None = None

    def new_pool() -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=1, mp_context=ctx, initializer=_worker_init, initargs=(timing.threads,)
        )

    try:
        for spec in specs:
            pool = pool or new_pool()
            future = pool.submit(_worker_measure, spec.signature(), timing)
            try:
                m = future.result(timeout=timeout_s + _import_allowance(results))
            except cf.TimeoutError:
                m = Measurement(spec, tkey, "timeout", error=f"exceeded {timeout_s:g} s")
                _kill(pool)
                pool = None
            except Exception as exc:  # the worker died (segfault, out of memory)
                m = Measurement(spec, tkey, "run_error", error=f"worker died: {_one_line(exc)}")
                _kill(pool)
                pool = None
            results.append(m)
            if on_result is not None:
                on_result(m)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return results


def _import_allowance(done: list[Measurement]) -> float:
    """A fresh worker first imports tvm (seconds on a loaded machine)."""
    return 30.0


def _kill(pool: Any) -> None:
    for proc in list(getattr(pool, "_processes", {}).values()):
        with contextlib.suppress(Exception):
            proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _worker_init(threads: int) -> None:
    for k in ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(threads)


def _worker_measure(signature: str, timing: TimingConfig) -> Measurement:
    return measure(KernelSpec.from_signature(signature), timing)


def spec_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]
