"""The parameterisation (one owner of target, prediction, scale and clip), LR consistency and
the pixel-unshuffled UNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lddpm.config import UNetConfig, build_preset
from lddpm.data.resize import imresize
from lddpm.diffusion.consistency import project_to_lr
from lddpm.diffusion.denoiser import Parameterisation, clamp_straight_through
from lddpm.diffusion.schedule import Schedule, q_sample
from lddpm.models.unet import UNet

SCHED = Schedule(np.linspace(1e-4, 0.02, 100))


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_split_of_the_ideal_output_recovers_x0_and_eps_exactly(prediction):
    param = Parameterisation(SCHED, "image", prediction)
    x0, eps = 0.5 * _randn(4, 3, 5, 6, seed=1), _randn(4, 3, 5, 6, seed=2)
    t = np.array([0, 10, 50, 99])
    x_t = q_sample(SCHED, x0, t, eps)
    ideal = param.loss_target(x0, t, eps)  # what a perfect network outputs
    x0_hat, eps_hat = param.split(x_t, t, ideal, clip=None)
    torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-9)
    # eps from x0 divides by sqrt(1 - ab_0) = 0.01 at t = 0: a looser bound there
    torch.testing.assert_close(eps_hat, eps, rtol=0, atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_residual_target_round_trips_and_is_scaled(scale):
    param = Parameterisation(SCHED, "residual", "v", scale)
    hr, up = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1
    x0 = param.x0_from_image(hr, up)
    torch.testing.assert_close(x0, (hr - up) * scale)
    torch.testing.assert_close(param.to_image(x0, up), hr)
    assert param.clip == 2.0 * scale


def test_hard_clip_bounds_x0_and_keeps_eps_consistent():
    param = Parameterisation(SCHED, "image", "eps")
    x_t, out, t = 3 * _randn(2, 3, 4, 4, seed=3), 3 * _randn(2, 3, 4, 4, seed=4), np.array([99, 99])
    x0, eps = param.split(x_t, t, out)
    assert x0.abs().max() <= 1.0
    ab = SCHED.alphabar_at(99)
    torch.testing.assert_close(np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps, x_t)


def test_straight_through_clamp_bounds_the_value_and_passes_the_gradient():
    x = torch.tensor([-5.0, 0.3, 7.0], requires_grad=True)
    y = clamp_straight_through(x, 1.0)
    assert y.tolist() == pytest.approx([-1.0, 0.3, 1.0])
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]  # a plain clamp gives [0, 1, 0]


def test_old_configs_mean_what_they_meant():
    """Checkpoints written before the parameterisation options keep their meaning."""
    from lddpm.config import config_from_dict

    old = build_preset("small+v1").to_dict()
    del old["diffusion"]["residual_scale"], old["model"]["unet"]["unshuffle"]
    cfg = config_from_dict(old)
    assert cfg.diffusion.residual_scale == 1.0 and cfg.model.unet.unshuffle == 1


# ------------------------------------------------------------------------------ consistency
@pytest.mark.parametrize("hw", [(32, 32), (44, 28)])
def test_projection_makes_the_bicubic_downscale_equal_the_lr(hw):
    image, lr = torch.rand(2, 3, *hw), torch.rand(2, 3, hw[0] // 4, hw[1] // 4)
    out = project_to_lr(image, lr, 4)
    torch.testing.assert_close(imresize(out, scale=0.25), lr, rtol=0, atol=1e-6)
    # a projection: applying it twice changes nothing more
    torch.testing.assert_close(project_to_lr(out, lr, 4), out, rtol=0, atol=1e-6)


def test_projection_leaves_a_consistent_image_unchanged():
    image = torch.rand(1, 3, 32, 32)
    lr = imresize(image, scale=0.25)
    torch.testing.assert_close(project_to_lr(image, lr, 4), image, rtol=0, atol=1e-6)


def test_projection_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="4x"):
        project_to_lr(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 7, 8), 4)


# ------------------------------------------------------------------------------ unshuffle
@pytest.mark.parametrize("factor", [1, 2, 4])
def test_unshuffled_unet_maps_hr_to_hr(factor):
    cfg = UNetConfig(inner_channels=8, channel_mults=(1, 2), res_blocks=1, attn_levels=(1,),
                     dropout=0.0, groups=4, heads=2, unshuffle=factor)
    unet = UNet(cfg)
    assert unet.downsampling == 2 * factor
    x = torch.randn(2, 3, 8 * factor, 4 * factor)
    out = unet(x, torch.tensor([0, 5]), x)
    assert out.shape == x.shape
    assert unet.inp.in_channels == 6 * factor**2
