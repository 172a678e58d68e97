"""Moved to `lddpm.losses.perceptual` (the losses' one home); this old import path re-exports it."""

from lddpm.losses.perceptual import (
    CONTENT_LAYER,
    STYLE_LAYERS,
    PerceptualLoss,
    channel_stats,
    style_distance,
    time_weight,
)

__all__ = [
    "CONTENT_LAYER", "STYLE_LAYERS", "PerceptualLoss", "channel_stats", "style_distance",
    "time_weight",
]
