"""The one tiler (lddpm.data.tiles) and the one comparison-grid builder (lddpm.data.grids)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lddpm.data.grids import GAP, LABEL_HEIGHT, comparison_row, panel_row, stack_rows
from lddpm.data.resize import imresize
from lddpm.data.tiles import run_tiled, spans, tile_grid


# ---------------------------------------------------------------------------------- tiles
@pytest.mark.parametrize("n, tile, overlap", [(20, 16, 4), (64, 16, 4), (33, 8, 0), (30, 12, 11)])
def test_unaligned_spans_are_the_tilers_classic_ones(n, tile, overlap):
    """align = 1: starts 0, step, 2 step, ... and the last tile flush with the edge."""
    starts = list(range(0, n - tile, tile - overlap)) + [n - tile]
    assert spans(n, tile, overlap) == tuple((s, s + tile) for s in starts)


@pytest.mark.parametrize("n, tile, overlap, align", [
    (30, 7, 3, 2), (30, 9, 0, 2), (61, 16, 4, 4), (61, 16, 0, 8), (100, 13, 5, 3), (9, 8, 7, 4)])
def test_aligned_spans_cover_the_axis_on_the_grid(n, tile, overlap, align):
    got = spans(n, tile, overlap, align)
    assert got[0][0] == 0 and got[-1][1] == n
    assert all(start % align == 0 for start, _ in got)
    assert all(stop - start == tile for start, stop in got[:-1])
    assert tile <= got[-1][1] - got[-1][0] < tile + align
    for (_, stop), (start, _) in itertools.pairwise(got):
        assert stop - start >= overlap  # no gap, at least the overlap asked for


def test_one_tile_when_the_image_fits_or_tiling_is_off():
    assert len(tile_grid(20, 30, 0)) == 1 and len(tile_grid(20, 30, 30)) == 1
    assert tile_grid(20, 30, 32, 8).ys == ((0, 20),)
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(40, 40, 16, 16)


def test_context_tiles_crop_their_margin_and_match_a_local_operator():
    """Real-ESRGAN's scheme (no overlap, `context` pixels around each tile, cropped from its
    output): an operator whose reach is within the context gives the whole-image result."""
    lr = torch.rand(1, 3, 23, 37, generator=torch.Generator().manual_seed(0))

    def local(x: torch.Tensor, origin=None) -> torch.Tensor:  # reach: 1 LR pixel, then x2
        return F.interpolate(F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1), scale_factor=2)

    whole = local(lr)
    out = torch.empty_like(whole)
    origins = []
    run_tiled(lambda x, origin: origins.append(origin) or local(x), lr, tile_grid(23, 37, 8, 0, context=2),
              2, out)
    torch.testing.assert_close(out, whole, rtol=0, atol=1e-6)
    assert (0, 0) in origins and all(y >= 0 and x >= 0 for y, x in origins)


def test_blended_tiles_that_agree_with_the_whole_image_give_it_back():
    """Each piece is the whole result's region at the tile's origin: the normalised blend
    weights then return the whole result exactly, wherever the tiles and overlaps fall."""
    lr = torch.rand(2, 3, 21, 30, generator=torch.Generator().manual_seed(1))
    whole = imresize(lr, scale=3)

    def region(t, origin):
        y, x = origin[0] * 3, origin[1] * 3
        return whole[..., y : y + t.shape[-2] * 3, x : x + t.shape[-1] * 3]

    for tile, overlap, align in ((8, 3, 1), (11, 5, 2), (16, 8, 4), (7, 0, 3)):
        out = torch.empty_like(whole)
        run_tiled(region, lr, tile_grid(21, 30, tile, overlap, align), 3, out)
        torch.testing.assert_close(out, whole, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------- grids
def test_comparison_row_is_lr_bicubic_results_with_black_gaps():
    lr = torch.rand(3, 6, 8, generator=torch.Generator().manual_seed(2))
    sr, hr = torch.rand(3, 12, 16), torch.rand(3, 12, 16)
    row = comparison_row(lr, [sr, hr], 2)
    assert row.shape == (12, 4 * 16 + 3 * GAP, 3) and row.dtype == np.uint8
    assert not row[:, 16 : 16 + GAP].any()
    nearest = lr.repeat_interleave(2, -2).repeat_interleave(2, -1)
    assert np.array_equal(row[:, :16], (nearest * 255).round().byte().permute(1, 2, 0).numpy())
    assert np.array_equal(row[:, -16:], (hr * 255).round().byte().permute(1, 2, 0).numpy())


def test_labelled_zoomed_crops_and_stacked_rows():
    panels = [np.full((20, 30, 3), v, np.uint8) for v in (10, 200)]
    row = panel_row(panels, ["a", "b"], box=(5, 2, 15, 12), zoom=3, fill=255)
    assert row.shape == (30 + LABEL_HEIGHT, 2 * 30 + GAP, 3)
    assert (row[LABEL_HEIGHT:, :30] == 10).all() and (row[:, 30 : 30 + GAP] == 255).all()
    grid = stack_rows([row, panel_row(panels[:1])], gap=6, fill=255)
    assert grid.shape == (row.shape[0] + 6 + 20, row.shape[1], 3)
    assert (grid[row.shape[0] + 6 :, 30:] == 255).all()  # the narrower row padded with the fill
