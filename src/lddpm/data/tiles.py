"""The one tiler: any per-piece upscaler run on overlapping LR tiles, blended into one output.

    tiling = tile_grid(h, w, tile=64, overlap=8)        # LR spans of the tile rows and columns
    run_tiled(run, lr, tiling, scale, out)              # run(lr_piece, (y, x)) -> HR piece

Used by `lddpm.inference.Upscaler` (the diffusion model: linear ramps across the overlaps)
and by the Real-ESRGAN row of `lddpm evaluate` (`context`: each tile is run with extra LR
pixels around it, cropped from its output; with no overlap, the crop-with-context scheme of
Real-ESRGAN's own tiler). Values are whatever the caller's range is: the tiler only crops,
weights and adds.

Each tile is `tile` LR pixels along an axis, except the last, which ends at the image edge.
Starts are multiples of `align` (an upscaler whose latent grid is coarser than one HR pixel
asks for starts on that grid); rounding the step down to that multiple only widens the
overlap, and the last tile then ends at the edge with at most align - 1 pixels more than
`tile`. With align = 1 the starts are 0, step, 2 step, ... and n - tile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Span = tuple[int, int]  # [start, stop) in LR pixels


@dataclass(frozen=True)
class Tiling:
    """The tiles of one image: LR spans of the rows and of the columns (a tile is a row
    span x a column span), the overlap across which neighbours are blended, and the context
    each tile is run with."""

    ys: tuple[Span, ...]
    xs: tuple[Span, ...]
    overlap: int = 0  # LR pixels of the linear blend ramp at each tile edge
    context: int = 0  # LR pixels of extra input around each tile, cropped from its output

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def spans(n: int, tile: int, overlap: int = 0, align: int = 1) -> tuple[Span, ...]:
    """The [start, stop) spans covering 0..n with tiles of `tile` (tile <= 0, or n <= tile:
    one span, the whole axis); neighbours share at least `overlap` pixels; every start is a
    multiple of `align`."""
    if tile <= 0 or n <= tile:
        return ((0, n),)
    step = max(align, (tile - overlap) // align * align)
    starts = list(range(0, n - tile, step))
    last = (n - tile) // align * align
    if last > starts[-1]:
        starts.append(last)
    return tuple((s, s + tile) for s in starts[:-1]) + ((starts[-1], n),)


def tile_grid(h: int, w: int, tile: int, overlap: int = 0, align: int = 1,
              context: int = 0) -> Tiling:
    """The Tiling of an (h, w) LR image (see `spans`); tile <= 0 or an image within one tile:
    a single tile, the whole image."""
    if tile <= 0 or max(h, w) <= tile:
        return Tiling(((0, h),), ((0, w),), 0, context)
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in 0..{tile - 1} (below the tile side {tile}), got {overlap}")
    return Tiling(spans(h, tile, overlap, align), spans(w, tile, overlap, align), overlap, context)


def run_tiled(run: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor], lr: torch.Tensor,
              tiling: Tiling, scale: int, out: torch.Tensor) -> torch.Tensor:
    """Runs run(lr_piece, origin) -> HR piece on every tile of `tiling` and blends the pieces
    into `out` (B,C,h*scale,w*scale), which it overwrites. `origin` is the LR (y, x) of the
    piece's top-left pixel in the image (the tile's, or its context's when it has one).

    Each tile is weighted by linear ramps across its overlaps, normalised so that every
    pixel's weights sum to 1: a pixel outside every overlap band is exactly its one tile's
    value, and tiles of one flat colour blend to that colour. Pieces are moved to `out`'s
    device and dtype one at a time, so `out` is the only full-size buffer."""
    h, w = lr.shape[-2:]
    c = tiling.context
    hr_spans = lambda spans_: [(a * scale, b * scale) for a, b in spans_]
    wys = _axis_weights(h * scale, hr_spans(tiling.ys), tiling.overlap * scale)
    wxs = _axis_weights(w * scale, hr_spans(tiling.xs), tiling.overlap * scale)
    out.zero_()
    for (y0, y1), wy in zip(tiling.ys, wys):
        for (x0, x1), wx in zip(tiling.xs, wxs):
            top, left = max(y0 - c, 0), max(x0 - c, 0)
            piece = run(lr[..., top : min(y1 + c, h), left : min(x1 + c, w)], (top, left))
            dy, dx = (y0 - top) * scale, (x0 - left) * scale
            piece = piece[..., dy : dy + (y1 - y0) * scale, dx : dx + (x1 - x0) * scale]
            weight = (wy[:, None] * wx).to(out.device)
            out[..., y0 * scale : y1 * scale, x0 * scale : x1 * scale] += \
                piece.to(out.device, out.dtype) * weight
    return out


def _axis_weights(n: int, spans_: list[Span], width: int) -> list[torch.Tensor]:
    """Blend weights along one axis of n pixels for the tiles at `spans_`: each a ramp
    rising linearly over `width` pixels from both ends (never 0), divided by the sum of all
    ramps at that pixel. The 2-D weight of a tile is the outer product of its two axes'
    weights; on a grid of tiles those sum to 1 at every pixel."""
    ramps, total = [], torch.zeros(n)
    for start, stop in spans_:
        span = stop - start
        i = torch.arange(span, dtype=torch.float32)
        ramps.append((torch.minimum(i + 1, span - i) / max(width, 1)).clamp(max=1.0))
        total[start:stop] += ramps[-1]
    return [r / total[a:b] for r, (a, b) in zip(ramps, spans_)]
