"""Datasets: the synthetic generator, and the Criteo / MovieLens loaders on test-written files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from codesign.quality.datasets import (
    DataOptions,
    DatasetRef,
    dataset_key,
    describe,
    load,
    load_criteo,
    load_movielens,
    parse_dataset,
)
from codesign.quality.errors import DatasetError, QualityError
from codesign.quality.synthetic import (
    CRITEO_KAGGLE_CARDINALITIES,
    SyntheticConfig,
    Teacher,
    capped_cardinalities,
)

SMALL = DataOptions(samples=3000, val_samples=1000, max_rows=50, seed=3)


def test_parse_dataset():
    assert parse_dataset("synthetic") == DatasetRef("synthetic")
    ref = parse_dataset("criteo:/data/train.txt")
    assert (ref.kind, str(ref.path), ref.task) == ("criteo", "/data/train.txt", "ctr")
    assert parse_dataset("MovieLens:ml-1m").task == "implicit"
    for bad, msg in [
        ("imagenet", "unknown dataset"),
        ("criteo", "needs a file"),
        ("criteo:", "needs a file"),
        ("synthetic:x", "takes no path"),
    ]:
        with pytest.raises(QualityError, match=msg):
            parse_dataset(bad)


def test_synthetic_is_criteo_shaped_seeded_and_skewed():
    data = load(DatasetRef("synthetic"), SMALL)
    again = load(DatasetRef("synthetic"), SMALL)
    other = load(DatasetRef("synthetic"), DataOptions(**{**SMALL.__dict__, "seed": 4}))
    assert data.train.dense.shape == (3000, 13) and data.train.sparse.shape == (3000, 26)
    assert len(data.validation) == 1000 and data.task == "ctr" and data.query_size is None
    assert data.cardinalities == capped_cardinalities(50)
    assert data.cardinalities[8] == 3 and max(data.cardinalities) == 50
    assert (data.train.sparse < np.array(data.cardinalities)).all() and data.train.sparse.min() >= 0
    assert np.array_equal(data.train.sparse, again.train.sparse)
    assert np.array_equal(data.validation.labels, again.validation.labels)
    assert not np.array_equal(data.train.sparse, other.train.sparse)
    assert set(np.unique(data.train.labels)) == {0.0, 1.0}
    assert 0.2 < data.train.labels.mean() < 0.3  # target positive rate 0.25
    assert (data.train.dense >= 0).all()  # log(1 + counts)
    # Zipf: a 50-row table's most frequent id takes far more than 1/50 of the samples
    counts = np.bincount(data.train.sparse[:, 0], minlength=50)
    assert counts.max() / counts.sum() > 0.1
    assert describe(DatasetRef("synthetic"), SMALL) == data.descriptor
    assert data.key == dataset_key(data.descriptor)
    assert data.key != other.key


def test_synthetic_chunks_do_not_change_the_samples():
    cfg = SyntheticConfig(train_samples=10, val_samples=10, seed=1, cardinalities=(5, 7))
    teacher = Teacher(cfg)
    a = teacher.sample(70_000, stream=1)
    b = teacher.sample(65_536, stream=1)
    assert np.array_equal(a[1][:65_536], b[1])


def test_teacher_ranks_far_better_than_chance():
    cfg = SyntheticConfig(train_samples=1, val_samples=1, seed=0)
    teacher = Teacher(cfg)
    dense, sparse, labels = teacher.sample(20_000, stream=5)
    from codesign.quality.metrics import auc

    assert auc(teacher.probability(dense, sparse), labels) > 0.85
    assert len(CRITEO_KAGGLE_CARDINALITIES) == 26


def test_synthetic_config_validates():
    with pytest.raises(QualityError, match="positive_rate"):
        SyntheticConfig(train_samples=1, val_samples=1, positive_rate=1.5)
    with pytest.raises(QualityError, match="must be >= 1"):
        DataOptions(samples=0)


# --- Criteo -------------------------------------------------------------------------------------


def criteo_line(label, dense, cats):
    return "\t".join([str(label), *map(str, dense), *cats]) + "\n"


def write_criteo(path, n=12):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        dense = ["" if j == 1 else int(rng.integers(-2, 100)) for j in range(13)]
        cats = ["" if j == 2 else f"{int(rng.integers(0, 4)) + 16 * j:08x}" for j in range(26)]
        lines.append(criteo_line(i % 2, dense, cats))
    path.write_text("".join(lines))
    return lines


def test_criteo_loader(tmp_path):
    path = tmp_path / "train.txt"
    lines = write_criteo(path)
    data = load_criteo(path, DataOptions(val_samples=4))
    assert len(data.train) == 8 and len(data.validation) == 4
    first = lines[0].rstrip("\n").split("\t")
    want = [0.0 if not f else math.log1p(max(int(f), 0)) for f in first[1:14]]
    assert np.allclose(data.train.dense[0], want)
    assert data.train.labels.tolist() == [0, 1] * 4
    # id 0 = missing or unseen; column C3 is always missing
    assert (data.train.sparse[:, 2] == 0).all() and data.cardinalities[2] == 1
    assert all(c <= 5 for c in data.cardinalities) and data.dense_features == 13
    assert (data.validation.sparse < np.array(data.cardinalities)).all()
    # hashing mode: id = value mod max_rows
    hashed = load_criteo(path, DataOptions(val_samples=4, max_rows=7))
    assert hashed.cardinalities == (7,) * 26
    assert hashed.train.sparse[0, 0] == int(first[14], 16) % 7
    # --samples reads only samples + val_samples lines
    assert len(load_criteo(path, DataOptions(samples=3, val_samples=2)).train) == 3


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f[:10], r"line 2: expected 40 tab-separated columns .* got 10$"),
        (lambda f: f[1:], r"line 2: .* got 39: no label column \(Kaggle's test.txt"),
        (lambda f: ["2", *f[1:]], r"line 2: label must be 0 or 1, got '2'"),
        (lambda f: [f[0], "x1", *f[2:]], r"line 2: integer feature I1 is not an integer: 'x1'"),
        (lambda f: [*f[:14], "zz", *f[15:]], r"line 2: categorical feature C1 is not hexadecimal"),
    ],
)
def test_criteo_malformed_lines_are_named(tmp_path, mutate, message):
    path = tmp_path / "train.txt"
    lines = write_criteo(path, n=4)
    fields = lines[1].rstrip("\n").split("\t")
    lines[1] = "\t".join(mutate(fields)) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(DatasetError, match=message) as info:
        load_criteo(path, DataOptions(val_samples=1))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_criteo_file_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load(parse_dataset(f"criteo:{tmp_path / 'nope.txt'}"), DataOptions())
    with pytest.raises(DatasetError, match="is a directory"):
        load(parse_dataset(f"criteo:{tmp_path}"), DataOptions())
    path = tmp_path / "train.txt"
    write_criteo(path, n=3)
    with pytest.raises(DatasetError, match="has 3 labelled lines; more than --val-samples 524288"):
        load_criteo(path, DataOptions())
    path.write_bytes(b"\x1f\x8b\x08\x00garbage\xff")
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_criteo(path, DataOptions(val_samples=1))


# --- MovieLens ----------------------------------------------------------------------------------

RATINGS = [  # user, item, rating, time
    (1, 10, 5, 100), (1, 20, 3, 200), (1, 30, 4, 150),
    (2, 10, 4, 50), (2, 40, 2, 60),
    (3, 50, 1, 10),
    (5, 20, 5, 5), (5, 60, 4, 7), (5, 70, 3, 9),
]  # fmt: skip


def write_ratings(tmp_path, kind):
    if kind == "dat":
        path = tmp_path / "ratings.dat"
        path.write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in RATINGS))
    else:
        path = tmp_path / "ratings.csv"
        body = "".join(f"{u},{i},{r}.0,{t}\n" for u, i, r, t in RATINGS)
        path.write_text("userId,movieId,rating,timestamp\n" + body)
    return path


@pytest.mark.parametrize("kind", ["dat", "csv"])
def test_movielens_leave_one_out_pools(tmp_path, kind):
    path = write_ratings(tmp_path, kind)
    data = load_movielens(path, DataOptions(pool_size=4, negatives=2, seed=1))
    assert data.task == "implicit" and data.query_size == 4
    assert data.cardinalities == (4, 7)  # users 1,2,3,5; items 10..70
    val = data.validation
    # users with >= 2 ratings (1, 2, 5) each hold out their latest rating in a pool of 4
    assert len(val) == 12 and val.labels.reshape(3, 4).sum(axis=1).tolist() == [1, 1, 1]
    items = np.array([10, 20, 30, 40, 50, 60, 70])
    held = {0: 20, 1: 40, 3: 70}  # latest item per (renumbered) user
    rated = {0: {10, 20, 30}, 1: {10, 40}, 3: {20, 60, 70}}
    for q in range(3):
        users = val.sparse[q * 4 : (q + 1) * 4, 0]
        assert len(set(users.tolist())) == 1
        user = int(users[0])
        pool = items[val.sparse[q * 4 : (q + 1) * 4, 1]]
        positive = pool[val.labels[q * 4 : (q + 1) * 4] == 1]
        assert positive.tolist() == [held[user]]
        assert not set(pool.tolist()) - {held[user]} & rated[user]  # negatives are unrated
        assert len(set(pool.tolist())) == 4
    train = data.train
    n_pos = len(RATINGS) - 3
    assert len(train) == n_pos * 3 and train.labels.sum() == n_pos
    negs = train.sparse[train.labels == 0]
    for user, item in negs:
        assert int(items[item]) not in rated.get(int(user), set())
    assert train.dense.shape == (len(train), 0)
    # --val-samples limits the held-out users
    assert len(load_movielens(path, DataOptions(pool_size=4, val_samples=8)).validation) == 8
    # a folder holding ratings.dat / ratings.csv works too
    assert len(load(parse_dataset(f"movielens:{tmp_path}"), DataOptions(pool_size=4)).train) > 0


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("1::10::5::100\n1::20::x::200\n", "dat", r"line 2: user, item and timestamp must be"),
        ("1::10::5::100\n1::20::5\n", "dat", r"line 2: expected 4 fields \(UserID::MovieID"),
        ("user,item\n1,10,5,100\n", "csv", r"line 1: expected the header userId,movieId"),
        ("", "dat", "holds no ratings"),
    ],
)
def test_movielens_malformed_files(tmp_path, text, suffix, message):
    path = tmp_path / f"ratings.{suffix}"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message) as info:
        load_movielens(path, DataOptions(pool_size=2))
    assert "\n" not in str(info.value)


def test_movielens_file_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_movielens(tmp_path / "ratings.dat", DataOptions())
    with pytest.raises(DatasetError, match="holds no ratings.dat or ratings.csv"):
        load_movielens(tmp_path, DataOptions())
    other = tmp_path / "ratings.txt"
    other.write_text("1::2::3::4\n")
    with pytest.raises(DatasetError, match=r"expected ratings.dat"):
        load_movielens(other, DataOptions())
    path = write_ratings(tmp_path, "dat")
    with pytest.raises(DatasetError, match="needs at least 1000 items, the file has 7"):
        load_movielens(path, DataOptions())
