"""FID (Frechet distance, Inception loading and features) and the Inception Score."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from lddpm.errors import UserError, display_path
from lddpm.metrics import MetricSuite
from lddpm.metrics.base import Pair
from lddpm.metrics.fid import (
    FID,
    InceptionFeatures,
    feature_statistics,
    fid_from_features,
    frechet_distance,
)
from lddpm.metrics.inception import (
    FEATURE_DIM,
    FID_WEIGHTS_FILE,
    NUM_CLASSES,
    FIDInceptionV3,
    load_fid_inception,
)
from lddpm.metrics.inception_score import InceptionScore, inception_score_from_probs, softmax
from lddpm.weights import WeightsNotFound

SMALL_INPUT = 75  # the smallest size Inception-v3 takes; the metric itself uses 299


def _random_gaussian(rng: np.random.Generator, dim: int) -> tuple[np.ndarray, np.ndarray]:
    a = rng.normal(size=(dim, dim))
    return rng.normal(size=dim), a @ a.T / dim + 0.1 * np.eye(dim)


# ----------------------------------------------------------------------------------------------
# Frechet distance
# ----------------------------------------------------------------------------------------------
def test_identical_feature_sets_give_zero():
    features = np.random.default_rng(0).normal(size=(300, 32))
    assert fid_from_features(features, features) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("dim", [2, 16, 64])
def test_frechet_distance_matches_scipy_sqrtm(dim):
    rng = np.random.default_rng(dim)
    mu1, sigma1 = _random_gaussian(rng, dim)
    mu2, sigma2 = _random_gaussian(rng, dim)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2 * covmean)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(direct, rel=1e-9, abs=1e-9)


def test_frechet_distance_of_shifted_isotropic_gaussians_is_the_squared_shift():
    dim = 8
    shift = np.arange(dim, dtype=np.float64)
    cov = 2.0 * np.eye(dim)
    assert frechet_distance(np.zeros(dim), cov, shift, cov) == pytest.approx(np.sum(shift**2))


def test_feature_statistics_are_float64_mean_and_unbiased_covariance():
    features = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    mu, sigma = feature_statistics(features)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, np.cov(features.astype(np.float64).T), rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# Inception Score
# ----------------------------------------------------------------------------------------------
def test_uniform_predictions_score_one():
    score, spread = inception_score_from_probs(np.full((40, NUM_CLASSES), 1.0 / NUM_CLASSES))
    assert score == pytest.approx(1.0, abs=1e-12)
    assert spread == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("classes", [2, 5, 10])
def test_equally_likely_confident_classes_score_their_number(classes):
    # 10 splits of 10 images; each split holds every class equally often.
    labels = np.arange(100) % classes
    probs = np.eye(NUM_CLASSES)[labels]
    score, _ = inception_score_from_probs(probs, splits=10)
    assert score == pytest.approx(classes, rel=1e-12)


def test_softmax_is_stable_and_normalised():
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0.0]], atol=1e-12)


# ----------------------------------------------------------------------------------------------
# The network and its weight file
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_inception(tmp_path_factory):
    """A randomly initialised FID Inception saved under the standard name in a hub cache,
    without BatchNorm counters (the original file predates them)."""
    torch_home = tmp_path_factory.mktemp("torch_home")
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    state = {
        k: v for k, v in FIDInceptionV3().state_dict().items() if "num_batches_tracked" not in k
    }
    torch.save(state, checkpoints / FID_WEIGHTS_FILE)
    return torch_home, state


def test_inception_loads_the_saved_state_dict_and_gives_2048_features(saved_inception, monkeypatch):
    torch_home, state = saved_inception
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    network = load_fid_inception(input_size=SMALL_INPUT)
    loaded = network.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert not any(p.requires_grad for p in network.parameters())
    with torch.no_grad():
        features, logits = network(torch.rand(2, 3, 40, 56))  # any size: resized inside
    assert features.shape == (2, FEATURE_DIM)
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.all(features >= 0)  # an average of ReLU outputs


def test_fid_and_is_metrics_run_on_image_pairs(saved_inception, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(saved_inception[0]))
    features = InceptionFeatures(load_fid_inception(input_size=SMALL_INPUT))
    fid, inception_score = FID(features), InceptionScore(features)
    rng = np.random.default_rng(2)
    for _ in range(3):
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        pair = Pair(sr=image, hr=image, lr=image[::4, ::4], scale=4)
        fid.update(pair)
        inception_score.update(pair)
    assert fid.compute() == pytest.approx(0.0, abs=1e-4)  # SR == HR: same features
    assert 1.0 <= inception_score.compute() <= 3.0  # between 1 and the number of images


def test_missing_inception_weights_make_fid_and_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFound, match=FID_WEIGHTS_FILE):
        load_fid_inception()
    suite = MetricSuite(["psnr", "fid", "is"])
    assert list(suite.metrics) == ["psnr"]
    lines = suite.unavailable_lines()
    assert len(lines) == 2
    assert lines[0].startswith("fid unavailable: pretrained weights " + FID_WEIGHTS_FILE)
    assert display_path(tmp_path / "hub" / "checkpoints" / FID_WEIGHTS_FILE) in lines[0]
    assert "--inception-weights" in lines[0]


def test_a_file_of_the_wrong_network_is_refused(tmp_path):
    path = tmp_path / "not_inception.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(UserError, match="do not match the network"):
        load_fid_inception(path, input_size=SMALL_INPUT)


def test_an_explicit_path_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(UserError, match="weight file not found"):
        MetricSuite(["fid"], weights=_weights(inception=tmp_path / "nope.pth"))


def _weights(**kwargs):
    from lddpm.metrics import MetricWeights

    return MetricWeights(**kwargs)


@pytest.mark.parametrize("n1, n2", [(5, 7), (12, 3)])
def test_few_images_route_equals_the_covariance_route(n1, n2):
    # Fewer images than dimensions: FID is computed from an n1 x n2 matrix instead of D x D.
    rng = np.random.default_rng(n1)
    features1, features2 = rng.normal(size=(n1, 20)), rng.normal(size=(n2, 20)) + 0.3
    direct = frechet_distance(*feature_statistics(features1), *feature_statistics(features2))
    # The covariance route takes square roots of round-off-sized eigenvalues of singular
    # matrices (each ~sqrt(1e-16)), hence the looser tolerance.
    assert fid_from_features(features1, features2) == pytest.approx(direct, rel=1e-6)
