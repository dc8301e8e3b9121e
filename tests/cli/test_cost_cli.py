"""`codesign cost --trace`: hit rates measured by replaying a row-id trace."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from codesign.cli import app
from codesign.cost_models.embedding_cache import hit_rates_from_trace, zipf_trace

runner = CliRunner()


def test_trace_sets_the_measured_hit_rate(tmp_path):
    ids = zipf_trace(100_000, 1.09, 50_000, seed=3)
    path = tmp_path / "ids.npy"
    np.save(path, ids)
    result = runner.invoke(
        app,
        [
            "cost",
            "rm-small",
            "--target",
            "accel/rpaccel",
            "--batch",
            "256",
            "--trace",
            str(path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    t = report["trace"]
    half = ids.size // 2
    expected = hit_rates_from_trace(
        ids, t["static_rows"], t["dynamic_rows"], warmup=half, profile=ids[:half]
    )
    assert t["hit_rate"] == expected.total
    assert report["point"]["embedding_hit_rate"] == expected.total
    gathers = [o for o in report["ops"] if o["op"] == "embedding_bag"]
    assert all(o["detail"]["hit_rate"] == expected.total for o in gathers)
    text = tmp_path / "ids.txt"
    text.write_text("\n".join(map(str, ids[:1000])))
    assert (
        runner.invoke(
            app, ["cost", "rm-small", "--target", "accel/rpaccel", "--trace", str(text)]
        ).exit_code
        == 0
    )


def test_trace_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a b c\n")
    for args, needle in [
        (["--target", "cpu/cascadelake", "--trace", str(bad)], "no embedding caches"),
        (["--target", "accel/rpaccel", "--trace", str(bad)], "cannot read row ids"),
        (["--target", "accel/rpaccel", "--trace", str(tmp_path / "missing.npy")], "cannot read"),
    ]:
        result = runner.invoke(app, ["cost", "rm-small", *args])
        assert result.exit_code == 1, result.output
        assert needle in result.stderr and result.stderr.strip().count("\n") == 0


def test_cost_model_choice_errors_are_one_line(tmp_path):
    result = runner.invoke(
        app, ["cost", "rm-small", "--target", "cpu/cascadelake", "--cost-model", "magic"]
    )
    assert result.exit_code == 1 and "--cost-model 'magic'" in result.stderr
    result = runner.invoke(
        app,
        [
            "cost",
            "rm-small",
            "--target",
            "cpu/host",
            "--cost-model",
            "calibrated",
            "--db",
            str(tmp_path / "measure.sqlite"),
        ],
    )
    assert result.exit_code == 1
    assert "codesign measure report" in result.stderr
    assert result.stderr.strip().count("\n") == 0
    # measured and calibrated costs are this machine's CPU: other targets are refused
    for target in ("cpu/cascadelake", "gpu/nvidia/t4"):
        result = runner.invoke(app, ["cost", "rm-small", "--target", target, "--cost-model", "tvm"])
        assert result.exit_code == 1 and "--target cpu/host" in result.stderr
        assert result.stderr.strip().count("\n") == 0
