"""Datasets for quality measurement: the synthetic Criteo-like generator (the default: no
download) and loaders for user-supplied Criteo Kaggle TSV and MovieLens ratings files.

A :class:`Dataset` holds a training and a validation :class:`Split` of numpy arrays. CTR datasets
(synthetic, Criteo) have 13 dense and 26 categorical columns and any window of consecutive
validation samples can be a query's candidate pool, as in RecPipe. MovieLens is implicit feedback
in the NCF setting: every rating is a positive, training adds sampled negatives, and validation
holds one pool per user (the user's latest rating among ``pool_size - 1`` sampled unrated items),
so a query's pool is exactly ``pool_size`` consecutive samples.

A dataset is named on the command line as ``synthetic``, ``criteo:PATH`` or ``movielens:PATH``
(:func:`parse_dataset`); :func:`describe` gives the JSON that identifies it (generator settings,
or a file's path, size and modification time, and the loading options) without loading it, and
:func:`dataset_key` hashes that for the quality cache.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from codesign.quality.errors import DatasetError, QualityError
from codesign.quality.synthetic import (
    DEFAULT_MAX_ROWS,
    DENSE_FEATURES,
    SyntheticConfig,
    Teacher,
    capped_cardinalities,
)

KINDS = ("synthetic", "criteo", "movielens")
CRITEO_CATEGORICAL = 26
#: Synthetic defaults: one epoch over 1M samples; validation of 128 pools of 4096 candidates.
DEFAULT_TRAIN_SAMPLES = 1_000_000
DEFAULT_VAL_SAMPLES = 128 * 4096
#: MovieLens defaults (NCF): 4 sampled negatives per positive; RecPipe's ML-1M pools.
DEFAULT_NEGATIVES = 4
DEFAULT_POOL_SIZE = 1000
MAX_LINE_CHARS = 1 << 16
#: Upper bound of ``samples`` and ``val_samples``: a synthetic or Criteo sample takes 264 bytes
#: as arrays (13 float32 dense features, 26 int64 ids, a label), so 20M are about 5 GB before
#: training. More is refused up front instead of failing (or swapping) mid-allocation.
MAX_SAMPLES = 20_000_000


@dataclass(frozen=True, eq=False)
class Split:
    """Samples as arrays: ``dense`` (n, F) float32, ``sparse`` (n, T) int64 ids (column t below
    ``cardinalities[t]``), ``labels`` (n,) float32 in {0, 1}."""

    dense: np.ndarray
    sparse: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset. ``task`` is ``ctr`` (DLRM-style: dense + categorical columns) or
    ``implicit`` (NeuMF: the two id columns user, item). ``query_size`` is the fixed candidate
    pool of a query (MovieLens), or None where any consecutive window is a pool (CTR)."""

    name: str
    task: str
    train: Split
    validation: Split
    cardinalities: tuple[int, ...]
    dense_features: int
    query_size: int | None
    descriptor: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return dataset_key(self.descriptor)


@dataclass(frozen=True)
class DatasetRef:
    """A dataset named on the command line: its kind and, for files, the path."""

    kind: str
    path: Path | None = None

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"

    @property
    def task(self) -> str:
        return "implicit" if self.kind == "movielens" else "ctr"


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    """How to build or load a dataset; every field that applies enters the cache key.

    ``samples``: synthetic: training samples generated; criteo: training lines read (default:
    every line before the validation lines); movielens: ratings read (default: all).
    ``val_samples``: synthetic/criteo: validation samples (the last lines read, for Criteo);
    movielens: pools of ``pool_size`` samples, one per user (default: every eligible user).
    ``max_rows``: synthetic: cap on Criteo's cardinalities; criteo: hash ids into this many rows
    per table (DLRM's ``max_ind_range``; default: one row per distinct training value + 1).
    """

    samples: int | None = None
    val_samples: int | None = None
    seed: int = 0
    max_rows: int | None = None
    pool_size: int | None = None
    negatives: int = DEFAULT_NEGATIVES

    @property
    def pool(self) -> int:
        """MovieLens candidates per query (``pool_size``, default 1000 as RecPipe's ML-1M)."""
        return self.pool_size or DEFAULT_POOL_SIZE

    def __post_init__(self) -> None:
        for name in ("samples", "val_samples", "max_rows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise QualityError(f"{name.replace('_', '-')} must be >= 1, got {value}")
        for name in ("samples", "val_samples"):
            value = getattr(self, name)
            if value is not None and value > MAX_SAMPLES:
                shown = f"{value:,}" if value < 10**30 else "<over 10**30>"
                raise QualityError(
                    f"--{name.replace('_', '-')} {shown} is over the limit of {MAX_SAMPLES:,} "
                    f"(about 264 bytes each in memory; fix: use at most {MAX_SAMPLES:,})"
                )
        if self.pool_size is not None and self.pool_size < 2:
            raise QualityError(
                f"pool-size must be >= 2 (one positive, negatives), got {self.pool_size}"
            )
        if self.negatives < 0:
            raise QualityError(f"negatives must be >= 0, got {self.negatives}")
        if self.seed < 0:
            raise QualityError(f"seed must be >= 0, got {self.seed}")


def parse_dataset(text: str) -> DatasetRef:
    """``synthetic``, ``criteo:PATH`` or ``movielens:PATH`` -> :class:`DatasetRef`."""
    kind, sep, path = str(text).strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise QualityError(
            f"unknown dataset {text!r} (use synthetic, criteo:PATH or movielens:PATH)"
        )
    if kind == "synthetic":
        if sep:
            raise QualityError("the synthetic dataset takes no path: write --dataset synthetic")
        return DatasetRef("synthetic")
    if not path.strip():
        raise QualityError(f"dataset {kind} needs a file: write --dataset {kind}:PATH")
    return DatasetRef(kind, Path(path.strip()).expanduser())


# --- identity (no loading) ----------------------------------------------------------------------


def synthetic_config(options: DataOptions) -> SyntheticConfig:
    return SyntheticConfig(
        train_samples=options.samples or DEFAULT_TRAIN_SAMPLES,
        val_samples=options.val_samples or DEFAULT_VAL_SAMPLES,
        seed=options.seed,
        cardinalities=capped_cardinalities(options.max_rows or DEFAULT_MAX_ROWS),
    )


def describe(ref: DatasetRef, options: DataOptions) -> dict[str, Any]:
    """The JSON that identifies the dataset ``ref`` built with ``options`` (no loading)."""
    if ref.kind == "synthetic":
        return {"kind": "synthetic", **synthetic_config(options).to_dict()}
    path = _movielens_file(ref.path) if ref.kind == "movielens" else _check_file(ref.path, "criteo")
    stat = path.stat()
    out: dict[str, Any] = {
        "kind": ref.kind,
        "path": str(path.resolve()),
        "size_bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "samples": options.samples,
        "val_samples": options.val_samples,
        "seed": options.seed,
    }
    if ref.kind == "criteo":
        out["max_rows"] = options.max_rows
        out["val_samples"] = options.val_samples or DEFAULT_VAL_SAMPLES
    else:
        out["pool_size"] = options.pool
        out["negatives"] = options.negatives
    return out


def dataset_key(descriptor: dict[str, Any]) -> str:
    payload = json.dumps(descriptor, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load(ref: DatasetRef, options: DataOptions) -> Dataset:
    """Build (synthetic) or read (criteo, movielens) the dataset."""
    descriptor = describe(ref, options)
    if ref.kind == "synthetic":
        return make_synthetic(synthetic_config(options), descriptor=descriptor)
    if ref.kind == "criteo":
        return load_criteo(ref.path, options, descriptor=descriptor)
    return load_movielens(ref.path, options, descriptor=descriptor)


# --- synthetic ----------------------------------------------------------------------------------


def make_synthetic(config: SyntheticConfig, *, descriptor: dict | None = None) -> Dataset:
    """Generate the synthetic dataset (see :mod:`codesign.quality.synthetic`)."""
    teacher = Teacher(config)
    train = Split(*teacher.sample(config.train_samples, stream=1))
    validation = Split(*teacher.sample(config.val_samples, stream=2))
    return Dataset(
        name="synthetic",
        task="ctr",
        train=train,
        validation=validation,
        cardinalities=tuple(config.cardinalities),
        dense_features=config.dense_features,
        query_size=None,
        descriptor=descriptor or {"kind": "synthetic", **config.to_dict()},
    )


# --- files --------------------------------------------------------------------------------------


def _check_file(path: Path | None, what: str) -> Path:
    if path is None:
        raise DatasetError(f"{what}: no file given")
    try:
        if not path.exists():
            raise DatasetError(f"{what} file {path} not found (check the path)")
        if path.is_dir():
            raise DatasetError(f"{what} path {path} is a directory (pass the file)")
    except OSError as exc:
        raise DatasetError(f"{what} file {path}: cannot read ({exc.__class__.__name__})") from None
    return path


def _movielens_file(path: Path | None) -> Path:
    """A ratings file, or a directory holding ratings.dat or ratings.csv."""
    if path is not None and path.is_dir():
        for name in ("ratings.dat", "ratings.csv"):
            if (path / name).is_file():
                return path / name
        raise DatasetError(f"movielens directory {path} holds no ratings.dat or ratings.csv")
    path = _check_file(path, "movielens")
    if path.suffix.lower() not in (".dat", ".csv"):
        raise DatasetError(
            f"movielens file {path}: expected ratings.dat (ML-1M, '::'-separated) or "
            "ratings.csv (ML-20M, with a header)"
        )
    return path


def _lines(path: Path, what: str, limit: int | None) -> Iterator[tuple[int, str]]:
    """(line number, text) of non-empty lines, at most ``limit`` of them."""
    count = 0
    try:
        with path.open("r", encoding="utf-8", newline="") as fh:
            for number, line in enumerate(fh, start=1):
                if len(line) > MAX_LINE_CHARS:
                    raise DatasetError(f"{what} file {path} line {number}: line is too long")
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                if limit is not None and count >= limit:
                    return
                count += 1
                yield number, line
    except UnicodeDecodeError:
        raise DatasetError(
            f"{what} file {path}: not UTF-8 text (decompress .gz/.tar files first)"
        ) from None
    except OSError as exc:
        raise DatasetError(f"{what} file {path}: cannot read ({exc.__class__.__name__})") from None


def load_criteo(
    path: Path | None, options: DataOptions, *, descriptor: dict | None = None
) -> Dataset:
    """Read a Criteo Kaggle ``train.txt``-style TSV: label, 13 integer features (may be empty or
    negative: DLRM's log(1 + max(x, 0))), 26 hexadecimal categories (may be empty).

    The last ``val_samples`` lines read are the validation split (Criteo is in time order, as
    DLRM splits it). Categories become ids per column: without ``max_rows``, id 0 is "missing or
    unseen in training" and each distinct training value gets the next id in sorted order; with
    ``max_rows``, id = hex value mod max_rows (missing = 0)."""
    path = _check_file(path, "criteo")
    val_n = options.val_samples or DEFAULT_VAL_SAMPLES
    limit = None if options.samples is None else options.samples + val_n
    labels: list[float] = []
    dense: list[list[float]] = []
    cats: list[list[int]] = []
    width = 1 + DENSE_FEATURES + CRITEO_CATEGORICAL
    for number, line in _lines(path, "criteo", limit):
        fields = line.split("\t")
        where = f"criteo file {path} line {number}"
        if len(fields) != width:
            hint = (
                ": no label column (Kaggle's test.txt is unlabelled; use train.txt)"
                if len(fields) == width - 1
                else ""
            )
            raise DatasetError(
                f"{where}: expected {width} tab-separated columns (label, 13 integer, "
                f"26 categorical), got {len(fields)}{hint}"
            )
        label = fields[0].strip()
        if label not in ("0", "1"):
            raise DatasetError(f"{where}: label must be 0 or 1, got {label[:20]!r}")
        labels.append(float(label))
        row = []
        for j, text in enumerate(fields[1 : 1 + DENSE_FEATURES], start=1):
            text = text.strip()
            if not text:
                row.append(0.0)
                continue
            try:
                value = int(text)
            except ValueError:
                raise DatasetError(
                    f"{where}: integer feature I{j} is not an integer: {text[:20]!r}"
                ) from None
            row.append(math.log1p(max(value, 0)))
        dense.append(row)
        ids = []
        for j, text in enumerate(fields[1 + DENSE_FEATURES :], start=1):
            text = text.strip()
            if not text:
                ids.append(-1)
                continue
            try:
                ids.append(int(text, 16))
            except ValueError:
                raise DatasetError(
                    f"{where}: categorical feature C{j} is not hexadecimal: {text[:20]!r}"
                ) from None
        cats.append(ids)
    total = len(labels)
    if total <= val_n:
        raise DatasetError(
            f"criteo file {path} has {total} labelled lines; more than --val-samples "
            f"{val_n} are needed (lower --val-samples)"
        )
    cut = total - val_n
    raw = np.asarray(cats, dtype=np.int64)
    sparse = np.empty_like(raw)
    cards = []
    for t in range(CRITEO_CATEGORICAL):
        col = raw[:, t]
        if options.max_rows is not None:
            sparse[:, t] = np.where(col < 0, 0, col % options.max_rows)
            cards.append(options.max_rows)
            continue
        vocab = np.unique(col[:cut][col[:cut] >= 0])
        if not len(vocab):  # never present in training: everything is "missing"
            sparse[:, t] = 0
            cards.append(1)
            continue
        pos = np.searchsorted(vocab, col)
        found = (col >= 0) & (pos < len(vocab)) & (vocab[np.minimum(pos, len(vocab) - 1)] == col)
        sparse[:, t] = np.where(found, pos + 1, 0)
        cards.append(len(vocab) + 1)
    dense_arr = np.asarray(dense, dtype=np.float32)
    label_arr = np.asarray(labels, dtype=np.float32)
    return Dataset(
        name="criteo",
        task="ctr",
        train=Split(dense_arr[:cut], sparse[:cut], label_arr[:cut]),
        validation=Split(dense_arr[cut:], sparse[cut:], label_arr[cut:]),
        cardinalities=tuple(cards),
        dense_features=DENSE_FEATURES,
        query_size=None,
        descriptor=descriptor or {},
    )


def read_ratings(path: Path, *, limit: int | None = None) -> tuple[np.ndarray, ...]:
    """(user, item, timestamp) arrays of a MovieLens ``ratings.dat`` (``u::i::r::t``) or
    ``ratings.csv`` (header ``userId,movieId,rating,timestamp``)."""
    dat = path.suffix.lower() == ".dat"
    sep = "::" if dat else ","
    users: list[int] = []
    items: list[int] = []
    times: list[int] = []
    header_seen = dat
    for number, line in _lines(path, "movielens", None):
        where = f"movielens file {path} line {number}"
        fields = [f.strip() for f in line.split(sep)]
        if not header_seen:
            header_seen = True
            if fields[:2] == ["userId", "movieId"]:
                continue
            if not fields[0].lstrip("-").isdigit():
                raise DatasetError(
                    f"{where}: expected the header userId,movieId,rating,timestamp, got "
                    f"{line[:60]!r}"
                )
        if limit is not None and len(users) >= limit:
            break
        if len(fields) != 4:
            form = (
                "UserID::MovieID::Rating::Timestamp" if dat else "userId,movieId,rating,timestamp"
            )
            raise DatasetError(f"{where}: expected 4 fields ({form}), got {len(fields)}")
        try:
            user, item = int(fields[0]), int(fields[1])
            float(fields[2])
            stamp = int(float(fields[3]))
        except ValueError:
            raise DatasetError(
                f"{where}: user, item and timestamp must be integers and the rating a "
                f"number, got {line[:60]!r}"
            ) from None
        users.append(user)
        items.append(item)
        times.append(stamp)
    if not users:
        raise DatasetError(f"movielens file {path} holds no ratings")
    return (
        np.asarray(users, dtype=np.int64),
        np.asarray(items, dtype=np.int64),
        np.asarray(times, dtype=np.int64),
    )


def load_movielens(
    path: Path | None, options: DataOptions, *, descriptor: dict | None = None
) -> Dataset:
    """NCF-style implicit feedback from MovieLens ratings (see the module docstring).

    Users and items are renumbered 0.. in id order. Each user with at least two ratings holds out
    the latest (ties: the later line) as a validation positive, in a pool with ``pool_size - 1``
    items the user never rated, drawn without replacement, the positive at a random position;
    ``val_samples`` limits the validation users to the first ``val_samples // pool_size``. The
    other ratings are training positives, each with ``negatives`` items the user never rated."""
    path = _movielens_file(path)
    user_raw, item_raw, stamps = read_ratings(path, limit=options.samples)
    _, users = np.unique(user_raw, return_inverse=True)
    _, items = np.unique(item_raw, return_inverse=True)
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    pool = options.pool
    if pool > n_items:
        raise DatasetError(
            f"movielens file {path}: a pool of {pool} candidates needs at least {pool} items, "
            f"the file has {n_items} (lower --pool-size)"
        )
    rng = np.random.default_rng([options.seed, 3])
    # Latest rating per user: sort by (user, time, line) and take each user's last row.
    order = np.lexsort((np.arange(len(users)), stamps, users))
    last = order[np.r_[users[order][1:] != users[order][:-1], True]]
    counts = np.bincount(users, minlength=n_users)
    held = last[counts[users[last]] >= 2]
    if options.val_samples is not None:
        held = held[: max(options.val_samples // pool, 0)]
    if len(held) == 0:
        raise DatasetError(
            f"movielens file {path}: no user has two ratings, so none can be held out for "
            "validation"
        )
    train_mask = np.ones(len(users), dtype=bool)
    train_mask[held] = False
    rated = np.unique(users * n_items + items)
    v_users = np.repeat(users[held], pool)
    v_items = np.empty(len(held) * pool, dtype=np.int64)
    v_labels = np.zeros(len(held) * pool, dtype=np.float32)
    for q, row in enumerate(held):
        u = users[row]
        seen = rated[(rated >= u * n_items) & (rated < (u + 1) * n_items)] - u * n_items
        unrated = np.setdiff1d(np.arange(n_items), seen, assume_unique=True)
        if len(unrated) < pool - 1:
            raise DatasetError(
                f"movielens file {path}: user {user_raw[row]} rated all but {len(unrated)} "
                f"items, too few for a pool of {pool} (lower --pool-size)"
            )
        cand = rng.choice(unrated, pool - 1, replace=False)
        at = int(rng.integers(pool))
        block = np.insert(cand, at, items[row])
        v_items[q * pool : (q + 1) * pool] = block
        v_labels[q * pool + at] = 1.0
    pos_users, pos_items = users[train_mask], items[train_mask]
    neg_users = np.repeat(pos_users, options.negatives)
    neg_items = _sample_unrated(rng, neg_users, n_items, rated)
    t_users = np.concatenate([pos_users, neg_users])
    t_items = np.concatenate([pos_items, neg_items])
    t_labels = np.concatenate([np.ones(len(pos_users)), np.zeros(len(neg_users))]).astype(
        np.float32
    )
    shuffle = rng.permutation(len(t_users))
    train = Split(
        np.zeros((len(t_users), 0), dtype=np.float32),
        np.stack([t_users, t_items], axis=1)[shuffle],
        t_labels[shuffle],
    )
    validation = Split(
        np.zeros((len(v_users), 0), dtype=np.float32),
        np.stack([v_users, v_items], axis=1),
        v_labels,
    )
    return Dataset(
        name="movielens",
        task="implicit",
        train=train,
        validation=validation,
        cardinalities=(n_users, n_items),
        dense_features=0,
        query_size=pool,
        descriptor=descriptor or {},
    )


def _sample_unrated(
    rng: np.random.Generator, users: np.ndarray, n_items: int, rated: np.ndarray
) -> np.ndarray:
    """One uniformly drawn item per entry of ``users`` that the user has not rated (users who
    rated every item get any item)."""
    out = rng.integers(n_items, size=len(users))
    for _ in range(50):
        bad = np.isin(users * n_items + out, rated)
        if not bad.any():
            break
        out[bad] = rng.integers(n_items, size=int(bad.sum()))
    return out


def with_defaults(options: DataOptions, **defaults: Any) -> DataOptions:
    """``options`` with the fields that are None taken from ``defaults``."""
    fill = {k: v for k, v in defaults.items() if getattr(options, k) is None}
    return replace(options, **fill) if fill else options
