"""DISTS (Ding et al. 2020): structure and texture similarity on VGG-16 features.

The backbone is VGG-16's convolutional part up to relu5_3 with every max pool replaced by
an L2 pool (a 3x3 Hann-window blur of x^2, stride 2, then sqrt) so that features do not
alias. The six "stages" are the input image itself (in [0, 1]) and relu1_2, relu2_2,
relu3_3, relu4_3, relu5_3 (1475 channels in all). For each channel, with global means
mu, variances s^2 and covariance s_xy:
    texture   t = (2 mu_x mu_y + c) / (mu_x^2 + mu_y^2 + c)
    structure u = (2 s_xy + c) / (s_x^2 + s_y^2 + c),      c = 1e-6
and DISTS = 1 - sum_channels(alpha t + beta u) / (sum alpha + sum beta). Identical images
give 0. Images are compared at full resolution (no resizing). Statistics are in float64.

Weights (both needed; never random): torchvision's `vgg16-397923af.pth`, and the learned
alpha/beta `weights.pt` of the DISTS_pytorch package (keys `alpha`, `beta`, shape
(1, 1475, 1, 1)): given path, `$TORCH_HOME/hub/checkpoints`, or the copies in
`DISTS_pytorch/`, `<sys.prefix>/` (where DISTS_pytorch 0.1 installs it) and
`torchmetrics/functional/image/dists_models/` when installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lddpm.metrics.base import Metric, Pair, uint8_to_batch
from lddpm.metrics.weight_files import load_pretrained_backbone
from lddpm.models.backbones import VGG
from lddpm.weights import ShippedCopy, find_weight_file, load_state_dict_file, load_strict

WEIGHTS_FILE = "weights.pt"
WEIGHT_COPIES = (
    ShippedCopy("DISTS_pytorch"),
    ShippedCopy(None),
    ShippedCopy("torchmetrics", "functional/image/dists_models"),
)
STAGE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
STAGE_CHANNELS = (3, 64, 128, 256, 512, 512)  # the image itself, then the five VGG stages
_C = 1e-6


class L2Pool(nn.Module):
    """sqrt(blur(x^2)) with a normalised 3x3 Hann window, stride 2, per channel."""

    def __init__(self, channels: int):
        super().__init__()
        hann = torch.tensor([0.5, 1.0, 0.5])  # the 5-tap Hann window without its zero ends
        window = hann[:, None] * hann[None, :]
        window = (window / window.sum()).expand(channels, 1, 3, 3).contiguous()
        self.register_buffer("window", window, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blurred = F.conv2d(x * x, self.window, stride=2, padding=1, groups=x.shape[1])
        return (blurred + 1e-12).sqrt()


def _l2_pooled_features(vgg: VGG) -> tuple[nn.ModuleList, list[int]]:
    """VGG-16 features up to relu5_3 with max pools swapped for L2 pools; stage indices."""
    modules: list[nn.Module] = []
    channels = 3
    last = vgg.layer_index[STAGE_LAYERS[-1]]
    for module in vgg.features[: last + 1]:
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
        modules.append(L2Pool(channels) if isinstance(module, nn.MaxPool2d) else module)
    return nn.ModuleList(modules), [vgg.layer_index[name] for name in STAGE_LAYERS]


class AlphaBeta(nn.Module):
    """The learned per-channel weights: the state dict of DISTS' `weights.pt`."""

    def __init__(self) -> None:
        super().__init__()
        total = sum(STAGE_CHANNELS)
        self.alpha = nn.Parameter(torch.zeros(1, total, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, total, 1, 1))


def _channel_stats(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) -> per-channel mean and (population) variance, float64 (B, C)."""
    f = f.double()
    return f.mean(dim=(2, 3)), f.var(dim=(2, 3), unbiased=False)


class DISTSNet(nn.Module):
    """(B, 3, H, W) x2 in [0, 1] -> (B,) DISTS distances."""

    def __init__(self, vgg: VGG, weights: AlphaBeta):
        super().__init__()
        if vgg.depth != 16 or not vgg.normalize:
            raise ValueError("DISTS needs VGG-16 built with ImageNet normalisation")
        self.vgg = vgg  # kept for its normalisation (prepare) and its loaded weights
        self.layers, self.stage_index = _l2_pooled_features(vgg)
        self.weights = weights
        self.requires_grad_(False)
        self.eval()

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[0, 1] image -> [image, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3]."""
        out = [x]
        h = self.vgg.prepare(2 * x - 1)  # prepare expects [-1, 1]
        for index, module in enumerate(self.layers):
            h = module(h)
            if index in self.stage_index:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        alpha = self.weights.alpha.double().flatten()
        beta = self.weights.beta.double().flatten()
        total = alpha.sum() + beta.sum()
        score = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        start = 0
        for fx, fy in zip(self.stages(x), self.stages(y)):
            end = start + fx.shape[1]
            (mx, vx), (my, vy) = _channel_stats(fx), _channel_stats(fy)
            cov = (fx.double() * fy.double()).mean(dim=(2, 3)) - mx * my
            texture = (2 * mx * my + _C) / (mx**2 + my**2 + _C)
            structure = (2 * cov + _C) / (vx + vy + _C)
            score = score + texture @ alpha[start:end] + structure @ beta[start:end]
            start = end
        return 1 - score / total


def load_dists(
    weights_path: str | Path | None = None, vgg_weights: str | Path | None = None
) -> DISTSNet:
    """DISTS with pretrained VGG-16 and alpha/beta (WeightsNotFound if either is absent)."""
    path = find_weight_file(
        WEIGHTS_FILE,
        weights_path,
        WEIGHT_COPIES,
        "to get it: pip install --no-deps DISTS_pytorch (it ships the file), or pass its path with "
        "--dists-weights",
    )
    weights = AlphaBeta()
    load_strict(weights, load_state_dict_file(path), f"DISTS alpha/beta {path}")
    vgg = load_pretrained_backbone("vgg16", vgg_weights, normalize=True)
    return DISTSNet(vgg, weights)


class DISTS(Metric):
    key, column, higher_is_better, decimals = "dists", "DISTS", False, 4

    def __init__(self, network: DISTSNet, device: torch.device | str = "cpu"):
        self.network = network.to(device)
        self.device = device

    @torch.no_grad()
    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Two uint8 (H, W, 3) images of the same size -> DISTS."""
        return float(self.network(uint8_to_batch(a, self.device), uint8_to_batch(b, self.device)))

    def __call__(self, pair: Pair) -> float:
        return self.distance(pair.sr, pair.hr)
