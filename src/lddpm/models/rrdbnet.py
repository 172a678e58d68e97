"""RRDBNet: the generator of ESRGAN (Wang et al. 2018), as Real-ESRGAN x4plus uses it.

Only used as a comparison method (`lddpm evaluate --compare realesrgan-x4plus`); its
weights come from an ncnn export (`lddpm.weights_ncnn`). The structure, for scale 4:

    feat = conv_first(x)                           3 -> 64, at the LR resolution
    body = conv_body(RRDB_23(... RRDB_1(feat)))    23 residual-in-residual dense blocks
    feat = feat + body
    feat = lrelu(conv_up1(nearest_x2(feat)))       2x
    feat = lrelu(conv_up2(nearest_x2(feat)))       4x
    out  = conv_last(lrelu(conv_hr(feat)))         64 -> 3

An RRDB is three residual dense blocks (RDB) chained, its output scaled by 0.2 and added to
its input; an RDB is five 3x3 convolutions, each seeing the block input concatenated with
every earlier output (growth 32 channels), the last one's output scaled by 0.2 and added to
the block input. Every convolution is 3x3, stride 1, zero padding 1, with a bias; "lrelu"
is LeakyReLU with slope 0.2. The module names follow the usual state-dict keys of this
network (conv_first, body.N.rdbK.convJ, conv_body, conv_up1, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Both residual branches are scaled down before the addition: it keeps a 23-block deep
# residual stack stable (the ESRGAN paper's "residual scaling").
RESIDUAL_SCALE = 0.2
NEGATIVE_SLOPE = 0.2


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, NEGATIVE_SLOPE)


class ResidualDenseBlock(nn.Module):
    """Five densely connected convolutions; (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int = 64, growth: int = 32):
        super().__init__()
        for j in range(1, 5):
            self.add_module(f"conv{j}", _conv(channels + (j - 1) * growth, growth))
        self.conv5 = _conv(channels + 4 * growth, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for j in range(1, 5):
            conv = getattr(self, f"conv{j}")
            features.append(_lrelu(conv(torch.cat(features, dim=1))))
        return x + RESIDUAL_SCALE * self.conv5(torch.cat(features, dim=1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs; (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int = 64, growth: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(channels, growth)
        self.rdb2 = ResidualDenseBlock(channels, growth)
        self.rdb3 = ResidualDenseBlock(channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """x4 RRDBNet: (B, 3, h, w) in [0, 1] -> (B, 3, 4h, 4w), roughly in [0, 1] (not clamped).

    Defaults are Real-ESRGAN x4plus: 23 blocks, 64 features, 32 growth channels.
    """

    scale = 4

    def __init__(self, channels: int = 64, blocks: int = 23, growth: int = 32):
        super().__init__()
        self.conv_first = _conv(3, channels)
        self.body = nn.Sequential(*[RRDB(channels, growth) for _ in range(blocks)])
        self.conv_body = _conv(channels, channels)
        self.conv_up1 = _conv(channels, channels)
        self.conv_up2 = _conv(channels, channels)
        self.conv_hr = _conv(channels, channels)
        self.conv_last = _conv(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = _lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = _lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(_lrelu(self.conv_hr(feat)))

    def convolutions(self) -> list[tuple[str, nn.Conv2d, bool]]:
        """(name, conv, followed by LeakyReLU) for every convolution, in forward order.

        This is the order an exported graph lists them in, which is what lets
        `lddpm.weights_ncnn` map an ncnn model's Convolution layers onto this network.
        """
        convs: list[tuple[str, nn.Conv2d, bool]] = [("conv_first", self.conv_first, False)]
        for i, block in enumerate(self.body):
            for k in (1, 2, 3):
                rdb = getattr(block, f"rdb{k}")
                for j in range(1, 6):
                    name = f"body.{i}.rdb{k}.conv{j}"
                    convs.append((name, getattr(rdb, f"conv{j}"), j < 5))
        convs.append(("conv_body", self.conv_body, False))
        convs += [(n, getattr(self, n), True) for n in ("conv_up1", "conv_up2", "conv_hr")]
        convs.append(("conv_last", self.conv_last, False))
        return convs
