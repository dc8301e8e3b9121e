"""Per-sample classification metrics of a model's validation scores, from scikit-learn: AUC
(ties count one half), accuracy at threshold 0.5 and log loss (probabilities clipped to
[1e-7, 1 - 1e-7])."""

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
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``: ties count one half); NaN
    without both classes."""
    from sklearn.metrics import roc_auc_score

    scores, labels = _check(scores, labels)
    positive = labels > 0.5
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose score is on the label's side of 0.5 (``accuracy_score``)."""
    from sklearn.metrics import accuracy_score

    scores, labels = _check(scores, labels)
    return float(accuracy_score(labels > 0.5, scores > 0.5))


def logloss(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy in nats (scikit-learn's ``log_loss``), probabilities clipped to
    [EPS, 1 - EPS] first; labels may be soft (in [0, 1])."""
    from sklearn.metrics import log_loss

    scores, labels = _check(scores, labels)
    p = np.clip(scores, EPS, 1.0 - EPS)
    hard = np.isin(labels, (0.0, 1.0)).all()
    if not hard:
        # log_loss takes class labels only: soft labels weigh both classes per sample
        ones = np.ones_like(labels)
        return float(
            log_loss(
                np.r_[ones, 0 * ones],
                np.r_[p, p],
                sample_weight=np.r_[labels, 1.0 - labels],
                labels=[0, 1],
                normalize=False,
            )
            / len(labels)
        )
    return float(log_loss(labels, p, labels=[0, 1]))


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "auc": auc(scores, labels),
        "accuracy": accuracy(scores, labels),
        "logloss": logloss(scores, labels),
    }
