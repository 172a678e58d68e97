"""PSNR and SSIM on the Y channel, the way SR papers' MATLAB scripts compute them.

Conventions (also in docs/metrics.md):
- Y is ITU-R BT.601 as MATLAB `rgb2ycbcr`: Y = 16 + 65.481 R + 128.553 G + 24.966 B with
  R, G, B in [0, 1], so Y lies in [16, 235] on the 8-bit scale.
- Inputs are uint8 HWC or float HWC in [0, 1]. Float inputs are first quantized to 8 bits
  (round(clip(x) * 255)), exactly what saving the SR output as a PNG does.
- `y_rounding`: "matlab" (default) rounds Y to integers, as MATLAB's `rgb2ycbcr` returns
  for uint8 input (the SR papers' scripts); "none" keeps Y unrounded, as BasicSR's
  `calculate_psnr/ssim(test_y_channel=True)` does on the same 8-bit images. The two differ
  by a few hundredths of a dB at typical PSNRs. Everything after Y is float64.
- `border` pixels (the scale, by convention) are cropped from every side before comparing.
- SSIM is Wang et al.'s `ssim_index.m`: 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
  K2 = 0.03, data range 255, statistics over the 'valid' part of the filtered image only,
  no automatic downsampling.
"""

from __future__ import annotations

import math

import numpy as np

from lddpm.errors import UserError
from lddpm.metrics.base import Metric, Pair

# BT.601 luma weights for R, G, B in [0, 1], giving the [16, 235] range (MATLAB rgb2ycbcr).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)
_Y_OFFSET = 16.0

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_DATA_RANGE = 255.0
Y_ROUNDINGS = ("matlab", "none")


def to_uint8_hwc(img: np.ndarray) -> np.ndarray:
    """uint8 HWC stays; float HWC in [0, 1] is clipped, scaled and rounded (as a PNG save)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"expected uint8 or float image, got {img.dtype}")
    return np.round(np.clip(img.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def rgb_to_y(img: np.ndarray, *, matlab_rounding: bool = True) -> np.ndarray:
    """(H, W, 3) RGB, uint8 or float [0, 1] -> (H, W) float64 Y in [16, 235].

    With `matlab_rounding` (the default, what the MATLAB scripts do) the input is taken to 8
    bits first and Y is rounded to integers; without it the formula is applied to the
    values as they are.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    if matlab_rounding:
        rgb = to_uint8_hwc(img).astype(np.float64) / 255.0
    elif img.dtype == np.uint8:
        rgb = img.astype(np.float64) / 255.0
    else:
        rgb = img.astype(np.float64)
    y = rgb @ _Y_WEIGHTS + _Y_OFFSET
    return np.round(y) if matlab_rounding else y


def crop_border(img: np.ndarray, border: int) -> np.ndarray:
    """Removes `border` pixels from each side of the two leading (spatial) axes."""
    if border <= 0:
        return img
    if img.shape[0] <= 2 * border or img.shape[1] <= 2 * border:
        raise UserError(
            f"image of size {img.shape[1]}x{img.shape[0]} is too small to crop a "
            f"{border}-pixel border"
        )
    return img[border:-border, border:-border]


def y_channel(img: np.ndarray, y_rounding: str = "matlab") -> np.ndarray:
    """The Y the metrics compare: of the 8-bit image, rounded ("matlab") or not ("none")."""
    if y_rounding not in Y_ROUNDINGS:
        raise UserError(f"Y rounding {y_rounding!r} is not one of: {', '.join(Y_ROUNDINGS)}")
    return rgb_to_y(to_uint8_hwc(img), matlab_rounding=y_rounding == "matlab")


def _y_pair(sr: np.ndarray, hr: np.ndarray, border: int, y_rounding: str) -> tuple[np.ndarray, np.ndarray]:
    if np.shape(sr) != np.shape(hr):
        raise ValueError(f"SR {np.shape(sr)} and HR {np.shape(hr)} shapes differ")
    return crop_border(y_channel(sr, y_rounding), border), crop_border(y_channel(hr, y_rounding), border)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = _DATA_RANGE) -> float:
    """PSNR in dB between two float arrays of the same shape; inf when they are equal."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int, y_rounding: str = "matlab") -> float:
    """PSNR (dB) on Y with `border` pixels cropped; sr, hr: (H, W, 3) uint8 or float [0, 1]."""
    y_sr, y_hr = _y_pair(sr, hr, border, y_rounding)
    return psnr(y_sr, y_hr)


def gaussian_window_1d(size: int = _SSIM_WINDOW, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    """Normalized 1-D Gaussian; its outer product is MATLAB's fspecial('gaussian', size, sigma)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation keeping only the 'valid' part: (H, W) -> (H-k+1, W-k+1)."""
    k = kernel.size
    rows = np.lib.stride_tricks.sliding_window_view(img, k, axis=0) @ kernel
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ kernel


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = _DATA_RANGE) -> float:
    """Mean SSIM of two (H, W) single-channel images (Wang et al. 2004, ssim_index.m)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if min(a.shape) < _SSIM_WINDOW:
        raise UserError(
            f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} after the border "
            f"crop, got {a.shape[1]}x{a.shape[0]}"
        )
    window = gaussian_window_1d()
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(ssim_map.mean())


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int, y_rounding: str = "matlab") -> float:
    """SSIM on Y with `border` pixels cropped; sr, hr: (H, W, 3) uint8 or float [0, 1]."""
    y_sr, y_hr = _y_pair(sr, hr, border, y_rounding)
    return ssim(y_sr, y_hr)


class PSNRY(Metric):
    """PSNR on Y, `scale` pixels of border cropped."""

    key, column, higher_is_better, decimals = "psnr", "PSNR-Y", True, 2

    def __init__(self, y_rounding: str = "matlab"):
        self.y_rounding = y_rounding

    def __call__(self, pair: Pair) -> float:
        return psnr_y(pair.sr, pair.hr, border=pair.scale, y_rounding=self.y_rounding)


class SSIMY(PSNRY):
    """SSIM on Y, `scale` pixels of border cropped."""

    key, column, higher_is_better, decimals = "ssim", "SSIM-Y", True, 4

    def __call__(self, pair: Pair) -> float:
        return ssim_y(pair.sr, pair.hr, border=pair.scale, y_rounding=self.y_rounding)
