"""Networks (UNet, LDDPMNet v1/v2/v3) and the CVAE's KL (the Upscaler: tests/test_upscaler.py).

A fresh network outputs exactly zero (its last conv and the residual branches are
zero-initialised, as in DDPM), which would make most comparisons vacuous; `_randomise`
fills those zero-initialised weights (never the 1e-6 gates) so outputs depend on inputs.
"""

from __future__ import annotations

import math

import pytest
import torch

from lddpm.config import build_preset
from lddpm.errors import UserError
from lddpm.losses.kl import kl_standard_normal, latent_kl
from lddpm.models.encoder import AdaptiveCrossAttention
from lddpm.models.lddpm import LDDPMNet, count_parameters
from lddpm.models.unet import UNet


def _config(preset: str, scale: int = 2, timesteps: int = 50):
    cfg = build_preset(preset)
    cfg.data.scale = scale
    cfg.diffusion.timesteps = timesteps
    return cfg


def _net(preset: str, scale: int = 2, seed: int = 0) -> LDDPMNet:
    torch.manual_seed(seed)
    return LDDPMNet(_config(preset, scale).model, scale)


def _randomise(net: torch.nn.Module, seed: int, std: float = 0.1) -> torch.nn.Module:
    """Gives every zero-initialised weight (except the gates) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if not name.endswith("gate") and torch.count_nonzero(p) == 0:
                p.copy_(std * torch.randn(p.shape, generator=g))
    return net


def _set_gates(net: torch.nn.Module, value: float, prefix: str = "") -> None:
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("gate") and name.startswith(prefix):
                p.fill_(value)


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _prior_noise(net: LDDPMNet, x: torch.Tensor, seed: int = 0):
    shape = net.latent_shape(tuple(x.shape))
    return None if shape is None else _randn(*shape, seed=seed)


# ---------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("preset, hw", [("tiny", (16, 24)), ("tiny", (32, 8)), ("small", (8, 12))])
def test_unet_output_and_encoder_shapes(preset, hw):
    cfg = build_preset(preset).model.unet
    torch.manual_seed(0)
    unet = UNet(cfg)
    m = unet.downsampling
    h, w = hw[0] * m // 2, hw[1] * m // 2  # a non-square multiple of the downsampling
    x, up = _randn(2, 3, h, w, seed=0), _randn(2, 3, h, w, seed=1)
    f_x, skips, emb = unet.encode(x, torch.tensor([0, 49]), up)
    assert f_x.shape == (2, unet.mid_channels, h // m, w // m)
    assert emb.shape == (2, 4 * cfg.inner_channels)
    assert unet.decode(f_x, skips, emb).shape == (2, 3, h, w)
    assert unet(x, torch.tensor([0, 49]), up).shape == (2, 3, h, w)


def _lr_size(scale: int, multiple: int, aspect: tuple[int, int]) -> tuple[int, int]:
    """Smallest non-square LR size whose HR (LR * scale) is a multiple of `multiple`."""
    unit = multiple // math.gcd(multiple, scale)
    return unit * aspect[0], unit * aspect[1]


@pytest.mark.parametrize("preset", ["tiny+v1", "tiny+v2", "tiny+v3", "tiny+v3+glow"])
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_lddpm_net_shapes(preset, scale):
    net = _net(preset, scale)
    aspect = (1, 2) if net.size_multiple > 2 or scale == 8 else (2, 3)
    h, w = _lr_size(scale, net.size_multiple, aspect)
    assert h != w and (h * scale) % net.size_multiple == 0
    lr = _rand(2, 3, h, w, seed=0) * 2 - 1
    cond = net.condition(lr)
    assert cond.up.shape == (2, 3, h * scale, w * scale)
    x_t = _randn(2, 3, h * scale, w * scale, seed=1)
    t = torch.tensor([0, 49])
    with torch.no_grad():
        eps = net(x_t, t, cond, _prior_noise(net, x_t))
        eps_train, posterior = net.forward_train(
            x_t, t, cond, x_t.clamp(-1, 1), torch.Generator().manual_seed(0)
        )
    assert eps.shape == eps_train.shape == x_t.shape
    assert (posterior is None) == (net.cvae is None)
    if net.cvae is not None:
        assert latent_kl(net.prior, posterior).shape == (2,)
        f = net.unet.downsampling
        assert net.latent_shape(tuple(x_t.shape)) == (
            2,
            net.cvae.latent_channels,
            h * scale // f,
            w * scale // f,
        )


def test_cvae_net_needs_prior_noise():
    net = _net("tiny+v3")
    lr = _rand(1, 3, 8, 8, seed=0)
    with pytest.raises(ValueError, match="prior_noise"):
        net(_randn(1, 3, 16, 16, seed=1), torch.tensor([3]), net.condition(lr))


# ---------------------------------------------------------------------------------- parts
def _prefixes(net: torch.nn.Module) -> set[str]:
    names = [n for n, _ in net.named_parameters()]
    return {
        p
        for p in ("encoder.", "unet.cross.", "cvae.posterior.", "cvae.fusion.", "prior.")
        if any(n.startswith(p) for n in names)
    }


def test_switching_a_part_off_removes_its_modules():
    v1, v2, v3, glow = (_net(p) for p in ("tiny+v1", "tiny+v2", "tiny+v3", "tiny+v3+glow"))
    assert _prefixes(v1) == set()
    assert v1.encoder is None and v1.cvae is None and v1.prior is None and len(v1.unet.cross) == 0
    assert _prefixes(v2) == {"encoder.", "unet.cross."}
    assert v2.cvae is None and v2.prior is None
    assert _prefixes(v3) == {"encoder.", "unet.cross.", "cvae.posterior.", "cvae.fusion."}
    assert v3.prior is None
    assert "prior." in _prefixes(glow)
    # the parameter counts differ by exactly the added modules: nothing is merely zeroed
    n1, n2, n3 = (count_parameters(n) for n in (v1, v2, v3))
    assert n2 - n1 == count_parameters(v2.encoder) + count_parameters(v2.unet.cross)
    assert n3 - n2 == count_parameters(v3.cvae)
    assert set(v2.unet.cross) == set(_config("tiny+v2").model.encoder.sites)


@pytest.mark.parametrize("preset", ["tiny+v2", "tiny+v3"])
def test_fresh_gates_make_v2_v3_match_same_seed_v1(preset):
    v1 = _randomise(_net("tiny+v1", seed=0), seed=1)
    other = _net(preset, seed=0)
    result = other.load_state_dict(v1.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith(("encoder.", "unet.cross.", "cvae.")) for k in result.missing_keys)
    lr = _rand(2, 3, 8, 12, seed=2) * 2 - 1
    x_t, t = _randn(2, 3, 16, 24, seed=3), torch.tensor([5, 30])
    with torch.no_grad():
        ref = v1(x_t, t, v1.condition(lr))
        noise = _prior_noise(other, x_t, seed=4)
        out = other(x_t, t, other.condition(lr), noise)
        assert ref.abs().mean() > 0.1  # the comparison is not between zeros
        assert (out - ref).abs().max() < 1e-3
        _set_gates(other, 1.0)  # the same comparison with open gates does fail
        assert (other(x_t, t, other.condition(lr), noise) - ref).abs().max() > 1e-2


def test_gates_start_at_1e_minus_6():
    net = _net("tiny+v3")
    gates = {n: p for n, p in net.named_parameters() if n.endswith("gate")}
    assert {n.split(".")[0] for n in gates} == {"unet", "cvae"}
    for p in gates.values():
        assert torch.all(p == 1e-6)


def test_prior_noise_changes_the_output_of_a_cvae_net():
    net = _randomise(_net("tiny+v3"), seed=1)
    _set_gates(net, 1.0, "cvae.")
    lr = _rand(1, 3, 8, 8, seed=0) * 2 - 1
    x_t, t = _randn(1, 3, 16, 16, seed=1), torch.tensor([20])
    cond = net.condition(lr)
    with torch.no_grad():
        a = net(x_t, t, cond, _prior_noise(net, x_t, seed=2))
        b = net(x_t, t, cond, _prior_noise(net, x_t, seed=2))
        c = net(x_t, t, cond, _prior_noise(net, x_t, seed=3))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


# ---------------------------------------------------------------------------------- KL
def test_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(2, 2, 2, 2, generator=g, dtype=torch.float64)
    logvar = 0.8 * torch.randn(2, 2, 2, 2, generator=g, dtype=torch.float64)
    closed = kl_standard_normal(mu, logvar)
    assert closed.shape == (2,)
    n = 100_000
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn((n, *mu.shape), generator=g, dtype=torch.float64)
    log_q = -0.5 * (((z - mu) / std) ** 2 + logvar + math.log(2 * math.pi))
    log_p = -0.5 * (z**2 + math.log(2 * math.pi))
    per_draw = (log_q - log_p).flatten(2).sum(dim=2)  # (n, B)
    estimate, stderr = per_draw.mean(0), per_draw.std(0) / math.sqrt(n)
    assert torch.all((estimate - closed).abs() < 5 * stderr), (estimate, closed, stderr)


def test_kl_is_zero_only_at_the_standard_normal():
    zeros = torch.zeros(3, 4, 2, 2)
    assert torch.equal(kl_standard_normal(zeros, zeros), torch.zeros(3))
    assert torch.all(kl_standard_normal(zeros + 0.1, zeros) > 0)
    assert torch.all(kl_standard_normal(zeros, zeros - 0.1) > 0)


def test_fresh_posterior_is_the_standard_normal():
    """The posterior head is zero-initialised: the KL term starts at exactly 0."""
    net = _net("tiny+v3")
    lr, hr = _rand(2, 3, 8, 8, seed=0) * 2 - 1, _rand(2, 3, 16, 16, seed=1) * 2 - 1
    with torch.no_grad():
        _, posterior = net.forward_train(
            hr, torch.tensor([1, 2]), net.condition(lr), hr, torch.Generator()
        )
        kl = latent_kl(net.prior, posterior)
    assert torch.equal(kl, torch.zeros(2))


def test_cross_attention_gate_is_per_channel():
    attn = AdaptiveCrossAttention(16, 8, heads=2, groups=4, gate_init=1e-6)
    assert attn.gate.shape == (16,)
    x, tokens = _randn(1, 16, 4, 4, seed=0), _randn(1, 5, 8, seed=1)
    with torch.no_grad():
        attn.gate.zero_()
        assert torch.equal(attn(x, tokens), x)  # a closed gate is the identity
        attn.gate[3] = 1.0
        changed = (attn(x, tokens) - x).abs().amax(dim=(0, 2, 3)) > 0
    assert changed.tolist() == [i == 3 for i in range(16)]


def test_every_preset_with_glow_trains_at_its_own_crop():
    """The Glow prior squeezes the bottleneck latent: each size's crop must survive it (the
    photo preset's 128 px crop once died at step 1 with three levels)."""
    from lddpm.config import SIZES, hr_size_multiple

    for size in SIZES:
        cfg = build_preset(f"{size}+lddpm")
        assert cfg.data.crop % hr_size_multiple(cfg.model) == 0
        net = LDDPMNet(cfg.model, cfg.data.scale)
        assert net.size_multiple == hr_size_multiple(cfg.model)


def test_validate_refuses_a_crop_the_glow_prior_cannot_squeeze():
    from lddpm.config import apply_overrides

    with pytest.raises(UserError, match=r"data.crop=128 .* multiple of 256.*levels<=2"):
        apply_overrides(build_preset("photo+res+lddpm"), ["model.glow.levels=3"])
    cfg = apply_overrides(build_preset("photo+res+lddpm"), ["model.glow.levels=3", "data.crop=256"])
    assert cfg.data.crop == 256


def test_detail_part_balances_the_kl_as_the_elbo():
    cfg = build_preset("photo+res+lddpm+detail")
    # Cz / (3 f^2): 4 latent channels at HR/32
    assert cfg.loss.kl == pytest.approx(4 / (3 * 32 * 32))
    assert cfg.loss.time_weighting == "none" and cfg.gan.timestep_rule == "quadratic"
    with pytest.raises(UserError, match="res"):
        build_preset("photo+lddpm+detail")
