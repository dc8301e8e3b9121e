"""Training: the module trained from a spec imports to the same IR as the spec lowers to (the
model that is costed is the model that is scored), training specs, and interrupted training."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

from codesign.ir.frontends.lower import lower
from codesign.ir.frontends.zoo import resolve
from codesign.quality.api import train_family
from codesign.quality.cache import QualityCache
from codesign.quality.datasets import DataOptions
from codesign.quality.errors import QualityError
from codesign.quality.families import resolve_family, training_spec
from codesign.quality.synthetic import capped_cardinalities

torch = pytest.importorskip("torch")
from codesign.ir.frontends.torch_import import import_module  # noqa: E402
from codesign.quality.train import (  # noqa: E402
    TrainConfig,
    build_module,
    example_inputs,
)

CARDS = capped_cardinalities()  # the synthetic default: Criteo's cardinalities capped at 200


def per_op(graph):
    out = defaultdict(list)
    for node in graph.nodes:
        out[node.op].append((node.shape, node.dtype, node.attrs, graph.cost(node).as_dict()))
    return dict(out)


def assert_same_ir(imported, lowered):
    assert [n.op for n in imported.nodes] == [n.op for n in lowered.nodes]
    assert per_op(imported) == per_op(lowered)
    assert imported.batch == lowered.batch
    assert imported.total_cost() == lowered.total_cost()


@pytest.mark.parametrize("name", ["rm-small", "rm-med", "rm-large"])
def test_trained_dlrm_imports_to_the_ir_of_its_training_spec(name):
    zoo = resolve(name)
    spec = training_spec(zoo, task="ctr", cardinalities=CARDS, dense_features=13)
    module = build_module(spec).eval()
    graph = import_module(module, example_inputs(spec, 8))
    assert_same_ir(graph, lower(spec, batch=8))
    # only the table sizes differ from the zoo spec: the cost per item is the zoo model's
    costed, scored = lower(zoo, batch=8).total_cost(), graph.total_cost()
    assert scored.macs_per_item == costed.macs_per_item
    assert scored.flops_per_item == costed.flops_per_item
    rows = [n.attrs["rows"] for n in graph.find("embedding_bag")]
    assert rows == list(CARDS)
    assert spec.spec_hash() != zoo.spec_hash()


def test_trained_neumf_imports_to_the_ir_of_its_training_spec():
    zoo = resolve("neumf-ml1m-small")
    spec = training_spec(zoo, task="implicit", cardinalities=(50, 70), dense_features=0)
    assert (spec.config["users"], spec.config["items"]) == (50, 70)
    module = build_module(spec).eval()
    graph = import_module(module, example_inputs(spec, 6))
    assert_same_ir(graph, lower(spec, batch=6))
    assert graph.total_cost().macs_per_item == lower(zoo).total_cost().macs_per_item


def test_training_spec_rejects_mismatched_datasets():
    with pytest.raises(QualityError, match="has 26 embedding tables but the dataset has 3"):
        training_spec(resolve("rm-small"), task="ctr", cardinalities=(1, 2, 3), dense_features=13)
    with pytest.raises(QualityError, match="trains on MovieLens"):
        training_spec(
            resolve("neumf-ml1m-small"), task="ctr", cardinalities=(1, 2), dense_features=0
        )
    with pytest.raises(QualityError, match="trains on a CTR dataset"):
        training_spec(resolve("rm-small"), task="implicit", cardinalities=(1, 2), dense_features=0)
    with pytest.raises(QualityError, match="supports the dlrm and neumf"):
        train_family(family="wnd", options=DataOptions(samples=10, val_samples=10))
    with pytest.raises(QualityError, match="neither a family"):
        resolve_family("rm-small,not-a-model")
    assert [s.name for s in resolve_family("rm-large, rm-small")[1]] == ["rm-large", "rm-small"]


TINY = DataOptions(samples=4000, val_samples=1000, max_rows=20, seed=1)


class InterruptSecond:
    """A reporter that presses Ctrl-C a few steps into the second model."""

    def __init__(self):
        self.models = []

    def status(self, text):
        pass

    def start(self, model, total_steps):
        self.models.append(model)
        self.steps = 0

    def advance(self, steps, loss):
        self.steps += steps
        if len(self.models) == 2 and self.steps >= 2:
            raise KeyboardInterrupt

    def finish(self, model):
        pass


def test_ctrl_c_keeps_finished_models_and_leaves_no_partial_files(tmp_path):
    reporter = InterruptSecond()
    with pytest.raises(KeyboardInterrupt):
        train_family(options=TINY, cache_dir=tmp_path, reporter=reporter)
    assert reporter.models == ["rm-small", "rm-med"]
    cache = QualityCache(tmp_path)
    assert [e.model for e in cache.entries()] == ["rm-small"]
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert not [n for n in leftovers if n.endswith(".tmp")]
    assert sorted(n.rsplit("-", 1)[0] for n in leftovers if n != "dataset.json") == [
        "rm-small",
        "rm-small",
    ]
    result = train_family(options=TINY, cache_dir=tmp_path)
    assert [m["cached"] for m in result["models"]] == [True, False, False]


def test_training_is_seeded(tmp_path):
    a = train_family(family="rm-small", options=TINY, cache_dir=tmp_path / "a")
    b = train_family(family="rm-small", options=TINY, cache_dir=tmp_path / "b")
    c = train_family(
        family="rm-small",
        options=TINY,
        train=TrainConfig(seed=TINY.seed, epochs=2),
        cache_dir=tmp_path / "b",
    )
    assert a["models"][0]["auc"] == b["models"][0]["auc"]
    assert not c["models"][0]["cached"]  # other training settings: another entry
    sa = QualityCache(tmp_path / "a").entries()[0].load()[0]
    sb = QualityCache(tmp_path / "b").entries()[0].load()[0]
    assert np.array_equal(sa, sb)


def test_importing_the_package_and_cli_does_not_import_torch():
    code = (
        "import sys, codesign.quality, codesign.quality.api, codesign.quality.train, "
        "codesign.cli.quality, codesign.cli; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_timing_probe_leaves_training_unchanged():
    """The estimate before training times steps of a throwaway model: the trained model's
    scores are the same with or without it, and the probe times 4 to 40 steps."""
    from codesign.quality import datasets as ds
    from codesign.quality.train import time_steps, train_and_score

    data = ds.load(ds.parse_dataset("synthetic"), TINY)
    spec = training_spec(
        resolve("rm-small"),
        task=data.task,
        cardinalities=data.cardinalities,
        dense_features=data.dense_features,
    )
    config = TrainConfig(seed=TINY.seed)
    plain = train_and_score(spec, data, config).scores
    timing = time_steps(spec, data, config)
    assert 4 <= timing.steps <= 40 and timing.step_s > 0 and timing.score_batch_s > 0
    assert timing.estimate_s(steps=10, score_batches=2) == pytest.approx(
        10 * timing.step_s + 2 * timing.score_batch_s
    )
    assert np.array_equal(train_and_score(spec, data, config).scores, plain)


def test_training_threads_follow_the_load(monkeypatch):
    """One intra-op thread per core not taken by another runnable process (at least 1, at
    most torch's own count), restored after training."""
    from codesign.quality import train as tr

    default = torch.get_num_threads()
    monkeypatch.setattr(tr.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(tr, "busy_elsewhere", lambda: 5.3)
    assert tr.training_threads() == 1
    monkeypatch.setattr(tr, "busy_elsewhere", lambda: 0.2)
    assert tr.training_threads() == min(default, 2)
    monkeypatch.setattr(tr, "busy_elsewhere", lambda: 1.4)
    assert tr.training_threads() == 1  # 0.6 of a core free
    monkeypatch.setattr(tr, "busy_elsewhere", lambda: None)
    assert tr.training_threads() == default
    with tr.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == default


def test_busy_elsewhere_reads_the_running_count(monkeypatch, tmp_path):
    """/proc/loadavg's running count includes this process: 3 running means 2 others; without
    the file, the 1-minute load average."""
    from codesign.quality import train as tr

    real_path = tr.Path
    fake = tmp_path / "loadavg"
    fake.write_text("0.95 1.05 1.57 3/412 12345\n")
    monkeypatch.setattr(tr, "Path", lambda p: fake if p == "/proc/loadavg" else real_path(p))
    assert tr.busy_elsewhere(samples=2, interval_s=0.0) == 2.0
    fake.unlink()
    monkeypatch.setattr(tr.os, "getloadavg", lambda: (0.7, 0.5, 0.2))
    assert tr.busy_elsewhere(samples=2, interval_s=0.0) == 0.7
