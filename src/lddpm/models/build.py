"""The one model factory: the networks a config describes, for training and inference.

    net = build_network(cfg)            # LDDPMNet: UNet + the parts of the preset
    disc = build_discriminator(cfg)     # TimeDiscriminator, or None without the gan part

The trainer, the Upscaler and `lddpm presets` build through these, so a part added to the
config is wired in one place. The loss modules are built in lddpm.losses
(`lddpm.losses.perceptual.build_perceptual`).
"""

from __future__ import annotations

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
