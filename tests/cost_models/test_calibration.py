"""Calibration set, best-of-rounds measuring and the hold-out split (no TVM needed)."""

from __future__ import annotations

import itertools

from codesign.cost_models import calibration as cb
from codesign.cost_models import tvm_measured as tm
from codesign.cost_models.measure_db import MeasureDB


def test_sweep_covers_the_zoo_shapes() -> None:
    specs = cb.sweep_specs()
    dense = [s.p for s in specs if s.kind == "dense"]
    assert {p["m"] for p in dense} >= {1, 4096}
    assert any(p["n"] == 1 for p in dense) and any(p["k"] * p["n"] * 4 > 8 * 2**20 for p in dense)
    bags = [s.p for s in specs if s.kind == "embedding_bag"]
    assert {p["dim"] for p in bags} >= {4, 32, 64} and {p["batch"] for p in bags} >= {1, 1024}
    held_out = cb.holdout_split(s.signature() for s in specs)
    for op_class in ("gemm", "gather", "interaction", "vector"):
        mine = [s.signature() for s in specs if s.op_class == op_class]
        held = sum(sig in held_out for sig in mine) / len(mine)
        assert 0.1 < held <= 0.5, op_class
    # every kind keeps a shape in the fit (the single concat shape is never held out)
    for kind in {s.kind for s in specs}:
        assert any(s.kind == kind and s.signature() not in held_out for s in specs), kind


def test_held_out_shapes_are_unseen_at_every_batch() -> None:
    """The split is by shape: no held-out kernel shares its shape (batch aside) with a kernel
    the fit sees, so held-out accuracy is accuracy on shapes the fit never saw."""
    sigs = [s.signature() for s in cb.sweep_specs()]
    held_out = cb.holdout_split(sigs)
    train = {cb.shape_key(s) for s in sigs if s not in held_out}
    assert held_out and not any(cb.shape_key(s) in train for s in held_out)
    a = tm.KernelSpec.make("dense", m=64, k=512, n=256, bias=True, activation="relu")
    b = tm.KernelSpec.make("dense", m=4096, k=512, n=256, bias=True, activation="relu")
    c = tm.KernelSpec.make("dense", m=64, k=256, n=64, bias=True, activation="relu")
    assert cb.shape_key(a.signature()) == cb.shape_key(b.signature())
    split = cb.holdout_split([a.signature(), b.signature(), c.signature()], 0.5)
    assert split in ({a.signature(), b.signature()}, {c.signature()})


def test_rounds_keep_the_fastest_result(tmp_path, monkeypatch) -> None:
    """Load only adds time: of three interleaved passes the fastest is stored."""
    times = itertools.cycle([3e-6, 1e-6, 2e-6])
    calls = []

    def fake_measure(spec, timing=None):
        calls.append(spec.signature())
        return tm.Measurement(spec, "llvm:cpu:threads=1", "ok", latency_s=next(times))

    monkeypatch.setattr(tm, "measure", fake_measure)
    specs = [tm.KernelSpec.make("top_k", batch=64, k=8), tm.KernelSpec.make("top_k", batch=64, k=4)]
    with MeasureDB(tmp_path / "m.sqlite") as db:
        run = cb.measure_specs(specs, db, isolate=False, rounds=3)
        assert len(calls) == 6
        assert calls[:2] == [s.signature() for s in specs]  # passes are interleaved
        assert [r.latency_s for r in run.rows] == [1e-6, 1e-6]
        again = cb.measure_specs(specs, db, isolate=False, rounds=3)
        assert again.cached == 2 and len(calls) == 6
