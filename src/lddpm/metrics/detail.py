"""Detail ratio: how much fine detail the SR output has, relative to the HR image (HR = 1).

The detail of an image is what its LR cannot carry: Y minus its bicubic down-up version,
    D(Y) = Y - up_s(down_s(Y)),
with MATLAB's antialiased bicubic `imresize` by 1/s and back by s (`lddpm.data.resize`, the
operator that makes bicubic LR sets), s the evaluation's scale. Its energy is the mean of
D^2 after cropping `s` pixels from each side (as PSNR-Y), and

    detail = energy(D(Y_SR)) / energy(D(Y_HR)).

Y is BT.601 (MATLAB rgb2ycbcr) of the 8-bit images, not rounded. The HR image scores 1.0
exactly; a blurred or bicubic-upsampled output is below 1 (bicubic upsampling of a bicubic
LR keeps almost none: it is smooth at the HR scale); sharpening, hallucinated texture or
noise go above 1. Neither way is "better" in itself: the column is not bolded, and the
closer to 1 the more the output's amount of fine detail matches the HR's (not its
placement: PSNR/SSIM say that). NaN when the HR has no detail at all (a flat image) or at
scale 1 (down-up is then the identity).
"""

from __future__ import annotations

import numpy as np

from lddpm.data.resize import imresize_numpy
from lddpm.metrics.base import Metric, Pair
from lddpm.metrics.psnr_ssim import crop_border, rgb_to_y

_FLAT = 1e-10  # an HR detail energy below this (8-bit Y units squared) is rounding noise


def high_pass(y: np.ndarray, scale: int) -> np.ndarray:
    """Y - imresize(imresize(Y, 1/scale), scale): the part of Y above the LR's band."""
    h, w = y.shape
    low = imresize_numpy(y, scale=1.0 / scale, size=(-(-h // scale), -(-w // scale)))
    return y - imresize_numpy(low, scale=float(scale), size=(h, w))


def detail_energy(image: np.ndarray, scale: int) -> float:
    """Mean squared high-pass of the Y of a uint8 (H, W, 3) image, `scale` px cropped."""
    y = rgb_to_y(image, matlab_rounding=False)
    return float(np.mean(crop_border(high_pass(y, scale), scale) ** 2))


def detail_ratio(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """energy(SR) / energy(HR); 1.0 for SR == HR; NaN for a flat HR or scale 1."""
    if scale < 2:
        return float("nan")
    reference = detail_energy(hr, scale)
    if reference < _FLAT:
        return float("nan")
    return detail_energy(sr, scale) / reference


class DetailRatio(Metric):
    """High-frequency energy of SR over HR's (descriptive: HR = 1, never bolded)."""

    key, column, decimals = "detail", "detail", 3
    higher_is_better = None  # type: ignore[assignment]  # closest to 1, not higher or lower

    def __call__(self, pair: Pair) -> float:
        return detail_ratio(pair.sr, pair.hr, pair.scale)
