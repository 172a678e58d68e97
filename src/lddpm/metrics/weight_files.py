"""The pretrained backbones of the metrics, with not-found messages naming the option.

The metric-specific files (LPIPS linear layers, DISTS alpha/beta) are found by
`lddpm.weights.find_weight_file` with the copies (`ShippedCopy`) that the `lpips`,
`DISTS_pytorch` and `torchmetrics` packages ship.
"""

from __future__ import annotations

from pathlib import Path

from lddpm.models.backbones import FeatureNet, load_backbone
from lddpm.weights import WeightsNotFound

# The `lddpm evaluate` option that gives each backbone's weight file.
BACKBONE_OPTIONS = {"alexnet": "--alexnet-weights", "vgg16": "--vgg16-weights"}


def load_pretrained_backbone(
    name: str, weights_path: str | Path | None, normalize: bool
) -> FeatureNet:
    """`load_backbone`, with the not-found message naming the `lddpm evaluate` option."""
    try:
        return load_backbone(name, weights_path, normalize=normalize)
    except WeightsNotFound as exc:
        option = BACKBONE_OPTIONS.get(name)
        extra = f", or pass its path with {option}" if option else ""
        raise WeightsNotFound(f"{exc}{extra}") from None
