"""Each BSRGAN op's measurable property, with fixed parameters and with drawn ones."""

import json
import math

import numpy as np
import pytest

from lddpm.data import degradations as ops


def _photo_crop() -> np.ndarray:
    """64x64 of a real photo (textures matter for JPEG), float64 in [0, 1]."""
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()[100:164, 200:264] / 255.0


def _smooth(height=32, width=40) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width] / float(width)
    return np.stack([0.2 + 0.6 * xs, 0.3 + 0.4 * ys, 0.5 + 0.3 * np.sin(3 * xs)], axis=-1)


# ---------------------------------------------------------------------------- blur
@pytest.mark.parametrize("sigma_x, sigma_y, angle", [(1.5, 1.5, 0.0), (2.5, 0.7, 0.6)])
def test_blur_kernel_sums_to_one_and_is_point_symmetric(sigma_x, sigma_y, angle):
    kernel = ops.gaussian_kernel(15, sigma_x, sigma_y, angle)
    assert kernel.shape == (15, 15)
    assert math.isclose(kernel.sum(), 1.0, abs_tol=1e-12)
    assert np.allclose(kernel, kernel[::-1, ::-1], atol=1e-15)
    assert kernel.argmax() == kernel.size // 2  # peak at the centre


def test_isotropic_kernel_has_all_symmetries():
    kernel = ops.gaussian_kernel(9, 1.2, 1.2, 0.0)
    assert np.allclose(kernel, kernel.T) and np.allclose(kernel, kernel[::-1])


def test_anisotropic_kernel_spreads_along_its_angle():
    kernel = ops.gaussian_kernel(21, 2.0, 1.0, 0.0)
    ys, xs = np.mgrid[-10:11, -10:11]
    # Second moments are the variances (the +-5 sigma window truncates almost nothing).
    assert math.isclose((kernel * xs**2).sum(), 4.0, rel_tol=1e-3)
    assert math.isclose((kernel * ys**2).sum(), 1.0, rel_tol=1e-3)
    turned = ops.gaussian_kernel(21, 2.0, 1.0, math.pi / 2)
    assert np.allclose(turned, kernel.T, atol=1e-12)


def test_blur_keeps_constants_and_size():
    image = np.full((9, 11, 3), 0.3)
    out = ops.blur(image, sigma_x=2.0, sigma_y=1.0, angle=0.4, size=21)  # kernel > image
    assert out.shape == image.shape and np.allclose(out, 0.3)


def test_apply_kernel_with_a_delta_is_the_identity():
    delta = np.zeros((5, 5))
    delta[2, 2] = 1.0
    image = np.random.default_rng(0).random((6, 7, 3))
    assert np.allclose(ops.apply_kernel(image, delta), image)


def test_apply_kernel_is_a_reflect_padded_convolution():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    kernel, image = rng.random((5, 3)), rng.random((9, 8, 2))  # asymmetric: flips matter
    expected = np.stack(
        [ndimage.convolve(image[..., c], kernel, mode="mirror") for c in range(2)], axis=-1
    )
    assert np.allclose(ops.apply_kernel(image, kernel), expected, atol=1e-12)


def test_draw_blur_is_reproducible_and_in_range():
    first = ops.draw_blur(np.random.default_rng(3), (0.1, 2.8), anisotropic_prob=1.0)
    again = ops.draw_blur(np.random.default_rng(3), (0.1, 2.8), anisotropic_prob=1.0)
    assert first == again
    assert 0.1 <= first["sigma_x"] <= 2.8 and 0.1 <= first["sigma_y"] <= 2.8
    assert first["size"] % 2 == 1 and first["size"] <= 21
    iso = ops.draw_blur(np.random.default_rng(3), (0.1, 2.8), anisotropic_prob=0.0)
    assert iso["sigma_x"] == iso["sigma_y"] and iso["angle"] == 0.0
    json.dumps(first)


# ---------------------------------------------------------------------------- resize
@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_resize_gives_the_exact_size(mode):
    out = ops.resize(np.random.default_rng(0).random((30, 21, 3)), mode, (7, 11))
    assert out.shape == (7, 11, 3)


def test_nearest_downsampling_picks_input_pixels():
    image = np.random.default_rng(0).random((12, 12, 3))
    out = ops.resize(image, "nearest", (4, 4))
    assert np.array_equal(out, image[1::3, 1::3])  # centres of 3x3 blocks


# ---------------------------------------------------------------------------- noise
@pytest.mark.parametrize("gray", [False, True])
def test_noise_standard_deviation_matches_the_level(gray):
    image = np.full((96, 96, 3), 0.5)  # mid-grey: no clipping at level 10
    out = ops.gaussian_noise(image, level=10.0, gray=gray, rng=np.random.default_rng(0))
    noise = out - image
    assert math.isclose(noise.std() * 255.0, 10.0, rel_tol=0.05)
    channels_equal = np.allclose(noise[..., 0], noise[..., 1])
    assert channels_equal == gray


def test_noise_draws_and_clips():
    params = ops.draw_gaussian_noise(np.random.default_rng(0), (1.0, 25.0), gray_prob=0.4)
    assert 1.0 <= params["level"] <= 25.0
    out = ops.gaussian_noise(np.ones((8, 8, 3)), level=50.0, gray=False,
                             rng=np.random.default_rng(0))
    assert out.max() <= 1.0 and out.min() >= 0.0


# ---------------------------------------------------------------------------- JPEG
def test_jpeg_decodes_and_low_quality_differs_more():
    image = _photo_crop()
    low, high = ops.jpeg(image, quality=30), ops.jpeg(image, quality=95)
    assert low.shape == high.shape == image.shape
    assert 0.0 <= low.min() and low.max() <= 1.0
    assert np.abs(low - image).mean() > 1.5 * np.abs(high - image).mean()
    assert np.abs(high - image).mean() > 0  # it really went through the codec


def test_jpeg_quality_draw_is_inclusive_integer():
    qualities = {ops.draw_jpeg(np.random.default_rng(s), (30, 32))["quality"] for s in range(60)}
    assert qualities == {30, 31, 32}


# ---------------------------------------------------------------------------- ISP
def test_tone_curve_and_gamma_invert():
    y = np.linspace(0.0, 1.0, 101)
    assert np.allclose(ops.tone_curve(ops.inverse_tone_curve(y)), y, atol=1e-12)
    assert np.allclose(ops.gamma_compress(ops.gamma_expand(y[1:])), y[1:], atol=1e-12)


def test_process_inverts_unprocess():
    params = ops.draw_sensor_noise(np.random.default_rng(1), (1e-4, 1e-2), (1e-6, 1e-3))
    matrix = np.array(params["rgb_to_cam"])
    assert np.allclose(matrix.sum(axis=1), 1.0)  # white stays white
    image = np.random.default_rng(2).random((8, 8, 3))
    assert np.allclose(ops.process(ops.unprocess(image, matrix), matrix), image, atol=1e-6)


def test_mosaic_is_rggb_and_demosaic_keeps_constants():
    cam = np.zeros((4, 4, 3))
    cam[..., 0], cam[..., 1], cam[..., 2] = 0.1, 0.2, 0.3
    assert ops.mosaic(cam)[:2, :2].tolist() == [[0.1, 0.2], [0.2, 0.3]]
    flat = np.full((7, 9, 3), 0.4)  # odd sizes: reflect padding keeps the Bayer phase
    assert np.allclose(ops.demosaic(ops.mosaic(flat)), flat)


def test_sensor_pipeline_without_noise_returns_the_input():
    params = ops.draw_sensor_noise(np.random.default_rng(0), (1e-4, 1e-2), (1e-6, 1e-3))
    image = _smooth()
    out = ops.sensor_noise(image, params["rgb_to_cam"], shot_noise=0.0, read_noise=0.0,
                           rng=np.random.default_rng(0))
    error = np.abs(out - image)
    # Bilinear demosaicing is exact for linear signals; the gamma/tone curves bend them
    # slightly inside, and the mirrored border flattens the slope (one pixel wide).
    assert error[2:-2, 2:-2].max() < 5e-3
    assert error.max() < 0.05


def test_sensor_noise_grows_with_the_signal():
    params = {"rgb_to_cam": np.eye(3).tolist(), "shot_noise": 1e-2, "read_noise": 1e-6}
    rng = np.random.default_rng(0)
    dark = ops.sensor_noise(np.full((64, 64, 3), 0.2), rng=rng, **params)
    bright = ops.sensor_noise(np.full((64, 64, 3), 0.6), rng=rng, **params)
    assert dark.std() > 0.005 and bright.std() > 0.005
    json.dumps(ops.draw_sensor_noise(rng, (1e-4, 1e-2), (1e-6, 1e-3)))
