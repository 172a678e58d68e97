"""Degradation ops of BSRGAN (Zhang et al. 2021), as pure functions.

Images here are float64 numpy arrays (H, W, 3) in [0, 1]. Each op comes as a pair:
  draw_<op>(rng, ...) -> params         a JSON-ready dict of what was drawn, and
  <op>(img, **params[, rng]) -> img     the op with fixed parameters (tests call it directly).
Ops whose output is itself random (noise) also take the generator when applied. No op
touches a global RNG, so a seed fixes the result. The order and probabilities live in
`lddpm.data.pipeline`.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from lddpm.data.resize import imresize_numpy

# ----------------------------------------------------------------------------------------------
# Gaussian blur
# ----------------------------------------------------------------------------------------------


def kernel_size_for(sigma: float, max_size: int = 21) -> int:
    """Odd size covering +-3 sigma, at least 3 and at most `max_size`."""
    size = 2 * math.ceil(3.0 * sigma) + 1
    return int(min(max(size, 3), max_size | 1))


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """(size, size) Gaussian with std sigma_x along the direction `angle` (radians from the
    x axis) and sigma_y across it; sums to 1. Isotropic when sigma_x == sigma_y."""
    if size % 2 == 0 or size < 1:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    covariance = rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T
    precision = np.linalg.inv(covariance)
    half = size // 2
    ys, xs = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    points = np.stack([xs, ys], axis=-1)  # (size, size, 2) as (x, y)
    mahalanobis = np.einsum("...i,ij,...j->...", points, precision, points)
    kernel = np.exp(-0.5 * mahalanobis)
    return kernel / kernel.sum()


def apply_kernel(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolves each channel of (H, W, C) with an odd-sized `kernel`, reflect-padded so the
    size is kept.

    Through the FFT: the circular convolution of the padded image equals the linear one
    wherever the kernel does not wrap, which is exactly the H x W output window. Pure
    numpy, cost independent of the kernel size.
    """
    k_h, k_w = kernel.shape
    # np.pad reflects any width, even one larger than a tiny image.
    padded = np.pad(img, ((k_h // 2, k_h // 2), (k_w // 2, k_w // 2), (0, 0)), mode="reflect")
    shape = padded.shape[:2]
    spectrum = np.fft.rfft2(padded, axes=(0, 1)) * np.fft.rfft2(kernel, s=shape)[:, :, None]
    full = np.fft.irfft2(spectrum, s=shape, axes=(0, 1))
    return np.ascontiguousarray(full[k_h - 1 :, k_w - 1 :])


def draw_blur(
    rng: np.random.Generator,
    sigma_range: tuple[float, float],
    anisotropic_prob: float,
    max_size: int = 21,
) -> dict:
    """Isotropic (one sigma) or anisotropic (two sigmas and an angle) Gaussian blur."""
    if rng.random() < anisotropic_prob:
        sigma_x, sigma_y = (float(v) for v in rng.uniform(*sigma_range, size=2))
        angle = float(rng.uniform(0.0, math.pi))
    else:
        sigma_x = sigma_y = float(rng.uniform(*sigma_range))
        angle = 0.0
    size = kernel_size_for(max(sigma_x, sigma_y), max_size)
    return {"sigma_x": sigma_x, "sigma_y": sigma_y, "angle": angle, "size": size}


def blur(img: np.ndarray, sigma_x: float, sigma_y: float, angle: float, size: int) -> np.ndarray:
    return apply_kernel(img, gaussian_kernel(size, sigma_x, sigma_y, angle))


# ----------------------------------------------------------------------------------------------
# Resizing
# ----------------------------------------------------------------------------------------------
# mode -> (imresize kernel, antialias). Nearest and bilinear alias on purpose (like OpenCV's
# INTER_NEAREST / INTER_LINEAR that BSRGAN draws from); bicubic is MATLAB's antialiased one.
RESIZE_MODES: dict[str, tuple[str, bool]] = {
    "nearest": ("nearest", False),
    "bilinear": ("linear", False),
    "bicubic": ("cubic", True),
}


def draw_resize(
    rng: np.random.Generator, size: tuple[int, int], modes: tuple[str, ...]
) -> dict:
    return {"mode": str(modes[rng.integers(len(modes))]), "size": [int(size[0]), int(size[1])]}


def resize(img: np.ndarray, mode: str, size: tuple[int, int] | list[int]) -> np.ndarray:
    """Resizes to `size` = (height, width) by nearest, bilinear or (MATLAB) bicubic."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; valid: {', '.join(RESIZE_MODES)}")
    kernel, antialias = RESIZE_MODES[mode]
    return imresize_numpy(img, size=tuple(size), kernel=kernel, antialias=antialias)


# ----------------------------------------------------------------------------------------------
# Additive Gaussian noise
# ----------------------------------------------------------------------------------------------


def draw_gaussian_noise(
    rng: np.random.Generator, level_range: tuple[float, float], gray_prob: float
) -> dict:
    """`level`: the noise standard deviation in 8-bit units (sigma = level / 255)."""
    return {"level": float(rng.uniform(*level_range)), "gray": bool(rng.random() < gray_prob)}


def gaussian_noise(
    img: np.ndarray, level: float, gray: bool, rng: np.random.Generator
) -> np.ndarray:
    """Adds N(0, (level/255)^2): one field shared by the channels (gray) or one each."""
    shape = img.shape[:2] + ((1,) if gray else (img.shape[2],))
    return np.clip(img + rng.normal(0.0, level / 255.0, size=shape), 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# JPEG
# ----------------------------------------------------------------------------------------------


def draw_jpeg(rng: np.random.Generator, quality_range: tuple[int, int]) -> dict:
    low, high = quality_range
    return {"quality": int(rng.integers(low, high + 1))}


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encodes with Pillow at `quality` in memory and decodes again (8-bit round trip)."""
    pixels = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float64) / 255.0


# ----------------------------------------------------------------------------------------------
# Camera sensor noise through a reversed ISP (after Brooks et al., "Unprocessing Images")
# ----------------------------------------------------------------------------------------------
GAMMA = 2.2
_EPS = 1e-8


def tone_curve(x: np.ndarray) -> np.ndarray:
    """The smoothstep 3x^2 - 2x^3 that stands in for a camera's global tone curve."""
    x = np.clip(x, 0.0, 1.0)
    return 3.0 * x**2 - 2.0 * x**3


def inverse_tone_curve(y: np.ndarray) -> np.ndarray:
    """The root of 3x^2 - 2x^3 = y in [0, 1]."""
    y = np.clip(y, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)


def gamma_compress(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, _EPS) ** (1.0 / GAMMA)


def gamma_expand(y: np.ndarray) -> np.ndarray:
    return np.maximum(y, _EPS) ** GAMMA


def apply_colour_matrix(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Per-pixel 3x3 matrix: out[..., i] = sum_j matrix[i, j] * img[..., j]."""
    return np.einsum("ij,hwj->hwi", matrix, img)


def unprocess(rgb: np.ndarray, rgb_to_cam: np.ndarray) -> np.ndarray:
    """sRGB-like image -> linear camera RGB: inverse tone curve, gamma, colour matrix."""
    linear = gamma_expand(inverse_tone_curve(rgb))
    return apply_colour_matrix(linear, rgb_to_cam)


def process(cam: np.ndarray, rgb_to_cam: np.ndarray) -> np.ndarray:
    """Linear camera RGB -> image: colour correction, gamma, tone curve. Inverts `unprocess`."""
    linear = apply_colour_matrix(cam, np.linalg.inv(rgb_to_cam))
    return tone_curve(gamma_compress(np.clip(linear, 0.0, 1.0)))


def mosaic(cam: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) RGGB Bayer raw: R at (even, even), G at (even, odd) and
    (odd, even), B at (odd, odd)."""
    raw = cam[:, :, 1].copy()
    raw[0::2, 0::2] = cam[0::2, 0::2, 0]
    raw[1::2, 1::2] = cam[1::2, 1::2, 2]
    return raw


def _bayer_masks(height: int, width: int) -> np.ndarray:
    """(H, W, 3) 0/1 masks of where each colour was sampled in the RGGB pattern."""
    masks = np.zeros((height, width, 3))
    masks[0::2, 0::2, 0] = 1.0
    masks[0::2, 1::2, 1] = 1.0
    masks[1::2, 0::2, 1] = 1.0
    masks[1::2, 1::2, 2] = 1.0
    return masks


_GREEN_INTERP = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float64) / 4.0
_RED_BLUE_INTERP = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 4.0


def demosaic(raw: np.ndarray) -> np.ndarray:
    """Bilinear demosaicing of an RGGB raw (H, W) -> (H, W, 3).

    Each colour plane keeps its samples and fills the gaps with the mean of the sampled
    neighbours. Reflect padding (no edge repeat) keeps the Bayer phase at the borders.
    """
    sparse = raw[:, :, None] * _bayer_masks(*raw.shape)
    green = apply_kernel(sparse[:, :, 1:2], _GREEN_INTERP)
    red_blue = apply_kernel(sparse[:, :, 0::2], _RED_BLUE_INTERP)
    return np.stack([red_blue[:, :, 0], green[:, :, 0], red_blue[:, :, 1]], axis=-1)


def draw_sensor_noise(
    rng: np.random.Generator,
    shot_range: tuple[float, float],
    read_range: tuple[float, float],
) -> dict:
    """A random camera (colour matrix) and noise levels, drawn log-uniformly.

    The camera matrix is synthetic, not measured: rgb_to_cam = (1 - m) I + m R with R a
    random row-stochastic matrix and m in [0.1, 0.4]. Rows sum to 1 (white stays white),
    and the positive off-diagonal mixing desaturates as real sensors' responses do.
    """
    mix = rng.uniform(0.1, 0.4)
    random_rows = rng.random((3, 3)) + 1e-3
    random_rows /= random_rows.sum(axis=1, keepdims=True)
    rgb_to_cam = (1.0 - mix) * np.eye(3) + mix * random_rows
    shot = math.exp(rng.uniform(math.log(shot_range[0]), math.log(shot_range[1])))
    read = math.exp(rng.uniform(math.log(read_range[0]), math.log(read_range[1])))
    return {"rgb_to_cam": rgb_to_cam.tolist(), "shot_noise": shot, "read_noise": read}


def sensor_noise(
    img: np.ndarray,
    rgb_to_cam: list[list[float]] | np.ndarray,
    shot_noise: float,
    read_noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Reversed ISP, Bayer mosaic, shot + read noise, demosaic, forward ISP.

    Noise variance on the raw = shot_noise * signal + read_noise (heteroscedastic: photon
    shot noise grows with the signal, read noise does not).
    """
    matrix = np.asarray(rgb_to_cam, dtype=np.float64)
    raw = mosaic(unprocess(img, matrix))
    variance = shot_noise * np.clip(raw, 0.0, None) + read_noise
    noisy = np.clip(raw + rng.normal(size=raw.shape) * np.sqrt(variance), 0.0, 1.0)
    return process(demosaic(noisy), matrix)
