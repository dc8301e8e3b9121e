"""A synthetic Criteo-like CTR dataset: 13 dense and 26 categorical features, Zipf-skewed category
frequencies, and click labels drawn from a seeded *teacher* model.

The teacher is a factorisation machine over 27 vectors, the shape DLRM's dot interaction
models: one vector per categorical value (``teacher_dim`` = 32 wide, all dimensions of equal
scale by default) times a random per-table weight, and one computed from the dense features by
a random tanh layer. Its logit is a weighted sum of (a) every pairwise dot product of the 27
vectors, (b) a bias per category value and (c) a nonlinear function of the dense features, each
normalised on a pilot sample; the intercept is solved for the target click rate (25%). A
student DLRM of embedding dim d can represent only a rank-d approximation of the pairwise term,
so students with wider embeddings and deeper MLPs (RM-small < RM-med < RM-large) rank better, as
on Criteo. Labels are Bernoulli draws from the teacher's click probability, so no model reaches
AUC 1 (the teacher itself reaches about 0.94).

Everything is generated from one ``seed``: the teacher from stream ``[seed, 0]``, the samples
from streams ``[seed, 1, chunk]`` (training) and ``[seed, 2, chunk]`` (validation), in chunks of
65,536 samples, so memory stays bounded and the result does not depend on the chunking.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from codesign.quality.errors import QualityError

#: Criteo Kaggle's 26 categorical cardinalities (BACKGROUND §1.2).
CRITEO_KAGGLE_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27,
    14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)  # fmt: skip
#: The default cap on rows per table: Criteo's cardinalities above it become this.
DEFAULT_MAX_ROWS = 200
DENSE_FEATURES = 13
CHUNK = 65_536


def capped_cardinalities(max_rows: int = DEFAULT_MAX_ROWS) -> tuple[int, ...]:
    """Criteo Kaggle's cardinalities, each capped at ``max_rows``."""
    return tuple(min(c, max_rows) for c in CRITEO_KAGGLE_CARDINALITIES)


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """What the generator makes; every field enters the dataset's cache key."""

    train_samples: int
    val_samples: int
    seed: int = 0
    cardinalities: tuple[int, ...] = field(default_factory=capped_cardinalities)
    dense_features: int = DENSE_FEATURES
    zipf_alpha: float = 1.05
    teacher_dim: int = 32
    #: Dimension j of the teacher's vectors has scale (j + 1) ** -spectrum_decay (0: flat).
    spectrum_decay: float = 0.0
    positive_rate: float = 0.25
    #: Standard deviations of the logit's three parts: pairwise dots, category biases, dense.
    pair_scale: float = 3.0
    bias_scale: float = 1.0
    dense_scale: float = 0.7

    def __post_init__(self) -> None:
        problems = []
        if self.train_samples < 1 or self.val_samples < 1:
            problems.append("train and validation sample counts must be >= 1")
        if not self.cardinalities or min(self.cardinalities) < 1:
            problems.append("every cardinality must be >= 1")
        if self.dense_features < 1 or self.teacher_dim < 1:
            problems.append("dense_features and teacher_dim must be >= 1")
        if not 0 < self.positive_rate < 1:
            problems.append("positive_rate must lie in (0, 1)")
        if self.zipf_alpha < 0:
            problems.append("zipf_alpha must be >= 0")
        if problems:
            raise QualityError("synthetic dataset: " + "; ".join(problems))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["cardinalities"] = list(self.cardinalities)
        return out


class Teacher:
    """The seeded click model that labels the synthetic samples."""

    def __init__(self, config: SyntheticConfig) -> None:
        rng = np.random.default_rng([config.seed, 0])
        self.config = config
        dim = config.teacher_dim
        spectrum = (np.arange(dim) + 1.0) ** -config.spectrum_decay
        self.field_weight = np.exp(rng.uniform(np.log(0.3), np.log(1.5), len(config.cardinalities)))
        self.tables = [
            (rng.standard_normal((rows, dim)) * spectrum).astype(np.float32)
            for rows in config.cardinalities
        ]
        self.biases = [
            rng.standard_normal(rows).astype(np.float32) for rows in config.cardinalities
        ]
        # Zipf: rank r has weight (r+1)^-alpha; ids are a random permutation of the ranks.
        self.cdfs = []
        self.perms = []
        for rows in config.cardinalities:
            weights = (np.arange(rows) + 1.0) ** -config.zipf_alpha
            self.cdfs.append(np.cumsum(weights) / weights.sum())
            self.perms.append(rng.permutation(rows))
        feats = config.dense_features
        self.dense_mu = rng.uniform(0.0, 4.0, feats)
        self.dense_sigma = rng.uniform(0.5, 1.5, feats)
        self.dense_missing = rng.uniform(0.0, 0.3, feats)
        hidden = 32
        self.w1 = rng.standard_normal((feats, hidden)) / np.sqrt(feats)
        self.b1 = rng.standard_normal(hidden) * 0.5
        self.w_vec = (rng.standard_normal((hidden, dim)) / np.sqrt(hidden) * spectrum).astype(
            np.float32
        )
        self.w_out = rng.standard_normal(hidden) / np.sqrt(hidden)
        # Normalise the three logit parts on a pilot sample, then solve the intercept for the
        # target positive rate.
        pilot = self._features(np.random.default_rng([config.seed, 9]), 16_384)
        pair, bias, dense = self._parts(*pilot)
        self.norm = (pair.std() or 1.0, bias.std() or 1.0, dense.std() or 1.0)
        self.offset = (pair.mean(), bias.mean(), dense.mean())
        self.intercept = 0.0
        self.intercept = _solve_intercept(self._logit(pair, bias, dense), config.positive_rate)

    def _features(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        counts = np.floor(np.exp(rng.normal(self.dense_mu, self.dense_sigma, (n, len(self.w1)))))
        counts[rng.random(counts.shape) < self.dense_missing] = 0.0
        dense = np.log1p(counts).astype(np.float32)
        sparse = np.empty((n, len(cfg.cardinalities)), dtype=np.int64)
        for t, (cdf, perm) in enumerate(zip(self.cdfs, self.perms, strict=True)):
            ranks = np.minimum(np.searchsorted(cdf, rng.random(n)), len(cdf) - 1)
            sparse[:, t] = perm[ranks]
        return dense, sparse

    def _parts(self, dense: np.ndarray, sparse: np.ndarray) -> tuple[np.ndarray, ...]:
        z = (dense - self.dense_mu) / self.dense_sigma
        h = np.tanh(z @ self.w1 + self.b1)
        vec = (h @ self.w_vec).astype(np.float32)
        total = vec.copy()
        squares = np.einsum("nd,nd->n", vec, vec)
        bias = np.zeros(len(dense))
        for t, (table, weight) in enumerate(zip(self.tables, self.field_weight, strict=True)):
            emb = table[sparse[:, t]] * np.float32(weight)
            total += emb
            squares += np.einsum("nd,nd->n", emb, emb)
            bias += self.biases[t][sparse[:, t]]
        pair = 0.5 * (np.einsum("nd,nd->n", total, total) - squares)
        return pair.astype(np.float64), bias, h @ self.w_out

    def _logit(self, pair: np.ndarray, bias: np.ndarray, dense: np.ndarray) -> np.ndarray:
        cfg = self.config
        return (
            self.intercept
            + cfg.pair_scale * (pair - self.offset[0]) / self.norm[0]
            + cfg.bias_scale * (bias - self.offset[1]) / self.norm[1]
            + cfg.dense_scale * (dense - self.offset[2]) / self.norm[2]
        )

    def probability(self, dense: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        """The teacher's click probability for (already transformed) features."""
        return 1.0 / (1.0 + np.exp(-self._logit(*self._parts(dense, sparse))))

    def sample(self, n: int, *, stream: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` labelled samples from random stream ``stream`` (dense, sparse, labels)."""
        dense = np.empty((n, self.config.dense_features), dtype=np.float32)
        sparse = np.empty((n, len(self.config.cardinalities)), dtype=np.int64)
        labels = np.empty(n, dtype=np.float32)
        for c, start in enumerate(range(0, n, CHUNK)):
            m = min(CHUNK, n - start)
            rng = np.random.default_rng([self.config.seed, stream, c])
            d, s = self._features(rng, m)
            p = self.probability(d, s)
            dense[start : start + m], sparse[start : start + m] = d, s
            labels[start : start + m] = rng.random(m) < p
        return dense, sparse, labels


def _solve_intercept(logits: np.ndarray, rate: float) -> float:
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.mean(1.0 / (1.0 + np.exp(-(logits + mid)))) < rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
