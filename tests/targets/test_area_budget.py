"""A fixed area budget every design must fit (issue 12, Deliver 5): RPAccel's chip knob
``area_budget_mm2`` leaves the chip's partitions the area its SRAM does not take, repair shrinks
stages into it, and a design over it is unbuildable."""

from __future__ import annotations

import pytest

from codesign.config import parse_run_config
from codesign.plugins import load_target
from codesign.search.space import InfeasibleDesign, enumerate_designs, evaluate_designs

TARGET = "accel/rpaccel"


def test_the_whole_chip_fits_a_budget_of_exactly_its_area():
    """One partition configured as the whole chip costs exactly ``hw_cost``; with that as the
    budget, its logic uses exactly the logic area the budget leaves."""
    tgt = load_target(TARGET)
    space = tgt.design_space()
    whole = space.resolve({})
    area = tgt.hw_cost(whole).area_mm2
    chip = space.resolve({"area_budget_mm2": area})
    left = tgt.capacity(chip)["logic_area_mm2"]
    assert tgt.resources(whole)["logic_area_mm2"] == pytest.approx(left, rel=1e-12)
    # and without a budget there is no area capacity to fit
    assert "logic_area_mm2" not in tgt.capacity(whole)


RUN = {
    "version": 1,
    "kind": "run",
    "name": "area",
    "workload": {"models": ["rm-small", "rm-large"], "candidates": 1024, "keep": 64, "qps": 50},
    "quality": {"metric": "ndcg_recpipe@64", "source": "table"},
    "space": {
        "max_stages": 1,
        "targets": [TARGET],
        "engines": [1, 4],
        "hw": {
            TARGET: {
                "pe_budget": 65536,
                "embedding_sram_budget_bytes": 2**22,
                "area_budget_mm2": 20.0,
                "rows": [32, 64, 128],
                "cols": [64, 128],
                "topk_units": [64, 1024],
                "sub_batch": 0,
                "static_cache_bytes": 0,
                "dynamic_cache_bytes": 2**20,
                "clock_hz": 125e6,
            }
        },
    },
    "objectives": {"names": ["p95_latency_s", "area_mm2"]},
    "search": {"trials": 10, "strategy": "two-level"},
}


def test_every_design_of_a_search_fits_the_area_budget():
    cfg = parse_run_config(RUN, origin="area")
    designs = list(enumerate_designs(cfg))
    results = evaluate_designs(designs, cfg)
    priced = [r for r in results if not isinstance(r, InfeasibleDesign)]
    # repair shrinks every proposal into the budget: all buildable, none over it
    assert len(priced) == len(designs) > 10
    areas = [r.metrics["area_mm2"] for r in priced]
    assert max(areas) <= 20.0 * (1 + 1e-9)
    # the budget binds: four 128x128 partitions (the largest proposal) would take more
    tgt = load_target(TARGET)
    point = tgt.design_space().resolve({"rows": 128, "cols": 128})
    assert 4 * tgt.resources(point)["logic_area_mm2"] > 20.0


def test_a_design_over_the_area_budget_is_unbuildable_and_says_why():
    from codesign import evaluate as ev
    from codesign.design import LoadSettings, Pipeline, Stage

    pipeline = Pipeline(
        name="over",
        stages=(
            Stage(
                name="s1",
                model="rm-small",
                target=TARGET,
                items=1024,
                keep=64,
                engines=4,
                knobs={"rows": 128, "cols": 128},
            ),
        ),
        load=LoadSettings(),
        chips=((TARGET, {"pe_budget": 65536, "area_budget_mm2": 20.0}),),
    )
    with pytest.raises(ev.Unbuildable, match="logic_area_mm2"):
        ev.place(pipeline)
