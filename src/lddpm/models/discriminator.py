"""Time-dependent conditional discriminator (docs/design.md §3, paper Eq. 13).

D(x_prev, x_t, t, up) -> logits: does x_prev look like a real previous step of the few-step
chain given the current noisy image x_t, its timestep t and the upsampled LR image up?
Its losses (Eq. 13, R1) are in lddpm.losses.adversarial.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lddpm.models.layers import timestep_embedding

_LEAK = 0.2


class _DownBlock(nn.Module):
    """Residual block that halves the resolution; the time embedding is added mid-block.

    x: (B, C_in, H, W), emb: (B, E) -> (B, C_out, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.leaky_relu(x, _LEAK))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.leaky_relu(h, _LEAK))
        # ceil_mode matches the strided conv's output size ceil(H/2) for odd sizes too.
        skip = self.skip(F.avg_pool2d(x, 2, ceil_mode=True))
        return (h + skip) / 2**0.5


class TimeDiscriminator(nn.Module):
    """D(x_prev, x_t, t, up) -> logits (B,).

    x_prev, x_t, up: (B, in_channels, H, W) in [-1, 1], any H, W >= 2**len(channel_mults)
    (16 px works with the default three blocks); t: (B,) integer timesteps in [0, timesteps).
    """

    def __init__(
        self,
        channels: int = 32,
        timesteps: int = 1000,
        in_channels: int = 3,
        channel_mults: tuple[int, ...] = (1, 2, 4),
    ):
        super().__init__()
        self.timesteps = timesteps
        emb_dim = 4 * channels
        self.time_mlp = nn.Sequential(
            nn.Linear(channels, emb_dim),
            nn.LeakyReLU(_LEAK),
            nn.Linear(emb_dim, emb_dim),
            nn.LeakyReLU(_LEAK),
        )
        self.stem = nn.Conv2d(3 * in_channels, channels, 3, padding=1)
        widths = [channels] + [channels * m for m in channel_mults]
        self.blocks = nn.ModuleList(
            _DownBlock(c_in, c_out, emb_dim) for c_in, c_out in itertools.pairwise(widths)
        )
        self.head = nn.Linear(widths[-1], 1)

    def forward(self, x_prev: Tensor, x_t: Tensor, t: Tensor, up: Tensor) -> Tensor:
        # Embed t on a 1000-step scale whatever T is, so the sinusoid frequencies stay sensible.
        t_scaled = t.float() * (1000.0 / self.timesteps)
        sinusoid = timestep_embedding(t_scaled, self.stem.out_channels).to(x_t.dtype)
        emb = self.time_mlp(sinusoid)  # (B, E)
        h = self.stem(torch.cat([x_prev, x_t, up], dim=1))  # (B, C, H, W)
        for block in self.blocks:
            h = block(h, emb)
        pooled = F.leaky_relu(h, _LEAK).mean(dim=(2, 3))  # (B, C_last)
        return self.head(pooled).squeeze(1)
