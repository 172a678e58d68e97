"""Diversity of one-to-many sampling: how much N samples of the same LR input differ.

- `pixel_diversity`: the standard deviation across the N samples at each pixel and channel
  (population std, ddof=0), averaged over pixels and channels, in 8-bit units (0-255).
  0 means all samples are identical.
- `lpips_diversity`: the mean LPIPS distance over all N(N-1)/2 pairs of samples, when the
  LPIPS weights are available.
Neither is "better" when higher: they describe the sampler, so reports do not bold them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np


def _as_float255(samples: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    stack = np.stack([np.asarray(s) for s in samples])
    if stack.dtype == np.uint8:
        return stack.astype(np.float64)
    return stack.astype(np.float64) * 255.0


def pixel_diversity(samples: Sequence[np.ndarray] | np.ndarray) -> float:
    """N samples (each (H, W, 3) uint8 or float [0, 1]) -> mean per-pixel std, 8-bit units."""
    stack = _as_float255(samples)
    if stack.shape[0] < 2:
        raise ValueError("diversity needs at least 2 samples")
    return float(stack.std(axis=0).mean())


def lpips_diversity(
    samples: Sequence[np.ndarray], distance: Callable[[np.ndarray, np.ndarray], float]
) -> float:
    """Mean `distance(a, b)` (an LPIPS distance) over all unordered pairs of samples."""
    if len(samples) < 2:
        raise ValueError("diversity needs at least 2 samples")
    pairs = itertools.combinations(samples, 2)
    return float(np.mean([distance(a, b) for a, b in pairs]))
