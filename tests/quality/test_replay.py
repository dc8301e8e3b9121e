"""Funnel replay: hand-checked metrics, stage/metric validation, and a property test against a
brute-force per-query reference (ties included)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codesign.quality.errors import FunnelError
from codesign.quality.replay import (
    METHODS,
    METRICS,
    Metric,
    Replayer,
    Stage,
    parse_metric,
    parse_metrics,
    parse_stages,
    replay,
)


def brute_force(scores, labels, stages, metrics, queries):
    """The definition, one query at a time: sort by (score descending, sample index), keep."""
    items = stages[0].items
    totals = {str(m): 0.0 for m in metrics}
    for q in range(queries):
        pool = list(range(q * items, (q + 1) * items))
        cand = pool
        for stage in stages:
            s = scores[stage.model]
            cand = sorted(cand, key=lambda i: (-float(s[i]), i))[: stage.keep]
        top = [float(labels[i]) for i in cand]
        positives = int(sum(labels[i] for i in pool))
        for m in metrics:
            head = top[: m.k]
            dcg = sum(y / math.log2(i + 2) for i, y in enumerate(head))
            if m.name == "ndcg_recpipe":
                value = dcg / sum(1 / math.log2(i + 2) for i in range(m.k))
            elif m.name == "ndcg":
                ideal = sum(1 / math.log2(i + 2) for i in range(min(positives, m.k)))
                value = dcg / ideal if ideal else 0.0
            elif m.name == "hr":
                value = float(any(head))
            else:
                value = sum(head) / m.k
            totals[str(m)] += value
    return {k: v / queries for k, v in totals.items()}


@st.composite
def funnels(draw):
    n_models = draw(st.integers(1, 3))
    n_stages = draw(st.integers(1, 3))
    keeps = sorted(draw(st.lists(st.integers(1, 40), min_size=n_stages, max_size=n_stages)))
    items1 = draw(st.integers(keeps[-1], 48))
    sizes = [items1, *reversed(keeps)]  # ranked counts shrink stage by stage
    stages = [
        Stage(f"m{draw(st.integers(0, n_models - 1))}", sizes[i], sizes[i + 1])
        for i in range(n_stages)
    ]
    queries = draw(st.integers(1, 6))
    extra = draw(st.integers(0, items1 - 1))
    n = queries * items1 + extra
    ties = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    make = (
        (lambda: rng.integers(0, 4, n).astype(np.float32))
        if ties
        else (lambda: rng.standard_normal(n).astype(np.float32))
    )
    scores = {f"m{i}": make() for i in range(n_models)}
    labels = (rng.random(n) < draw(st.floats(0.0, 1.0))).astype(np.float64)
    ks = draw(st.lists(st.integers(1, stages[-1].keep), min_size=1, max_size=3, unique=True))
    metrics = [Metric(name, k) for name in METRICS for k in ks]
    use_all = draw(st.booleans())
    return scores, labels, stages, metrics, None if use_all else queries, queries


@settings(max_examples=300, deadline=None)
@given(funnels())
def test_replay_equals_brute_force(case):
    scores, labels, stages, metrics, queries, q = case
    want = brute_force(scores, labels, stages, metrics, queries or len(labels) // stages[0].items)
    for method in METHODS:  # both selection algorithms, and the automatic choice
        replayer = Replayer(scores, labels, method=method)
        got = replayer.evaluate(stages, metrics, queries=queries)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12), (method, key)


def test_hand_checked_metrics():
    # one query of 4; model ranks samples 3, 1, 0, 2 (scores descending)
    scores = {"a": np.array([0.5, 0.7, 0.1, 0.9])}
    labels = np.array([1, 0, 0, 1])
    got = replay(scores, labels, "a:4>2", ["ndcg_recpipe@2", "ndcg@2", "hr@2", "precision@2"])
    d = 1 / math.log2(3)
    assert got["ndcg_recpipe@2"] == pytest.approx(1 / (1 + d))  # labels of top 2: [1, 0]
    assert got["ndcg@2"] == pytest.approx(1 / (1 + d))  # 2 positives in the pool: ideal 1 + d
    assert got["hr@2"] == 1.0 and got["precision@2"] == 0.5
    # textbook NDCG with one positive in the pool: ideal is 1, so NDCG = DCG
    got = replay({"a": np.array([0.9, 0.8, 0.7, 0.1])}, [0, 1, 0, 0], "a:4>4", ["ndcg@4"])
    assert got["ndcg@4"] == pytest.approx(d)
    assert replay(scores, [0, 0, 0, 0], "a:4>2", ["ndcg@2"])["ndcg@2"] == 0.0


def test_two_stages_rerank_the_survivors_and_pools_are_consecutive():
    s1 = np.array([4, 3, 2, 1, 1, 2, 3, 4], dtype=float)  # keeps samples 0,1 | 7,6
    s2 = np.array([1, 2, 0, 0, 0, 0, 2, 1], dtype=float)  # final order: 1,0 | 6,7
    labels = np.array([0, 1, 1, 1, 1, 1, 0, 1])
    replayer = Replayer({"s": s1, "l": s2}, labels)
    ranking = replayer.ranking(parse_stages("s:4>2,l:2>1"))
    assert ranking.tolist() == [[1], [6]]  # sample indices; query 1's pool is samples 4..7
    got = replayer.evaluate(parse_stages("s:4>2,l:2>1"), ["precision@1"])
    assert got["precision@1"] == 0.5


def test_ties_go_to_the_earlier_sample():
    replayer = Replayer({"a": np.zeros(6)}, [0, 1, 0, 1, 1, 0])
    assert replayer.ranking(parse_stages("a:3>2")).tolist() == [[0, 1], [3, 4]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no stages given"),
        ("rm-small", r"stage 1 'rm-small': expected MODEL:ITEMS>KEEP"),
        ("rm-small:4096-512", "expected MODEL:ITEMS>KEEP"),
        ("rm-small:4096>0", "keep must be a positive integer"),
        ("rm-small:4k>512", "items must be a positive integer"),
        ("rm-small:512>4096", r"stage 1 \(rm-small:512>4096\) keeps 4096 of 512 items"),
        (
            "rm-small:4096>512,rm-large:256>64",
            r"stage 2 \(rm-large:256>64\) ranks 256 items but stage 1 keeps 512",
        ),
    ],
)
def test_bad_stage_strings_are_one_line_errors(text, message):
    with pytest.raises(FunnelError, match=message) as info:
        parse_stages(text)
    assert "\n" not in str(info.value)


def test_stage_strings_parse_with_spaces_and_paths():
    assert parse_stages(" rm-small : 4096 > 512 , rm-large:512>64") == (
        Stage("rm-small", 4096, 512),
        Stage("rm-large", 512, 64),
    )
    assert parse_stages("dir/my:model.yaml:100>10")[0].model == "dir/my:model.yaml"


def test_metric_parsing_and_k_bounds():
    assert parse_metric("NDCG_RecPipe@64") == Metric("ndcg_recpipe", 64)
    assert parse_metrics(["ndcg@8,hr@8", "hr@8"]) == [Metric("ndcg", 8), Metric("hr", 8)]
    for bad in ("ndcg64", "map@4", "ndcg@0", "ndcg@x"):
        with pytest.raises(FunnelError):
            parse_metric(bad)
    with pytest.raises(FunnelError, match=r"metric ndcg_recpipe@64 needs k <= 32"):
        replay({"a": np.zeros(64)}, np.zeros(64), "a:64>32", ["ndcg_recpipe@64"])


def test_query_counts_and_fixed_pools():
    labels = np.zeros(100)
    replayer = Replayer({"a": np.arange(100.0)}, labels)
    with pytest.raises(FunnelError, match="holds only 100 samples"):
        replayer.evaluate(parse_stages("a:128>8"), ["hr@8"])
    with pytest.raises(FunnelError, match="at most 3 queries"):
        replayer.evaluate(parse_stages("a:32>8"), ["hr@8"], queries=4)
    assert replayer.queries_for(parse_stages("a:32>8")) == 3
    fixed = Replayer({"a": np.arange(100.0)}, labels, query_size=50)
    with pytest.raises(FunnelError, match="pools of 50 candidates"):
        fixed.evaluate(parse_stages("a:25>8"), ["hr@8"])
    assert fixed.queries_for(parse_stages("a:50>8")) == 2


def test_bad_inputs():
    with pytest.raises(FunnelError, match="labels must be 0 or 1"):
        Replayer({"a": np.zeros(3)}, [0, 2, 1])
    with pytest.raises(FunnelError, match="has 2 scores for 3 labels"):
        Replayer({"a": np.zeros(2)}, [0, 1, 1])
    with pytest.raises(FunnelError, match="non-finite"):
        Replayer({"a": np.array([0, np.nan, 1])}, [0, 1, 1])
    with pytest.raises(FunnelError, match="unknown replay method"):
        Replayer({"a": np.zeros(3)}, [0, 1, 1], method="fast")
    with pytest.raises(FunnelError, match="model 'b' has no scores"):
        replay({"a": np.zeros(4)}, np.zeros(4), "b:4>2", ["hr@1"])


@pytest.mark.parametrize("correlation", [1.0, 0.0, -1.0])
def test_larger_pools_all_methods_match_brute_force(correlation):
    """Pools of 300: the prefix walk has to grow (anti-correlated models drop the best items of
    the next stage), and the partition path gathers survivors' ranks in stage 3."""
    rng = np.random.default_rng(7)
    n = 4 * 300
    base = rng.standard_normal(n)
    scores = {
        "a": base.astype(np.float32),
        "b": (correlation * base + rng.standard_normal(n)).astype(np.float32),
        "c": np.round(correlation * base + rng.standard_normal(n), 1).astype(np.float32),
    }
    labels = (rng.random(n) < 0.3).astype(float)
    metrics = [Metric(name, k) for name in METRICS for k in (1, 7, 20)]
    for text in (
        "a:300>40,b:40>20",
        "a:300>150,b:150>60,c:60>20",
        "a:300>20,c:20>20",
        "c:300>299,b:299>100,a:100>37,c:37>20",
    ):
        stages = parse_stages(text)
        want = brute_force(scores, labels, stages, metrics, 4)
        for method in METHODS:
            got = Replayer(scores, labels, method=method).evaluate(stages, metrics)
            for key in want:
                assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12), (text, method)


def test_added_scores_replace_a_model_and_its_orders():
    replayer = Replayer({"a": np.arange(4.0)}, [1, 0, 0, 0])
    assert replayer.evaluate(parse_stages("a:4>1"), ["hr@1"])["hr@1"] == 0.0
    replayer.add("a", -np.arange(4.0))
    assert replayer.evaluate(parse_stages("a:4>1"), ["hr@1"])["hr@1"] == 1.0
    with pytest.raises(FunnelError, match="has 3 scores for 4 labels"):
        replayer.add("b", np.zeros(3))
