"""The one model factory: the networks a config describes, for training and inference.

    net = build_network(cfg)            # LDDPMNet: UNet + the parts of the preset
    disc = build_discriminator(cfg)     # TimeDiscriminator, or None without the gan part
    perc = build_perceptual(cfg)        # PerceptualLoss, or None without content/style terms

The trainer, the Upscaler and `lddpm presets` build through these, so a part added to the
config is wired in one place.
"""

from __future__ import annotations

from torch import nn

from lddpm.config import Config
from lddpm.models.discriminator import TimeDiscriminator
from lddpm.models.lddpm import LDDPMNet


def build_network(cfg: Config) -> LDDPMNet:
    """The denoiser for `cfg.model` at scale `cfg.data.scale` (weights freshly initialised)."""
    return LDDPMNet(cfg.model, cfg.data.scale)


def build_discriminator(cfg: Config) -> TimeDiscriminator | None:
    """The time-conditioned discriminator of the gan part (Eq. 13-15); None without it."""
    if not cfg.gan.enabled:
        return None
    return TimeDiscriminator(cfg.gan.d_channels, cfg.diffusion.timesteps)


def build_perceptual(cfg: Config) -> nn.Module | None:
    """Content/style loss module (Eq. 16-17), loading its pretrained backbone; None when
    both weights are 0 (then no backbone file is needed)."""
    if cfg.loss.content == 0 and cfg.loss.style == 0:
        return None
    from lddpm.models.perceptual import PerceptualLoss  # loads backbone weights: only on demand

    return PerceptualLoss(cfg.loss)
