"""Resuming a two-level run (issue 12): the trial count grows, no trial is lost or repeated,
and no hardware point is searched exactly twice (the rounds are recorded in the study)."""

from __future__ import annotations

import optuna

from codesign.config import parse_run_config
from codesign.search.study import run_study
from codesign.search.two_level import outer_rounds

RUN = {
    "version": 1,
    "kind": "run",
    "name": "resume",
    "workload": {
        "models": ["rm-small"],
        "candidates": 1024,
        "keep": 64,
        "qps": 100,
        "queries": 300,
        "warmup": 50,
    },
    "quality": {"metric": "ndcg_recpipe@64", "source": "table"},
    "space": {
        "max_stages": 1,
        "targets": ["accel/rpaccel"],
        "engines": [1, 2],
        "hw": {
            "accel/rpaccel": {
                "pe_budget": [4096, 16384, 65536],
                "rows": [32, 128],
                "cols": 128,
                "sub_batch": 0,
                "static_cache_bytes": 0,
                "dynamic_cache_bytes": 2**20,
                "topk_units": 64,
                "embedding_sram_budget_bytes": 2**22,
                "clock_hz": 125e6,
            }
        },
    },
    "objectives": {"names": ["p95_latency_s", "power_w"]},
    "constraints": {"sla_ms": 50},
    "search": {"trials": 3, "strategy": "two-level", "seed": 0},
}


def cfg(trials: int):
    data = {**RUN, "search": {**RUN["search"], "trials": trials}}
    return parse_run_config(data, origin="resume")


def test_two_level_resume_grows_without_losing_or_repeating(tmp_path):
    first = run_study(cfg(3), run_dir=tmp_path, write_outputs_after=False)
    assert first.finished == 3
    study = optuna.load_study(study_name="resume", storage=first.storage)
    before = {t.number: t.params for t in study.trials}
    rounds_before = len(outer_rounds(study))
    # the budget cut the first point's front short: the resumed run has to finish it
    assert outer_rounds(study)[0]["pending"] > 0
    second = run_study(cfg(40), run_dir=tmp_path, write_outputs_after=False)
    study = optuna.load_study(study_name="resume", storage=second.storage)
    after = {t.number: t.params for t in study.trials}
    assert second.finished > first.finished
    assert all(after[n] == p for n, p in before.items())  # nothing lost or rewritten
    keys = [t.user_attrs["result"]["design_key"] for t in study.trials if "result" in t.user_attrs]
    assert len(keys) == len(set(keys))  # no design told twice
    rounds = outer_rounds(study)
    assert len(rounds) > rounds_before
    exact = [tuple(sorted(r["hw"].items())) for r in rounds if r["inner"].startswith("exact")]
    assert len(exact) == len(set(exact)) == 3  # every point searched exactly, once
    assert second.finished < 40  # then the run stops: the front is complete
    # the interrupted run ends with the same designs as one that was never interrupted
    fresh = run_study(cfg(40), run_dir=tmp_path / "fresh", write_outputs_after=False)
    fresh_study = optuna.load_study(study_name="resume", storage=fresh.storage)
    fresh_keys = {t.user_attrs["result"]["design_key"] for t in fresh_study.trials}
    assert set(keys) == fresh_keys


def test_exact_front_designs_are_priced_once(tmp_path, monkeypatch):
    """The exact inner loop prices every design of a hardware point in one batch; the trials of
    the front designs it enqueues read those metrics instead of pricing the design again."""
    from codesign.search import space

    calls = []
    original = space.evaluate_design

    def counting(design, cfg):
        calls.append(design)
        return original(design, cfg)

    monkeypatch.setattr(space, "evaluate_design", counting)
    result = run_study(cfg(40), run_dir=tmp_path, write_outputs_after=False)
    assert result.finished > 0 and result.evaluated == result.finished
    assert calls == []
