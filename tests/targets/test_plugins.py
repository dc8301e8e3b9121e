"""The target registry (codesign.plugins): listing without importing, clear errors for broken
plugins, the opt-out env var, and a working plugin end to end.

Fake plugins are real distributions: a ``fakeplug-0.1.dist-info`` folder (METADATA and
entry_points.txt) and its modules in a temporary folder put on ``sys.path``, which is how
``importlib.metadata`` finds any installed distribution.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from typing import Any

import pytest
from typer.testing import CliRunner

import codesign
from codesign import api
from codesign.cli import app
from codesign.cost_models.analytical import estimate
from codesign.errors import CodesignError, UnknownNameError
from codesign.ir import lower
from codesign.plugins import (
    BUILTIN_DISTRIBUTION,
    DISABLE_ENV,
    PluginError,
    _load,
    load_target,
    target_entries,
)
from codesign.targets.base import Target
from codesign.testing.target_contract import TINY_DLRM

runner = CliRunner()

BROKEN = 'raise RuntimeError("boom at import")\n'
MULTILINE = 'raise RuntimeError("first line\\nsecond line")\n'
NOT_A_TARGET = "def make():\n    return object()\n"
#: A target written against the protocol alone: no BaseTarget, no schedule hook.
WORKING = textwrap.dedent(
    """
    from codesign.targets.base import DesignSpace, HardwareCost, Knob, OpEstimate


    class OkTarget:
        name = "fake/ok"
        description = "a protocol-only plugin target"

        def design_space(self):
            return DesignSpace((Knob("us_per_op", "float", 1.0, 0.0, 100.0),), target=self.name)

        def supports(self, node):
            return True

        def op_cost(self, op, point):
            return OpEstimate(op.node.name, op.op, point["us_per_op"] * 1e-6, energy_j=1e-6)

        def hw_cost(self, point):
            return HardwareCost(area_mm2=2.0, power_w=1.0)


    def make():
        return OkTarget()


    INSTANCE = OkTarget()
    """
)


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """``make(entries, modules)`` installs distribution ``fakeplug`` 0.1 for one test."""
    monkeypatch.delenv(DISABLE_ENV, raising=False)

    def make(entries: dict[str, str], modules: dict[str, str]) -> None:
        info = tmp_path / "fakeplug-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
        (info / "entry_points.txt").write_text(f"[codesign.targets]\n{lines}")
        for module, source in modules.items():
            (tmp_path / f"{module}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates importlib's caches
        _load.cache_clear()

    yield make
    _load.cache_clear()
    for module in [m for m in sys.modules if m.startswith("fakeplug_")]:
        del sys.modules[module]
    importlib.invalidate_caches()


def _one_line(text: str) -> bool:
    return bool(text.strip()) and "\n" not in text.strip()


def _cli_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output + result.stderr
    assert _one_line(result.stderr), result.stderr
    return result.stderr


# --- (a) listing ---------------------------------------------------------------------------------


def test_builtins_come_from_the_codesign_distribution():
    builtins = {n: e for n, e in target_entries().items() if e.builtin}
    assert len(builtins) == 11
    for entry in builtins.values():
        assert entry.distribution == BUILTIN_DISTRIBUTION == "codesign"
        assert entry.version == codesign.__version__
        assert entry.value.startswith("codesign.targets.builtin:")


def test_listing_never_imports_a_plugin(fake_dist):
    fake_dist({"fake/broken": "fakeplug_broken:make"}, {"fakeplug_broken": BROKEN})
    entry = target_entries()["fake/broken"]
    assert (entry.distribution, entry.version, entry.builtin) == ("fakeplug", "0.1", False)
    row = next(r for r in api.list_targets() if r["name"] == "fake/broken")
    assert row["distribution"] == "fakeplug" and not row["builtin"]
    for args in (["targets", "list", "--json"], ["targets", "list"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "fake/broken" in result.stdout
    assert "fakeplug_broken" not in sys.modules


def test_broken_plugin_is_one_plugin_error_naming_its_distribution(fake_dist):
    fake_dist({"fake/broken": "fakeplug_broken:make"}, {"fakeplug_broken": BROKEN})
    with pytest.raises(PluginError) as info:
        load_target("fake/broken")
    message = str(info.value)
    assert _one_line(message)
    for needle in ("fakeplug", "fake/broken", "RuntimeError", "boom at import"):
        assert needle in message
    assert "fakeplug" in _cli_error(["cost", "rm-small", "--target", "fake/broken"])


def test_missing_plugin_module_names_its_distribution(fake_dist):
    fake_dist({"fake/missing": "fakeplug_nowhere:make"}, {})
    with pytest.raises(PluginError, match="distribution fakeplug") as info:
        load_target("fake/missing")
    assert "ModuleNotFoundError" in str(info.value)


def test_plugin_error_with_a_multiline_cause_is_one_line_on_the_cli(fake_dist):
    fake_dist({"fake/multi": "fakeplug_multi:make"}, {"fakeplug_multi": MULTILINE})
    with pytest.raises(PluginError, match="fakeplug"):
        load_target("fake/multi")
    stderr = _cli_error(["targets", "show", "fake/multi"])
    assert "first line second line" in stderr


def test_no_plugins_env_var_hides_plugin_targets(fake_dist, monkeypatch):
    fake_dist({"fake/broken": "fakeplug_broken:make"}, {"fakeplug_broken": BROKEN})
    assert "fake/broken" in target_entries()
    monkeypatch.setenv(DISABLE_ENV, "1")
    entries = target_entries()
    assert "fake/broken" not in entries
    assert sum(e.builtin for e in entries.values()) == 11
    assert all(e.builtin for e in entries.values())
    with pytest.raises(UnknownNameError):
        load_target("fake/broken")
    result = runner.invoke(app, ["targets", "list", "--json"])
    assert result.exit_code == 0
    assert all(r["builtin"] for r in json.loads(result.stdout))
    assert "fakeplug_broken" not in sys.modules


def test_a_plugin_cannot_shadow_a_builtin(fake_dist):
    fake_dist({"cpu/cascadelake": "fakeplug_ok:make"}, {"fakeplug_ok": WORKING})
    assert target_entries()["cpu/cascadelake"].distribution == "codesign"
    assert load_target("cpu/cascadelake").description.startswith("Intel Xeon")
    assert "fakeplug_ok" not in sys.modules


# --- (b) not a target ----------------------------------------------------------------------------


def test_a_plugin_returning_a_non_target_is_a_plugin_error(fake_dist):
    fake_dist({"fake/object": "fakeplug_object:make"}, {"fakeplug_object": NOT_A_TARGET})
    with pytest.raises(PluginError) as info:
        load_target("fake/object")
    message = str(info.value)
    assert _one_line(message)
    assert "fakeplug" in message and "Target protocol" in message
    assert "Target protocol" in _cli_error(["targets", "show", "fake/object"])


# --- (c) a working plugin ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["fakeplug_ok:make", "fakeplug_ok:OkTarget", "fakeplug_ok:INSTANCE"]
)
def test_a_working_plugin_loads_and_costs(fake_dist, value):
    """A factory, a class or an instance: each entry-point form gives a checked target."""
    fake_dist({"fake/ok": value}, {"fakeplug_ok": WORKING})
    target = load_target("fake/ok")
    assert isinstance(target, Target) and target.name == "fake/ok"
    graph = lower(TINY_DLRM, batch=16)
    report = estimate(graph, target, {"us_per_op": "2"})
    # no schedule hook: the ops run one after another
    assert report.latency_s == pytest.approx(2e-6 * len(report.ops))
    assert report.hardware.area_mm2 == 2.0


def test_a_working_plugin_through_the_cli(fake_dist):
    fake_dist({"fake/ok": "fakeplug_ok:make"}, {"fakeplug_ok": WORKING})
    shown = runner.invoke(app, ["targets", "show", "fake/ok", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["knobs"][0]["name"] == "us_per_op"
    cost = runner.invoke(app, ["cost", "rm-small", "--target", "fake/ok", "--batch", "8", "--json"])
    assert cost.exit_code == 0, cost.output
    assert json.loads(cost.stdout)["latency_s"] > 0
    assert "us_per_op" in _cli_error(
        ["cost", "rm-small", "--target", "fake/ok", "--set", "us_per_op=-1"]
    )


def test_load_target_errors_are_codesign_errors():
    with pytest.raises(CodesignError, match="did you mean accel/rpaccel"):
        load_target("accel/rpacel")


# --- (d) the example plugin, where installed -----------------------------------------------------


def test_recnmp_example_plugin_when_installed(monkeypatch):
    pytest.importorskip("codesign_recnmp", reason="pip install -e examples/recnmp-target")
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    _load.cache_clear()
    listed = runner.invoke(app, ["targets", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "nmp/recnmp")
    assert row["distribution"] == "codesign-recnmp" and not row["builtin"]
    cost = runner.invoke(
        app, ["cost", "dlrm-rmc2", "--target", "nmp/recnmp", "--batch", "64", "--json"]
    )
    assert cost.exit_code == 0, cost.output
    report = json.loads(cost.stdout)
    assert report["latency_s"] > 0 and report["provenance"]["target"] == "nmp/recnmp"
    shown = runner.invoke(app, ["targets", "show", "nmp/recnmp"])
    assert shown.exit_code == 0, shown.output
    assert "rankcache_bytes" in shown.stdout


#: A short search whose every stage runs on the example plugin, so a design's power and area
#: are the plugin's own ``hw_cost`` summed over its engines (the default resource hooks: every
#: engine is a device of its own). Table quality from RECNMP_QUALITY (no training): it answers
#: every funnel of the space, so two-stage designs are priced too.
RECNMP_RUN = """\
version = 1
kind = "run"
name = "recnmp-smoke"

[workload]
models = ["rm-small", "rm-med"]
candidates = 1024
keep = 64
qps = 50
queries = 200
warmup = 20

[quality]
metric = "ndcg_recpipe@64"
source = "table"
table = "quality.csv"

[space]
max_stages = 2
targets = ["nmp/recnmp"]
engines = [1, 2]
shrink_log2 = [1, 3]

[objectives]
names = ["quality", "p95_latency_s", "power_w", "area_mm2"]

[search]
strategy = "joint"
trials = 8
seed = 0
"""


#: Inputs, not golden numbers: each model alone at 1024 items, and both two-stage funnels of
#: two models at 1024 > 512 and 128 (256 interpolated; a model after itself is one stage).
RECNMP_QUALITY = """\
model,items,k,metric,value
rm-small,1024,64,ndcg_recpipe,0.80
rm-med,1024,64,ndcg_recpipe,0.81
rm-small>rm-med,1024>512,64,ndcg_recpipe,0.805
rm-small>rm-med,1024>128,64,ndcg_recpipe,0.79
rm-med>rm-small,1024>512,64,ndcg_recpipe,0.80
rm-med>rm-small,1024>128,64,ndcg_recpipe,0.78
"""


def _expected_silicon(target: Any, stages: list[dict[str, Any]]) -> tuple[float, float]:
    """Power and area of ``stages`` (all on ``target``): engines x ``hw_cost`` per stage."""
    power = area = 0.0
    for stage in stages:
        assert stage["target"] == target.name, stage
        hw = target.hw_cost(target.design_space().resolve(stage.get("knobs", {})))
        power += stage["engines"] * float(hw.power_w)
        area += stage["engines"] * (hw.area_mm2 or 0.0)
    return power, area


def test_recnmp_plans_price_power_and_area_by_the_plugins_hw_cost(tmp_path, monkeypatch):
    """A real ``codesign optimize`` over the example plugin: each plan's predicted power_w and
    area_mm2 (and every trial's, which covers two-stage designs the front may drop) is the sum
    over its stages of engines x the plugin's ``hw_cost`` at the stage's knobs."""
    pytest.importorskip("codesign_recnmp", reason="pip install -e examples/recnmp-target")
    from codesign.search.study import load_existing

    monkeypatch.delenv(DISABLE_ENV, raising=False)
    _load.cache_clear()
    config = tmp_path / "run.toml"
    config.write_text(RECNMP_RUN)
    (tmp_path / "quality.csv").write_text(RECNMP_QUALITY)
    out = tmp_path / "run"
    result = runner.invoke(app, ["optimize", str(config), "--out", str(out), "--trials", "8"])
    assert result.exit_code == 0, result.output
    target = load_target("nmp/recnmp")
    assert target.hw_cost(target.design_space().resolve()).area_mm2, "the plugin has area"

    plans = sorted((out / "plans").glob("plan-*.json"))
    assert plans, "an 8-trial run has a front"
    designs = []
    for path in plans:
        plan = json.loads(path.read_text())
        designs.append((path.name, plan["stages"], plan["predicted"]))
    study, _, _ = load_existing(str(out))
    for trial in study.get_trials(deepcopy=False):
        if "result" in trial.user_attrs:
            stored = trial.user_attrs["result"]
            designs.append((f"trial {trial.number}", stored["design"]["stages"], stored["metrics"]))
    assert len(designs) > len(plans)
    for where, stages, predicted in designs:
        power, area = _expected_silicon(target, stages)
        assert predicted["power_w"] == pytest.approx(power, rel=1e-9), where
        assert predicted["area_mm2"] == pytest.approx(area, rel=1e-9), where
    # not vacuous: some design sums several engines, and one of them has two stages
    assert any(sum(s["engines"] for s in stages) > 1 for _, stages, _ in designs)
    assert any(len({s["model"] for s in stages}) == 2 for _, stages, _ in designs)
