"""MATLAB-compatible `imresize`: the one resize operator of the project.

Matches MATLAB's `imresize(img, scale, 'bicubic')` on float images: cubic kernel with
a = -0.5, the kernel stretched by 1/scale when downsampling (antialiasing), MATLAB's
pixel-centre mapping u = x/scale + (1 - 1/scale)/2 (1-based), and symmetric (mirror,
edge-repeating) padding at the borders. Every bicubic LR the project makes, `bicubic-up(LR)`
in the models and LR-PSNR all go through `imresize`, so they agree with the MATLAB scripts
behind the published tables.

Resizing is separable and linear, so each axis is one matrix multiplication with a weights
matrix W (out_len, in_len), built once per (size, scale, kernel) and cached:
    y = W_h @ x @ W_w^T   over the last two axes of x (..., C, H, W).

The `linear` (triangle) and `nearest` (box) kernels of MATLAB are there too, for the
degradation pipeline's choice of downsampling modes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's bicubic), support [-2, 2]."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = 1.5 * ax3 - 2.5 * ax2 + 1.0
    outer = -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    return inner * (ax <= 1) + outer * ((ax > 1) & (ax <= 2))


def triangle(x: np.ndarray) -> np.ndarray:
    """Linear interpolation kernel, support [-1, 1]."""
    return np.clip(1.0 - np.abs(x), 0.0, None)


def box(x: np.ndarray) -> np.ndarray:
    """Nearest-neighbour kernel; half-open so a tie picks exactly one pixel."""
    return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


# name -> (kernel, support width in input pixels at scale 1)
KERNELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "cubic": (cubic, 4.0),
    "linear": (triangle, 2.0),
    "nearest": (box, 1.0),
}


@functools.lru_cache(maxsize=256)
def resize_matrix(
    in_len: int, out_len: int, scale: float, kernel: str = "cubic", antialias: bool = True
) -> np.ndarray:
    """Weights (out_len, in_len), float64, rows summing to 1: y = W @ x along one axis."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; valid: {', '.join(KERNELS)}")
    fn, width = KERNELS[kernel]
    if scale < 1 and antialias:
        # Stretch the kernel by 1/scale so that it low-passes before decimation.
        def weight(d: np.ndarray) -> np.ndarray:
            return scale * fn(scale * d)

        width = width / scale
    else:
        weight = fn
    # 1-based output coordinates mapped into 1-based input coordinates (MATLAB's convention).
    x = np.arange(1, out_len + 1, dtype=np.float64)[:, None]
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    indices = left + np.arange(taps, dtype=np.float64)[None, :]  # (out_len, taps), 1-based
    weights = weight(u - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric padding: ..., 2, 1 | 1, 2, ..., n | n, n-1, ... (period 2n).
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    columns = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], columns.shape)
    np.add.at(matrix, (rows, columns), weights)
    matrix.setflags(write=False)
    return matrix


@functools.lru_cache(maxsize=256)
def _matrix_tensor(
    in_len: int, out_len: int, scale: float, kernel: str, antialias: bool, device: torch.device
) -> torch.Tensor:
    """The weights as a float64 tensor, cached per device (no host copy per call).

    Made outside inference mode even when first asked for inside it (validation), so the
    cached tensor can later take part in autograd (e.g. a loss on imresize(SR)).
    """
    with torch.inference_mode(False):
        matrix = resize_matrix(in_len, out_len, scale, kernel, antialias)
        return torch.tensor(matrix, device=device)


def _pair(value: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    first, second = value
    return float(first), float(second)


def output_size(in_len: int, scale: float) -> int:
    """MATLAB's ceil(scale * in_len), tolerant of float noise (255 * (1/3) -> 85, not 86)."""
    return max(1, math.ceil(in_len * scale - 1e-9))


def _plan(
    in_hw: tuple[int, int],
    scale: float | Sequence[float] | None,
    size: Sequence[int] | None,
) -> tuple[tuple[int, int], tuple[float, float]]:
    """((out_h, out_w), (scale_h, scale_w)) from either a scale, a size, or both."""
    if scale is None and size is None:
        raise ValueError("imresize needs a scale or a size")
    if size is not None:
        out_hw = (int(size[0]), int(size[1]))
        if min(out_hw) < 1:
            raise ValueError(f"output size must be positive, got {out_hw}")
    if scale is not None:
        scales = _pair(scale)
        if min(scales) <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if size is None:
            out_hw = (output_size(in_hw[0], scales[0]), output_size(in_hw[1], scales[1]))
    else:
        scales = (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    return out_hw, scales


def imresize(
    x: torch.Tensor,
    scale: float | Sequence[float] | None = None,
    size: Sequence[int] | None = None,
    kernel: str = "cubic",
    antialias: bool = True,
) -> torch.Tensor:
    """MATLAB `imresize` on a tensor (..., C, H, W) -> (..., C, out_h, out_w).

    `scale`: factor (or (scale_h, scale_w)); the output size is ceil(scale * size).
    `size`: (out_h, out_w); the scale is then out/in per axis. Give both to fix the output
    size and the kernel scale at once (as the pipeline does: size H/s, scale 1/s).
    Computed in float64; returns the input's float dtype. uint8 input is rounded and clamped
    like MATLAB's. No clamping for floats: bicubic overshoots slightly at edges.
    """
    in_hw = (x.shape[-2], x.shape[-1])
    out_hw, (scale_h, scale_w) = _plan(in_hw, scale, size)
    w_h = _matrix_tensor(in_hw[0], out_hw[0], scale_h, kernel, antialias, x.device)
    w_w = _matrix_tensor(in_hw[1], out_hw[1], scale_w, kernel, antialias, x.device)
    y = torch.matmul(torch.matmul(w_h, x.to(torch.float64)), w_w.T)
    if x.dtype == torch.uint8:
        return y.round().clamp(0, 255).to(torch.uint8)
    return y.to(x.dtype)


def imresize_numpy(
    x: np.ndarray,
    scale: float | Sequence[float] | None = None,
    size: Sequence[int] | None = None,
    kernel: str = "cubic",
    antialias: bool = True,
) -> np.ndarray:
    """`imresize` for numpy images laid out (H, W) or (H, W, C), as MATLAB holds them.

    The same weights as `imresize`, multiplied in numpy: the degradation pipeline works on
    small numpy arrays, where numpy's matmul is far cheaper than a trip through torch.
    """
    out_hw, (scale_h, scale_w) = _plan((x.shape[0], x.shape[1]), scale, size)
    w_h = resize_matrix(x.shape[0], out_hw[0], scale_h, kernel, antialias)
    w_w = resize_matrix(x.shape[1], out_hw[1], scale_w, kernel, antialias)
    planes = x.astype(np.float64)
    if x.ndim == 3:
        planes = planes.transpose(2, 0, 1)  # (C, H, W): matmul broadcasts over C
    y = w_h @ planes @ w_w.T
    if x.ndim == 3:
        y = np.ascontiguousarray(y.transpose(1, 2, 0))
    if x.dtype == np.uint8:
        return np.clip(np.round(y), 0, 255).astype(np.uint8)
    return y.astype(x.dtype, copy=False)
