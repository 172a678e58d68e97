"""What every metric looks like to the evaluation loop.

A metric sees one `Pair` at a time: the SR output with its HR and LR references. Per-image
metrics (PSNR, LPIPS, ...) return a number for each pair; set metrics (FID, IS) accumulate
pairs and give one number for the whole set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Pair:
    """One super-resolved image and its references, all uint8 RGB (H, W, 3)."""

    sr: np.ndarray  # (s*h, s*w, 3)
    hr: np.ndarray  # (s*h, s*w, 3)
    lr: np.ndarray  # (h, w, 3)
    scale: int


class Metric:
    """A per-image metric. `column` is the report's column name."""

    key: str = ""
    column: str = ""
    higher_is_better: bool = True
    decimals: int = 4
    per_image: bool = True

    def __call__(self, pair: Pair) -> float:
        raise NotImplementedError


class SetMetric(Metric):
    """A metric of a whole set of images: `update` per pair, then `compute` once."""

    per_image = False

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, pair: Pair) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError


def uint8_to_batch(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (1, 3, H, W) in [0, 1] on `device`."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    return tensor.permute(2, 0, 1).unsqueeze(0).float().div(255.0)
