"""Conditional UNet eps_theta (Table 1): input concat(x_t, bicubic-up(LR)), output eps.

With `unshuffle = f > 1` the input is pixel-unshuffled to (B, 6 f^2, H/f, W/f) and the output
pixel-shuffled back from (B, 3 f^2, H/f, W/f): the same function of HR-sized tensors, run at
a lower resolution (Hoogeboom et al., "simple diffusion").

Split in two halves so that the LDDPM assembly can act on the encoder output F_X between
them (the CVAE fusion of Eq. 9-11 and the Glow prior's context c):

    F_X, skips, emb = unet.encode(x_t, t, up)        # F_X: (B, C_mid, H/2^L, W/2^L)
    eps = unet.decode(F_g, skips, emb, tokens)        # eps: (B, 3, H, W)

`tokens` are the LR encoder's (B, N, C_tok) for the cross-attention sites (Eq. 8), or None.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lddpm.config import UNetConfig
from lddpm.models.layers import (
    Downsample,
    ResBlock,
    SelfAttention,
    Upsample,
    norm,
    timestep_embedding,
    zero_init,
)

# A cross-attention site: (features (B,C,H,W), tokens) -> features. Built by the assembly.
CrossAttentionFactory = Callable[[int], nn.Module]


class UNet(nn.Module):
    def __init__(
        self,
        cfg: UNetConfig,
        in_channels: int = 6,
        out_channels: int = 3,
        cross_sites: tuple[str, ...] = (),
        make_cross: CrossAttentionFactory | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        ch, mults, g = cfg.inner_channels, cfg.channel_mults, cfg.groups
        emb_dim = 4 * ch
        self.levels = len(mults)
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        f2 = cfg.unshuffle**2
        self.inp = nn.Conv2d(in_channels * f2, ch, 3, padding=1)

        block = lambda a, b: ResBlock(a, b, emb_dim, g, cfg.dropout)
        attn = lambda c: SelfAttention(c, cfg.heads, g)
        # Built in this order (down, mid, up): the order fixes the seeded initial weights.
        self.down, skip_channels = self._encoder(block, attn)
        c = self.mid_channels = skip_channels[-1]
        self.mid1, self.mid_attn, self.mid2 = block(c, c), attn(c), block(c, c)
        self.up, c = self._decoder(block, attn, skip_channels)

        self.out = nn.Sequential(
            norm(c, g), nn.SiLU(), zero_init(nn.Conv2d(c, out_channels * f2, 3, padding=1))
        )

        # Cross-attention sites (Eq. 8): "mid" after the bottleneck, "upN" at the end of
        # decoder level N counted from the lowest. Absent sites have no modules at all.
        self.cross = nn.ModuleDict()
        if make_cross is not None:
            for site in cross_sites:
                self.cross[site] = make_cross(self._site_channels(site))

    def _encoder(self, block, attn) -> tuple[nn.ModuleList, list[int]]:
        """The down path: per level res blocks (+ self-attention), then a downsample; and the
        channels of every skip connection it leaves, in order."""
        ch, cfg = self.cfg.inner_channels, self.cfg
        down, skip_channels, c = nn.ModuleList(), [ch], ch
        for level, m in enumerate(cfg.channel_mults):
            stage = nn.ModuleList()
            for _ in range(cfg.res_blocks):
                stage.append(block(c, ch * m))
                c = ch * m
                if level in cfg.attn_levels:
                    stage.append(attn(c))
                skip_channels.append(c)
            if level < self.levels - 1:
                stage.append(Downsample(c))
                skip_channels.append(c)
            down.append(stage)
        return down, skip_channels

    def _decoder(self, block, attn, skip_channels: list[int]) -> tuple[nn.ModuleList, int]:
        """The up path, lowest level first, consuming `skip_channels`; and its out channels."""
        ch, cfg, c = self.cfg.inner_channels, self.cfg, self.mid_channels
        up = nn.ModuleList()
        for level, m in reversed(list(enumerate(cfg.channel_mults))):
            stage = nn.ModuleList()
            for _ in range(cfg.res_blocks + 1):
                stage.append(block(c + skip_channels.pop(), ch * m))
                c = ch * m
                if level in cfg.attn_levels:
                    stage.append(attn(c))
            if level > 0:
                stage.append(Upsample(c))
            up.append(stage)
        return up, c

    @property
    def downsampling(self) -> int:
        """Total downsampling factor (unshuffle included): HR sizes must be a multiple of this."""
        return self.cfg.unshuffle * 2 ** (self.levels - 1)

    def _site_channels(self, site: str) -> int:
        if site == "mid":
            return self.mid_channels
        k = int(site[2:])
        if not 0 <= k < self.levels:
            raise ValueError(f"cross-attention site {site}: the UNet has levels up0..up{self.levels - 1}")
        return self.cfg.inner_channels * self.cfg.channel_mults[self.levels - 1 - k]

    def encode(
        self, x_t: torch.Tensor, t: torch.Tensor, up: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """x_t, up: (B,3,H,W); t: (B,) -> F_X (B,C_mid,H/2^L,W/2^L), skips, emb (B,4*ch)."""
        emb = self.time_mlp(timestep_embedding(t, self.cfg.inner_channels))
        h = self.inp(_unshuffle(torch.cat([x_t, up], dim=1), self.cfg.unshuffle))
        skips = [h]
        for stage in self.down:
            for layer in stage:
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
                if not isinstance(layer, SelfAttention):
                    skips.append(h)
                else:
                    skips[-1] = h
        return h, skips, emb

    def decode(
        self,
        h: torch.Tensor,
        skips: list[torch.Tensor],
        emb: torch.Tensor,
        tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """F_g (B,C_mid,h,w), skips from encode -> eps (B,3,H,W)."""
        skips = list(skips)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        h = self._cross("mid", h, tokens)
        for k, stage in enumerate(self.up):
            for layer in stage:
                if isinstance(layer, ResBlock):
                    h = layer(torch.cat([h, skips.pop()], dim=1), emb)
                elif isinstance(layer, Upsample):
                    h = self._cross(f"up{k}", h, tokens)
                    h = layer(h)
                else:
                    h = layer(h)
            if not isinstance(stage[-1], Upsample):
                h = self._cross(f"up{k}", h, tokens)
        out = self.out(h)
        return F.pixel_shuffle(out, self.cfg.unshuffle) if self.cfg.unshuffle > 1 else out

    def _cross(self, site: str, h: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
        if site in self.cross and tokens is not None:
            return self.cross[site](h, tokens)
        return h

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        h, skips, emb = self.encode(x_t, t, up)
        return self.decode(h, skips, emb)


def _unshuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.pixel_unshuffle(x, factor) if factor > 1 else x
