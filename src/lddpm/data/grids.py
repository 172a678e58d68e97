"""The one comparison-grid builder: LR (nearest) | bicubic | results [| HR], as a person reads them.

    row = comparison_row(lr, [sr, hr], scale)      # lr (3,h,w), sr/hr (3,H,W) in [0,1] -> uint8 (H, W', 3)
    row = panel_row(panels, labels=[...], box=(x0, y0, x1, y1), zoom=2)   # labelled crops
    grid = stack_rows([row, row2], gap=6)          # rows of any widths, padded to the widest

Every image here is a float (3, H, W) tensor in [0, 1] or a uint8 (H, W, 3) array. Used by
`lddpm upscale --side-by-side`, the training run's validation grid and the benchmarks' crop
grids (docs/*_grid.png).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from lddpm.data.imageio import to_uint8
from lddpm.data.resize import imresize

GAP = 4  # pixels between panels
LABEL_HEIGHT = 16  # pixels of the strip a label is written in, above its panel

Panel = torch.Tensor | np.ndarray


def comparison_panels(lr: torch.Tensor, images: list[Panel], scale: int) -> list[Panel]:
    """The LR enlarged by nearest neighbour, its bicubic upsampling, then `images` (each
    H = h * scale): the panels of a comparison row, [0, 1]."""
    lr_big = F.interpolate(lr[None], scale_factor=scale, mode="nearest")[0]
    bicubic = imresize(lr, scale=scale).clamp(0, 1)
    return [lr_big, bicubic, *images]


def comparison_row(lr: torch.Tensor, images: list[Panel], scale: int, gap: int = GAP) -> np.ndarray:
    """`comparison_panels` side by side, `gap` black pixels apart: uint8 (H, W_total, 3)."""
    return panel_row(comparison_panels(lr, images, scale), gap=gap)


def panel_row(panels: list[Panel], labels: list[str] | None = None,
              box: tuple[int, int, int, int] | None = None, zoom: int = 1, gap: int = GAP,
              fill: int = 0) -> np.ndarray:
    """Panels side by side, `gap` pixels of grey level `fill` apart: uint8 (H, W_total, 3).
    box (x0, y0, x1, y1): the same crop of every panel; zoom: enlarged by pixel repetition;
    labels: written in a white strip above each panel."""
    cells = []
    for i, panel in enumerate(panels):
        cell = to_uint8(panel) if isinstance(panel, torch.Tensor) else np.asarray(panel, np.uint8)
        if box is not None:
            x0, y0, x1, y1 = box
            cell = cell[y0:y1, x0:x1]
        if zoom != 1:
            cell = cell.repeat(zoom, axis=0).repeat(zoom, axis=1)
        if labels is not None:
            cell = _labelled(cell, labels[i])
        cells.append(cell)
    spacer = np.full((cells[0].shape[0], gap, 3), fill, np.uint8)
    return np.concatenate([c for cell in cells for c in (cell, spacer)][:-1], axis=1)


def stack_rows(rows: list[np.ndarray], gap: int = GAP, fill: int = 0) -> np.ndarray:
    """Rows one above the other, `gap` pixels of grey level `fill` apart, each padded on the
    right (with `fill`) to the widest: uint8 (H_total, W, 3)."""
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=fill) for r in rows]
    spacer = np.full((gap, width, 3), fill, np.uint8)
    return np.concatenate([p for row in padded for p in (row, spacer)][:-1], axis=0)


def _labelled(cell: np.ndarray, label: str) -> np.ndarray:
    """The cell below a white strip with `label` written in black."""
    im = Image.new("RGB", (cell.shape[1], cell.shape[0] + LABEL_HEIGHT), "white")
    im.paste(Image.fromarray(cell), (0, LABEL_HEIGHT))
    ImageDraw.Draw(im).text((3, 2), label, fill="black")
    return np.asarray(im)
