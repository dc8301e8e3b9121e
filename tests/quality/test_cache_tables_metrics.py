"""The quality cache (atomic entries, invalid entries are misses), quality tables (the shipped
RecPipe table, CSV import, interpolation as estimates) and the classification metrics."""

from __future__ import annotations

import itertools
import json

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
    assert len(table) == 3 * 5 * 5 + 4
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
