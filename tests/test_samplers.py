"""Samplers (ddpm, ddim, lddpm): equivalences, seeding, step counts and the one place they
are decided (`set_timesteps`). Schedules are the short ones of tests/test_schedule.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_schedule import T, _randn, _sched

from lddpm.diffusion.denoiser import Parameterisation
from lddpm.diffusion.samplers import (
    SamplerSpec,
    ddim_step,
    ddpm_step,
    model_evaluations,
    sample,
)
from lddpm.diffusion.schedule import (
    Schedule,
    eps_from_x0,
    select_timesteps,
)


# ---------------------------------------------------------------------------------- samplers
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
    run = lambda spec: sample(
        _denoiser(sched, clip), x_T.shape, sched, spec, torch.Generator().manual_seed(1), x_T=x_T
    )
    ddpm = run(SamplerSpec("ddpm"))
    ddim = run(SamplerSpec("ddim", steps=T, eta=1.0))
    torch.testing.assert_close(ddpm, ddim, rtol=1e-8, atol=1e-8)


def test_ddim_eta0_is_deterministic_given_x_T():
    sched = _sched()
    spec = SamplerSpec("ddim", steps=10, eta=0.0)
    x_T = _randn(2, 3, 4, 4, seed=10)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    before = g1.get_state()
    a = sample(_denoiser(sched), x_T.shape, sched, spec, g1, x_T=x_T)
    b = sample(_denoiser(sched), x_T.shape, sched, spec, g2, x_T=x_T)
    assert torch.equal(a, b)
    assert torch.equal(g1.get_state(), before)  # eta = 0 draws no random numbers
    c = sample(_denoiser(sched), x_T.shape, sched, spec, g1, x_T=_randn(2, 3, 4, 4, seed=11))
    assert not torch.allclose(a, c)


def test_ddpm_same_seed_repeats_different_seed_differs():
    sched = _sched()
    x_T = _randn(1, 3, 4, 4, seed=12)
    run = lambda seed: sample(
        _denoiser(sched),
        x_T.shape,
        sched,
        SamplerSpec("ddpm"),
        torch.Generator().manual_seed(seed),
        x_T=x_T,
    )
    assert torch.equal(run(0), run(0))
    assert not torch.allclose(run(0), run(1))


@pytest.mark.parametrize(
    "spec, expected",
    [
        (SamplerSpec("ddpm"), list(range(T - 1, -1, -1))),
        (SamplerSpec("ddim", steps=7), list(select_timesteps(T, 7)[::-1])),
        (SamplerSpec("lddpm", steps=4), list(select_timesteps(T, 4)[::-1])),
        (
            SamplerSpec("lddpm", steps=4, timestep_rule="quadratic"),
            list(select_timesteps(T, 4, "quadratic")[::-1]),
        ),
    ],
)
def test_samplers_count_model_evaluations(spec, expected):
    sched = _sched()
    seen: list[int] = []

    denoise = _denoiser(sched)

    def counting(x_t, t):
        assert t.shape == (2,) and t.dtype == np.int64 and np.all(t == t[0])
        seen.append(int(t[0]))
        return denoise(x_t, t)

    out = sample(counting, (2, 3, 4, 4), sched, spec, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 4, 4)
    assert seen == expected
    assert model_evaluations(sched, spec) == len(expected)


def test_every_sampler_recovers_a_point_mass_with_the_ideal_denoiser():
    """Data = one image x*: the ideal eps is (x_t - sqrt(ab) x*) / sqrt(1 - ab); any chain
    must then return x* (checks the sqrt(1 - ab) in x0-hat and the final step)."""
    sched = _sched("cosine")
    target = 0.9 * torch.tanh(_randn(1, 3, 4, 4, seed=13))

    ideal = _denoiser(sched, None, lambda x_t, t: eps_from_x0(sched, x_t, t, target.expand_as(x_t)))

    for spec in (
        SamplerSpec("ddpm"),
        SamplerSpec("ddim", steps=5, eta=0.5),
        SamplerSpec("lddpm", steps=3),
    ):
        x_T = _randn(1, 3, 4, 4, seed=14)
        out = sample(ideal, x_T.shape, sched, spec, torch.Generator().manual_seed(0), x_T=x_T)
        torch.testing.assert_close(out, target, rtol=1e-8, atol=1e-8, msg=spec.name)


def test_ddpm_with_other_step_count_raises():
    with pytest.raises(ValueError, match="ddim"):
        sample(
            _denoiser(_sched()), (1, 3, 4, 4), _sched(), SamplerSpec("ddpm", steps=10), torch.Generator()
        )
    assert model_evaluations(_sched(), SamplerSpec("ddpm", steps=T)) == T


@pytest.mark.parametrize("timesteps, expected", [(20, 20), (T, 50), (1000, 50)])
def test_ddim_default_step_count_fits_the_schedule(timesteps, expected):
    sched = _sched(timesteps=timesteps)
    assert model_evaluations(sched, SamplerSpec("ddim")) == expected


def test_unknown_sampler_raises():
    with pytest.raises(ValueError, match="ddpm, ddim, lddpm"):
        sample(_denoiser(_sched()), (1, 3, 4, 4), _sched(), SamplerSpec("euler"), torch.Generator())


def test_set_timesteps_is_the_one_place_the_step_count_is_decided():
    from lddpm.config import build_preset
    from lddpm.diffusion.objective import Objective
    from lddpm.diffusion.samplers import set_timesteps
    from lddpm.errors import SamplingError, UserError

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
    # one error type: a one-line CLI error that library callers can catch as ValueError
    for args in [("euler", None, T), ("ddpm", 10, T), ("ddim", 0, T), ("ddim", T + 1, T),
                 ("lddpm", None, T, None), ("lddpm", 3, T, (4, "uniform"))]:
        with pytest.raises(SamplingError) as caught:
            set_timesteps(*args)
        assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
