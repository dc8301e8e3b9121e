"""The quality cache (atomic entries, invalid entries are misses), quality tables (the shipped
RecPipe tables, CSV import, funnel lookups, interpolation as estimates) and the classification
metrics."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from codesign.quality.cache import ENV_VAR, QualityCache, cache_root, entry_key
from codesign.quality.errors import QualityError, QualityTableError
from codesign.quality.metrics import accuracy, auc, classification_metrics, logloss
from codesign.quality.tables import load_csv, parse_csv, recpipe_criteo_table, to_csv

# --- cache --------------------------------------------------------------------------------------


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert cache_root() == tmp_path / ".codesign-cache"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert QualityCache().dir == tmp_path / "env" / "quality"


def put(cache, model="rm-small", key="k1", n=10):
    return cache.put(
        "d1",
        model,
        key,
        scores=np.linspace(0, 1, n),
        labels=np.arange(n) % 2,
        meta={"model": model, "metrics": {"auc": 0.5}},
        dataset={"kind": "synthetic"},
    )


def test_cache_round_trip_and_invalid_entries_are_misses(tmp_path):
    cache = QualityCache(tmp_path)
    entry = put(cache)
    assert json.loads((tmp_path / "quality" / "d1" / "dataset.json").read_text())["kind"]
    got = cache.get("d1", "rm-small", "k1", check=True)
    assert got is not None and got.meta["metrics"] == {"auc": 0.5}
    scores, labels = got.load()
    assert scores.dtype == np.float32 and np.allclose(scores, np.linspace(0, 1, 10))
    assert labels.tolist() == [0, 1] * 5
    assert cache.get("d1", "rm-small", "other") is None
    assert [e.model for e in cache.entries()] == ["rm-small"]
    assert not list(tmp_path.rglob("*.tmp"))
    # a truncated .npz: its size no longer matches the metadata
    data = entry.npz_path.read_bytes()
    entry.npz_path.write_bytes(data[:100])
    assert cache.get("d1", "rm-small", "k1") is None
    # same size but garbage: found by check=True, and load() says what to do
    entry.npz_path.write_bytes(b"x" * len(data))
    assert cache.get("d1", "rm-small", "k1") is not None
    assert cache.get("d1", "rm-small", "k1", check=True) is None
    with pytest.raises(QualityError, match="cannot be read; delete it"):
        got.load()
    # metadata missing or corrupt: no entry
    put(cache)
    entry.json_path.write_text("{not json")
    assert cache.get("d1", "rm-small", "k1") is None
    entry.json_path.unlink()
    assert cache.get("d1", "rm-small", "k1") is None and cache.entries() == []


def test_unwritable_cache_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(QualityError, match="cannot write the quality cache") as info:
        put(QualityCache(blocker))
    assert "\n" not in str(info.value)


def test_entry_keys_depend_on_everything():
    base = entry_key("d", "s", {"seed": 0})
    assert base == entry_key("d", "s", {"seed": 0})
    assert len({base, entry_key("e", "s", {"seed": 0}), entry_key("d", "t", {"seed": 0}),
                entry_key("d", "s", {"seed": 1})}) == 4  # fmt: skip


# --- tables -------------------------------------------------------------------------------------


def test_shipped_recpipe_table():
    table = recpipe_criteo_table()
    assert len(table) == 3 * 5 * 5 + 4 + 9  # figure3 + figure13 + figure7_8's funnels
    assert table.models() == ["rm-large", "rm-med", "rm-small"]
    row = table.lookup("rm-large", 4096, 64, "ndcg_recpipe")
    assert (row.value, row.estimate) == (0.9247, False)  # BACKGROUND §1.5: 92.47
    assert "figure3.out" in row.source
    assert table.lookup("rm-small", 256, 4, "ndcg_recpipe").value == 0.8963
    assert table.lookup("rm-large", 12288, 64, "ndcg_recpipe").value == 0.9657
    assert not any(r.estimate for r in table.rows)
    # quality rises with the pool, for every model and k (RecPipe's finding)
    for model, k in itertools.product(table.models(), (4, 8, 16, 32, 64)):
        values = [table.lookup(model, n, k, "ndcg_recpipe").value for n in (256, 512, 1024, 2048)]
        assert values == sorted(values)


def test_interpolation_is_an_estimate_and_no_extrapolation():
    table = recpipe_criteo_table()
    row = table.lookup("rm-large", 2896, 64, "ndcg_recpipe")  # ~ halfway in log2
    lo, hi = 0.8799, 0.9247
    assert row.estimate and lo < row.value < hi
    t = (np.log2(2896) - 11) / 1
    assert row.value == pytest.approx(lo + t * (hi - lo))
    assert "interpolated" in row.source
    with pytest.raises(QualityTableError, match="outside the measured 256..4096"):
        table.lookup("rm-small", 8192, 64, "ndcg_recpipe")
    with pytest.raises(QualityTableError, match="no hr@64 of rm-small"):
        table.lookup("rm-small", 1024, 64, "hr")


# --- funnels -------------------------------------------------------------------------------------

S_L = [("rm-small", 4096, 128), ("rm-large", 128, 64)]


def _funnel(models, pools, keep=64):
    return [
        (m, p, pools[i + 1] if i + 1 < len(pools) else keep)
        for i, (m, p) in enumerate(zip(models, pools, strict=True))
    ]


def test_shipped_funnel_rows_follow_the_funnel():
    """RecPipe's multi-stage rows (BACKGROUND §1.5, figure7_8_kaggle{1,2,3}.out, NDCG@64)."""
    table = recpipe_criteo_table()
    row = table.lookup_funnel(S_L, 64, "ndcg_recpipe")
    assert (row.value, row.estimate, row.pools) == (0.9240, False, (4096, 128))  # 92.40
    assert "figure7_8_kaggle" in row.source and row.funnel == "rm-small>rm-large 4096>128"
    smlarge = _funnel(["rm-small", "rm-med", "rm-large"], [4096, 512, 128])
    assert table.lookup_funnel(smlarge, 64, "ndcg_recpipe").value == 0.9251  # 92.51
    # each funnel its own row, not its last model at the stage-1 pool (rm-large at 4096: 0.9247)
    assert row.value != table.lookup("rm-large", 4096, 64, "ndcg_recpipe").value
    mlarge = _funnel(["rm-med", "rm-large"], [512, 128])
    assert table.lookup_funnel(mlarge, 64, "ndcg_recpipe").value == 0.7266
    # one stage: the single-stage row; a model re-ranking its own survivors is one stage
    assert table.lookup_funnel([("rm-large", 4096, 64)], 64, "ndcg_recpipe").value == 0.9247
    same = _funnel(["rm-large", "rm-large"], [4096, 128])
    assert table.lookup_funnel(same, 64, "ndcg_recpipe").value == 0.9247


def test_funnel_interpolation_between_bracketing_rows_is_an_estimate():
    table = recpipe_criteo_table()
    # stage 2's pool 256 between the measured 4096>128 (0.9240) and 4096>512 (0.9246):
    # t = (log2 256 - log2 128) / (log2 512 - log2 128) = 1/2 -> 0.9240 + 0.0006 / 2
    row = table.lookup_funnel(_funnel(["rm-small", "rm-large"], [4096, 256]), 64, "ndcg_recpipe")
    assert row.estimate and row.value == pytest.approx(0.9243, abs=1e-12)
    assert row.pools == (4096, 256) and row.model == "rm-small>rm-large"
    assert "between rm-small>rm-large 4096>128 and rm-small>rm-large 4096>512" in row.source
    # stage 1's pool 2896 between 2048>128 (0.8795) and 4096>128 (0.9240), linear in log2
    row = table.lookup_funnel(_funnel(["rm-small", "rm-large"], [2896, 128]), 64, "ndcg_recpipe")
    t = math.log2(2896) - 11  # log2 2048 = 11, log2 4096 = 12
    assert row.estimate and row.value == pytest.approx(0.8795 + t * (0.9240 - 0.8795))
    assert "stage 1's pool" in row.source


def test_funnel_interpolation_in_a_user_table(tmp_path):
    """Three stages, interpolated along the middle pool only: 0.6 + (log2 400 - log2 200) /
    (log2 800 - log2 200) x (0.8 - 0.6) = 0.6 + 0.5 x 0.2 = 0.7."""
    path = tmp_path / "funnels.csv"
    path.write_text(
        "model,items,k,metric,value\n"
        "a>b>c,1000>200>20,10,hr,0.6\n"
        "a > b > c,1000>800>20,10,hr,0.8\n"
        "a>b>c,500>400>20,10,hr,0.1\n"  # differs in two pools: never a neighbour
    )
    table = load_csv(path)
    row = table.lookup_funnel(_funnel(["a", "b", "c"], [1000, 400, 20], 10), 10, "hr")
    assert row.estimate and row.value == pytest.approx(0.7)
    with pytest.raises(QualityTableError, match="funnel a>b>c 1000>400>40"):
        table.lookup_funnel(_funnel(["a", "b", "c"], [1000, 400, 40], 10), 10, "hr")
    assert parse_csv(to_csv(table.rows)).rows == table.rows


def test_a_funnel_without_rows_names_itself_and_the_fix():
    table = recpipe_criteo_table()
    funnel = _funnel(["rm-small", "rm-large"], [4096, 1024])  # above every measured 2nd pool
    with pytest.raises(QualityTableError) as info:
        table.lookup_funnel(funnel, 64, "ndcg_recpipe")
    message = str(info.value)
    assert "funnel rm-small>rm-large 4096>1024" in message
    assert "4096>512, 4096>128" in message  # what the table has for these models
    assert 'source = "replay"' in message and "add a measured row" in message
    assert "\n" not in message
    with pytest.raises(QualityTableError, match="funnel rm-large>rm-small 4096>128"):
        table.lookup_funnel(_funnel(["rm-large", "rm-small"], [4096, 128]), 64, "ndcg_recpipe")
    with pytest.raises(QualityTableError, match=r"does not extrapolate \(fix: add a measured"):
        table.lookup_funnel([("rm-small", 8192, 64)], 64, "ndcg_recpipe")


def test_csv_import(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text(
        "# my measurements\nmodel,items,k,metric,value\nmine,100,10,hr,0.5\n\nmine,400,10,hr,0.7\n"
    )
    table = load_csv(path)
    assert [r.value for r in table.rows] == [0.5, 0.7]
    assert table.lookup("mine", 200, 10, "hr").value == pytest.approx(0.6)
    again = parse_csv(to_csv(table.rows))
    assert again.rows == table.rows


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no rows"),
        ("model,items,k,value\n", "header lacks metric"),
        ("model,items,k,metric,value,extra\n", "unknown column 'extra'"),
        ("model,items,k,metric,value\n# c\nm,100,10,ndcg_recpipe,92.47\n", "line 3: value 92.47 "
         r"is not in \[0, 1\] \(values are fractions: write 0.9247"),
        ("model,items,k,metric,value\nm,100,10,map,0.5\n", "line 2: unknown metric 'map'"),
        ("model,items,k,metric,value\nm,1e2,10,hr,0.5\n", "line 2: items and k must be integers"),
        ("model,items,k,metric,value\nm,10,20,hr,0.5\n", r"line 2: need items >= 1 and 1 <= k"),
        ("model,items,k,metric,value\nm,10,2,hr\n", "line 2: 4 fields for 5 columns"),
        ("model,items,k,metric,value,estimate\nm,10,2,hr,0.1,maybe\n", "estimate must be true"),
        ("model,items,k,metric,value\nm,10,2,hr,0.1\nm,10,2,hr,0.2\n", "line 3: duplicate row"),
        ("model,items,k,metric,value\na>b,400,10,hr,0.5\n", r"line 2: 2 model\(s\) a>b but 1 "
         r"pool\(s\) 400 \(write one pool per stage"),
        ("model,items,k,metric,value\na,400>100,10,hr,0.5\n", r"line 2: 1 model\(s\) a but 2"),
        ("model,items,k,metric,value\na>b,400>400,10,hr,0.5\n", "pools 400>400 must strictly "
         "decrease"),
        ("model,items,k,metric,value\na>b,100>400,10,hr,0.5\n", "must strictly decrease"),
        ("model,items,k,metric,value\na>b,400>8,10,hr,0.5\n", r"line 2: need 1 <= k <= the "
         r"last pool \(8\)"),
        ("model,items,k,metric,value\na>,400>100,10,hr,0.5\n", "model 'a>' has an empty stage"),
        ("model,items,k,metric,value\na>b,400>x,10,hr,0.5\n", "items and k must be integers "
         r"\(a funnel's items: pools joined by '>'"),
        ("model,items,k,metric,value\na>b,400>100,10,hr,0.5\na>b,400>100,10,hr,0.6\n",
         "line 3: duplicate row for hr@10 of a>b at 400>100"),
    ],
)  # fmt: skip
def test_malformed_tables_name_the_line(text, message):
    with pytest.raises(QualityTableError, match=message) as info:
        parse_csv(text, origin="q.csv")
    assert "\n" not in str(info.value)


def test_missing_table_file(tmp_path):
    with pytest.raises(QualityTableError, match="not found"):
        load_csv(tmp_path / "none.csv")


# --- metrics ------------------------------------------------------------------------------------


def test_auc_matches_pairwise_counting_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 5, 40).astype(float)
        labels = (rng.random(40) < 0.4).astype(float)
        pos, neg = scores[labels == 1], scores[labels == 0]
        if not len(pos) or not len(neg):
            continue
        pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        assert auc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert np.isnan(auc([0.1, 0.2], [1, 1]))


def test_accuracy_and_logloss():
    scores, labels = np.array([0.9, 0.2, 0.6, 0.4]), np.array([1, 0, 0, 1])
    assert accuracy(scores, labels) == 0.5
    want = -np.mean(np.log([0.9, 0.8, 0.4, 0.4]))
    assert logloss(scores, labels) == pytest.approx(want)
    assert set(classification_metrics(scores, labels)) == {"auc", "accuracy", "logloss"}
    with pytest.raises(QualityError, match="one length"):
        auc([0.1], [1, 0])


def test_logloss_clips_and_takes_soft_labels():
    """Binary cross-entropy by its formula: scores of exactly 0 or 1 are clipped to 1e-7 from
    the edge, and soft labels weigh both terms."""
    scores, labels = np.array([1.0, 0.0, 0.3]), np.array([0.0, 0.0, 0.25])
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    want = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert logloss(scores, labels) == pytest.approx(want, rel=1e-9)
    assert logloss([0.5, 0.5], [1, 1]) == pytest.approx(np.log(2))
