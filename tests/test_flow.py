"""Glow flow and Glow prior: exact inverse, exact log-det, ActNorm init, prior closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from lddpm.errors import UserError
from lddpm.losses.kl import kl_glow_prior
from lddpm.models.flow import (
    ActNorm,
    Glow,
    GlowPrior,
    InvConv1x1,
    gaussian_log_prob,
    squeeze2x2,
    unsqueeze2x2,
)


def _perturb(module: torch.nn.Module, seed: int, scale: float = 0.1) -> None:
    """Move every parameter off its (identity-like) initialisation, reproducibly.

    Matrices get noise scaled by 1/sqrt(fan-in), so wide layers stay well-conditioned.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            p.add_(scale / math.sqrt(fan_in) * noise)


def _randn(*shape: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _make_identity(glow: Glow) -> None:
    """Set every flow step to the identity map (ActNorm, InvConv, zero coupling output)."""
    with torch.no_grad():
        for step in glow.flow_steps:
            step.actnorm.bias.zero_()
            step.actnorm.log_scale.zero_()
            step.actnorm.initialized.fill_(True)
            conv = step.invconv
            conv.permutation.copy_(torch.eye(len(conv.log_s)))
            conv.sign_s.fill_(1.0)
            conv.lower.zero_()
            conv.upper.zero_()
            conv.log_s.zero_()
            last = step.coupling.net[-1]
            last.weight.zero_()
            last.bias.zero_()


def test_squeeze_roundtrip_and_layout():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).view(2, 3, 4, 6)
    s = squeeze2x2(x)
    assert s.shape == (2, 12, 2, 3)
    # Channel 0's 2x2 top-left block lands in channels 0..3 at position (0, 0).
    assert s[0, :4, 0, 0].tolist() == [x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 0], x[0, 0, 1, 1]]
    assert torch.equal(unsqueeze2x2(s), x)


@pytest.mark.parametrize(
    "shape, levels, cond_shape",
    [
        ((2, 4, 8, 8), 3, (2, 5, 3, 3)),
        ((1, 2, 8, 16), 2, (1, 5, 12, 7)),
        ((3, 3, 4, 12), 2, None),
    ],
)
def test_glow_inverse_is_exact_in_float64(shape, levels, cond_shape):
    torch.manual_seed(0)
    glow = Glow(shape[1], cond_channels=5, levels=levels, hidden=16).double()
    z = _randn(*shape, seed=1)
    cond = _randn(*cond_shape, seed=2) if cond_shape else None
    glow(z, cond)  # data-dependent ActNorm initialisation
    for seed in range(3):
        _perturb(glow, seed=10 + seed)
        u, logdet = glow(z, cond)
        assert u.shape == z.shape and logdet.shape == (shape[0],)
        assert not torch.allclose(u, z)
        assert torch.allclose(glow.inverse(u, cond), z, atol=1e-10, rtol=0)


def test_glow_inverse_in_float32():
    torch.manual_seed(0)
    glow = Glow(4, cond_channels=3, levels=3, hidden=16)
    z = _randn(2, 4, 8, 8, seed=1, dtype=torch.float32)
    cond = _randn(2, 3, 4, 4, seed=2, dtype=torch.float32)
    glow(z, cond)
    _perturb(glow, seed=3)
    u, _ = glow(z, cond)
    assert torch.allclose(glow.inverse(u, cond), z, atol=1e-4)


def test_glow_logdet_matches_bruteforce_jacobian():
    torch.manual_seed(0)
    glow = Glow(4, cond_channels=3, levels=2, hidden=8).double()
    z = _randn(1, 4, 4, 4, seed=1)
    cond = _randn(1, 3, 2, 2, seed=2)
    glow(z, cond)
    _perturb(glow, seed=3, scale=0.3)
    _, logdet = glow(z, cond)
    jac = torch.autograd.functional.jacobian(lambda x: glow(x, cond)[0], z)  # (1,4,4,4,1,4,4,4)
    sign, logabsdet = torch.linalg.slogdet(jac.reshape(64, 64))
    assert sign != 0
    assert logdet.item() == pytest.approx(logabsdet.item(), abs=1e-9)
    assert abs(logdet.item()) > 0.1  # the perturbed flow really changes volume


def test_coupling_sees_the_lr_features():
    torch.manual_seed(0)
    glow = Glow(2, cond_channels=3, levels=2, hidden=8).double()
    z = _randn(1, 2, 8, 8, seed=1)
    glow(z, None)
    _perturb(glow, seed=2)
    u1, _ = glow(z, _randn(1, 3, 4, 4, seed=3))
    u2, _ = glow(z, _randn(1, 3, 4, 4, seed=4))
    assert not torch.allclose(u1, u2)


def test_actnorm_initialises_on_first_batch_only():
    norm = ActNorm(3).double()
    x = 3.0 + 2.5 * _randn(4, 3, 5, 6, seed=0)
    y, _ = norm(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64))
    params = [p.clone() for p in norm.parameters()]
    y2, _ = norm(10.0 + _randn(4, 3, 5, 6, seed=1))
    assert all(torch.equal(a, b) for a, b in zip(params, norm.parameters()))
    assert y2.mean() > 1.0  # not re-normalised

    loaded = ActNorm(3).double()
    loaded.load_state_dict(norm.state_dict())
    y3, _ = loaded(_randn(4, 3, 5, 6, seed=2))
    assert bool(loaded.initialized)
    assert all(torch.equal(a, b) for a, b in zip(params, loaded.parameters()))
    assert torch.allclose(loaded.inverse(y3), _randn(4, 3, 5, 6, seed=2))


def test_actnorm_single_value_per_channel_only_centres():
    norm = ActNorm(2).double()
    x = _randn(1, 2, 1, 1, seed=0)
    y, logdet = norm(x)
    assert torch.allclose(y, torch.zeros_like(y)) and torch.equal(logdet, torch.zeros(1).double())


def test_invconv_logdet_is_slogdet_times_pixels():
    conv = InvConv1x1(6).double()
    _perturb(conv, seed=0, scale=0.3)
    x = _randn(2, 6, 3, 5, seed=1)
    y, logdet = conv(x)
    _, logabsdet = torch.linalg.slogdet(conv.weight())
    assert torch.allclose(logdet, torch.full((2,), 15 * logabsdet.item(), dtype=torch.float64))
    assert torch.allclose(conv.inverse(y), x, atol=1e-12, rtol=0)


def test_invconv_starts_orthogonal():
    w = InvConv1x1(8).weight()
    assert torch.allclose(w @ w.T, torch.eye(8), atol=1e-5)


def test_latent_not_divisible_is_a_user_error():
    glow = Glow(4, levels=3, hidden=8)
    assert glow.required_multiple == 8
    with pytest.raises(UserError, match="multiples of 8, got 8x12"):
        glow(torch.zeros(1, 4, 8, 12))
    with pytest.raises(UserError, match="multiples of 8"):
        glow.inverse(torch.zeros(1, 4, 4, 8))


def _identity_prior(seed: int) -> GlowPrior:
    """A prior whose flow is the identity but whose mu_p(c), sigma_p(c) are non-trivial."""
    torch.manual_seed(seed)
    prior = GlowPrior(
        latent_channels=2, context_channels=3, lr_feat_channels=4, levels=1, hidden=8
    ).double()
    _make_identity(prior.flow)
    with torch.no_grad():
        last = prior.stats[-1]
        last.weight.copy_(0.3 * _randn(*last.weight.shape, seed=seed + 1))
        last.bias.copy_(0.3 * _randn(*last.bias.shape, seed=seed + 2))
    return prior


def test_prior_with_identity_flow_is_the_gaussian_closed_form():
    prior = _identity_prior(seed=0)
    context = _randn(2, 3, 4, 6, seed=5)
    lr_feat = _randn(2, 4, 2, 3, seed=6)
    z = _randn(2, 2, 4, 6, seed=7)
    mu, log_sigma = prior.base_stats(context)
    assert mu.abs().max() > 0.01 and log_sigma.abs().max() > 0.01
    expected = torch.distributions.Normal(mu, log_sigma.exp()).log_prob(z).flatten(1).sum(1)
    assert torch.allclose(prior.log_prob(z, context, lr_feat), expected, atol=1e-10)


def test_untrained_prior_is_standard_normal_of_f_z():
    torch.manual_seed(0)
    prior = GlowPrior(
        latent_channels=2, context_channels=3, lr_feat_channels=0, levels=2, hidden=8
    ).double()
    z = _randn(2, 2, 4, 4, seed=1)
    context = _randn(2, 3, 4, 4, seed=2)
    prior.flow(z)
    _perturb(prior.flow, seed=3)
    u, logdet = prior.flow(z)
    expected = -0.5 * u.pow(2).flatten(1).sum(1) - 0.5 * 32 * math.log(2 * math.pi) + logdet
    assert torch.allclose(prior.log_prob(z, context, None), expected, atol=1e-10)


def test_gaussian_log_prob_known_value():
    x = torch.zeros(1, 2, dtype=torch.float64)
    value = gaussian_log_prob(x, torch.zeros(1, 2), torch.zeros(1, 2))
    assert value.item() == pytest.approx(-math.log(2 * math.pi))


def test_kl_estimate_averages_to_closed_form_kl():
    prior = _identity_prior(seed=1)
    n = 4000
    context = _randn(1, 3, 2, 2, seed=8).expand(n, -1, -1, -1)
    mu_q = 0.5 * _randn(1, 2, 2, 2, seed=9).expand(n, -1, -1, -1)
    logvar_q = 0.4 * _randn(1, 2, 2, 2, seed=10).expand(n, -1, -1, -1)
    z = mu_q + torch.exp(0.5 * logvar_q) * _randn(n, 2, 2, 2, seed=11)
    estimates = kl_glow_prior(prior, z, mu_q, logvar_q, context, None)
    mu_p, log_sigma_p = prior.base_stats(context[:1])
    var_q, var_p = logvar_q[:1].exp(), (2 * log_sigma_p).exp()
    closed = (
        0.5
        * (
            var_q / var_p + (mu_q[:1] - mu_p).pow(2) / var_p - 1 + 2 * log_sigma_p - logvar_q[:1]
        ).sum()
    )
    stderr = estimates.std() / math.sqrt(n)
    assert abs(estimates.mean() - closed) < 4 * stderr
    assert closed > 0.1  # not a trivial zero KL


def test_sample_is_seeded_and_inverts_the_flow():
    torch.manual_seed(0)
    prior = GlowPrior(
        latent_channels=2, context_channels=3, lr_feat_channels=4, levels=2, hidden=8
    ).double()
    context = _randn(2, 3, 8, 4, seed=1)
    lr_feat = _randn(2, 4, 4, 2, seed=2)
    prior.flow(_randn(2, 2, 8, 4, seed=3), lr_feat)
    _perturb(prior, seed=4)

    def draw(seed):
        return prior.sample(context, lr_feat, torch.Generator().manual_seed(seed))

    a, b, c = draw(5), draw(5), draw(6)
    assert a.shape == (2, 2, 8, 4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # z = f^-1(z_p): mapping back gives mu_p + sigma_p * noise for the same seed's noise.
    mu, log_sigma = prior.base_stats(context)
    noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5), dtype=mu.dtype)
    u, _ = prior.flow(a, lr_feat)
    assert torch.allclose(u, mu + log_sigma.exp() * noise, atol=1e-10)


def test_prior_log_prob_has_gradients_in_float32():
    torch.manual_seed(0)
    prior = GlowPrior(
        latent_channels=4, context_channels=8, lr_feat_channels=6, levels=3, hidden=16
    )
    z = torch.randn(2, 4, 8, 8, requires_grad=True)
    context = torch.randn(2, 8, 8, 8, requires_grad=True)
    lr_feat = torch.randn(2, 6, 16, 16, requires_grad=True)
    value = prior.log_prob(z, context, lr_feat)
    assert value.shape == (2,) and value.dtype == torch.float32 and torch.isfinite(value).all()
    value.sum().backward()
    assert z.grad is not None and context.grad is not None
    assert all(p.grad is not None for p in prior.parameters())
