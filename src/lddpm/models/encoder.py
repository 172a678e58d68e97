"""LR encoder tau_theta and adaptive multi-head cross-attention (Eq. 8, the `v2` part).

tau_theta:  LR (B,3,h,w) in [-1,1] -> feature map (B,C,h',w') -> tokens (B, h'*w', C)
cross-attn: UNet features (B,Cf,H,W) + tokens (B,N,C) -> (B,Cf,H,W)
            Q = W_Q phi_k(features), K = W_K tokens, V = W_V tokens (Eq. 8); the output is added
            through a per-channel gate initialised at 1e-6 (Table 1 "Layer Scale"), so a fresh
            v2 model computes what v1 computes.
Reference images (Fig. 11 "insert multiple images") add their tokens as extra keys/values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lddpm.config import EncoderConfig
from lddpm.models.layers import ResBlock, _attend, _heads_for, norm, positional_encoding_2d

# Token maps are pooled to at most this many positions per side, so that cross-attention
# stays affordable on large inputs (tokens grow with the LR area otherwise).
MAX_TOKEN_SIDE = 32


class LREncoder(nn.Module):
    """A small residual CNN on the LR image. (B,3,h,w) -> feature map (B,C,h',w')."""

    def __init__(self, cfg: EncoderConfig, groups: int):
        super().__init__()
        c = cfg.channels
        self.inp = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(c, c, None, groups, 0.0) for _ in range(cfg.blocks))
        self.out_norm = norm(c, groups)
        self.channels = c

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h = self.inp(lr)
        for blk in self.blocks:
            h = blk(h)
        h = F.silu(self.out_norm(h))
        side = max(h.shape[-2:])
        if side > MAX_TOKEN_SIDE:
            size = tuple(max(1, round(s * MAX_TOKEN_SIDE / side)) for s in h.shape[-2:])
            h = F.adaptive_avg_pool2d(h, size)
        return h


def to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """(B,C,h,w) -> (B, h*w, C) with a 2-D positional code of normalised coordinates added."""
    _, c, h, w = feature_map.shape
    seq = feature_map.flatten(2).transpose(1, 2)
    return seq + positional_encoding_2d(h, w, c, feature_map.device).to(seq.dtype)


class AdaptiveCrossAttention(nn.Module):
    """Eq. 8 with a learned per-channel output gate. features (B,C,H,W), tokens (B,N,Ct)."""

    def __init__(self, channels: int, token_channels: int, heads: int, groups: int, gate_init: float):
        super().__init__()
        self.heads = _heads_for(channels, heads)
        self.norm = norm(channels, groups)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(token_channels, channels)
        self.v = nn.Linear(token_channels, channels)
        self.proj = nn.Linear(channels, channels)
        self.gate = nn.Parameter(torch.full((channels,), float(gate_init)))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = self.norm(x).flatten(2).transpose(1, 2)  # phi_k(x): (B, HW, C)
        seq = seq + positional_encoding_2d(h, w, c, x.device).to(seq.dtype)
        out = self.proj(_attend(self.q(seq), self.k(tokens), self.v(tokens), self.heads))
        out = out * self.gate
        return x + out.transpose(1, 2).reshape(b, c, h, w)


def encode_condition(
    encoder: LREncoder, lr: torch.Tensor, references: list[torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """LR (B,3,h,w) [+ references, each (B or 1,3,hr,wr)] -> (feature map of LR, tokens).

    The tokens of every reference image are concatenated after the LR's as extra keys and
    values (Fig. 11); the feature map is the LR's alone (the Glow coupling nets use it).
    """
    fmap = encoder(lr)
    tokens = [to_tokens(fmap)]
    for ref in references or []:
        ref_tokens = to_tokens(encoder(ref))
        tokens.append(ref_tokens.expand(lr.shape[0], -1, -1))
    return fmap, torch.cat(tokens, dim=1)
