"""Pipeline spec validation: every bad spec is one line naming the stage and field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from codesign.errors import SpecError
from codesign.pipeline import load_pipeline

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"

VALID = {
    "version": 1,
    "kind": "pipeline",
    "name": "t",
    "stages": [
        {
            "model": "rm-small",
            "items": 1024,
            "keep": 128,
            "target": "cpu/cascadelake",
            "knobs": {"cores": 1},
            "engines": 4,
        },
        {
            "model": "rm-large",
            "items": 128,
            "keep": 16,
            "target": "cpu/cascadelake",
            "knobs": {"cores": 1},
            "engines": 4,
        },
    ],
    "load": {"queries": 500, "warmup": 50},
}


def mutate(fn):
    spec = copy.deepcopy(VALID)
    fn(spec)
    return spec


def s0(**kw):
    return lambda d: d["stages"][0].update(kw)


def s1(**kw):
    return lambda d: d["stages"][1].update(kw)


CASES = [
    ("no-stages", lambda d: d.pop("stages"), "stages"),
    ("empty-stages", lambda d: d.update(stages=[]), "stages"),
    ("stage-not-mapping", lambda d: d["stages"].__setitem__(0, "rm-small"), "stages[0]"),
    ("bad-version", lambda d: d.update(version=2), "version"),
    ("bad-kind", lambda d: d.update(kind="model"), "kind"),
    ("unknown-top-field", lambda d: d.update(stagez=[]), "stagez"),
    ("unknown-stage-field", s0(engine=3), "stages[0].engine"),
    ("missing-model", lambda d: d["stages"][0].pop("model"), "stages[0].model"),
    ("unknown-model", s0(model="rm-tiny"), "stages[0].model"),
    ("zero-items", s0(items=0), "stages[0].items"),
    ("negative-keep", s1(keep=-4), "stages[1].keep"),
    ("keep-above-items", s1(keep=256), "stages[1].keep"),
    ("float-items", s0(items=1024.5), "stages[0].items"),
    ("funnel-gap", s1(items=256, keep=16), "stages[1].items"),
    ("missing-target", lambda d: d["stages"][1].pop("target"), "stages[1].target"),
    ("unknown-target", s1(target="cpu/epyc"), "stages[1].target"),
    ("unknown-knob", s0(knobs={"corez": 1}), "stages[0].knobs"),
    ("knob-out-of-range", s0(knobs={"cores": 0}), "stages[0].knobs"),
    ("knobs-not-mapping", s0(knobs=[1]), "stages[0].knobs"),
    ("zero-engines", s1(engines=0), "stages[1].engines"),
    ("cores-over-capacity", s1(engines=40), "stages[1].engines"),
    ("batch-above-items", s1(batch=512), "stages[1].batch"),
    ("keep-on-multi-output-model", s1(model="din"), "stages[1].keep"),
    ("warmup-not-below-queries", lambda d: d["load"].update(warmup=600), "load.warmup"),
    ("negative-sla", lambda d: d["load"].update(sla_ms=-5), "load.sla_ms"),
    ("bad-arrival", lambda d: d["load"].update(arrival="uniform"), "load.arrival"),
    ("bad-query-size", lambda d: d["load"].update(query_size={"kind": "gamma"}), "load.query_size"),
    ("unknown-load-field", lambda d: d["load"].update(qps=3), "load.qps"),
    (
        "accel-over-chip",
        lambda d: d["stages"].__setitem__(
            0,
            {
                "model": "rm-small",
                "items": 1024,
                "keep": 128,
                "target": "accel/rpaccel",
                "engines": 2,
                "knobs": {"rows": 128, "cols": 128},
            },
        ),
        "stages[0].engines",
    ),
    (
        "accel-cache-over-chip",
        lambda d: d["stages"].__setitem__(
            0,
            {
                "model": "rm-small",
                "items": 1024,
                "keep": 128,
                "target": "accel/rpaccel",
                "engines": 2,
                "knobs": {
                    "rows": 32,
                    "cols": 32,
                    "static_cache_bytes": 2**23,
                    "dynamic_cache_bytes": 2**23,
                },
            },
        ),
        "stages[0].engines",
    ),
]


@pytest.mark.parametrize(("fn", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_pipeline_specs_name_the_field(fn, path):
    with pytest.raises(SpecError) as info:
        load_pipeline(mutate(fn))
    text = str(info.value)
    assert "\n" not in text
    assert any(p.path == path for p in info.value.problems), text
    assert f"{path}:" in text and "fix:" in text


def test_valid_spec_and_examples_load():
    p = load_pipeline(copy.deepcopy(VALID))
    assert [s.items for s in p.stages] == [1024, 128]
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert len(examples) >= 9
    for path in examples:
        spec = load_pipeline(path)
        assert spec.stages[0].items == 4096


def test_yaml_errors_are_one_line(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\nkind: pipeline\nstages: [\n")
    with pytest.raises(SpecError, match="malformed YAML at line"):
        load_pipeline(bad)
