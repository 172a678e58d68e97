"""Frechet Inception Distance between the SR outputs and the HR images of a set.

FID = |mu_sr - mu_hr|^2 + tr(S_sr) + tr(S_hr) - 2 tr((S_sr S_hr)^(1/2)), over the 2048-d
pool3 features of the FID Inception (`lddpm.metrics.inception`), each full image resized to
299x299. Computed in float64. The matrix square root's trace comes from a symmetric
eigen-decomposition: tr((A B)^(1/2)) = sum of sqrt(eig(A^(1/2) B A^(1/2))), which is real by
construction, so there are no imaginary parts to discard as with a general `sqrtm`.

With fewer images than feature dimensions (2048) the covariances are singular and FID is
biased upwards; it is only comparable between runs with the same number of images.
"""

from __future__ import annotations

import numpy as np
import torch

from lddpm.errors import UserError
from lddpm.metrics.base import Pair, SetMetric, uint8_to_batch
from lddpm.metrics.inception import FIDInceptionV3


def _as_features(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors (N, D), got {features.shape}")
    return features


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,) and unbiased covariance (D, D), float64; needs N >= 2."""
    features = _as_features(features)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (round-off negatives -> 0)."""
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((sigma1 sigma2)^(1/2)) for covariance matrices, via a symmetric eigenproblem."""
    root1 = _psd_sqrt(np.asarray(sigma1, np.float64))
    middle = root1 @ np.asarray(sigma2, np.float64) @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two Gaussians have different dimensions")
    mean_term = float(np.sum((mu1 - mu2) ** 2))
    trace_term = float(np.trace(sigma1) + np.trace(sigma2))
    return mean_term + trace_term - 2.0 * trace_sqrt_product(sigma1, sigma2)


def _frechet_distance_low_rank(features1: np.ndarray, features2: np.ndarray) -> float:
    """The same distance from the features themselves, for N < D (few images, 2048-d).

    With A, B the centred feature matrices, S1 = A'A / (n1-1), S2 = B'B / (n2-1), and the
    non-zero eigenvalues of S1 S2 are the squared singular values of C = A B' / sqrt((n1-1)
    (n2-1)); so tr((S1 S2)^(1/2)) is C's nuclear norm: an n1 x n2 problem, not D x D.
    """
    a = features1 - features1.mean(axis=0)
    b = features2 - features2.mean(axis=0)
    n1, n2 = a.shape[0] - 1, b.shape[0] - 1
    mean_term = float(np.sum((features1.mean(axis=0) - features2.mean(axis=0)) ** 2))
    trace_term = float(np.sum(a * a) / n1 + np.sum(b * b) / n2)
    cross = np.linalg.svd(a @ b.T / np.sqrt(n1 * n2), compute_uv=False).sum()
    return mean_term + trace_term - 2.0 * float(cross)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two (N, D) feature sets, float64 (exact either way; the cheaper route)."""
    features1, features2 = _as_features(features1), _as_features(features2)
    if features1.shape[1] != features2.shape[1]:
        raise ValueError(f"feature sizes differ: {features1.shape} vs {features2.shape}")
    if max(features1.shape[0], features2.shape[0]) < features1.shape[1]:
        return _frechet_distance_low_rank(features1, features2)
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


class InceptionFeatures:
    """Runs the FID Inception on one uint8 image at a time (images differ in size).

    FID and IS share one instance; it remembers the last two images (an SR output and its
    HR) so that the SR output both of them see goes through the network once.
    """

    _REMEMBERED = 2

    def __init__(self, network: FIDInceptionV3, device: torch.device | str = "cpu"):
        self.network = network.to(device)
        self.device = device
        self._recent: list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = []

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (H, W, 3) -> (pool3 features (2048,), logits (1008,)) as float64."""
        for seen, result in self._recent:
            if seen is image:  # holding `seen` keeps this identity check sound
                return result
        features, logits = self.network(uint8_to_batch(image, self.device))
        result = (features[0].double().cpu().numpy(), logits[0].double().cpu().numpy())
        self._recent = [*self._recent, (image, result)][-self._REMEMBERED :]
        return result


class FID(SetMetric):
    """FID of the set's SR outputs against its HR images (lower is better)."""

    key, column, higher_is_better, decimals = "fid", "FID", False, 2

    def __init__(self, features: InceptionFeatures):
        self.features = features
        self.reset()

    def reset(self) -> None:
        self._sr: list[np.ndarray] = []
        self._hr: list[np.ndarray] = []

    def update(self, pair: Pair) -> None:
        self._sr.append(self.features(pair.sr)[0])
        self._hr.append(self.features(pair.hr)[0])

    def compute(self) -> float:
        if len(self._sr) < 2:
            raise UserError("FID needs at least 2 images in the evaluation set")
        return fid_from_features(np.stack(self._sr), np.stack(self._hr))
