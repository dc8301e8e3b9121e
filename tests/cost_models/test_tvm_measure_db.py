"""Measurement database, measuring through it, calibration and the `codesign measure` CLI."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codesign.cost_models import calibration as cb
from codesign.cost_models import tvm_measured as tm
from codesign.cost_models.measure_db import MeasureDB, Row

K = tm.KernelSpec.make
FAST = tm.TimingConfig(repeat=1, min_repeat_ms=1, warmup=0)


def _row(sig: str = "{}", *, status: str = "ok", latency_s: float | None = 1e-3, **kw) -> Row:
    base = dict(
        signature=sig,
        target="llvm:cpu:threads=1",
        tvm_version="0.27",
        cpu_model="x",
        schedule_version=1,
        op_class="gemm",
        kernel="k",
        status=status,
        latency_s=latency_s,
        stdev_s=0.0,
        compile_s=0.1,
        error="",
        created_at=time.time(),
    )
    base.update(kw)
    return Row(**base)


def test_db_round_trip_and_key(tmp_path: Path) -> None:
    with MeasureDB(tmp_path / "m.sqlite") as db:
        db.put(_row("a"))
        db.put(_row("a", tvm_version="0.28", latency_s=2e-3))
        key = dict(
            target="llvm:cpu:threads=1", tvm_version="0.27", cpu_model="x", schedule_version=1
        )
        assert db.get("a", **key).latency_s == 1e-3
        assert db.get("a", **{**key, "tvm_version": "0.28"}).latency_s == 2e-3
        assert db.get("a", **{**key, "cpu_model": "other"}) is None
        assert db.counts() == {"ok": 2}
    mode = sqlite3.connect(tmp_path / "m.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_db_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    MeasureDB(path).close()

    def write(n: int) -> None:
        with MeasureDB(path) as db:
            for i in range(25):
                db.put(_row(f"{n}-{i}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with MeasureDB(path) as db:
        assert len(db.rows()) == 100


def test_db_location_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from codesign.cost_models.measure_db import default_path

    monkeypatch.setenv("CODESIGN_CACHE_DIR", str(tmp_path / "c"))
    assert default_path() == tmp_path / "c" / "measure.sqlite"


@pytest.mark.tvm
def test_second_run_hits_the_database(tmp_path: Path) -> None:
    specs = [
        K("dense", m=4, k=8, n=16, bias=True, activation="relu"),
        K("concat", batch=4, widths=[3, 5]),
    ]
    with MeasureDB(tmp_path / "m.sqlite") as db:
        first = cb.measure_specs(specs, db, timing=FAST, isolate=False)
        assert (first.measured, first.cached, first.failed) == (2, 0, 0)
        seen = []
        second = cb.measure_specs(
            specs, db, timing=FAST, isolate=False, on_progress=lambda s, how: seen.append(how)
        )
        assert (second.measured, second.cached) == (0, 2)
        assert seen == ["cached", "cached"]
        assert [r.latency_s for r in second.rows] == [r.latency_s for r in first.rows]


@pytest.mark.tvm
def test_failure_is_stored_and_run_goes_on(tmp_path: Path, monkeypatch) -> None:
    real = tm.lower

    def flaky(spec, *, gpu=False):
        if spec.kind == "concat":
            raise RuntimeError("cannot lower")
        return real(spec, gpu=gpu)

    monkeypatch.setattr(tm, "lower", flaky)
    specs = [K("concat", batch=4, widths=[3, 5]), K("top_k", batch=32, k=4)]
    with MeasureDB(tmp_path / "m.sqlite") as db:
        run = cb.measure_specs(specs, db, timing=FAST, isolate=False)
        assert [r.status for r in run.rows] == ["build_error", "ok"]
        assert "cannot lower" in run.rows[0].error
        again = cb.measure_specs(specs, db, timing=FAST, isolate=False)
        assert again.measured == 0  # a recorded failure is not retried by default
        monkeypatch.setattr(tm, "lower", real)
        retry = cb.measure_specs(specs, db, timing=FAST, isolate=False, retry_failed=True)
        assert retry.measured == 1 and retry.failed == 0


@pytest.mark.tvm
@pytest.mark.slow
def test_worker_timeout_is_recorded(tmp_path: Path) -> None:
    specs = [K("top_k", batch=32, k=4)]
    results = tm.measure_isolated(specs, FAST, timeout_s=-29.9)  # fires before tvm imports
    assert results[0].status == "timeout"


def test_calibration_recovers_known_knobs() -> None:
    """Synthetic 'measurements' made by the CPU model at known knobs are fitted back."""
    from codesign.plugins import load_target

    target = load_target("cpu/cascadelake")
    truth = {
        "compute_efficiency": 0.35,
        "llc_bytes_per_cycle": 6.0,
        "l2_bytes_per_cycle": 20.0,
        "op_overhead_s": 5e-6,
        "parallel_launch_s": 2e-8,
    }
    specs = [
        K("dense", m=m, k=k, n=n, bias=True, activation="relu")
        for m in (1, 4, 16, 64, 256)
        for k, n in (
            (128, 64),
            (512, 256),
            (64, 32),
            (2560, 1024),
            (1024, 1024),
            (2048, 512),
            (256, 256),
            (512, 512),
        )
    ]
    predict = cb._Predictor(target, specs)
    point = {**cb.base_point(target, 1), **truth}
    rows = [
        _row(s.signature(), latency_s=predict(s.signature(), point), kernel=s.label())
        for s in specs
    ]
    cal = cb.calibrate(rows, target, threads=1)
    fitted = cal.knobs["gemm"]
    assert fitted["compute_efficiency"] == pytest.approx(0.35, rel=0.05)
    assert cal.accuracy["classes"]["gemm"]["train_mape"] < 0.01
    assert cal.accuracy["holdout"]["mape"] < 0.02
    assert set(cal.overrides()) >= {"compute_efficiency", "llc_bytes_per_cycle"}


def test_calibration_without_measurements_is_a_clear_error() -> None:
    from codesign.plugins import load_target

    with pytest.raises(cb.CalibrationError, match="codesign measure"):
        cb.calibrate([], load_target("cpu/cascadelake"), threads=1)


def test_calibrated_estimate_uses_class_knobs() -> None:
    from codesign.api import load_graph
    from codesign.cost_models.analytical import estimate
    from codesign.plugins import load_target

    target = load_target("cpu/cascadelake")
    graph = load_graph("dlrm-rmc1", batch=16)
    cal = cb.Calibration(
        knobs={"gemm": {"compute_efficiency": 0.06}},
        target=target.name,
        threads=1,
        cpu_model="x",
        tvm_version="0.27",
    )
    base = estimate(graph, target)
    slow = cb.calibrated_estimate(graph, target, cal)
    assert slow.provenance["cost_model"] == "calibrated"
    dense_before = sum(e.latency_s for e in base.ops if e.op == "dense")
    dense_after = sum(e.latency_s for e in slow.ops if e.op == "dense")
    bags_before = [e.latency_s for e in base.ops if e.op == "embedding_bag"]
    assert dense_after > dense_before
    assert [e.latency_s for e in slow.ops if e.op == "embedding_bag"] == bags_before


def test_calibrated_estimate_uses_the_host_bandwidth_it_recorded() -> None:
    """The calibration's recorded DRAM bandwidth, not the one measured at this start (which
    moves with the machine's load), prices memory-bound ops; ``--set`` still wins."""
    from codesign.api import load_graph
    from codesign.plugins import load_target

    target = load_target("cpu/cascadelake")
    graph = load_graph("dlrm-rmc2", batch=256)

    def cal(bandwidth: float) -> cb.Calibration:
        return cb.Calibration(
            knobs={},
            target=target.name,
            threads=1,
            cpu_model="x",
            tvm_version="0.27",
            host={"dram_bandwidth_bytes_per_s": bandwidth},
        )

    def bag_s(estimate) -> float:
        return sum(e.latency_s for e in estimate.ops if e.op == "embedding_bag")

    fast = cb.calibrated_estimate(graph, target, cal(100e9))
    slow = cb.calibrated_estimate(graph, target, cal(2e9))
    assert bag_s(slow) > bag_s(fast)
    # the same recorded bandwidth gives the same estimate whatever the point says
    pinned = {"dram_bandwidth_bytes_per_s": 2e9}
    assert bag_s(cb.calibrated_estimate(graph, target, cal(2e9), {})) == bag_s(slow)
    assert bag_s(cb.calibrated_estimate(graph, target, cal(100e9), pinned)) == bag_s(slow)


def test_metrics() -> None:
    assert cb.mape([1.1, 0.9], [1.0, 1.0]) == pytest.approx(0.1)
    assert cb.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert cb.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_cli_report_without_data_is_one_line_error(tmp_path: Path) -> None:
    from codesign.cli import app

    result = CliRunner().invoke(app, ["measure", "report", "--db", str(tmp_path / "m.sqlite")])
    assert result.exit_code == 1
    assert "no successful measurements" in result.output


def test_cli_rejects_unmeasurable_target(tmp_path: Path) -> None:
    from codesign.cli import app

    result = CliRunner().invoke(
        app, ["measure", "dlrm-rmc1", "--target", "gpu/nvidia/t4", "--db", str(tmp_path / "m")]
    )
    assert result.exit_code == 1 and "cpu/host" in result.output


@pytest.mark.tvm
def test_cli_measure_then_cached(tmp_path: Path) -> None:
    import json

    from codesign.cli import app

    db = str(tmp_path / "m.sqlite")
    args = [
        "measure",
        "ncf",
        "--batch",
        "2",
        "--db",
        db,
        "--in-process",
        "--repeat",
        "1",
        "--min-repeat-ms",
        "1",
        "--json",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout[first.stdout.index("{") :])
    assert data["measured"] >= 1 and data["failed"] == 0
    start = time.perf_counter()
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0
    again = json.loads(second.stdout[second.stdout.index("{") :])
    assert again["measured"] == 0 and again["cached"] == data["kernels"]
    assert time.perf_counter() - start < 5


def test_calibration_is_deterministic_and_records_the_host() -> None:
    """Same rows, same knobs; the measured DRAM bandwidth is recorded and can be pinned."""
    from codesign.plugins import load_target

    target = load_target("cpu/cascadelake")
    truth = {"compute_efficiency": 0.2, "sort_compare_s": 3e-9, "extern_call_s": 8e-7}
    specs = [K("top_k", batch=b, k=k) for b in (64, 256, 1024, 4096, 16384) for k in (8, 64)]
    specs += [K("concat", batch=b, widths=[32] * 9) for b in (1, 16, 64, 256, 1024)]
    host = {"dram_bandwidth_bytes_per_s": 1.23e10}
    predict = cb._Predictor(target, specs)
    point = {**cb.base_point(target, 1), **truth, **host}
    rows = [
        _row(s.signature(), latency_s=predict(s.signature(), point), op_class="vector")
        for s in specs
    ]
    first = cb.calibrate(rows, target, threads=1, host=host)
    again = cb.calibrate(list(reversed(rows)), target, threads=1, host=host)
    assert first.knobs == again.knobs
    assert first.host == host
    assert cb.Calibration.from_dict(first.as_dict()).host == host
    assert first.knobs["vector"]["sort_compare_s"] == pytest.approx(3e-9, rel=0.02)
    assert first.accuracy["classes"]["vector"]["train_mape"] < 0.01


def test_whole_stage_glue_is_fitted_from_stage_rows(tmp_path: Path, monkeypatch) -> None:
    """Stage rows that exceed the sum of their kernels by exactly 1 us per kernel call + 20 us
    per MB the kernels write give those two terms back, and calibrated stage estimates add
    them."""
    from codesign.cost_models import tvm_stage as ts
    from codesign.ir.frontends.lower import lower

    key = cb.host_key(1)
    base = dict(stdev_s=0.0, compile_s=0.1, error="", created_at=time.time(), status="ok")
    with MeasureDB(tmp_path / "m.sqlite") as db:
        for batch in (16, 256, 4096):
            graph = lower("rm-small", batch=batch)
            specs = [s for _, s, _ in tm.specs_for_graph(graph) if s is not None]
            for spec in specs:
                db.put(
                    Row(
                        spec.signature(),
                        **key,
                        op_class=spec.op_class,
                        kernel=spec.label(),
                        latency_s=1e-6 * len(spec.signature()) / 50,
                        **base,
                    )
                )
            kernels = sum(db.get(s.signature(), **key).latency_s for s in specs)
            calls, written = cb.stage_glue_terms(graph)
            stage = ts.StageSpec.of(graph, "rm-small")
            db.put(
                Row(
                    stage.signature(),
                    **key,
                    op_class=ts.OP_CLASS,
                    kernel=stage.label(),
                    latency_s=kernels + calls * 1e-6 + written * 20e-12,
                    **base,
                )
            )
        fit = ts.fit_dispatch(db, threads=1)
    assert fit["per_call_s"] == pytest.approx(1e-6, rel=1e-6)
    assert fit["per_byte_s"] == pytest.approx(20e-12, rel=1e-6)
    assert fit["mape"] == pytest.approx(0.0, abs=1e-9) and fit["mape_kernels_only"] > 0
