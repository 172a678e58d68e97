"""Side-by-side comparison images: LR (nearest) | bicubic | results [| HR], as a person reads them.

    row = comparison_row(lr, [sr], scale)          # lr (3,h,w), sr (3,H,W) in [0,1] -> uint8 (H, W', 3)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lddpm.data.imageio import to_uint8
from lddpm.data.resize import imresize

GAP = 4  # pixels of black between panels


def comparison_row(lr: torch.Tensor, images: list[torch.Tensor], scale: int) -> np.ndarray:
    """LR enlarged by nearest neighbour, its bicubic upsampling, then `images` (each (3,H,W),
    H = h * scale, [0, 1]) side by side: uint8 (H, W_total, 3)."""
    lr_big = F.interpolate(lr[None], scale_factor=scale, mode="nearest")[0]
    bicubic = imresize(lr, scale=scale).clamp(0, 1)
    tiles = [to_uint8(x) for x in (lr_big, bicubic, *images)]
    gap = np.zeros((tiles[0].shape[0], GAP, 3), np.uint8)
    return np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1)
