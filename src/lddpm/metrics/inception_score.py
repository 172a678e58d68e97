"""Inception Score of the SR outputs: exp(E_x KL(p(y|x) || p(y))), 10 splits.

p(y|x) is the softmax over all 1008 logits of the FID Inception (the label space of the
TensorFlow graph `inception-2015-12-05` that Salimans et al. defined IS with; classes
1001-1007 are unused padding and get almost no mass). The N images are cut, in order, into
min(10, N) contiguous splits of near-equal size; IS is the mean over splits of
exp(mean KL within the split), and its standard deviation over splits is also reported.
Only the SR outputs are scored; the HR images play no part.
"""

from __future__ import annotations

import numpy as np

from lddpm.errors import UserError
from lddpm.metrics.base import Pair, SetMetric
from lddpm.metrics.fid import InceptionFeatures

DEFAULT_SPLITS = 10


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _split_score(probs: np.ndarray) -> float:
    """exp(mean over rows of KL(p(y|x) || p(y))) with p(y) the rows' mean; 0 log 0 = 0."""
    marginal = probs.mean(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * (np.log(probs) - np.log(marginal)), 0.0)
    return float(np.exp(terms.sum(axis=1).mean()))


def inception_score_from_probs(
    probs: np.ndarray, splits: int = DEFAULT_SPLITS
) -> tuple[float, float]:
    """(N, C) class probabilities -> (mean IS over splits, standard deviation over splits)."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[0] < 1:
        raise ValueError(f"expected (N, C) probabilities, got {probs.shape}")
    chunks = np.array_split(probs, min(splits, probs.shape[0]))
    scores = np.array([_split_score(chunk) for chunk in chunks])
    return float(scores.mean()), float(scores.std())


class InceptionScore(SetMetric):
    """IS of the SR outputs (higher is better); `last_std` holds the spread over splits."""

    key, column, higher_is_better, decimals = "is", "IS", True, 2

    def __init__(self, features: InceptionFeatures, splits: int = DEFAULT_SPLITS):
        self.features = features
        self.splits = splits
        self.last_std = float("nan")
        self.reset()

    def reset(self) -> None:
        self._logits: list[np.ndarray] = []

    def update(self, pair: Pair) -> None:
        self._logits.append(self.features(pair.sr)[1])

    def compute(self) -> float:
        if not self._logits:
            raise UserError("IS needs at least 1 image")
        mean, self.last_std = inception_score_from_probs(softmax(np.stack(self._logits)),
                                                         self.splits)  # fmt: skip
        return mean
