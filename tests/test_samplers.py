"""Samplers (ddpm, ddim, lddpm): equivalences, seeding, step counts and the one place they
are decided (`set_timesteps`); the samplers take that timesteps array. Schedules are the
short ones of tests/test_schedule.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_schedule import T, _randn, _sched

from lddpm.diffusion.denoiser import Parameterisation
from lddpm.diffusion.samplers import (
    ddim_step,
    ddpm_step,
    sample,
    set_timesteps,
)
from lddpm.diffusion.schedule import (
    Schedule,
    eps_from_x0,
    select_timesteps,
)


# ---------------------------------------------------------------------------------- samplers
def _taus(sampler: str, steps: int | None = None, rule: str = "uniform", timesteps: int = T):
    """The timesteps `sampler` visits (lddpm: a chain of `steps` trained with `rule`)."""
    chain = (steps, rule) if sampler == "lddpm" else None
    return set_timesteps(sampler, steps, timesteps, chain)


def _fake_eps(x_t: torch.Tensor, t: np.ndarray) -> torch.Tensor:
    """A smooth, t-dependent stand-in for eps_theta, so x0-hat varies and clipping bites."""
    return torch.tanh(0.7 * x_t + 0.02 * torch.as_tensor(t).to(x_t.dtype).reshape(-1, 1, 1, 1))


def _denoiser(sched: Schedule, clip: float | None = 1.0, eps_fn=_fake_eps):
    """An eps function as the samplers' (x0-hat, eps) contract, clipped like the Denoiser."""
    param = Parameterisation(sched, "image", "eps")

    def denoise(x_t, t):
        return param.split(x_t, t, eps_fn(x_t, t), clip="hard" if clip else None)

    return denoise


@pytest.mark.parametrize("clip", [None, 1.0])
def test_ddim_eta1_full_grid_step_equals_ddpm_step(clip):
    sched = _sched()
    for t in range(T):
        x_t = 1.5 * _randn(2, 3, 4, 4, seed=100 + t)
        x0, eps = _denoiser(sched, clip)(x_t, np.full(x_t.shape[0], t))
        g_ddpm = torch.Generator().manual_seed(t)
        g_ddim = torch.Generator().manual_seed(t)
        a = ddpm_step(sched, x_t, x0, t - 1, t, g_ddpm)
        b = ddim_step(sched, x_t, x0, eps, t - 1, t, 1.0, g_ddim)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"t={t}")
        # both consumed the same random numbers
        assert torch.equal(g_ddpm.get_state(), g_ddim.get_state())


@pytest.mark.parametrize("clip", [None, 1.0])
def test_ddim_eta1_full_grid_chain_equals_ddpm_chain(clip):
    sched = _sched("cosine")
    x_T = _randn(2, 3, 4, 4, seed=9)
    run = lambda sampler, taus, eta=0.0: sample(
        sampler, _denoiser(sched, clip), x_T, sched, taus, eta, torch.Generator().manual_seed(1)
    )
    ddpm = run("ddpm", _taus("ddpm"))
    ddim = run("ddim", _taus("ddim", T), eta=1.0)
    torch.testing.assert_close(ddpm, ddim, rtol=1e-8, atol=1e-8)


def test_ddim_eta0_is_deterministic_given_x_T():
    sched = _sched()
    taus = _taus("ddim", 10)
    x_T = _randn(2, 3, 4, 4, seed=10)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    before = g1.get_state()
    a = sample("ddim", _denoiser(sched), x_T, sched, taus, 0.0, g1)
    b = sample("ddim", _denoiser(sched), x_T, sched, taus, 0.0, g2)
    assert torch.equal(a, b)
    assert torch.equal(g1.get_state(), before)  # eta = 0 draws no random numbers
    c = sample("ddim", _denoiser(sched), _randn(2, 3, 4, 4, seed=11), sched, taus, 0.0, g1)
    assert not torch.allclose(a, c)


def test_ddpm_same_seed_repeats_different_seed_differs():
    sched = _sched()
    x_T = _randn(1, 3, 4, 4, seed=12)
    run = lambda seed: sample(
        "ddpm", _denoiser(sched), x_T, sched, _taus("ddpm"), generator=torch.Generator().manual_seed(seed)
    )
    assert torch.equal(run(0), run(0))
    assert not torch.allclose(run(0), run(1))


@pytest.mark.parametrize(
    "sampler, steps, rule, expected",
    [
        ("ddpm", None, "uniform", list(range(T - 1, -1, -1))),
        ("ddim", 7, "uniform", list(select_timesteps(T, 7)[::-1])),
        ("lddpm", 4, "uniform", list(select_timesteps(T, 4)[::-1])),
        ("lddpm", 4, "quadratic", list(select_timesteps(T, 4, "quadratic")[::-1])),
    ],
)
def test_samplers_visit_their_timesteps_one_evaluation_each(sampler, steps, rule, expected):
    sched = _sched()
    seen: list[int] = []

    denoise = _denoiser(sched)

    def counting(x_t, t):
        assert t.shape == (2,) and t.dtype == np.int64 and np.all(t == t[0])
        seen.append(int(t[0]))
        return denoise(x_t, t)

    taus = _taus(sampler, steps, rule)
    out = sample(sampler, counting, _randn(2, 3, 4, 4, seed=0), sched, taus,
                 generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 4, 4)
    assert seen == expected == list(taus)


def test_every_sampler_recovers_a_point_mass_with_the_ideal_denoiser():
    """Data = one image x*: the ideal eps is (x_t - sqrt(ab) x*) / sqrt(1 - ab); any chain
    must then return x* (checks the sqrt(1 - ab) in x0-hat and the final step)."""
    sched = _sched("cosine")
    target = 0.9 * torch.tanh(_randn(1, 3, 4, 4, seed=13))

    ideal = _denoiser(sched, None, lambda x_t, t: eps_from_x0(sched, x_t, t, target.expand_as(x_t)))

    for sampler, steps, eta in (("ddpm", None, 0.0), ("ddim", 5, 0.5), ("lddpm", 3, 0.0)):
        x_T = _randn(1, 3, 4, 4, seed=14)
        out = sample(sampler, ideal, x_T, sched, _taus(sampler, steps), eta,
                     torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, target, rtol=1e-8, atol=1e-8, msg=sampler)


def test_ddpm_with_other_step_count_raises():
    with pytest.raises(ValueError, match="ddim"):
        _taus("ddpm", 10)
    assert len(_taus("ddpm", T)) == T


@pytest.mark.parametrize("timesteps, expected", [(20, 20), (T, 50), (1000, 50)])
def test_ddim_default_step_count_fits_the_schedule(timesteps, expected):
    assert len(_taus("ddim", timesteps=timesteps)) == expected


def test_unknown_sampler_raises():
    with pytest.raises(ValueError, match="ddpm, ddim, lddpm"):
        sample("euler", _denoiser(_sched()), _randn(1, 3, 4, 4, seed=0), _sched(), _taus("ddim", 2))
    with pytest.raises(ValueError, match="ddpm, ddim, lddpm"):
        _taus("euler")


def test_set_timesteps_is_the_one_place_the_step_count_is_decided():
    from lddpm.config import build_preset
    from lddpm.errors import SamplingError, UserError
    from lddpm.losses.objective import Objective

    # one default per sampler
    assert len(set_timesteps("ddpm", None, T)) == T
    assert len(set_timesteps("ddim", None, T)) == min(50, T)
    assert len(set_timesteps("ddim", None, 20)) == 20
    np.testing.assert_array_equal(set_timesteps("lddpm", None, T, (4, "quadratic")),
                                  select_timesteps(T, 4, "quadratic")[::-1])
    # the training GAN chain visits exactly the timesteps the lddpm sampler does
    cfg = build_preset("tiny+gan")
    chain = (cfg.gan.chain_steps, cfg.gan.timestep_rule)
    taus = Objective(cfg, Schedule.from_config(cfg.diffusion)).taus
    np.testing.assert_array_equal(taus[::-1], set_timesteps("lddpm", None, 1000, chain))
    # fewer steps than the trained chain: evenly spread steps of it, first and last kept
    chain = set_timesteps("lddpm", None, 1000, (4, "quadratic"))
    assert list(chain) == [999, 561, 249, 61]
    assert list(set_timesteps("lddpm", 2, 1000, (4, "quadratic"))) == [999, 61]
    assert list(set_timesteps("lddpm", 3, 1000, (4, "quadratic"))) == [999, 249, 61]
    assert list(set_timesteps("lddpm", 1, 1000, (4, "quadratic"))) == [999]
    # one error type: a one-line CLI error that library callers can catch as ValueError
    for args in [("euler", None, T), ("ddpm", 10, T), ("ddim", 0, T), ("ddim", T + 1, T),
                 ("lddpm", None, T, None), ("lddpm", 5, T, (4, "uniform")),
                 ("lddpm", 0, T, (4, "uniform"))]:
        with pytest.raises(SamplingError) as caught:
            set_timesteps(*args)
        assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
        # it names the choice at fault and no command-line flag (the CLI adds those)
        assert caught.value.option in ("sampler", "steps") and "--" not in str(caught.value)
