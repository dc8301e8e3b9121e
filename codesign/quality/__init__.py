"""Recommendation quality: datasets, trained model families, a score cache and funnel replay.

- :mod:`.datasets` / :mod:`.synthetic`: the synthetic Criteo-like dataset and loaders for
  Criteo Kaggle TSV and MovieLens ratings files;
- :mod:`.families` and :mod:`.train`: model variants trained with PyTorch from the same specs the
  IR lowers (torch is imported lazily, only by :mod:`.train`);
- :mod:`.cache`: validation scores and labels per model with metadata, reused across runs;
- :mod:`.replay`: multi-stage funnel replay with RecPipe's NDCG, textbook NDCG, HR, precision;
- :mod:`.tables`: measured quality from CSV, and RecPipe's published Criteo table;
- :mod:`.api`: :func:`train_family` and :func:`evaluate`, what the CLI calls, and
  :func:`funnel_quality`, one metric of one funnel for a search (scores loaded once).

Importing this package does not import torch.
"""

from __future__ import annotations

from codesign.quality.api import evaluate, funnel_quality, train_family
from codesign.quality.cache import QualityCache, cache_root
from codesign.quality.datasets import DataOptions, Dataset, Split, load, parse_dataset
from codesign.quality.errors import DatasetError, FunnelError, QualityError, QualityTableError
from codesign.quality.families import FAMILIES, resolve_family, training_spec
from codesign.quality.replay import (
    METRICS,
    Metric,
    Replayer,
    Stage,
    parse_metric,
    parse_stages,
)
from codesign.quality.tables import QualityTable, load_csv, recpipe_criteo_table
from codesign.quality.train import TrainConfig

__all__ = [
    "FAMILIES",
    "METRICS",
    "DataOptions",
    "Dataset",
    "DatasetError",
    "FunnelError",
    "Metric",
    "QualityCache",
    "QualityError",
    "QualityTable",
    "QualityTableError",
    "Replayer",
    "Split",
    "Stage",
    "TrainConfig",
    "cache_root",
    "evaluate",
    "funnel_quality",
    "load",
    "load_csv",
    "parse_dataset",
    "parse_metric",
    "parse_stages",
    "recpipe_criteo_table",
    "resolve_family",
    "train_family",
    "training_spec",
]
