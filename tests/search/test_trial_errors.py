"""An unexpected error while pricing one design (a plugin target, TVM, a numerical fault) fails
that design's trial with an ``error: <type>: <message>`` reason; the study goes on and writes
its outputs. Errors about the whole run still stop it. The evaluator is patched to raise for
every design that uses ``rm-large``, as a broken plugin target's cost function would."""

from __future__ import annotations

import csv
import json

import pytest
from test_run_controls import RUN as CONTROLS_RUN  # tests/search is on sys.path (pytest)

import codesign.evaluate as ev
from codesign.config import parse_run_config
from codesign.errors import CodesignError
from codesign.search.space import InfeasibleDesign, design_from, evaluate_designs
from codesign.search.study import run_study

# the run-controls tests' small config, under its own name
RUN = {**CONTROLS_RUN, "name": "trial-errors"}

STAGE = {
    "name": "stage1",
    "target": "cpu/cascadelake",
    "items": 1024,
    "knobs": {"cores": 1},
}

REASON = "error: ZeroDivisionError: broken kernel for rm-large"


@pytest.fixture
def broken_large(monkeypatch):
    """The evaluator raises for any batch holding a design that uses rm-large."""
    real = ev.evaluate_batch

    def evaluate_batch(designs, context):
        if any(st.model == "rm-large" for d in designs for st in d.stages):
            raise ZeroDivisionError("broken kernel\nfor rm-large")
        return real(designs, context)

    monkeypatch.setattr(ev, "evaluate_batch", evaluate_batch)


def cfg():
    return parse_run_config(json.loads(json.dumps(RUN)), origin="trial-errors")


def _uses_large(trial_row):
    return "rm-large" in trial_row["design"]


def test_a_design_that_raises_fails_its_trial_and_the_study_goes_on(tmp_path, broken_large):
    result = run_study(cfg(), run_dir=tmp_path)
    assert result.finished == 12
    with (tmp_path / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12
    broken = [r for r in rows if _uses_large(r)]
    fine = [r for r in rows if not _uses_large(r)]
    assert broken and fine
    assert all(r["state"] == "FAIL" and r["infeasible_reason"] == REASON for r in broken)
    assert all(r["state"] == "COMPLETE" and r["infeasible_reason"] == "" for r in fine)
    assert result.feasible == len(fine)  # the run summary counts the others as infeasible
    assert result.front and list((tmp_path / "plans").glob("plan-*.json"))
    assert (tmp_path / "report.html").is_file()


def test_a_raising_batch_is_priced_one_by_one(broken_large):
    """Only the designs that raise come back failed; the others in the batch are priced."""
    c = cfg()
    designs = [
        design_from([{**STAGE, "model": model, "engines": engines}], {}, c)
        for model, engines in (("rm-small", 1), ("rm-large", 1), ("rm-small", 2))
    ]
    results = evaluate_designs(designs, c)
    assert isinstance(results[1], InfeasibleDesign) and str(results[1]) == REASON
    assert not isinstance(results[0], InfeasibleDesign)
    assert not isinstance(results[2], InfeasibleDesign)


@pytest.mark.parametrize("error", [CodesignError("calibration file missing"), MemoryError()])
def test_errors_about_the_whole_run_stop_it(tmp_path, monkeypatch, error):
    def evaluate_batch(designs, context):
        raise error

    monkeypatch.setattr(ev, "evaluate_batch", evaluate_batch)
    with pytest.raises(type(error)):
        run_study(cfg(), run_dir=tmp_path)
