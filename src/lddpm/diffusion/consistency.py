"""LR consistency: make the output's bicubic downscale equal the input.

The x4 degradation that the benchmarks (and MATLAB) use is linear and separable,
D x = W_h x W_w^T with W = the antialiased bicubic resize matrix of each axis (`resize_matrix`).
Its range/null-space split (DDNM, Wang et al. 2023) keeps the component of an estimate that
D cannot see and replaces the one it sees by the LR's:

    x <- x + W_h^+ (y - W_h x W_w^T) W_w^+T,        W^+ = W^T (W W^T)^-1

so that D x = y afterwards, exactly for the image it is applied to (up to float rounding).
Applied to the clean estimate at every sampler step ("step") or once to the output ("end").
The equality holds for the untiled output before it is clamped to the image range and
rounded to 8 bits; a tiled run projects each tile and blends them, so D x = y holds within
each tile's interior and approximately across the blended overlaps. The pseudo-inverses
are float64 and cached per size.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from lddpm.data.resize import resize_matrix

CONSISTENCY = ("none", "end", "step")


@lru_cache(maxsize=32)
def _down_and_pinv(
    hr_len: int, scale: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """W (h, H) and W^+ (H, h) in float64 on `device`; cached, as the "step" mode asks for
    them at every sampler step."""
    w = resize_matrix(hr_len, hr_len // scale, 1.0 / scale, "cubic", True)
    pinv = w.T @ np.linalg.inv(w @ w.T)
    return (torch.tensor(w, device=device, dtype=torch.float64),
            torch.tensor(pinv, device=device, dtype=torch.float64))


def project_to_lr(image: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """image (B,3,H,W), lr (B,3,H/s,W/s), same value range -> image with D(image) = lr."""
    if image.shape[-2] != lr.shape[-2] * scale or image.shape[-1] != lr.shape[-1] * scale:
        raise ValueError(f"image {tuple(image.shape)} is not {scale}x the LR {tuple(lr.shape)}")
    w_h, p_h = _down_and_pinv(image.shape[-2], scale, image.device)
    w_w, p_w = _down_and_pinv(image.shape[-1], scale, image.device)
    x = image.to(torch.float64)
    residual = lr.to(torch.float64) - w_h @ x @ w_w.T
    return (x + p_h @ residual @ p_w.T).to(image.dtype)
