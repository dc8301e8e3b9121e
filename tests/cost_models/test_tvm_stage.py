"""Whole-stage Relax models and meta_schedule tuning (`codesign measure --whole-stage/--tune`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from codesign.cost_models import tvm_measured as tm
from codesign.cost_models import tvm_stage as ts
from codesign.cost_models import tvm_tuning as tt
from codesign.cost_models.measure_db import MeasureDB
from codesign.testing.target_contract import TINY_DLRM, tiny_dlrm

FAST = tm.TimingConfig(repeat=1, min_repeat_ms=1, warmup=0)


def _forward(graph, a: dict[str, np.ndarray]) -> np.ndarray:
    """The tiny DLRM written out by hand: bottom MLP, bags, dot interaction, top MLP."""

    def mlp(x, names, last):
        for i, name in enumerate(names):
            x = x @ a[f"{name}.w"] + a[f"{name}.b"]
            x = (
                1 / (1 + np.exp(-x))
                if i == len(names) - 1 and last == "sigmoid"
                else np.maximum(x, 0)
            )
        return x

    dense = mlp(a["dense"], ["bot_0", "bot_1"], "relu")
    bags = [a[f"{n.name}.table"][a[n.inputs[0]]].sum(axis=1) for n in graph.find("embedding_bag")]
    x = np.stack([dense, *bags], axis=1)
    li, lj = np.tril_indices(x.shape[1], -1)
    z = np.einsum("bnd,bmd->bnm", x, x)[:, li, lj]
    return mlp(np.concatenate([dense, z], axis=1), ["top_0", "top_1"], "sigmoid")


def test_numpy_reference_is_the_dlrm_forward() -> None:
    graph = tiny_dlrm(batch=8)
    arrays = ts.stage_arrays(graph, ts.kernel_specs(graph), seed=3)
    assert ts.argument_names(graph, arrays)[0] == "dense"
    got = ts.reference(graph, arrays)
    np.testing.assert_allclose(got, _forward(graph, arrays), rtol=1e-5, atol=1e-6)
    assert got.shape == (8, 1)


@pytest.mark.tvm
def test_whole_stage_matches_numpy_and_is_reused(tmp_path: Path) -> None:
    graph = tiny_dlrm(batch=8)
    with MeasureDB(tmp_path / "m.sqlite") as db:
        row, cached = ts.stage_row(graph, "tiny", db, timing=FAST, isolate=False)
        assert (row.status, cached) == ("ok", False), row.error
        assert row.op_class == "stage" and row.latency_s > 0
        assert json.loads(row.signature)["batch"] == 8
        again, cached = ts.stage_row(graph, "tiny", db, timing=FAST, isolate=False)
        assert cached and again.latency_s == row.latency_s
        # another batch is another stage
        _, cached = ts.stage_row(tiny_dlrm(batch=4), "tiny", db, timing=FAST, isolate=False)
        assert not cached


def test_unsupported_op_is_recorded(tmp_path: Path) -> None:
    graph = tiny_dlrm(batch=4, passes=("quantize-embeddings",))
    with MeasureDB(tmp_path / "m.sqlite") as db:
        row, _ = ts.stage_row(graph, "tiny-int8", db, timing=FAST, isolate=False)
        assert row.status == "unsupported"
        assert "emb_" in row.error and "fp32" in row.error
        assert ts.stage_row(graph, "tiny-int8", db, timing=FAST, isolate=False)[1]


@pytest.mark.tvm
def test_build_error_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(spec, *, gpu=False):
        raise RuntimeError("no schedule today")

    monkeypatch.setattr(tm, "lower", broken)
    m = ts.measure_stage(tiny_dlrm(batch=4), "tiny", FAST)
    assert m.status == "build_error" and "no schedule today" in m.error


@pytest.mark.tvm
def test_cli_whole_stage(tmp_path: Path) -> None:
    from codesign.cli import app

    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY_DLRM))
    args = ["measure", str(spec), "-b", "4", "--db", str(tmp_path / "m.sqlite"), "--in-process"]
    args += ["--repeat", "1", "--min-repeat-ms", "1", "--whole-stage", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (stage,) = data["stages"]
    assert stage["status"] == "ok" and stage["stage_s"] > 0
    assert stage["ops_sum_s"] > 0 and stage["analytical_s"] > 0 and not stage["ops_missing"]


@pytest.mark.tvm
def test_tuning_database_is_reused(tmp_path: Path) -> None:
    spec = tm.KernelSpec.make("dense", m=8, k=16, n=16, bias=True, activation="relu")
    work_dir = tmp_path / "tuning"
    with MeasureDB(tmp_path / "a.sqlite") as db:
        ((row, info),) = tt.measure_tuned_specs(
            [spec], db, trials=2, work_dir=work_dir, timing=FAST
        )
        assert row.status == "ok", row.error
        assert row.target.endswith(":schedule=ms:trials=2")
        assert info["tuning"] == "tuned"
        records = tt.tuning_records(work_dir)
        assert records >= 1
        # the same measurement database: the tuned row is read back
        ((_, info),) = tt.measure_tuned_specs([spec], db, trials=2, work_dir=work_dir, timing=FAST)
        assert info == {}
    # a fresh measurement database: the kernel is rebuilt from the tuning records, not re-tuned
    with MeasureDB(tmp_path / "b.sqlite") as db:
        ((row, info),) = tt.measure_tuned_specs(
            [spec], db, trials=2, work_dir=work_dir, timing=FAST
        )
        assert row.status == "ok" and info["tuning"] == "reused"
    assert tt.tuning_records(work_dir) == records


def test_only_dense_is_tuned(tmp_path: Path) -> None:
    spec = tm.KernelSpec.make("top_k", batch=8, k=2)
    with pytest.raises(tm.UnsupportedKernel):
        tt.tune(spec, trials=1, work_dir=tmp_path)
    with MeasureDB(tmp_path / "m.sqlite") as db:
        assert tt.measure_tuned_specs([spec], db, trials=1, work_dir=tmp_path) == []


def test_cli_stage_options_need_a_model(tmp_path: Path) -> None:
    from codesign.cli import app

    db = str(tmp_path / "m.sqlite")
    for extra in (["--whole-stage"], ["--tune", "4"]):
        result = CliRunner().invoke(app, ["measure", "sweep", "--db", db, *extra])
        assert result.exit_code == 1
        assert "apply to a model" in result.output and "Traceback" not in result.output
