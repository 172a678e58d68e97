"""Inception-v3 as used for FID and IS (no torchvision needed).

This is the network of the TensorFlow graph `inception-2015-12-05` that FID and IS were
defined with, in the state-dict layout of the widely used PyTorch port, whose weight file is
`pt_inception-2015-12-05-6726825d.pth`. It differs from torchvision's ImageNet Inception-v3
in ways that change the numbers, so both are reproduced here:
- average pooling inside the A, C and first E blocks ignores the zero padding
  (`count_include_pad=False`), as TensorFlow's does;
- the last E block pools its side branch with a 3x3 max pool instead of an average pool;
- the classifier has 1008 outputs (the TF graph's label space; 1001-1007 are unused padding).

Input: float images (B, 3, H, W) in [0, 1] of any size; they are resized to 299x299
bilinearly (align_corners=False) and mapped to [-1, 1], as the port does.
Outputs: pool3 features (B, 2048) for FID, logits (B, 1008) for IS.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lddpm.weights import find_weight_file, hub_checkpoint_dir, load_state_dict_file, load_strict

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
)
INPUT_SIZE = 299
NUM_CLASSES = 1008
FEATURE_DIM = 2048


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, as TF) -> ReLU; keys `conv.*` and `bn.*`."""

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    # TF's average pool divides by the number of real (unpadded) pixels.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _max_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=1, padding=1)


def _max_pool_3x3_down(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=2)


class BlockA(nn.Module):
    """35x35 block: 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1 (Mixed_5b/5c/5d)."""

    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 64, 1)
        self.branch5x5_1 = ConvBN(c_in, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_3x3(x)),
        ], 1)  # fmt: skip


class BlockB(nn.Module):
    """35 -> 17 reduction (Mixed_6a): 3x3/2 | 1x1->3x3->3x3/2 | maxpool/2."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            _max_pool_3x3_down(x),
        ], 1)  # fmt: skip


def _conv_1x7(c_in: int, c_out: int) -> ConvBN:
    return ConvBN(c_in, c_out, (1, 7), padding=(0, 3))


def _conv_7x1(c_in: int, c_out: int) -> ConvBN:
    return ConvBN(c_in, c_out, (7, 1), padding=(3, 0))


class BlockC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b..6e); c7 = inner width."""

    def __init__(self, c_in: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 192, 1)
        self.branch7x7_1 = ConvBN(c_in, c7, 1)
        self.branch7x7_2 = _conv_1x7(c7, c7)
        self.branch7x7_3 = _conv_7x1(c7, 192)
        self.branch7x7dbl_1 = ConvBN(c_in, c7, 1)
        self.branch7x7dbl_2 = _conv_7x1(c7, c7)
        self.branch7x7dbl_3 = _conv_1x7(c7, c7)
        self.branch7x7dbl_4 = _conv_7x1(c7, c7)
        self.branch7x7dbl_5 = _conv_1x7(c7, 192)
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for k in range(1, 6):
            double = getattr(self, f"branch7x7dbl_{k}")(double)
        return torch.cat([self.branch1x1(x), seven, double, self.branch_pool(_avg_pool_3x3(x))], 1)


class BlockD(nn.Module):
    """17 -> 8 reduction (Mixed_7a): 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | maxpool/2."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(c_in, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = _conv_1x7(192, 192)
        self.branch7x7x3_3 = _conv_7x1(192, 192)
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = x
        for k in range(1, 5):
            seven = getattr(self, f"branch7x7x3_{k}")(seven)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, _max_pool_3x3_down(x)], 1)


class BlockE(nn.Module):
    """8x8 block with split 1x3/3x1 heads (Mixed_7b avg-pools its side branch, 7c max-pools)."""

    def __init__(self, c_in: int, max_pool_branch: bool):
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 320, 1)
        self.branch3x3_1 = ConvBN(c_in, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(c_in, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(c_in, 192, 1)
        self.pool = _max_pool_3x3 if max_pool_branch else _avg_pool_3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
            self.branch_pool(self.pool(x)),
        ], 1)  # fmt: skip


class FIDInceptionV3(nn.Module):
    """(B, 3, H, W) in [0, 1] -> pool3 features (B, 2048) and logits (B, 1008)."""

    def __init__(self, input_size: int = INPUT_SIZE):
        super().__init__()
        # Tests build it at a smaller input size (>= 75) to run fast; metrics use 299.
        self.input_size = input_size
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = BlockA(192, pool_features=32)
        self.Mixed_5c = BlockA(256, pool_features=64)
        self.Mixed_5d = BlockA(288, pool_features=64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, c7=128)
        self.Mixed_6c = BlockC(768, c7=160)
        self.Mixed_6d = BlockC(768, c7=160)
        self.Mixed_6e = BlockC(768, c7=192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, max_pool_branch=False)
        self.Mixed_7c = BlockE(2048, max_pool_branch=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images of any size -> [-1, 1] at input_size x input_size."""
        size = (self.input_size, self.input_size)
        x = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False)
        return 2 * x - 1

    def pool3(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 2048): the global average pool after Mixed_7c."""
        x = self.prepare(images)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = _max_pool_3x3_down(x)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = _max_pool_3x3_down(x)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> (features (B, 2048), logits (B, 1008))."""
        features = self.pool3(images)
        return features, self.fc(features)


def _with_batchnorm_counters(
    state: dict[str, torch.Tensor], network: nn.Module
) -> dict[str, torch.Tensor]:
    """Adds BatchNorm's `num_batches_tracked` where the file predates it (eval ignores it)."""
    out = dict(state)
    for key, value in network.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in out:
            out[key] = torch.zeros_like(value)
    return out


def load_fid_inception(
    weights_path: str | Path | None = None, input_size: int = INPUT_SIZE
) -> FIDInceptionV3:
    """The FID Inception with its standard weights (WeightsNotFound if there are none)."""
    path = find_weight_file(
        FID_WEIGHTS_FILE,
        weights_path,
        how_to_get=f"to get it: download {FID_WEIGHTS_URL} into {hub_checkpoint_dir()}, "
        "or pass its path with --inception-weights",
    )
    network = FIDInceptionV3(input_size)
    state = _with_batchnorm_counters(load_state_dict_file(path), network)
    load_strict(network, state, f"FID Inception weights {path}")
    network.requires_grad_(False)
    return network.eval()
