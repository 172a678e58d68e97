"""HR -> LR: the `bicubic` and `bsrgan` degradation modes behind `data.degradation`.

    Degradation(data_cfg)(hr (3, H, W) in [0, 1], generator) -> (lr (3, H/s, W/s), params)

`bicubic`: MATLAB-compatible antialiased bicubic downsampling (the classic benchmarks).
`bsrgan`: BSRGAN's random degradation (Zhang et al. 2021), with the probabilities and ranges
of `DataConfig.bsrgan`: two blurs, an intermediate resize, the final resize, Gaussian noise,
JPEG and camera sensor noise in a random order (the intermediate resize before the final
one), then a last JPEG; `bsrgan.clean_prob` of the samples keep the clean bicubic LR instead.

Both modes return the LR clamped to [0, 1] and rounded to 8-bit levels, so an LR made on
the fly in training equals the PNG that `lddpm degrade` writes. All randomness comes from
the generator given, derived by `generator_for(seed, epoch, index)`: a resumed run and
every machine see the same LRs.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lddpm.config import DataConfig, DegradationConfig, check_data
from lddpm.data import degradations as ops
from lddpm.data.resize import imresize
from lddpm.errors import UserError


def generator_for(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample: a pure function of (seed, epoch, index)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))


def name_index(name: str) -> int:
    """A stable integer for a file name, so an image's draws do not depend on its neighbours."""
    return zlib.crc32(name.encode("utf-8"))


def bicubic_downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """(..., C, H, W) -> (..., C, H/s, W/s) by MATLAB's antialiased bicubic."""
    height, width = hr.shape[-2], hr.shape[-1]
    return imresize(hr, scale=1.0 / scale, size=(height // scale, width // scale))


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Clamps to [0, 1] and rounds to the nearest 8-bit level (as saving a PNG would)."""
    return image.clamp(0.0, 1.0).mul(255.0).round().div(255.0)


# ----------------------------------------------------------------------------------------------
# BSRGAN
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    scale: int
    hr_size: tuple[int, int]
    cfg: DegradationConfig

    @property
    def lr_size(self) -> tuple[int, int]:
        return self.hr_size[0] // self.scale, self.hr_size[1] // self.scale


# A step: (img, rng, ctx) -> (img, params or None if the step was skipped).
Op = Callable[[np.ndarray, np.random.Generator, _Context], tuple[np.ndarray, dict | None]]


def _blur(img: np.ndarray, rng: np.random.Generator, ctx: _Context):
    if rng.random() >= ctx.cfg.blur_prob:
        return img, None
    params = ops.draw_blur(rng, ctx.cfg.blur_sigma, ctx.cfg.anisotropic_prob,
                           ctx.cfg.blur_kernel_max)
    return ops.blur(img, **params), params


def _resize_intermediate(img: np.ndarray, rng: np.random.Generator, ctx: _Context):
    """Down by a random factor in [1, 2s]: the final resize may then go up again."""
    if rng.random() >= ctx.cfg.intermediate_resize_prob:
        return img, None
    factor = rng.uniform(1.0, 2.0 * ctx.scale)
    size = tuple(max(1, round(n / factor)) for n in ctx.hr_size)
    params = {"factor": float(factor), **ops.draw_resize(rng, size, ctx.cfg.downsample_modes)}
    return ops.resize(img, params["mode"], params["size"]), params


def _resize_final(img: np.ndarray, rng: np.random.Generator, ctx: _Context):
    params = ops.draw_resize(rng, ctx.lr_size, ctx.cfg.downsample_modes)
    return np.clip(ops.resize(img, **params), 0.0, 1.0), params


def _noise(img: np.ndarray, rng: np.random.Generator, ctx: _Context):
    if rng.random() >= ctx.cfg.noise_prob:
        return img, None
    params = ops.draw_gaussian_noise(rng, ctx.cfg.noise_level, ctx.cfg.gray_noise_prob)
    return ops.gaussian_noise(img, rng=rng, **params), params


def _maybe_jpeg(img: np.ndarray, rng: np.random.Generator, probability: float,
                quality_range: tuple[int, int]):
    if rng.random() >= probability:
        return img, None
    params = ops.draw_jpeg(rng, quality_range)
    return ops.jpeg(img, **params), params


def _jpeg(img: np.ndarray, rng: np.random.Generator, ctx: _Context):
    return _maybe_jpeg(img, rng, ctx.cfg.jpeg_prob, ctx.cfg.jpeg_quality)


def _final_jpeg(img: np.ndarray, rng: np.random.Generator, ctx: _Context):
    return _maybe_jpeg(img, rng, ctx.cfg.final_jpeg_prob, ctx.cfg.jpeg_quality)


def _sensor(img: np.ndarray, rng: np.random.Generator, ctx: _Context):
    if rng.random() >= ctx.cfg.sensor_noise_prob:
        return img, None
    params = ops.draw_sensor_noise(rng, ctx.cfg.sensor_shot_noise, ctx.cfg.sensor_read_noise)
    return ops.sensor_noise(img, rng=rng, **params), params


# The degradation operations by name ("steps" in the JSON of applied operations).
OPS: dict[str, Op] = {
    "blur": _blur,
    "resize_intermediate": _resize_intermediate,
    "resize_final": _resize_final,
    "noise": _noise,
    "jpeg": _jpeg,
    "sensor": _sensor,
    "final_jpeg": _final_jpeg,
}
SHUFFLED = ("blur", "blur", "resize_intermediate", "resize_final", "noise", "jpeg", "sensor")


def bsrgan_order(rng: np.random.Generator, shuffle: bool) -> list[str]:
    """A random permutation of the operations, the intermediate resize before the final one."""
    order = list(SHUFFLED)
    if shuffle:
        order = [order[i] for i in rng.permutation(len(order))]
        first, second = order.index("resize_intermediate"), order.index("resize_final")
        if first > second:
            order[first], order[second] = order[second], order[first]
    return order + ["final_jpeg"]


def bsrgan(
    img: np.ndarray, scale: int, cfg: DegradationConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict]]:
    """(H, W, 3) float64 in [0, 1] -> ((H/s, W/s, 3), the steps applied with their params)."""
    ctx = _Context(scale=scale, hr_size=(img.shape[0], img.shape[1]), cfg=cfg)
    applied: list[dict] = []
    for name in bsrgan_order(rng, cfg.shuffle):
        img, params = OPS[name](img, rng, ctx)
        if params is not None:
            applied.append({"op": name, **params})
    return img, applied


# ----------------------------------------------------------------------------------------------
# The entry point
# ----------------------------------------------------------------------------------------------
class Degradation:
    """HR -> LR in the mode of `data_cfg.degradation`, at scale `data_cfg.scale`."""

    def __init__(self, data_cfg: DataConfig):
        check_data(data_cfg)  # a DataConfig built by hand has not been through validate()
        self.mode = data_cfg.degradation
        self.scale = int(data_cfg.scale)
        self.bsrgan_cfg = data_cfg.bsrgan

    def __call__(
        self, hr: torch.Tensor, generator: np.random.Generator | None
    ) -> tuple[torch.Tensor, dict]:
        """hr (3, H, W) float in [0, 1], H and W divisible by the scale
        -> (lr (3, H/s, W/s) float32 in [0, 1] on 8-bit levels, JSON-ready params).
        The bicubic mode draws nothing; `generator` may then be None."""
        self._check_shape(hr)
        if self.mode == "bsrgan" and generator is None:
            raise ValueError("the bsrgan mode needs a generator")
        if self.mode == "bicubic" or self._left_clean(generator):
            lr = bicubic_downsample(hr.to(torch.float64), self.scale)
            params: dict = {"mode": "bicubic", "scale": self.scale}
        else:
            img = hr.detach().to("cpu", torch.float64).permute(1, 2, 0).numpy()
            out, steps = bsrgan(img, self.scale, self.bsrgan_cfg, generator)
            lr = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).to(hr.device)
            params = {"mode": "bsrgan", "scale": self.scale, "steps": steps}
        return quantize(lr).to(torch.float32), params

    def _left_clean(self, generator: np.random.Generator) -> bool:
        """bsrgan.clean_prob of the samples keep the clean bicubic LR (no draw when it is 0)."""
        p = self.bsrgan_cfg.clean_prob
        return p > 0 and generator.random() < p

    def _check_shape(self, hr: torch.Tensor) -> None:
        if hr.ndim != 3 or hr.shape[0] != 3:
            raise ValueError(f"expected an HR image (3, H, W), got {tuple(hr.shape)}")
        height, width = hr.shape[1], hr.shape[2]
        if height % self.scale or width % self.scale or min(height, width) < self.scale:
            raise UserError(
                f"HR size {height}x{width} is not a positive multiple of the scale {self.scale}"
            )
