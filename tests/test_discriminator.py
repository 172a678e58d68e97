"""Time-dependent discriminator and the GAN losses of Eq. 13."""

from __future__ import annotations

import math

import pytest
import torch

from lddpm.losses.adversarial import d_loss, g_loss, r1_penalty
from lddpm.models.discriminator import TimeDiscriminator


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _inputs(b: int, h: int, w: int, seed: int):
    return (
        _randn(b, 3, h, w, seed=seed),
        _randn(b, 3, h, w, seed=seed + 1),
        _randn(b, 3, h, w, seed=seed + 2),
    )


@pytest.fixture(scope="module")
def disc() -> TimeDiscriminator:
    torch.manual_seed(0)
    return TimeDiscriminator(channels=8, timesteps=1000)


@pytest.mark.parametrize("h, w", [(16, 24), (32, 48), (48, 16), (17, 21)])
def test_output_is_one_logit_per_image(disc, h, w):
    x_prev, x_t, up = _inputs(3, h, w, seed=0)
    logits = disc(x_prev, x_t, torch.tensor([0, 500, 999]), up)
    assert logits.shape == (3,) and torch.isfinite(logits).all()


def test_output_depends_on_t(disc):
    x_prev, x_t, up = _inputs(1, 16, 16, seed=0)
    x_prev, x_t, up = (x.expand(3, -1, -1, -1) for x in (x_prev, x_t, up))
    logits = disc(x_prev, x_t, torch.tensor([10, 250, 750]), up)
    assert len({round(v, 6) for v in logits.tolist()}) == 3


def test_output_depends_on_the_lr_condition_and_x_t(disc):
    x_prev, x_t, up = _inputs(2, 16, 16, seed=0)
    t = torch.tensor([100, 100])
    base = disc(x_prev, x_t, t, up)
    assert not torch.allclose(base, disc(x_prev, x_t, t, _randn(2, 3, 16, 16, seed=9)))
    assert not torch.allclose(base, disc(x_prev, _randn(2, 3, 16, 16, seed=9), t, up))


def test_batch_items_are_independent(disc):
    x_prev, x_t, up = _inputs(2, 16, 16, seed=0)
    t = torch.tensor([3, 700])
    both = disc(x_prev, x_t, t, up)
    first = disc(x_prev[:1], x_t[:1], t[:1], up[:1])
    assert torch.allclose(both[:1], first, atol=1e-6)


def test_losses_closed_form():
    zeros = torch.zeros(4)
    assert d_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    assert g_loss(zeros).item() == pytest.approx(math.log(2))
    # A confident, correct discriminator has (almost) zero loss; the generator then pays ~|l|.
    real, fake = torch.full((4,), 20.0), torch.full((4,), -20.0)
    assert d_loss(real, fake).item() == pytest.approx(0.0, abs=1e-8)
    assert g_loss(fake).item() == pytest.approx(20.0, rel=1e-6)
    # softplus(-1) and softplus(2) on mixed logits.
    value = d_loss(torch.tensor([1.0]), torch.tensor([2.0])).item()
    assert value == pytest.approx(math.log1p(math.exp(-1)) + math.log1p(math.exp(2)))


def test_r1_penalty_closed_form_on_linear_critic():
    # logits_i = <w, x_i>: gradient w for every item, so R1 = ||w||^2.
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    x = _randn(5, 2, 2, seed=0).requires_grad_(True)
    logits = (x * w).flatten(1).sum(1)
    assert r1_penalty(logits, x).item() == pytest.approx(w.pow(2).sum().item())


def test_r1_penalty_is_nonnegative_and_trains_d():
    torch.manual_seed(1)
    disc = TimeDiscriminator(channels=8)
    x_prev, x_t, up = _inputs(2, 16, 16, seed=3)
    x_prev.requires_grad_(True)
    penalty = r1_penalty(disc(x_prev, x_t, torch.tensor([5, 900]), up), x_prev)
    assert penalty.item() > 0
    penalty.backward()
    # Biases feeding piecewise-linear LeakyReLUs have no second derivative; the weights do.
    for weight in (disc.stem.weight, disc.blocks[0].conv1.weight, disc.head.weight):
        assert weight.grad is not None and weight.grad.abs().sum() > 0
