"""MATLAB-compatible imresize: hand-computed weights, invariants, agreement with Pillow."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from lddpm.data.resize import cubic, imresize, imresize_numpy, output_size, resize_matrix

# Hand values of the a = -0.5 cubic: k(0.25) = 1.5/64 - 2.5/16 + 1 = 0.8671875,
# k(0.75) = 0.2265625, k(1.25) = -0.0703125, k(1.75) = -0.0234375.
K025, K075, K125, K175 = 0.8671875, 0.2265625, -0.0703125, -0.0234375


def test_cubic_kernel_values():
    assert cubic(np.array([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5])).tolist() == [
        1.0, K025, K075, 0.0, K125, K175, 0.0, 0.0]


def test_downsampling_weights_by_hand():
    # 4 -> 2 pixels, scale 1/2: output pixel 1 sits at u = 1.5 (1-based input coordinates);
    # the kernel is stretched to h(d) = k(d/2)/2, so taps at distances 0.5, 1.5, 2.5, 3.5 on
    # either side weigh k(0.25)/2, k(0.75)/2, k(1.25)/2, k(1.75)/2. The taps left of pixel 1
    # mirror back onto pixels 1, 2, 3 (symmetric padding) and add to the inner taps:
    #   w1 = k(.25)/2 + k(.75)/2,  w2 = k(.25)/2 + k(1.25)/2,  w3 = k(.75)/2 + k(1.75)/2,
    #   w4 = k(1.25)/2 + k(1.75)/2.
    w = [(K025 + K075) / 2, (K025 + K125) / 2, (K075 + K175) / 2, (K125 + K175) / 2]
    expected = np.array([w, w[::-1]])
    assert np.allclose(resize_matrix(4, 2, 0.5), expected, atol=1e-15)


def test_upsampling_weights_by_hand():
    # 3 -> 6 pixels, scale 2: output pixel 1 sits at u = 0.75; taps at input 1, 2 (distances
    # 0.25, 1.25) and, mirrored, at 0 -> 1 and -1 -> 2 (distances 0.75, 1.75).
    first = [K025 + K075, K125 + K175, 0.0]
    # Output pixel 2 sits at u = 1.25: input 1 at 0.25, 2 at 0.75, 3 at 1.75, and 0 (which
    # mirrors onto 1) at 1.25.
    second = [K025 + K125, K075, K175]
    matrix = resize_matrix(3, 6, 2.0)
    assert np.allclose(matrix[0], first, atol=1e-15)
    assert np.allclose(matrix[1], second, atol=1e-15)
    assert np.allclose(matrix[5], first[::-1], atol=1e-15)  # mirror symmetry of the grid


def test_imresize_applies_the_weights_on_both_axes():
    x = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4) ** 2
    w = torch.tensor(resize_matrix(4, 2, 0.5))
    assert torch.allclose(imresize(x, scale=0.5), w @ x @ w.T, atol=1e-12)


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 0.7, 1.0, 1.5, 2.0, 3.0])
def test_constant_stays_constant(scale):
    x = torch.full((2, 3, 12, 17), 0.37, dtype=torch.float64)
    y = imresize(x, scale=scale)
    assert y.shape[:2] == (2, 3)
    assert torch.allclose(y, torch.full_like(y, 0.37), atol=1e-12)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_ramp_stays_ramp(factor):
    # A linear ramp f(j) = j along the width. Away from the borders (where mirroring bends
    # it) the antialiased cubic reproduces linear functions: output pixel x (1-based) takes
    # the value of its centre u = s (x - 1/2) + 1/2. Everywhere it stays increasing.
    width = 12 * factor
    ramp = torch.arange(1, width + 1, dtype=torch.float64).repeat(3, 5, 1)
    y = imresize(ramp, scale=1 / factor)[0, 0]
    centres = factor * (torch.arange(1, width // factor + 1, dtype=torch.float64) - 0.5) + 0.5
    inner = slice(3, -3)
    assert torch.allclose(y[inner], centres[inner], atol=1e-9)
    assert bool((y[1:] > y[:-1]).all())


@pytest.mark.parametrize("out_hw", [(20, 24), (10, 12), (16, 20), (80, 96), (120, 144)])
def test_matches_pillow_bicubic_away_from_borders(out_hw):
    # Pillow uses the same kernel, stretch and pixel centres, but renormalises the weights
    # at the border instead of mirroring. Stated bound: 1e-5 (Pillow's float32) on every
    # pixel whose kernel support (2 input pixels each side) stays inside the image; the
    # border band differs by design (up to ~0.03 on random pixels).
    image = np.random.default_rng(0).random((40, 48)).astype(np.float32)
    ours = imresize_numpy(image.astype(np.float64), size=out_hw)
    pillow = np.asarray(Image.fromarray(image, mode="F").resize(out_hw[::-1], Image.BICUBIC))
    band = 2 * math.ceil(max(out_hw[0] / 40, 1.0)) + 1
    difference = np.abs(ours - pillow)
    assert difference[band:-band, band:-band].max() < 1e-5
    assert difference.max() > 1e-3  # ...while mirroring does change the border


def test_output_size_follows_matlab_ceil_without_float_noise():
    assert output_size(10, 0.25) == 3  # ceil(2.5)
    assert output_size(255, 1 / 3) == 85  # 255 * (1/3) is 85.00000000000001 in floats
    assert imresize(torch.zeros(1, 3, 255, 10), scale=1 / 3).shape == (1, 3, 85, 4)


def test_dtype_and_layouts():
    x = torch.rand(3, 8, 8)
    assert imresize(x, scale=0.5).dtype == torch.float32
    as_numpy = imresize_numpy(x.permute(1, 2, 0).numpy(), scale=0.5)
    assert np.allclose(as_numpy, imresize(x, scale=0.5).permute(1, 2, 0).numpy(), atol=1e-6)
    big = torch.tensor([[[[0, 255], [255, 0]]]], dtype=torch.uint8)
    y = imresize(big, scale=2)  # overshoot is clamped and rounded, as MATLAB does for uint8
    assert y.dtype == torch.uint8 and int(y.max()) == 255 and int(y.min()) == 0


def test_size_and_scale_together_fix_both():
    y = imresize(torch.rand(1, 3, 12, 9), scale=1 / 3, size=(4, 3))
    assert y.shape == (1, 3, 4, 3)
    with pytest.raises(ValueError):
        imresize(torch.rand(1, 3, 4, 4))


def test_differentiable_even_after_a_first_call_in_inference_mode():
    with torch.inference_mode():  # validation may be the first to ask for these weights
        imresize(torch.rand(1, 3, 8, 8), scale=0.5)
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    imresize(x, scale=0.5).sum().backward()
    # d(sum y)/dx = (column sums of W_h) x (column sums of W_w), per channel.
    w = torch.tensor(resize_matrix(8, 4, 0.5))
    expected = torch.outer(w.sum(0), w.sum(0)).float().expand(1, 3, 8, 8)
    assert torch.allclose(x.grad, expected, atol=1e-6)
