"""Per-sample classification metrics of a model's validation scores: AUC (ties count one half),
accuracy at threshold 0.5 and log loss (probabilities clipped to [1e-7, 1 - 1e-7])."""

from __future__ import annotations

import numpy as np

from codesign.quality.errors import QualityError

EPS = 1e-7


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=np.float64).ravel()
    if scores.shape != labels.shape or not len(scores):
        raise QualityError(
            f"scores and labels must be non-empty and of one length, got {len(scores)} and "
            f"{len(labels)}"
        )
    return scores, labels


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks); NaN without both classes."""
    scores, labels = _check(scores, labels)
    pos = labels > 0.5
    n_pos = int(pos.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    # mid-ranks: every member of a run of equal scores gets the run's mean rank (1-based)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    mid = (starts + ends + 1) / 2.0
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(mid, ends - starts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose score is on the label's side of 0.5."""
    scores, labels = _check(scores, labels)
    return float(np.mean((scores > 0.5) == (labels > 0.5)))


def logloss(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy in nats."""
    scores, labels = _check(scores, labels)
    p = np.clip(scores, EPS, 1.0 - EPS)
    return float(-np.mean(labels * np.log(p) + (1.0 - labels) * np.log1p(-p)))


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "auc": auc(scores, labels),
        "accuracy": accuracy(scores, labels),
        "logloss": logloss(scores, labels),
    }
