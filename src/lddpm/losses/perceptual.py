"""Content (Eq. 16) and style (Eq. 17) losses on a frozen pretrained backbone.

Both compare the clean estimate x0_hat with the HR image y (docs/design.md §4: the paper writes the
feature term on X_i and X̂_i, but ImageNet features are defined on clean images):

- content: MSE of deep features (VGG-19 relu5_4) + L1(x0_hat, y);
- style: MSE of the per-channel means and standard deviations (AdaIN statistics) of the
  features at relu1_2, relu2_2, relu3_4, relu4_1, summed over the four layers.

With `loss.backbone = mobilenet_v2` the same terms use MobileNetV2 blocks at comparable depths
(`lddpm.models.backbones.MOBILENET_V2_VGG_EQUIVALENTS`). HR features are computed without
gradient; the backbone is frozen, so gradients reach x0_hat only. Inputs are float [-1, 1]
NCHW images. `time_weight` weighs each sample's terms by its timestep (`loss.time_weighting`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from lddpm.config import PERCEPTUAL_BACKBONES, TIME_WEIGHTINGS, Config, LossConfig, check_choice
from lddpm.models.backbones import MOBILENET_V2_VGG_EQUIVALENTS, load_backbone

CONTENT_LAYER = "relu5_4"
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_1")

# backbone name -> (config key of its weight path, VGG-19 layer name -> the backbone's layer)
_BACKBONE_CHOICES: dict[str, tuple[str, dict[str, str]]] = {
    "vgg19": ("vgg_weights", {name: name for name in (CONTENT_LAYER, *STYLE_LAYERS)}),
    "mobilenet_v2": ("mobilenet_weights", MOBILENET_V2_VGG_EQUIVALENTS),
}

# Keeps the standard deviation differentiable where a channel is constant.
_STD_EPS = 1e-8


def time_weight(alphabar_t: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-sample weight (B,) of the perceptual terms at timesteps with cumulative alpha (B,).

    "none": ones; "alphabar": alphabar_t itself, near 1 at small t where x0_hat is sharp
    enough for feature comparisons to mean something, near 0 at large t.
    """
    check_choice("loss.time_weighting", mode, TIME_WEIGHTINGS)
    if mode == "alphabar":
        return alphabar_t.float()
    return torch.ones_like(alphabar_t, dtype=torch.float32)


def channel_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) -> per-channel mean and standard deviation over the pixels, each (B, C)."""
    flat = features.float().flatten(2)
    mean = flat.mean(dim=2)
    std = (flat.var(dim=2, unbiased=False) + _STD_EPS).sqrt()
    return mean, std


def style_distance(
    pred: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """Eq. 17 per sample (B,): sum over layers of MSE(means) + MSE(stds) of the features."""
    total = 0.0
    for name, pred_features in pred.items():
        pred_mean, pred_std = channel_stats(pred_features)
        target_mean, target_std = channel_stats(target[name])
        total = total + (pred_mean - target_mean).pow(2).mean(1)
        total = total + (pred_std - target_std).pow(2).mean(1)
    return total


def _per_sample_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


def _weighted_mean(per_sample: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return per_sample.mean()
    if weight.shape != per_sample.shape:
        raise ValueError(f"weight must have shape {tuple(per_sample.shape)}, not {weight.shape}")
    return (per_sample * weight.to(per_sample)).mean()


class PerceptualLoss(nn.Module):
    """Holds the frozen backbone named by `loss_cfg.backbone` (vgg19 | mobilenet_v2).

    The backbone's weights are part of this module's state dict; keep it out of the model
    that gets checkpointed (it is rebuilt from the weight file).
    """

    def __init__(self, loss_cfg: LossConfig):
        super().__init__()
        name = loss_cfg.backbone
        check_choice("loss.backbone", name, PERCEPTUAL_BACKBONES)
        weights_key, layer_of = _BACKBONE_CHOICES[name]
        self.backbone_name = name
        self.backbone = load_backbone(
            name, getattr(loss_cfg, weights_key), path_option=f"loss.{weights_key}"
        )
        self.content_layer = layer_of[CONTENT_LAYER]
        self.style_layers = tuple(layer_of[layer] for layer in STYLE_LAYERS)

    def _features(
        self, x0_hat: torch.Tensor, hr: torch.Tensor, layers: tuple[str, ...]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        with torch.no_grad():
            target = self.backbone(hr, layers)
        return self.backbone(x0_hat, layers), target

    def _content_terms(
        self,
        pred: Mapping[str, torch.Tensor],
        target: Mapping[str, torch.Tensor],
        x0_hat: torch.Tensor,
        hr: torch.Tensor,
    ) -> torch.Tensor:
        """Eq. 16 per sample (B,): feature MSE at the deep layer + L1(x0_hat, hr)."""
        layer = self.content_layer
        l1 = (x0_hat.float() - hr.float()).abs().flatten(1).mean(1)
        return _per_sample_mse(pred[layer], target[layer]) + l1

    def content(
        self, x0_hat: torch.Tensor, hr: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Eq. 16, scalar; x0_hat, hr: (B, 3, H, W) in [-1, 1].

        `weight` (B,) weighs each sample's term (e.g. `time_weight`) before the batch mean.
        """
        pred, target = self._features(x0_hat, hr, (self.content_layer,))
        return _weighted_mean(self._content_terms(pred, target, x0_hat, hr), weight)

    def style(
        self, x0_hat: torch.Tensor, hr: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Eq. 17, scalar: AdaIN-statistics distance at the four style layers (see module doc)."""
        pred, target = self._features(x0_hat, hr, self.style_layers)
        return _weighted_mean(style_distance(pred, target), weight)

    def forward(
        self, x0_hat: torch.Tensor, hr: torch.Tensor, weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(content, style) as the two methods give them, from one pass of the backbone."""
        pred, target = self._features(x0_hat, hr, (*self.style_layers, self.content_layer))
        style_pred = {name: pred[name] for name in self.style_layers}
        return (
            _weighted_mean(self._content_terms(pred, target, x0_hat, hr), weight),
            _weighted_mean(style_distance(style_pred, target), weight),
        )


def build_perceptual(cfg: Config) -> PerceptualLoss | None:
    """The content/style loss module of `cfg` (Eq. 16-17), loading its pretrained backbone;
    None when both weights are 0 (then no backbone file is needed)."""
    if cfg.loss.content == 0 and cfg.loss.style == 0:
        return None
    return PerceptualLoss(cfg.loss)
