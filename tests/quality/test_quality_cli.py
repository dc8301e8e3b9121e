"""`codesign quality ...` through typer's CliRunner and as real subprocesses.

The module trains the default family on a small synthetic run once (about 20 s on 2 cores) and
checks the issue's acceptance on it: AUC orders small < medium < large, a second run hits the
cache, and a 2-stage S->L funnel with a large stage-1 pool beats 1-stage L with a small pool at
equal stage-2 (L) work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from codesign.cli import app

pytest.importorskip("torch")

runner = CliRunner()
#: A small synthetic run: 200k training samples, 20 pools of 4096 for validation.
SMALL = ["--samples", "200000", "--val-samples", "81920", "--max-rows", "100"]


def run(*args: str):
    return runner.invoke(app, ["quality", *args])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality-cache")
    result = run("train", *SMALL, "--cache-dir", str(root), "--json")
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout)


def test_train_prints_auc_ordered_small_medium_large(cache):
    _, trained = cache
    models = {m["model"]: m for m in trained["models"]}
    assert list(models) == ["rm-small", "rm-med", "rm-large"]
    assert not any(m["cached"] for m in models.values())
    aucs = [models[n]["auc"] for n in ("rm-small", "rm-med", "rm-large")]
    assert 0.6 < aucs[0] < aucs[1] < aucs[2] < 0.95, aucs
    assert trained["family"] == "recpipe-criteo" and trained["dataset"] == "synthetic"
    assert models["rm-large"]["train_samples"] == 200_000
    assert models["rm-large"]["val_samples"] == 81_920


def test_second_run_hits_the_cache(cache):
    root, _ = cache
    result = run("train", *SMALL, "--cache-dir", str(root))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("cached") == 3
    for name in ("rm-small", "rm-med", "rm-large", "AUC"):
        assert name in result.stdout


def test_two_stage_funnel_beats_one_stage_at_equal_large_model_work(cache):
    root, _ = cache
    result = run(
        "eval",
        *SMALL,
        "--cache-dir",
        str(root),
        "--stages",
        "rm-small:4096>256,rm-large:256>64",
        "--stages",
        "rm-large:256>64",
        "--stages",
        "rm-large:4096>64",
        "--metric",
        "ndcg_recpipe@64,ndcg@64",
        "--metric",
        "hr@8",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["metrics"] == ["ndcg_recpipe@64", "ndcg@64", "hr@8"]
    two, one, big = data["results"]
    assert two["items_scored_per_query"]["rm-large"] == one["items_scored_per_query"]["rm-large"]
    assert (two["queries"], one["queries"]) == (20, 320)
    assert two["metrics"]["ndcg_recpipe@64"] > one["metrics"]["ndcg_recpipe@64"] + 0.1
    # the cheap filter loses little against ranking all 4096 with the large model
    assert two["metrics"]["ndcg_recpipe@64"] > big["metrics"]["ndcg_recpipe@64"] - 0.05


def test_eval_table_and_defaults(cache):
    root, _ = cache
    result = run(
        "eval", *SMALL, "--cache-dir", str(root), "-s", "rm-small:4096>512,rm-med:512>128,"
        "rm-large:128>32", "--queries", "5"
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for text in ("ndcg_recpipe@32", "ndcg@32", "hr@32", "rm-small:4096>512"):
        assert text in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "rm-small:4096>512,rm-large:256>64"], "stage 2 (rm-large:256>64) ranks 256"),
        (["-s", "rm-large:512>32", "-m", "ndcg_recpipe@64"], "needs k <= 32"),
        (["-s", "rm-large:512>32", "-m", "map@4"], "unknown metric 'map@4'"),
        (["-s", "rm-large:163840>64"], "holds only 81920 samples"),
        (["-s", "rm-large:512>64", "--seed", "7"], "'rm-large' is not trained on dataset"),
        (["-s", "nope:512>64"], "unknown model 'nope'"),
    ],
)
def test_eval_errors_are_one_line(cache, args, message):
    root, _ = cache
    result = run("eval", *SMALL, "--cache-dir", str(root), *args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_train_errors_are_one_line(tmp_path):
    for args, message in [
        (["--dataset", "criteo:" + str(tmp_path / "none.txt")], "not found"),
        (["--dataset", "imagenet"], "unknown dataset"),
        (["--family", "neumf-ml1m-small"], "trains on MovieLens"),
    ]:
        result = run("train", "--cache-dir", str(tmp_path), *args)
        assert result.exit_code == 1, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_criteo_and_movielens_files_train_and_replay(tmp_path):
    criteo = tmp_path / "train.txt"
    lines = []
    for i in range(600):
        dense = [str((i * 7 + j) % 50) for j in range(13)]
        cats = [f"{(i * (j + 3)) % 17:08x}" for j in range(26)]
        lines.append("\t".join([str(int(i % 3 == 0)), *dense, *cats]))
    criteo.write_text("\n".join(lines) + "\n")
    common = ["--cache-dir", str(tmp_path / "c"), "--dataset", f"criteo:{criteo}"]
    result = run("train", *common, "--val-samples", "200", "--family", "rm-small", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"][0]["train_samples"] == 400
    result = run("eval", *common, "--val-samples", "200", "-s", "rm-small:100>10", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["queries"] == 2

    ratings = tmp_path / "ratings.dat"
    rows = [f"{u}::{(u * 5 + j * 3) % 40}::4::{j}" for u in range(1, 30) for j in range(6)]
    ratings.write_text("\n".join(rows) + "\n")
    ml = ["--cache-dir", str(tmp_path / "c"), "--dataset", f"movielens:{ratings}"]
    ml += ["--pool-size", "20"]
    result = run("train", *ml, "--family", "neumf-ml1m-small", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"][0]["val_samples"] == 29 * 20
    result = run("eval", *ml, "-s", "neumf-ml1m-small:20>5", "-m", "hr@5", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["queries"] == 29
    result = run("eval", *ml, "-s", "neumf-ml1m-small:10>5", "-m", "hr@5")
    assert result.exit_code == 1 and "pools of 20 candidates" in result.stderr


def test_table_command():
    result = run("table")
    assert result.exit_code == 0, result.output
    assert "0.9247" in result.stdout and "figure3.out" in result.stdout
    result = run("table", "--model", "rm-large", "--items", "3000", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["estimate"] is True and 0.8799 < row["value"] < 0.9247
    result = run("table", "--model", "rm-large")
    assert result.exit_code == 1 and "needs both --model and --items" in result.stderr
    result = run("table")
    assert "4,096>512>128" in result.stdout  # RecPipe's funnels are shown too
    result = run("table", "--model", "rm-small>rm-large", "--items", "4096>256", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["estimate"] is True and row["pools"] == [4096, 256] and 0.924 < row["value"] < 0.9246
    result = run("table", "--model", "rm-small>rm-large", "--items", "4096>1024")
    assert result.exit_code == 1 and "funnel rm-small>rm-large 4096>1024" in result.stderr
    assert "Traceback" not in result.output
    result = run("table", "--model", "rm-small>rm-large", "--items", "4096")
    assert result.exit_code == 1 and "one model and one pool per stage" in result.stderr


def test_real_subprocess_with_env_cache_dir(cache):
    root, _ = cache
    exe = shutil.which("codesign")
    cmd = [exe] if exe else [sys.executable, "-m", "codesign"]
    env = {**os.environ, "CODESIGN_CACHE_DIR": str(root)}
    done = subprocess.run(
        [*cmd, "quality", "train", *SMALL], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("cached") == 3
    done = subprocess.run(
        [*cmd, "quality", "eval", *SMALL, "--stages", "rm-small:4096>512,rm-large:512>64"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ndcg_recpipe@64" in done.stdout


def test_ctrl_c_in_a_real_run_exits_130_and_keeps_the_cache_whole(tmp_path):
    """SIGINT while the second model trains: exit 130, 'interrupted', the first model cached,
    no partial files."""
    import signal
    import time

    exe = shutil.which("codesign")
    cmd = [exe] if exe else [sys.executable, "-m", "codesign"]
    args = ["quality", "train", "--samples", "60000", "--val-samples", "4096", "--max-rows", "50"]
    proc = subprocess.Popen(
        [*cmd, *args, "--cache-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while not list(tmp_path.glob("quality/*/rm-small-*.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().endswith("interrupted")
    files = sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.rglob("*.np*"))
    assert files == ["rm-small"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_funnel_quality_for_searches_matches_eval(cache):
    """The search's entry point (codesign.quality.api.funnel_quality, which the run config's
    `quality.source = "replay"` looks for) gives eval's numbers, from scores loaded once."""
    import importlib.util

    from codesign.quality import api
    from codesign.quality.api import funnel_quality
    from codesign.quality.datasets import DataOptions

    root, _ = cache
    assert importlib.util.find_spec("codesign.quality.replay") is not None
    options = DataOptions(samples=200_000, val_samples=81_920, max_rows=100)
    result = run(
        "eval", *SMALL, "--cache-dir", str(root), "-s", "rm-small:4096>256,rm-large:256>64",
        "--json",
    )  # fmt: skip
    want = json.loads(result.stdout)["results"][0]["metrics"]["ndcg_recpipe@64"]
    stages = [("rm-small", 4096, 256), ("rm-large", 256, 64)]
    got = api.funnel_quality(stages, "ndcg_recpipe@64", cache_dir=root, options=options)
    assert got == want
    assert len(api._REPLAYERS) >= 1
    # the default dataset options: nothing trained with those here
    with pytest.raises(api.QualityError, match="is not trained"):
        funnel_quality(stages, "ndcg_recpipe@64", cache_dir=str(root))
