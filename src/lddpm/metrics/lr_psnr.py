"""LR-PSNR: how consistent an SR output is with its LR input.

The SR output is downsampled by the scale with the same MATLAB-compatible antialiased
bicubic `imresize` that makes bicubic LR sets (`lddpm.data.resize.imresize`), in float64
without rounding, and compared with the LR image by PSNR on all three RGB channels in the
[0, 255] range, with no border crop. When the LR was made by that same operator, the HR
image itself scores infinity (up to the LR's 8-bit rounding), so LR-PSNR measures how far
the SR output strays from explaining its input.
"""

from __future__ import annotations

import numpy as np
import torch

from lddpm.data.resize import imresize
from lddpm.metrics.base import Metric, Pair
from lddpm.metrics.psnr_ssim import psnr


def _to_float255(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) or float [0, 1] -> float64 in [0, 255] (float inputs not rounded)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64)
    return img.astype(np.float64) * 255.0


def downsample(sr: np.ndarray, scale: int, lr_hw: tuple[int, int]) -> np.ndarray:
    """(s*h, s*w, 3) -> (h, w, 3) float64 in [0, 255] by bicubic imresize, no rounding."""
    chw = torch.from_numpy(_to_float255(sr)).permute(2, 0, 1)
    small = imresize(chw, scale=1.0 / scale, size=lr_hw)
    return small.permute(1, 2, 0).numpy()


def lr_psnr(sr: np.ndarray, lr: np.ndarray, scale: int) -> float:
    """PSNR (dB, RGB, [0, 255]) between imresize(sr, 1/scale) and lr; uint8 or float [0, 1]."""
    lr255 = _to_float255(lr)
    expected = (lr255.shape[0] * scale, lr255.shape[1] * scale)
    if np.shape(sr)[:2] != expected:
        raise ValueError(f"SR size {np.shape(sr)[:2]} is not scale x LR size {expected}")
    return psnr(downsample(sr, scale, lr255.shape[:2]), lr255)


class LRPSNR(Metric):
    key, column, higher_is_better, decimals = "lr_psnr", "LR-PSNR", True, 2

    def __call__(self, pair: Pair) -> float:
        return lr_psnr(pair.sr, pair.lr, pair.scale)
