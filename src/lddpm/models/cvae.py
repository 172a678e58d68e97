"""Conditional VAE branch (Eq. 9-11, the `v3` part).

    posterior (training only): q(z | x0, up) = N(mu_q, sigma_q), z = mu_q + sigma_q * delta (Eq. 10)
                               concat(x0, up) (B,6,H,W) -> mu_q, logvar_q (B,Cz,H/2^L,W/2^L)
    feature decoder:           z (B,Cz,h,w) -> F_R (B,C_mid,h,w)
    fusion:                    F_g = F_X + gate * (F_mu + F_sigma * F_R), F_mu = conv(F_X),
                               F_sigma = conv(F_X) (spatial maps, not distribution parameters)
    KL to the prior:           lddpm.losses.kl (Eq. 11 in closed form without Glow, Eq. 12 with it)

At sampling time the posterior is not run (z comes from the prior); an inference export may
omit its weights (they live under `cvae.posterior.`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lddpm.config import CVAEConfig
from lddpm.models.layers import ResBlock, norm
from lddpm.rng import randn


class PosteriorEncoder(nn.Module):
    """concat(x0, up) (B,6,H,W) -> (mu_q, logvar_q), each (B,Cz,H/f,W/f), f = downsampling."""

    def __init__(self, latent_channels: int, hidden: int, downsampling: int, groups: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(6, hidden, 3, padding=1)]
        f = downsampling
        while f > 1:
            layers += [nn.SiLU(), nn.Conv2d(hidden, hidden, 4, stride=2, padding=1)]
            f //= 2
        self.body = nn.Sequential(*layers)
        self.res = ResBlock(hidden, hidden, None, groups, 0.0)
        self.head = nn.Conv2d(hidden, 2 * latent_channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)  # starts at N(0, I): KL = 0 at initialisation

    def forward(self, x0: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.res(self.body(torch.cat([x0, up], dim=1)))
        mu, logvar = self.head(F.silu(h)).chunk(2, dim=1)
        return mu, logvar.clamp(-20.0, 10.0)


class FeatureFusion(nn.Module):
    """z (B,Cz,h,w) and F_X (B,C,h,w) -> F_g (B,C,h,w)."""

    def __init__(self, latent_channels: int, channels: int, hidden: int, groups: int, gate_init: float):
        super().__init__()
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, channels, 3, padding=1),
        )
        self.to_mu = nn.Conv2d(channels, channels, 3, padding=1)
        self.to_sigma = nn.Conv2d(channels, channels, 3, padding=1)
        self.in_norm = norm(channels, groups)
        self.gate = nn.Parameter(torch.full((channels,), float(gate_init)))

    def forward(self, f_x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        f_r = self.decoder(z)
        n = self.in_norm(f_x)
        fused = self.to_mu(n) + self.to_sigma(n) * f_r
        return f_x + self.gate[None, :, None, None] * fused


class CVAE(nn.Module):
    def __init__(self, cfg: CVAEConfig, channels: int, downsampling: int, groups: int):
        super().__init__()
        self.latent_channels = cfg.latent_channels
        self.posterior = PosteriorEncoder(cfg.latent_channels, cfg.hidden, downsampling, groups)
        self.fusion = FeatureFusion(cfg.latent_channels, channels, cfg.hidden, groups, cfg.gate_init)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Eq. 10: z = mu + sigma * delta, delta ~ N(0, I) drawn from the explicit generator."""
    delta = randn(mu.shape, generator, mu.device, mu.dtype)  # drawn on the generator's device
    return mu + torch.exp(0.5 * logvar) * delta
