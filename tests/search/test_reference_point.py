"""The two-level search's outer loop measures hypervolume from a fixed reference point that the
study records (issue 12), instead of GPSampler's data-dependent one."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from codesign.config import parse_run_config
from codesign.search import two_level
from codesign.search.results import objective_values

RUN = {
    "version": 1,
    "kind": "run",
    "name": "ref",
    "workload": {"models": ["rm-small"], "candidates": 1024, "keep": 64, "qps": 50},
    "quality": {"metric": "ndcg_recpipe@64", "source": "table"},
    "space": {"max_stages": 1, "targets": ["cpu/cascadelake"]},
    "objectives": {"names": ["quality", "p95_latency_s", "power_w"]},
    "constraints": {"sla_ms": 25, "quality_floor": 0.8},
    "search": {"trials": 10, "strategy": "two-level"},
}


def cfg(**changes):
    data = json.loads(json.dumps(RUN))
    for section, values in changes.items():
        data[section] = values
    return parse_run_config(data, origin="ref")


def test_reference_point_is_the_runs_thresholds_else_the_worst_bound():
    point = two_level.reference_point(cfg())
    # quality at its floor, p95 at the SLA (25 ms), power at its worst bound (10 kW)
    assert point == {"quality": 0.8, "p95_latency_s": 0.025, "power_w": 1e4}
    free = two_level.reference_point(cfg(constraints={}))
    assert free == {"quality": 0.0, "p95_latency_s": 10.0, "power_w": 1e4}


def test_reference_point_is_recorded_once_and_read_back():
    c = cfg()
    study = optuna.create_study(directions=c.directions())
    assert two_level.recorded_reference_point(study, c) == two_level.reference_point(c)
    assert study.user_attrs["reference_point"] == two_level.reference_point(c)
    # a resumed run keeps the recorded point, even if the code's default changed since
    study.set_user_attr("reference_point", {"quality": 0.5, "p95_latency_s": 0.1, "power_w": 50})
    assert two_level.recorded_reference_point(study, c)["power_w"] == 50.0


def _outer_study(seed: int = 0) -> tuple[optuna.Study, dict]:
    """A 2-objective GP study (both minimised) over two integer knobs with 8 finished trials."""
    dists = {
        "a": optuna.distributions.IntDistribution(0, 7),
        "b": optuna.distributions.IntDistribution(0, 7),
    }
    study = optuna.create_study(
        directions=["minimize", "minimize"],
        sampler=optuna.samplers.GPSampler(seed=seed, n_startup_trials=3),
    )
    rng = np.random.default_rng(seed)
    for _ in range(8):
        a, b = (int(v) for v in rng.integers(0, 8, size=2))
        study.add_trial(
            optuna.trial.create_trial(
                params={"a": a, "b": b},
                distributions=dists,
                values=[0.3 * a + 0.1 * b, 2.0 - 0.2 * a + 0.05 * b * b],
            )
        )
    return study, dists


def test_the_gp_measures_ehvi_from_the_fixed_point(monkeypatch):
    """The reference point handed to log-EHVI's box decomposition is the fixed point mapped into
    GPSampler's standardised space: -(sign * r - mean) / std over the values it was given
    (maximisation sign -1 for minimised objectives), not 10 % beyond the worst value."""
    from optuna._gp import acqf

    study, dists = _outer_study()
    seen = []
    original = acqf._get_non_dominated_box_bounds

    def spy(Y, ref_point):
        seen.append(np.asarray(ref_point, dtype=float).copy())
        return original(Y, ref_point)

    monkeypatch.setattr(acqf, "_get_non_dominated_box_bounds", spy)
    reference = np.array([5.0, 4.0])
    signs = np.array([-1.0, -1.0])
    with two_level._fixed_reference(reference, signs) as active:
        assert active
        study.ask(dists)
    assert seen, "GPSampler did not build an EHVI box decomposition"
    values = np.array([t.values for t in study.trials if t.values is not None])
    signed = signs * values
    expected = -(signs * reference - signed.mean(axis=0)) / signed.std(axis=0)
    np.testing.assert_allclose(seen[-1], expected, rtol=1e-9)
    seen.clear()
    study.ask(dists)  # outside: GPSampler's own point, beyond the worst standardised loss
    losses = -(signed - signed.mean(axis=0)) / signed.std(axis=0)
    assert not np.allclose(seen[-1], expected)
    assert np.all(seen[-1] >= losses.max(axis=0))


def test_reference_point_values_are_searched_in_log_where_the_objective_is():
    c = cfg()
    point = two_level.reference_point(c)
    searched = objective_values(c, point)
    assert searched[0] == 0.8  # quality: linear
    assert searched[1] == pytest.approx(np.log10(0.025))
    assert searched[2] == pytest.approx(4.0)


def test_a_two_level_run_records_its_reference_point(tmp_path):
    from codesign.search.study import run_study

    c = cfg(
        space={
            "max_stages": 1,
            "targets": ["accel/rpaccel"],
            "hw": {"accel/rpaccel": {"pe_budget": [4096, 16384], "rows": [32, 128]}},
        },
        search={"trials": 6, "strategy": "two-level", "seed": 0},
    )
    result = run_study(c, run_dir=tmp_path, write_outputs_after=False)
    study = optuna.load_study(study_name="ref", storage=result.storage)
    assert study.user_attrs["reference_point"] == two_level.reference_point(c)
