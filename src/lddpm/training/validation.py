"""Periodic validation: PSNR-Y of a few images and a PNG grid LR | bicubic | SR | HR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lddpm.config import Config
from lddpm.data.grids import comparison_row, stack_rows
from lddpm.data.imageio import save_image, to_uint8
from lddpm.metrics.psnr_ssim import psnr_y


def _center_crop(x: torch.Tensor, size: int, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    th, tw = min(h, size) // multiple * multiple, min(w, size) // multiple * multiple
    top, left = (h - th) // 2 // multiple * multiple, (w - tw) // 2 // multiple * multiple
    return x[..., top : top + th, left : left + tw]


def validation_steps(cfg: Config) -> int | None:
    """`train.val_steps` for ddim; ddpm (T steps) and lddpm (the trained K) have their own."""
    return cfg.train.val_steps if cfg.train.val_sampler == "ddim" else None


def validation_report(upscaler, val_set, cfg: Config, png_path: Path) -> float:
    """Mean PSNR-Y over the first `train.val_images` images (`val_set` items in [0, 1], as
    every dataset gives them); writes the grid LR | bicubic | SR | HR to png_path."""
    s = cfg.data.scale
    side = 2 * cfg.data.crop  # HR centre crops about the training size: seconds, not minutes
    rows, scores = [], []
    for i in range(min(cfg.train.val_images, len(val_set))):
        item = val_set[i]
        hr = _center_crop(item["hr"], side, s)
        lr = _center_crop(item["lr"], side // s, 1)[..., : hr.shape[-2] // s, : hr.shape[-1] // s]
        sr = upscaler.upscale(lr[None], cfg.train.val_sampler, validation_steps(cfg), seed=i)[0, 0]
        scores.append(psnr_y(to_uint8(sr), to_uint8(hr), border=s))
        rows.append(comparison_row(lr, [sr, hr], s))
    save_image(png_path, stack_rows(rows))
    return float(np.mean(scores))
