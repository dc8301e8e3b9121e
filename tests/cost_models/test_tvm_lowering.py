"""TVM lowering: every lowered op matches numpy on random inputs (small shapes), CUDA builds
produce source without a GPU, and signatures of zoo models come out right."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from codesign.cost_models import tvm_measured as tm

K = tm.KernelSpec.make
FAST = tm.TimingConfig(repeat=1, min_repeat_ms=1, warmup=0)

LOWERED = [
    K("dense", m=8, k=16, n=32, bias=True, activation="relu"),
    K("dense", m=7, k=13, n=5, bias=False, activation="none"),
    K("dense", m=6, k=64, n=1, bias=True, activation="sigmoid"),
    K("dense", m=5, k=24, n=70, bias=True, activation="tanh"),
    K("dense", m=4, k=16, n=10, bias=True, activation="softmax"),
    K("embedding_bag", rows=500, dim=16, batch=8, pooling=5, mode="sum", alpha=1.09),
    K("embedding_bag", rows=300, dim=8, batch=3, pooling=4, mode="mean", alpha=1.09),
    K("embedding_bag_csr", rows=500, dim=16, batch=8, pooling=5, mode="sum", alpha=1.09),
    K("embedding_bag_csr", rows=300, dim=8, batch=3, pooling=4, mode="mean", alpha=1.09),
    K("interaction", batch=4, parts=[1] * 5, n=5, d=8, self_interaction=False, dense_first=True),
    K("interaction", batch=3, parts=[2, 1, 1], n=4, d=16, self_interaction=True, dense_first=False),
    K("concat", batch=4, widths=[3, 5, 8]),
    K("top_k", batch=100, k=7),
]


@pytest.mark.tvm
@pytest.mark.parametrize("spec", LOWERED, ids=lambda s: s.label())
def test_lowered_op_matches_numpy(spec: tm.KernelSpec) -> None:
    m = tm.measure(spec, FAST, seed=3)
    assert m.status == "ok", m.error
    assert m.latency_s is not None and m.latency_s > 0
    assert m.max_abs_err is not None and m.max_abs_err < 1e-3


@pytest.mark.tvm
@pytest.mark.parametrize(
    ("parts", "d", "self_interaction", "dense_first"),
    [
        ([1] * 27, 4, False, True),  # rm-small: bottom MLP output + 26 bags
        ([1] * 27, 16, False, True),
        ([1] * 40, 8, False, True),  # two column tiles: the skipped upper tile
        ([3, 1, 2, 5], 8, True, True),  # parts of several rows, diagonal kept
        ([1] * 7, 16, True, False),
    ],
)
def test_fused_interaction_matches_numpy(parts, d, self_interaction, dense_first) -> None:
    """The fused kernel takes each part as its own buffer and writes pair_indices' order."""
    import tvm

    spec = K(
        "interaction",
        batch=5,
        parts=parts,
        n=sum(parts),
        d=d,
        self_interaction=self_interaction,
        dense_first=dense_first,
    )
    args = tm.random_inputs(spec, seed=1)
    assert [a.shape[1:] for a in args] == [(d,) if r == 1 else (r, d) for r in parts]
    lib = tm.build(spec)
    dev = tvm.cpu(0)
    out = tvm.runtime.empty(tm.output_shape(spec), "float32", dev)
    lib["main"](*(tvm.runtime.tensor(a, dev) for a in args), out)
    # the IR's semantics, written out: the dense vector, then x_i . x_j for i > j (i >= j)
    x = np.concatenate([a.reshape(5, -1, d) for a in args], axis=1)
    n = x.shape[1]
    pairs = [(i, j) for i in range(n) for j in range(i + int(self_interaction))]
    want = np.stack([np.einsum("bd,bd->b", x[:, i], x[:, j]) for i, j in pairs], axis=1)
    if dense_first:
        want = np.concatenate([x[:, 0], want], axis=1)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tm.reference(spec, args), want, rtol=1e-4, atol=1e-4)


@pytest.mark.tvm
def test_csr_bag_takes_ragged_offsets() -> None:
    """Bags of different lengths (and an empty one) through the symbolic CSR kernel."""
    import tvm

    spec = K("embedding_bag_csr", rows=50, dim=8, batch=4, pooling=1, mode="sum", alpha=1.09)
    lib = tm.build(spec)
    rng = np.random.default_rng(0)
    table = rng.standard_normal((50, 8), dtype=np.float32)
    offsets = np.array([0, 3, 3, 10, 12], dtype=np.int32)
    ids = rng.integers(0, 50, 12, dtype=np.int32)
    dev = tvm.cpu(0)
    out = tvm.runtime.empty((4, 8), "float32", dev)
    lib["main"](*(tvm.runtime.tensor(a, dev) for a in (table, ids, offsets)), out)
    want = np.stack(
        [table[ids[a:b]].sum(0) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    )
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.tvm
def test_numpy_mismatch_is_recorded_not_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = LOWERED[0]
    monkeypatch.setattr(tm, "reference", lambda s, args: np.ones(tm.output_shape(s)) * 1e6)
    m = tm.measure(spec, FAST)
    assert m.status == "mismatch" and "differs from numpy" in m.error
    assert m.latency_s is None


@pytest.mark.tvm
def test_build_error_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(spec, *, gpu=False):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(tm, "lower", broken)
    m = tm.measure(LOWERED[0], FAST)
    assert m.status == "build_error"
    assert "boom second line" in m.error and "\n" not in m.error


@pytest.mark.tvm
@pytest.mark.parametrize("arch", tm.CUDA_ARCHS)
def test_cuda_build_produces_source_without_gpu(arch: str) -> None:
    spec = K("dense", m=64, k=32, n=64, bias=True, activation="relu")
    src = tm.cuda_source(spec, arch)
    assert "__global__" in src


@pytest.mark.tvm
@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("nvcc") is None and not shutil.os.path.exists("/usr/local/cuda/bin/nvcc"),
    reason="needs nvcc",
)
def test_cuda_ptx_with_nvcc() -> None:
    spec = K("embedding_bag", rows=100, dim=16, batch=8, pooling=4, mode="sum", alpha=1.09)
    ptx = tm.cuda_ptx(tm.cuda_source(spec, "sm_80"), "sm_80")
    assert b".entry" in ptx or b".visible" in ptx


def _has_gpu() -> bool:
    try:
        import tvm

        return bool(tvm.cuda(0).exist)
    except Exception:
        return False


@pytest.mark.tvm
@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu(), reason="no CUDA GPU")
def test_cuda_kernel_runs_and_matches_numpy() -> None:  # pragma: no cover - GPU machines only
    import tvm

    spec = K("dense", m=64, k=32, n=64, bias=True, activation="relu")
    arch = "sm_" + tvm.cuda(0).compute_version.replace(".", "")
    lib = tm.build(spec, kind="cuda", arch=arch)
    args = tm.random_inputs(spec)
    dev = tvm.cuda(0)
    out = tvm.runtime.empty(tm.output_shape(spec), "float32", dev)
    lib["main"](*(tvm.runtime.tensor(a, dev) for a in args), out)
    np.testing.assert_allclose(out.numpy(), tm.reference(spec, args), rtol=1e-4, atol=1e-4)
    timer = lib.mod.time_evaluator("main", dev, number=10, repeat=3)
    assert timer(*(tvm.runtime.tensor(a, dev) for a in args), out).mean > 0


def test_signature_round_trip_and_order_independence() -> None:
    a = K("concat", batch=4, widths=[3, 5])
    b = tm.KernelSpec.from_signature(a.signature())
    assert a == b and a.signature() == b.signature()
    assert (
        K("dense", m=1, k=2, n=3, bias=True, activation="relu").signature()
        == K("dense", activation="relu", bias=True, n=3, k=2, m=1).signature()
    )


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(tm.UnsupportedKernel):
        K("conv2d", n=1)


def test_specs_for_zoo_model_cover_its_ops() -> None:
    from codesign.api import load_graph

    graph = load_graph("dlrm-rmc1", batch=4)
    specs = tm.specs_for_graph(graph)
    kinds = {s.kind for _, s, _ in specs if s is not None}
    assert kinds == {"dense", "embedding_bag", "concat"}
    dense = [s for _, s, _ in specs if s is not None and s.kind == "dense"]
    assert dense[0].p["m"] == 4  # the batch is the GEMM's rows
    bags = [s for _, s, _ in specs if s is not None and s.kind == "embedding_bag"]
    assert all(s.p["rows"] * s.p["dim"] * 4 <= tm.MAX_TABLE_BYTES for s in bags)


def test_zipf_ids_are_skewed_and_in_range() -> None:
    ids = tm.zipf_ids(10_000, 20_000, 1.09, np.random.default_rng(0))
    assert ids.min() >= 0 and ids.max() < 10_000
    _, counts = np.unique(ids, return_counts=True)
    assert counts.max() > 20 * np.median(counts)


def test_importing_the_module_does_not_import_tvm() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import codesign.cost_models.tvm_measured, "
        "codesign.cost_models.calibration, codesign.cost_models.measure_db; "
        "print('tvm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


LAUNCHES = [
    K("dense", m=1, k=128, n=64, bias=True, activation="relu"),
    K("dense", m=4, k=64, n=1, bias=True, activation="sigmoid"),
    K("dense", m=16, k=64, n=64, bias=True, activation="relu"),
    K("dense", m=256, k=64, n=1024, bias=True, activation="relu"),
    K("dense", m=256, k=64, n=1, bias=True, activation="sigmoid"),
    K("dense", m=5, k=24, n=70, bias=True, activation="tanh"),
    K("dense", m=1, k=13, n=512, bias=True, activation="relu"),
    K("embedding_bag", rows=500, dim=16, batch=1, pooling=5, mode="sum", alpha=1.09),
    K("embedding_bag", rows=500, dim=16, batch=2, pooling=5, mode="sum", alpha=1.09),
    K("concat", batch=1, widths=[3, 5, 8]),
    K("concat", batch=4, widths=[3, 5, 8]),
    K("interaction", batch=1, parts=[2, 1, 1], n=4, d=16, self_interaction=True, dense_first=False),
    K("interaction", batch=3, parts=[2, 1, 1], n=4, d=16, self_interaction=True, dense_first=False),
    K("top_k", batch=100, k=7),
]


@pytest.mark.tvm
@pytest.mark.parametrize("spec", LAUNCHES, ids=lambda s: s.label())
def test_parallel_launches_match_the_schedule(spec: tm.KernelSpec) -> None:
    """The CPU model's ``parallel_launches`` counts the parallel loops of more than one
    iteration in the kernel's own scheduled TIR (TVMScript ``T.parallel(N)``, N > 1)."""
    import re

    from codesign.cost_models.calibration import base_point, graph_for_spec
    from codesign.plugins import load_target
    from codesign.targets.base import op_views
    from codesign.targets.cpu import parallel_launches

    extents = re.findall(r"T\.parallel\((\d+)\)", tm.lower(spec).script())
    want = sum(int(e) > 1 for e in extents)
    view = next(v for v in op_views(graph_for_spec(spec)) if v.node.name == "op")
    assert parallel_launches(view, base_point(load_target("cpu/host"), 1)) == want
