"""LPIPS v0.1 (Zhang et al. 2018): learned perceptual distance on AlexNet or VGG-16 features.

d(x, y) = sum over 5 layers l of mean over pixels of w_l . (f_l(x) - f_l(y))^2, where f_l
are the backbone's activations unit-normalised along channels and w_l >= 0 are the learned
linear layers `lin0..lin4`. Inputs in [-1, 1] first go through the v0.1 scaling layer
((x - shift) / scale, constants below); the backbone applies no ImageNet normalisation.

Weights (two files, both needed; never random):
- backbone: torchvision's `alexnet-owt-7be5be79.pth` or `vgg16-397923af.pth` (see
  `lddpm.models.backbones`);
- linear layers: `alex.pth` or `vgg.pth` as the `lpips` package ships them (keys
  `lin{k}.model.1.weight`, shape (1, C_k, 1, 1)): given path, `$TORCH_HOME/hub/checkpoints`,
  `lpips/weights/v0.1/` or `torchmetrics/functional/image/lpips_models/` when installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lddpm.errors import display_path
from lddpm.metrics.base import Metric, Pair, uint8_to_batch
from lddpm.metrics.weight_files import load_pretrained_backbone
from lddpm.models.backbones import _TORCHVISION_URL, BACKBONES, FeatureNet
from lddpm.weights import (
    ShippedCopy,
    WeightsNotFound,
    find_weight_file,
    hub_checkpoint_dir,
    load_state_dict_file,
    load_strict,
)

# v0.1 input scaling (applied to [-1, 1] images).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10  # in the channel normalisation's denominator


@dataclass(frozen=True)
class LPIPSVariant:
    backbone: str  # name for lddpm.models.backbones.load_backbone
    layers: tuple[str, ...]
    channels: tuple[int, ...]
    linear_file: str


VARIANTS: dict[str, LPIPSVariant] = {
    "alex": LPIPSVariant(
        "alexnet", ("relu1", "relu2", "relu3", "relu4", "relu5"), (64, 192, 384, 256, 256),
        "alex.pth",
    ),
    "vgg": LPIPSVariant(
        "vgg16", ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
        (64, 128, 256, 512, 512), "vgg.pth",
    ),
}  # fmt: skip


# Where installed packages keep the linear layers (same folders for alex.pth and vgg.pth).
LINEAR_WEIGHT_COPIES = (
    ShippedCopy("lpips", "weights/v0.1"),
    ShippedCopy("torchmetrics", "functional/image/lpips_models"),
)


class _LinearLayer(nn.Module):
    """Key layout of the lpips package: `model.1.weight` (a Dropout sits at index 0)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LinearLayers(nn.Module):
    """lin0..lin4: the state dict of `alex.pth` / `vgg.pth`."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        for k, c in enumerate(channels):
            self.add_module(f"lin{k}", _LinearLayer(c))

    def layer(self, k: int) -> nn.Module:
        return getattr(self, f"lin{k}").model


def _unit_normalise(features: torch.Tensor) -> torch.Tensor:
    """Divide every pixel's feature vector by its L2 norm (over channels)."""
    norm = features.pow(2).sum(dim=1, keepdim=True).sqrt()
    return features / (norm + _EPS)


class LPIPSNet(nn.Module):
    """(B, 3, H, W) x2 in [-1, 1] -> (B,) LPIPS distances."""

    def __init__(self, backbone: FeatureNet, linear: LinearLayers, variant: LPIPSVariant):
        super().__init__()
        self.backbone = backbone
        self.linear = linear
        self.layers = variant.layers
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), False)
        self.requires_grad_(False)
        self.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.backbone((x - self.shift) / self.scale, self.layers)
        return [_unit_normalise(out[name]) for name in self.layers]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(x.shape[0], device=x.device)
        for k, (fx, fy) in enumerate(zip(self.features(x), self.features(y))):
            total = total + self.linear.layer(k)((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total


def load_lpips(
    net: str = "alex",
    linear_weights: str | Path | None = None,
    backbone_weights: str | Path | None = None,
) -> LPIPSNet:
    """LPIPS with pretrained backbone and linear layers (WeightsNotFound if either is absent)."""
    if net not in VARIANTS:
        raise ValueError(f"unknown LPIPS network {net!r}; valid: {', '.join(VARIANTS)}")
    variant = VARIANTS[net]
    backbone_file = BACKBONES[variant.backbone].filename
    path = find_weight_file(
        variant.linear_file,
        linear_weights,
        LINEAR_WEIGHT_COPIES,
        f"LPIPS needs two files: the linear heads {variant.linear_file} and the "
        f"{variant.backbone} backbone {backbone_file}; to get the heads: pip install --no-deps "
        f"lpips (it ships them), or pass their path with --lpips-weights; the backbone: "
        f"{_TORCHVISION_URL}{backbone_file} into {display_path(hub_checkpoint_dir())}",
    )
    linear = LinearLayers(variant.channels)
    load_strict(linear, load_state_dict_file(path), f"LPIPS linear layers {path}")
    try:
        backbone = load_pretrained_backbone(variant.backbone, backbone_weights, normalize=False)
    except WeightsNotFound as exc:
        raise WeightsNotFound(f"{exc} (LPIPS needs it besides the linear heads "
                              f"{variant.linear_file}, found at {display_path(path)})") from None
    return LPIPSNet(backbone, linear, variant)


class LPIPS(Metric):
    """LPIPS between SR and HR (lower is better); `distance` also serves LPIPS diversity."""

    key, higher_is_better, decimals = "lpips", False, 4

    def __init__(self, network: LPIPSNet, net: str = "alex", device: torch.device | str = "cpu"):
        self.network = network.to(device)
        self.device = device
        self.column = "LPIPS" if net == "alex" else f"LPIPS-{net.upper()}"

    @torch.no_grad()
    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Two uint8 (H, W, 3) images of the same size -> LPIPS distance."""
        x = uint8_to_batch(a, self.device) * 2 - 1
        y = uint8_to_batch(b, self.device) * 2 - 1
        return float(self.network(x, y)[0])

    def __call__(self, pair: Pair) -> float:
        return self.distance(pair.sr, pair.hr)
