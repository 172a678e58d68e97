"""Building blocks shared by the networks: time embedding, residual blocks, attention.

Networks here know nothing of training: no losses, no optimisers, no schedules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps. t: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def positional_encoding_2d(h: int, w: int, dim: int, device: torch.device) -> torch.Tensor:
    """Fixed 2-D sin/cos code of *normalised* coordinates in [0, 1]: (h*w, dim).

    Normalised so that a UNet feature map and an LR token map of different sizes agree on
    where a position is: cross-attention can then prefer spatially matching tokens.
    """
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    quarter = max(dim // 4, 1)
    freqs = 2.0 ** torch.arange(quarter, device=device, dtype=torch.float32) * math.pi
    gy = ys[:, None, None] * freqs  # (h, 1, q)
    gx = xs[None, :, None] * freqs  # (1, w, q)
    code = torch.cat(
        [torch.sin(gy).expand(h, w, quarter), torch.cos(gy).expand(h, w, quarter),
         torch.sin(gx).expand(h, w, quarter), torch.cos(gx).expand(h, w, quarter)], dim=-1
    ).reshape(h * w, 4 * quarter)
    return F.pad(code, (0, dim - code.shape[1])) if code.shape[1] < dim else code[:, :dim]


def norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= `groups` that divides `channels`."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels)


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time embedding added in between (SR3/DDPM style).

    x: (B, C_in, H, W), emb: (B, E) or None -> (B, C_out, H, W)
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int | None, groups: int, dropout: float):
        super().__init__()
        self.norm1 = norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out) if emb_dim else None
        self.norm2 = norm(c_out, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None and emb is not None:
            h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention. q: (B, N, C), k, v: (B, M, C) -> (B, N, C)."""
    b, n, c = q.shape
    split = lambda x: x.reshape(b, x.shape[1], heads, c // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(b, n, c)


def _heads_for(channels: int, heads: int) -> int:
    h = min(heads, channels)
    while channels % h:
        h -= 1
    return h


class SelfAttention(nn.Module):
    """Spatial self-attention with a residual connection. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.heads = _heads_for(channels, heads)
        self.norm = norm(channels, groups)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = self.qkv(seq).chunk(3, dim=-1)
        out = self.proj(_attend(q, k, v, self.heads))
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
