"""Diffusion maths: schedules, forward process, posteriors and the samplers built on them.

Reference values are computed independently of the code under test: alphabar from the
per-step recursion or the cosine closed form, the posterior by conditioning the joint
Gaussian of (x_s, x_t) given x_0, all in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lddpm.config import DiffusionConfig
from lddpm.diffusion.schedule import (
    Schedule,
    cosine_betas,
    eps_from_x0,
    posterior_mean_var,
    predict_x0,
    q_sample,
    q_step,
    select_timesteps,
)

T = 50  # short chains keep every test well under a second


def _sched(kind: str = "linear", timesteps: int = T) -> Schedule:
    return Schedule.from_config(
        DiffusionConfig(timesteps=timesteps, schedule=kind, beta_start=1e-4, beta_end=0.05)
    )


def _randn(*shape: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _forward_moments(betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean coefficient and variance of x_t given x_0, by iterating the one-step process
    x_k = sqrt(1 - beta_k) x_{k-1} + sqrt(beta_k) e_k (no alphabar used)."""
    mean, var, means, variances = 1.0, 0.0, [], []
    for beta in betas:
        mean, var = math.sqrt(1 - beta) * mean, (1 - beta) * var + beta
        means.append(mean)
        variances.append(var)
    return np.array(means), np.array(variances)


# ---------------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_alphabar_is_cumulative_product_in_float64(kind):
    sched = _sched(kind)
    assert sched.betas.dtype == np.float64 and sched.alphabar.dtype == np.float64
    expected = [math.prod(1.0 - b for b in sched.betas[: t + 1]) for t in range(T)]
    np.testing.assert_allclose(sched.alphabar, expected, rtol=1e-13, atol=0)
    mean, var = _forward_moments(sched.betas)
    np.testing.assert_allclose(sched.alphabar, mean**2, rtol=1e-12)
    np.testing.assert_allclose(1 - sched.alphabar, var, rtol=1e-12, atol=1e-15)
    assert sched.alphabar_at(-1) == 1.0  # t = -1 is the clean image


def test_linear_betas_are_evenly_spaced():
    betas = _sched("linear").betas
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.05)
    np.testing.assert_allclose(np.diff(betas), (0.05 - 1e-4) / (T - 1), rtol=1e-10)


def test_cosine_alphabar_matches_closed_form():
    s = 0.008
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2
    sched = Schedule(cosine_betas(T, s=s))
    # closed form alphabar_t = f(t+1) / f(0); the last beta is clipped to 0.999
    expected = np.array([f(t + 1) / f(0) for t in range(T - 1)])
    np.testing.assert_allclose(sched.alphabar[:-1], expected, rtol=1e-12)
    assert sched.betas[-1] == pytest.approx(0.999)
    assert np.all(np.diff(sched.alphabar) < 0)


# ---------------------------------------------------------------------------------- q(x_t|x_0)
def test_q_sample_is_affine_with_the_closed_form_coefficients():
    sched = _sched()
    x0, noise = _randn(4, 3, 5, 5, seed=0), _randn(4, 3, 5, 5, seed=1)
    t = np.array([0, 7, 25, T - 1])
    mean = q_sample(sched, x0, t, torch.zeros_like(noise))
    ab = torch.as_tensor(sched.alphabar[t]).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(mean, ab.sqrt() * x0, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(q_sample(sched, x0, t, noise) - mean, (1 - ab).sqrt() * noise)


def test_q_sample_moments_by_monte_carlo():
    sched = _sched("cosine")
    t = np.full(200_000, 30)
    x0 = torch.full((len(t), 1, 1, 1), 0.8, dtype=torch.float64)
    x_t = q_sample(sched, x0, t, _randn(len(t), 1, 1, 1, seed=2)).flatten()
    mean, var = _forward_moments(sched.betas)
    tol = 5 * math.sqrt(var[30] / len(t))  # five standard errors
    assert abs(x_t.mean().item() - 0.8 * mean[30]) < tol
    assert abs(x_t.var().item() - var[30]) < 5 * var[30] * math.sqrt(2 / len(t))


def test_q_step_composes_with_q_sample_to_the_marginal():
    """x_s ~ q(x_s|x_0) then x_t ~ q(x_t|x_s): x_t's coefficients on x0 and on each noise
    (it is affine in all three) give mean sqrt(ab_t) x0 and variance 1 - ab_t."""
    sched = _sched("cosine")
    x0 = _randn(1, 1, 1, 1, seed=20)
    one, zero = torch.ones_like(x0), torch.zeros_like(x0)
    s, t = np.array([6]), np.array([31])
    x_t = lambda e1, e2: q_step(sched, q_sample(sched, x0, s, e1), s, t, e2)
    mean = x_t(zero, zero)
    c1, c2 = x_t(one, zero) - mean, x_t(zero, one) - mean
    ab_t = sched.alphabar[31]
    assert mean.item() == pytest.approx(math.sqrt(ab_t) * x0.item(), rel=1e-12)
    assert (c1**2 + c2**2).item() == pytest.approx(1 - ab_t, rel=1e-12)
    # from the clean image (s = -1) it is q_sample itself
    e = _randn(1, 1, 1, 1, seed=21)
    torch.testing.assert_close(q_step(sched, x0, np.array([-1]), t, e), q_sample(sched, x0, t, e))


# ---------------------------------------------------------------------------------- posterior
def _conditioned_gaussian(betas, x0, x_t, s, t):
    """q(x_s | x_t, x_0) by conditioning the joint Gaussian of (x_s, x_t) given x_0."""
    mean, var = _forward_moments(betas)
    m_s, v_s = (mean[s], var[s]) if s >= 0 else (1.0, 0.0)
    m_t, v_t = mean[t], var[t]
    # x_t = (prod_{k=s+1..t} sqrt(alpha_k)) x_s + independent noise
    link = math.prod(math.sqrt(1 - b) for b in betas[s + 1 : t + 1])
    cov = link * v_s
    cond_mean = m_s * x0 + cov / v_t * (x_t - m_t * x0)
    cond_var = v_s - cov**2 / v_t
    return cond_mean, cond_var


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("s, t", [(0, 1), (9, 10), (T - 2, T - 1), (3, 17), (12, T - 1), (-1, 20)])
def test_posterior_equals_gaussian_conditioning(kind, s, t):
    sched = _sched(kind)
    x0, x_t = _randn(2, 3, 4, 4, seed=3), _randn(2, 3, 4, 4, seed=4)
    ss, tt = np.full(2, s), np.full(2, t)
    mean, var = posterior_mean_var(sched, x0, x_t, ss, tt)
    ref_mean, ref_var = _conditioned_gaussian(sched.betas, x0.numpy(), x_t.numpy(), s, t)
    np.testing.assert_allclose(mean.numpy(), ref_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(var.flatten().numpy(), ref_var, rtol=1e-10, atol=1e-15)


def test_posterior_to_clean_is_x0_exactly():
    sched = _sched()
    x0, x_t = _randn(1, 3, 4, 4, seed=5), _randn(1, 3, 4, 4, seed=6)
    mean, var = posterior_mean_var(sched, x0, x_t, np.array([-1]), np.array([T - 1]))
    torch.testing.assert_close(mean, x0, rtol=0, atol=1e-15)
    assert var.item() == 0.0


def test_predict_x0_and_eps_from_x0_are_inverse():
    sched = _sched("cosine")
    x0, eps = _randn(3, 3, 6, 6, seed=7), _randn(3, 3, 6, 6, seed=8)
    t = np.array([0, 20, T - 2])
    x_t = q_sample(sched, x0, t, eps)
    torch.testing.assert_close(predict_x0(sched, x_t, t, eps), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps_from_x0(sched, x_t, t, x0), eps, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(
        eps_from_x0(sched, x_t, t, predict_x0(sched, x_t, t, eps)), eps, rtol=1e-9, atol=1e-9
    )


# ---------------------------------------------------------------------------------- timesteps
@pytest.mark.parametrize("rule", ["uniform", "quadratic"])
@pytest.mark.parametrize(
    "timesteps, steps", [(1000, 1), (1000, 4), (1000, 50), (1000, 999), (50, 49), (10, 9)]
)
def test_select_timesteps_increasing_and_ending_at_T_minus_1(rule, timesteps, steps):
    taus = select_timesteps(timesteps, steps, rule)
    assert len(taus) == steps
    assert np.all(np.diff(taus) > 0)
    assert taus[0] >= 0 and taus[-1] == timesteps - 1


@pytest.mark.parametrize("rule", ["uniform", "quadratic"])
def test_select_all_timesteps_gives_the_full_grid(rule):
    np.testing.assert_array_equal(select_timesteps(T, T, rule), np.arange(T))


def test_uniform_rule_known_values():
    np.testing.assert_array_equal(select_timesteps(1000, 4, "uniform"), [249, 499, 749, 999])


def test_quadratic_rule_is_denser_near_zero():
    uniform = select_timesteps(1000, 10, "uniform")
    quadratic = select_timesteps(1000, 10, "quadratic")
    assert np.all(quadratic <= uniform)
    assert np.sum(quadratic < 500) > np.sum(uniform < 500)
    gaps = np.diff(np.concatenate([[-1], quadratic]))
    assert np.all(np.diff(gaps) >= 0)  # steps widen away from t = 0


def test_select_timesteps_rejects_bad_arguments():
    with pytest.raises(ValueError, match="1..50"):
        select_timesteps(50, 0)
    with pytest.raises(ValueError, match="1..50"):
        select_timesteps(50, 51)
    with pytest.raises(ValueError, match="uniform, quadratic"):
        select_timesteps(50, 4, "cubic")


def test_v_prediction_round_trip_recovers_eps_and_x0_exactly():
    from lddpm.diffusion.schedule import eps_from_v, to_eps, v_target

    sched = Schedule(np.linspace(1e-4, 0.02, 50))
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64)
    t = np.array([0, 7, 25, 49])
    x_t = q_sample(sched, x0, t, eps)
    v = v_target(sched, x0, t, eps)
    torch.testing.assert_close(eps_from_v(sched, x_t, t, v), eps, rtol=0, atol=1e-12)
    torch.testing.assert_close(predict_x0(sched, x_t, t, to_eps(sched, "v", x_t, t, v)), x0, rtol=0, atol=1e-9)
    assert to_eps(sched, "eps", x_t, t, eps) is eps
