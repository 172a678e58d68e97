"""The LDDPM network eps_theta(x_t, t, x, z): UNet + optional LR encoder, CVAE, Glow prior.

    cond = net.condition(lr, references)           # LR (B,3,h,w) in [-1,1] -> Condition
    eps, post = net.forward_train(x_t, t, cond, x0) # z from the posterior q(z | x0, up) (Eq. 10)
    eps = net(x_t, t, cond, prior_noise)            # z from the prior, as at sampling time

x_t, x0, eps: (B,3,H,W); t: (B,) integer timesteps in [0, T); prior_noise: (B,Cz,H/f,W/f)
drawn once per sample by the caller (see `latent_shape`). Switching a part off removes its
modules: a v1 model has no `encoder`, `cvae` or `prior` attributes' weights at all. The
network computes outputs and densities only; the KL of `post` is lddpm.losses.kl's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lddpm.config import ModelConfig, hr_size_multiple
from lddpm.data.resize import imresize
from lddpm.models.cvae import CVAE, reparameterise
from lddpm.models.encoder import AdaptiveCrossAttention, LREncoder, encode_condition
from lddpm.models.flow import GlowPrior
from lddpm.models.unet import UNet


@dataclass
class Condition:
    """Everything derived from the LR image once per batch."""

    up: torch.Tensor  # (B,3,H,W) bicubic upsampling of the LR, [-1,1]
    fmap: torch.Tensor | None  # (B,C,h',w') LR encoder feature map (v2+)
    tokens: torch.Tensor | None  # (B,N,C) LR (+ reference) tokens for cross-attention (v2+)


@dataclass
class Posterior:
    """The CVAE latent of a training pass (Eq. 10) and what its prior is conditioned on:
    everything the KL terms (lddpm.losses.kl) need."""

    z: torch.Tensor  # (B,Cz,h,w) the reparameterised sample
    mu: torch.Tensor  # (B,Cz,h,w) posterior mean
    logvar: torch.Tensor  # (B,Cz,h,w) posterior log-variance
    context: torch.Tensor  # (B,C,h,w) F_X, the Glow prior's condition c
    lr_feat: torch.Tensor | None  # LR encoder features for the Glow coupling nets (v2+)


class LDDPMNet(nn.Module):
    def __init__(self, cfg: ModelConfig, scale: int):
        super().__init__()
        self.cfg = cfg
        self.scale = scale
        u, e = cfg.unet, cfg.encoder
        self.encoder = LREncoder(e, u.groups) if e.enabled else None
        make_cross = None
        if e.enabled:
            def make_cross(c: int) -> nn.Module:
                return AdaptiveCrossAttention(c, e.channels, e.heads, u.groups, e.gate_init)
        self.unet = UNet(u, cross_sites=e.sites if e.enabled else (), make_cross=make_cross)
        c_mid, down = self.unet.mid_channels, self.unet.downsampling
        self.cvae = CVAE(cfg.cvae, c_mid, down, u.groups) if cfg.cvae.enabled else None
        self.prior = None
        if cfg.glow.enabled:
            self.prior = GlowPrior(
                latent_channels=cfg.cvae.latent_channels,
                context_channels=c_mid,
                lr_feat_channels=e.channels if e.enabled else 0,
                levels=cfg.glow.levels,
                hidden=cfg.glow.hidden,
            )

    # ---------------------------------------------------------------- sizes
    @property
    def size_multiple(self) -> int:
        """HR sizes must be multiples of this (the sampler entry point pads to it)."""
        return hr_size_multiple(self.cfg)

    def latent_shape(self, hr_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """(B,3,H,W) -> shape of z, or None when there is no CVAE."""
        if self.cvae is None:
            return None
        b, _, h, w = hr_shape
        f = self.unet.downsampling
        return (b, self.cvae.latent_channels, h // f, w // f)

    # ---------------------------------------------------------------- conditioning
    def condition(self, lr: torch.Tensor, references: list[torch.Tensor] | None = None) -> Condition:
        up = imresize(lr, scale=self.scale)
        if self.encoder is None:
            if references:
                raise ValueError("reference images need the LR encoder (preset part v2 or v3)")
            return Condition(up, None, None)
        fmap, tokens = encode_condition(self.encoder, lr, references)
        return Condition(up, fmap, tokens)

    # ---------------------------------------------------------------- forward passes
    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: Condition,
        prior_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """eps with z from the prior (sampling, and the GAN generator during training)."""
        f_x, skips, emb = self.unet.encode(x_t, t, cond.up)
        if self.cvae is not None:
            if prior_noise is None:
                raise ValueError("a CVAE model needs prior_noise of shape latent_shape(x_t.shape)")
            z = self.prior_latent(prior_noise, f_x, cond)
            f_x = self.cvae.fusion(f_x, z)
        return self.unet.decode(f_x, skips, emb, cond.tokens)

    def forward_train(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: Condition,
        x0: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, Posterior | None]:
        """eps with z from the posterior q(z | x0, up) (Eq. 10), and that posterior (None
        without a CVAE) for the KL terms of lddpm.losses.kl (Eq. 11-12)."""
        f_x, skips, emb = self.unet.encode(x_t, t, cond.up)
        posterior = None
        if self.cvae is not None:
            mu, logvar = self.cvae.posterior(x0, cond.up)
            z = reparameterise(mu, logvar, generator)
            posterior = Posterior(z, mu, logvar, f_x, cond.fmap)
            f_x = self.cvae.fusion(f_x, z)
        return self.unet.decode(f_x, skips, emb, cond.tokens), posterior

    def prior_latent(self, noise: torch.Tensor, f_x: torch.Tensor, cond: Condition) -> torch.Tensor:
        """Maps the sample's fixed N(0, I) draw to z ~ p(z | c): identity without Glow, else
        z = f^-1(mu_p(c) + sigma_p(c) * noise) (Eq. 12), c = F_X at the current step."""
        if self.prior is None:
            return noise
        return self.prior.latent_from_noise(noise, f_x, cond.fmap)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
