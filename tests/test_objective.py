"""The training objective (Eq. 18): named terms, L_DDPM, the K-step chain pairs, D's loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lddpm.config import build_preset
from lddpm.data.resize import imresize
from lddpm.diffusion.objective import Objective
from lddpm.diffusion.schedule import Schedule, predict_x0, q_sample
from lddpm.models.discriminator import TimeDiscriminator
from lddpm.models.lddpm import LDDPMNet

T = 50


def _setup(preset: str, steps: int = 4, seed: int = 0):
    cfg = build_preset(preset)
    cfg.data.scale = 2
    cfg.diffusion.timesteps = T
    cfg.gan.steps = steps
    torch.manual_seed(seed)
    net = LDDPMNet(cfg.model, cfg.data.scale)
    # fill the zero-initialised weights (not the gates) so eps, the KL and the chain's
    # fakes are not identically zero
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if not name.endswith("gate") and torch.count_nonzero(p) == 0:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return cfg, net, Objective(cfg, Schedule.from_config(cfg.diffusion))


def _batch(b: int = 4, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    hr = torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return {"hr": hr, "lr": imresize(hr, scale=0.5)}


def _disc(seed: int = 0) -> TimeDiscriminator:
    torch.manual_seed(seed)
    return TimeDiscriminator(channels=8, timesteps=T)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _replay_draws(obj: Objective, batch: dict, seed: int):
    """The documented draws of L_DDPM: t ~ U{0..T-1}, then eps ~ N(0, I), same generator."""
    gen = _gen(seed)
    t = torch.randint(0, T, (batch["hr"].shape[0],), generator=gen).numpy()
    noise = torch.randn(batch["hr"].shape, generator=gen)
    return t, noise, q_sample(obj.sched, batch["hr"], t, noise)


def _assert_total_is_sum(total, terms):
    assert total.ndim == 0 and torch.isfinite(total)
    torch.testing.assert_close(total, sum(terms.values()), rtol=0, atol=0)


# ---------------------------------------------------------------------------------- generator
@pytest.mark.parametrize(
    "preset, names",
    [
        ("tiny+v1", {"ddpm"}),
        ("tiny+v2", {"ddpm"}),
        ("tiny+v3", {"ddpm", "kl"}),
        ("tiny+v3+glow", {"ddpm", "kl"}),
    ],
)
def test_generator_loss_is_the_sum_of_its_named_terms(preset, names):
    cfg, net, obj = _setup(preset)
    assert cfg.loss.content == 0 and cfg.loss.style == 0
    total, terms = obj.generator_loss(net, _batch(), _gen())
    assert set(terms) == names
    _assert_total_is_sum(total, terms)


def test_generator_loss_with_gan_adds_the_adversarial_term():
    _cfg, net, obj = _setup("tiny+v3+glow+gan")
    total, terms = obj.generator_loss(net, _batch(), _gen(), disc=_disc())
    assert set(terms) == {"ddpm", "kl", "adv"}
    _assert_total_is_sum(total, terms)
    total.backward()
    assert net.unet.out[-1].weight.grad.abs().sum() > 0


def test_terms_are_weighted_by_the_config():
    """Same generator seed, other weights: every term scales by exactly its weight ratio."""
    cfg, net, obj = _setup("tiny+v3+gan")
    cfg.loss.ddpm, cfg.loss.kl, cfg.loss.adv = 1.0, 1.0, 1.0
    _, unit = obj.generator_loss(net, _batch(), _gen(3), disc=_disc())
    cfg.loss.ddpm, cfg.loss.kl, cfg.loss.adv = 2.0, 0.25, 3.0
    total, scaled = obj.generator_loss(net, _batch(), _gen(3), disc=_disc())
    for name, weight in {"ddpm": 2.0, "kl": 0.25, "adv": 3.0}.items():
        torch.testing.assert_close(scaled[name], weight * unit[name])
    _assert_total_is_sum(total, scaled)
    assert unit["kl"] > 0  # the randomised posterior is not N(0, I)


def test_ddpm_term_is_the_epsilon_mse_of_eq7():
    _cfg, net, obj = _setup("tiny+v1")
    batch = _batch()
    _, terms = obj.generator_loss(net, batch, _gen(5))
    t, noise, x_t = _replay_draws(obj, batch, 5)
    cond = net.condition(batch["lr"])
    eps = net(x_t, torch.as_tensor(t), cond)
    torch.testing.assert_close(terms["ddpm"], F.mse_loss(eps, noise))


# ---------------------------------------------------------------------------------- chain pairs
def test_chain_pair_shapes_and_the_first_step_starts_from_the_clean_image():
    _cfg, net, obj = _setup("tiny+v3+glow+gan", steps=4)
    batch = _batch(b=12)
    with torch.no_grad():
        pair = obj.chain_pair(net, batch["hr"], net.condition(batch["lr"]), _gen(0))
    for x in (pair.x_prev_real, pair.x_t, pair.x_prev_fake):
        assert x.shape == batch["hr"].shape and torch.isfinite(x).all()
    assert pair.t.shape == (12,) and pair.t.dtype == torch.long
    assert set(pair.t.tolist()) <= set(obj.taus.tolist())
    first = pair.t == int(obj.taus[0])
    assert 0 < int(first.sum()) < 12  # this seed draws both kinds of step
    # k = 1: tau_0 is "clean", so the real x_prev is x0 itself and the fake one is x0-hat
    assert torch.equal(pair.x_prev_real[first], batch["hr"][first])
    assert pair.x_prev_fake[first].abs().max() <= 1.0
    for i in torch.nonzero(~first).flatten():
        assert (pair.x_prev_real[i] - batch["hr"][i]).abs().max() > 1e-3


def test_single_step_chain_fake_is_the_clamped_clean_estimate():
    _cfg, net, obj = _setup("tiny+v1", steps=1)
    batch = _batch()
    cond = net.condition(batch["lr"])
    with torch.no_grad():
        pair = obj.chain_pair(net, batch["hr"], cond, _gen(1))
        assert torch.all(pair.t == T - 1)
        assert torch.equal(pair.x_prev_real, batch["hr"])
        eps = net(pair.x_t, pair.t, cond)
    t = np.full(4, T - 1)
    x0_hat = predict_x0(obj.sched, pair.x_t, t, eps).clamp(-1, 1)
    torch.testing.assert_close(pair.x_prev_fake, x0_hat)


def test_chain_pair_repeats_with_the_same_seed():
    _cfg, net, obj = _setup("tiny+v3+gan")
    batch = _batch()
    with torch.no_grad():
        cond = net.condition(batch["lr"])
        a = obj.chain_pair(net, batch["hr"], cond, _gen(2))
        b = obj.chain_pair(net, batch["hr"], cond, _gen(2))
    for name in ("x_prev_real", "x_t", "t", "x_prev_fake"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# ---------------------------------------------------------------------------------- discriminator
def test_discriminator_loss_with_and_without_r1():
    cfg, net, obj = _setup("tiny+v3+glow+gan")
    disc, batch = _disc(), _batch()
    plain_total, plain = obj.discriminator_loss(net, disc, batch, _gen(4), with_r1=False)
    assert set(plain) == {"d_adv"}
    _assert_total_is_sum(plain_total, plain)
    total, terms = obj.discriminator_loss(net, disc, batch, _gen(4), with_r1=True)
    assert set(terms) == {"d_adv", "r1"}
    _assert_total_is_sum(total, terms)
    torch.testing.assert_close(terms["d_adv"], plain["d_adv"])  # same seed, same pairs

    # R1 by hand on the same real pair: ||dD/dx_prev||^2, lazily scaled by the period
    with torch.no_grad():
        cond = net.condition(batch["lr"])
        pair = obj.chain_pair(net, batch["hr"], cond, _gen(4))
    x_real = pair.x_prev_real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x_real, pair.x_t, pair.t, cond.up).sum(), x_real)
    expected = 0.5 * cfg.gan.r1_weight * cfg.gan.r1_every * grad.pow(2).flatten(1).sum(1).mean()
    torch.testing.assert_close(terms["r1"], expected)
    assert terms["r1"] > 0

    # D's loss trains D only: the fakes are detached from the generator
    net.zero_grad(set_to_none=True)
    total.backward()
    assert all(p.grad is None for p in net.parameters())
    assert all(p.grad is not None for p in disc.parameters())


def test_discriminator_loss_of_an_undecided_discriminator_is_2_log_2():
    _cfg, net, obj = _setup("tiny+v1+gan")
    disc = _disc()
    with torch.no_grad():
        disc.head.weight.zero_()
        disc.head.bias.zero_()
    _, terms = obj.discriminator_loss(net, disc, _batch(), _gen(), with_r1=True)
    torch.testing.assert_close(terms["d_adv"], torch.tensor(2 * math.log(2)))
    assert terms["r1"] == 0  # constant logits: zero gradient


def test_ddpm_term_with_v_prediction_is_the_v_mse():
    from lddpm.diffusion.schedule import v_target

    cfg, net, _ = _setup("tiny+v1")
    cfg.diffusion.prediction = "v"
    obj = Objective(cfg, Schedule.from_config(cfg.diffusion))
    batch = _batch()
    _, terms = obj.generator_loss(net, batch, _gen(5))
    t, noise, x_t = _replay_draws(obj, batch, 5)
    v = net(x_t, torch.as_tensor(t), net.condition(batch["lr"]))
    torch.testing.assert_close(terms["ddpm"], F.mse_loss(v, v_target(obj.sched, batch["hr"], t, noise)))
