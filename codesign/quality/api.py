"""The quality library entry: train a family into the cache, and replay funnels from it.

Both functions take plain arguments, return plain data (dicts of JSON types) and raise
:class:`codesign.errors.CodesignError` subclasses for bad input. Neither imports torch unless a
model actually has to be trained.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from codesign import __version__
from codesign.ir.frontends.spec import ModelSpec
from codesign.ir.frontends.zoo import resolve
from codesign.quality import datasets as ds
from codesign.quality.cache import CacheEntry, QualityCache, entry_key
from codesign.quality.errors import QualityError
from codesign.quality.families import (
    DEFAULT_FAMILY,
    FAMILIES,
    resolve_family,
    training_spec,
)
from codesign.quality.metrics import classification_metrics
from codesign.quality.replay import (
    Metric,
    Replayer,
    Stage,
    check_metrics,
    format_stages,
    parse_metrics,
    parse_stages,
)
from codesign.quality.train import TrainConfig, check_trainable, steps_per_epoch

#: Bump when training changes in a way that changes scores: old cache entries stop matching.
TRAINER_VERSION = 1
DEFAULT_METRIC_NAMES = ("ndcg_recpipe", "ndcg", "hr")
DEFAULT_K = 64


class Reporter(Protocol):
    """Progress sink (the CLI draws rich progress bars on stderr). ``advance`` may raise
    KeyboardInterrupt; the model being trained is then not cached, earlier ones are."""

    def status(self, text: str) -> None: ...

    def start(self, model: str, total_steps: int) -> None: ...

    def advance(self, steps: int, loss: float) -> None: ...

    def finish(self, model: str) -> None: ...


class _Silent:
    def status(self, text: str) -> None:
        pass

    def start(self, model: str, total_steps: int) -> None:
        pass

    def advance(self, steps: int, loss: float) -> None:
        pass

    def finish(self, model: str) -> None:
        pass


def _train_key_fields(config: TrainConfig) -> dict[str, Any]:
    fields = asdict(config)
    fields.pop("score_batch_size")
    return {"trainer_version": TRAINER_VERSION, **fields}


def _family_defaults(models: Sequence[str]) -> dict[str, Any]:
    """Dataset defaults of the registered family holding all ``models`` (MovieLens pools)."""
    for family in FAMILIES.values():
        if set(models) <= set(family.models):
            return dict(family.defaults)
    return {}


def _options_for(ref: ds.DatasetRef, options: ds.DataOptions, models: Sequence[str]):
    if ref.kind != "movielens":
        return options
    return ds.with_defaults(options, **_family_defaults(models))


def _check_task(spec: ModelSpec, ref: ds.DatasetRef) -> None:
    check_trainable(spec)
    if spec.arch == "dlrm" and ref.task != "ctr":
        raise QualityError(
            f"{spec.name} is a DLRM: it trains on a CTR dataset (synthetic or criteo:PATH), "
            f"not {ref.kind}"
        )
    if spec.arch == "neumf" and ref.task != "implicit":
        raise QualityError(
            f"{spec.name} is a NeuMF model: it trains on MovieLens (--dataset movielens:PATH), "
            f"not {ref.kind}"
        )


def train_family(
    *,
    dataset: str = "synthetic",
    family: str = DEFAULT_FAMILY,
    options: ds.DataOptions | None = None,
    train: TrainConfig | None = None,
    cache_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train every model of ``family`` on ``dataset`` unless the cache holds it already, and
    return each model's validation metrics and cache status (``cached``: reused)."""
    reporter = reporter or _Silent()
    options = options or ds.DataOptions()
    train = train or TrainConfig(seed=options.seed)
    ref = ds.parse_dataset(dataset)
    family_name, specs = resolve_family(family)
    for spec in specs:
        _check_task(spec, ref)
    options = _options_for(ref, options, [s.name for s in specs])
    descriptor = ds.describe(ref, options)
    dkey = ds.dataset_key(descriptor)
    cache = QualityCache(cache_dir)
    train_fields = _train_key_fields(train)
    entries: dict[str, CacheEntry | None] = {}
    for spec in specs:
        key = entry_key(dkey, spec.spec_hash(), train_fields)
        entries[spec.name] = None if force else cache.get(dkey, spec.name, key, check=True)
    fresh: set[str] = set()
    missing = [s for s in specs if entries[s.name] is None]
    estimate_s: float | None = None
    if missing:
        names = ", ".join(s.name for s in missing)
        reporter.status(
            f"quality: {names} not in the cache ({cache.dir}): training "
            f"{'it' if len(missing) == 1 else 'them'} on {_dataset_words(ref)}; "
            f"{'generating' if ref.kind == 'synthetic' else 'loading'} the data first"
        )
        start = time.perf_counter()
        data = ds.load(ref, options)
        load_s = time.perf_counter() - start
        from codesign.quality.train import train_and_score, training_threads

        tspecs = {
            spec.name: training_spec(
                spec,
                task=data.task,
                cardinalities=data.cardinalities,
                dense_features=data.dense_features,
            )
            for spec in missing
        }
        steps = steps_per_epoch(len(data.train), train) * train.epochs
        threads = training_threads()
        estimate_s = _estimate_training_s(list(tspecs.values()), data, train, steps, threads)
        reporter.status(
            f"quality: training {names} on {_dataset_words(ref)} ({len(data.train):,} "
            f"training / {len(data.validation):,} validation samples, {train.epochs} "
            f"epoch{'s' if train.epochs != 1 else ''}: {steps:,} steps of {train.batch_size:,} "
            f"per model, {threads} thread{'s' if threads != 1 else ''}): about "
            f"{_rough_s(estimate_s)} on this machine now (a few steps of each model timed and "
            "extrapolated)"
        )
        for spec in missing:
            tspec = tspecs[spec.name]
            reporter.start(spec.name, steps)
            result = train_and_score(tspec, data, train, progress=reporter.advance, threads=threads)
            labels = data.validation.labels
            metrics = classification_metrics(result.scores, labels)
            meta = _entry_meta(
                spec, tspec, family_name, data, descriptor, dkey, train, result, metrics, load_s
            )
            key = entry_key(dkey, spec.spec_hash(), train_fields)
            entries[spec.name] = cache.put(
                dkey,
                spec.name,
                key,
                scores=result.scores,
                labels=labels,
                meta=meta,
                dataset={"key": dkey, **descriptor},
            )
            fresh.add(spec.name)
            clear_replayers()  # scores loaded earlier in this process may be stale now
            reporter.finish(spec.name)
    rows = []
    for spec in specs:
        entry = entries[spec.name]
        assert entry is not None
        meta = entry.meta
        rows.append(
            {
                "model": spec.name,
                "arch": spec.arch,
                "cached": spec.name not in fresh,
                **meta["metrics"],
                "train_time_s": meta["train_time_s"],
                "train_samples": meta["train_samples"],
                "val_samples": meta["val_samples"],
                "spec_hash": meta["spec_hash"],
                "zoo_spec_hash": meta["zoo_spec_hash"],
                "cache_file": str(entry.json_path),
            }
        )
    return {
        "dataset": str(ref),
        "dataset_key": dkey,
        "family": family_name,
        "seed": train.seed,
        "epochs": train.epochs,
        "cache_dir": str(cache.dir),
        "estimate_s": estimate_s,
        "models": rows,
    }


def _estimate_training_s(
    tspecs: Sequence[ModelSpec], data: ds.Dataset, train: TrainConfig, steps: int, threads: int
) -> float:
    """Seconds to train and score ``tspecs``: a few training steps (about half a second's
    worth) and one scoring batch of each, timed now
    (:func:`codesign.quality.train.time_steps`), times the steps and scoring batches that
    training runs. The machine's load moves it either way."""
    from codesign.quality.train import score_batches, time_steps

    batches = score_batches(len(data.validation), train)
    return sum(
        time_steps(t, data, train, threads=threads).estimate_s(steps=steps, score_batches=batches)
        for t in tspecs
    )


def _rough_s(seconds: float) -> str:
    """A duration to two significant figures: '45 s', '2.5 min'."""
    if seconds < 90:
        return f"{max(1, round(seconds, -1 if seconds >= 20 else 0)):.0f} s"
    return f"{seconds / 60:.2g} min"


def _dataset_words(ref: ds.DatasetRef) -> str:
    if ref.kind == "synthetic":
        return "synthetic Criteo-like data"
    return f"{ref.kind} data ({ref.path})"


def _entry_meta(
    spec: ModelSpec,
    tspec: ModelSpec,
    family: str,
    data: ds.Dataset,
    descriptor: dict,
    dkey: str,
    train: TrainConfig,
    result: Any,
    metrics: dict,
    load_s: float,
) -> dict[str, Any]:
    return {
        "model": spec.name,
        "arch": spec.arch,
        "family": family,
        "dataset": descriptor,
        "dataset_key": dkey,
        "task": data.task,
        "query_size": data.query_size,
        "cardinalities": list(data.cardinalities),
        "zoo_spec_hash": spec.spec_hash(),
        "spec_hash": tspec.spec_hash(),
        "training_spec": tspec.to_dict(),
        "seed": train.seed,
        "train": _train_key_fields(train),
        "metrics": metrics,
        "train_samples": len(data.train),
        "val_samples": len(data.validation),
        "positive_rate": float(np.mean(data.validation.labels)),
        "params": result.params,
        "final_train_loss": result.final_loss,
        "train_time_s": result.train_time_s,
        "train_threads": result.threads,
        "dataset_load_time_s": load_s,
        "versions": {
            "codesign": __version__,
            "torch": result.torch_version,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "created_unix_s": time.time(),
    }


def default_metrics(funnels: Sequence[Sequence[Stage]]) -> list[Metric]:
    k = min([DEFAULT_K, *(f[-1].keep for f in funnels)])
    return [Metric(name, k) for name in DEFAULT_METRIC_NAMES]


def evaluate(
    stages: Sequence[str],
    metrics: Sequence[str] = (),
    *,
    dataset: str = "synthetic",
    options: ds.DataOptions | None = None,
    train: TrainConfig | None = None,
    cache_dir: str | Path | None = None,
    queries: int | None = None,
) -> dict[str, Any]:
    """Replay each funnel of ``stages`` (strings like ``"rm-small:4096>512,rm-large:512>64"``)
    over the cached validation scores of the same dataset and training settings that
    :func:`train_family` used, and return every metric per funnel."""
    if not stages:
        raise QualityError("no funnel given (e.g. --stages 'rm-small:4096>512,rm-large:512>64')")
    funnels = [parse_stages(text) for text in stages]
    wanted = parse_metrics(metrics) if metrics else default_metrics(funnels)
    for funnel in funnels:
        check_metrics(funnel, wanted)
    options = options or ds.DataOptions()
    train = train or TrainConfig(seed=options.seed)
    names = list(dict.fromkeys(s.model for f in funnels for s in f))
    replayer, dkey = _replayer(
        names, dataset=dataset, options=options, train=train, cache_dir=cache_dir
    )
    results = []
    for funnel in funnels:
        values = replayer.evaluate(funnel, wanted, queries=queries)
        results.append(
            {
                "stages": format_stages(funnel),
                "stage_list": [asdict(s) for s in funnel],
                "queries": replayer.queries_for(funnel, queries),
                "items_scored_per_query": _work(funnel),
                "metrics": values,
            }
        )
    return {
        "dataset": str(ds.parse_dataset(dataset)),
        "dataset_key": dkey,
        "seed": train.seed,
        "epochs": train.epochs,
        "val_samples": int(len(replayer.labels)),
        "metrics": [str(m) for m in wanted],
        "results": results,
    }


def _resolve(name: str) -> ModelSpec:
    """:func:`resolve`, remembered for zoo names (spec files are read every time)."""
    if name.endswith((".yaml", ".yml")) or Path(name).exists():
        return resolve(name)
    if name not in _ZOO_SPECS:
        _ZOO_SPECS[name] = resolve(name)
    return _ZOO_SPECS[name]


_ZOO_SPECS: dict[str, ModelSpec] = {}
_CONTEXTS: dict[tuple, tuple[str, str, str]] = {}

#: Replayers with their loaded scores, per (cache folder, dataset key, training settings).
_REPLAYERS: dict[tuple[str, str, str], Replayer] = {}


def clear_replayers() -> None:
    """Forget the cached scores that :func:`evaluate` and :func:`funnel_quality` loaded."""
    _REPLAYERS.clear()
    _CONTEXTS.clear()


def _replayer(
    models: Sequence[str],
    *,
    dataset: str,
    options: ds.DataOptions,
    train: TrainConfig,
    cache_dir: str | Path | None,
) -> tuple[Replayer, str]:
    """(replayer, dataset key): a :class:`Replayer` holding the cached scores of ``models``
    (zoo names or spec files), each loaded from disk the first time this process asks."""
    ref = ds.parse_dataset(dataset)
    specs = {name: _resolve(name) for name in models}
    options = _options_for(ref, options, [s.name for s in specs.values()])
    cache = QualityCache(cache_dir)
    train_fields = _train_key_fields(train)
    memo = (str(ref), options, train, str(cache.dir))
    if ref.kind == "synthetic" and memo in _CONTEXTS:  # files: stat them every time
        context = _CONTEXTS[memo]
    else:
        dkey = ds.dataset_key(ds.describe(ref, options))
        context = (str(cache.dir.resolve()), dkey, entry_key(dkey, "", train_fields))
        _CONTEXTS[memo] = context
    dkey = context[1]
    replayer = _REPLAYERS.get(context)
    for name, spec in specs.items():
        if replayer is not None and name in replayer.scores:
            continue
        key = entry_key(dkey, spec.spec_hash(), train_fields)
        entry = cache.get(dkey, spec.name, key)
        if entry is None:
            raise QualityError(_untrained(name, ref, train, cache, dkey))
        scores, labels = entry.load()
        if replayer is None:
            replayer = Replayer({}, labels, query_size=entry.meta.get("query_size"))
            _REPLAYERS[context] = replayer
        elif not np.array_equal(replayer.labels, labels):
            raise QualityError(
                f"cached validation labels of {name} differ from those of the other models; "
                "train them again with --force"
            )
        replayer.add(name, scores)
    assert replayer is not None
    return replayer, dkey


def funnel_quality(
    stages: Sequence[Stage | tuple[str, int, int]] | str,
    metric: str,
    *,
    dataset: str = "synthetic",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    queries: int | None = None,
    options: ds.DataOptions | None = None,
    train: TrainConfig | None = None,
) -> float:
    """One ``metric`` (e.g. ``"ndcg_recpipe@64"``) of one funnel, replayed from the cache.

    ``stages`` is a stages string or a sequence of :class:`Stage` / ``(model, items, keep)``.
    The dataset and training options default to those of ``codesign quality train --dataset
    DATASET --seed SEED``. Scores are loaded once per process, so a search can call this for
    every design it evaluates."""
    if isinstance(stages, str):
        funnel = parse_stages(stages)
    else:
        funnel = tuple(s if isinstance(s, Stage) else Stage(*s) for s in stages)
    options = options or ds.DataOptions(seed=seed)
    train = train or TrainConfig(seed=options.seed)
    wanted = parse_metrics([metric])
    if len(wanted) != 1:
        raise QualityError(f"funnel_quality takes one metric, got {metric!r}")
    replayer, _ = _replayer(
        [s.model for s in funnel],
        dataset=dataset,
        options=options,
        train=train,
        cache_dir=cache_dir,
    )
    return replayer.evaluate(funnel, wanted, queries=queries)[str(wanted[0])]


def _work(funnel: Sequence[Stage]) -> dict[str, int]:
    """Items each model scores per query (summed where a model runs in several stages)."""
    out: dict[str, int] = {}
    for stage in funnel:
        out[stage.model] = out.get(stage.model, 0) + stage.items
    return out


def _untrained(
    name: str, ref: ds.DatasetRef, train: TrainConfig, cache: QualityCache, dkey: str
) -> str:
    others = sorted({e.model for e in cache.entries(dkey)})
    here = f"; cached for this dataset: {', '.join(others)}" if others else ""
    return (
        f"model {name!r} is not trained on dataset {ref} with these options (seed {train.seed}, "
        f"epochs {train.epochs}) in {cache.dir}: run 'codesign quality train --dataset {ref} "
        f"--family {name}' with the same dataset options{here}"
    )
