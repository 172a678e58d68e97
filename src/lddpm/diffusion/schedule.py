"""Noise schedules and the Gaussian maths of the forward process, as pure float64 functions.

Indexing: timesteps t = 0 .. T-1 (the paper's i = 1 .. T); alphabar(-1) = 1 means "clean".

    q(x_t | x_0)            = N(sqrt(ab_t) x_0, (1 - ab_t) I)                     (forward)
    q(x_s | x_t, x_0), s<t  = N(c0 x_0 + ct x_t, var)                              (posterior)
        with a = ab_t / ab_s:  c0 = sqrt(ab_s)(1 - a)/(1 - ab_t),
                               ct = sqrt(a)(1 - ab_s)/(1 - ab_t),
                               var = (1 - ab_s)(1 - a)/(1 - ab_t)
For s = t - 1 this is DDPM's posterior (Eq. 5-6 with the correct sqrt(1 - ab_t)); for any
s < t it is the posterior of the respaced chain that DDIM (eta=1) and the LDDPM sampler use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lddpm.config import TIMESTEP_RULES, DiffusionConfig
from lddpm.errors import SamplingError


def linear_betas(timesteps: int, beta_start: float, beta_end: float) -> np.ndarray:
    return np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule: alphabar(t) = cos^2(((t/T + s)/(1 + s)) pi/2)."""
    f = lambda u: math.cos((u / timesteps + s) / (1 + s) * math.pi / 2) ** 2
    betas = [min(1 - f(i + 1) / f(i), max_beta) for i in range(timesteps)]
    return np.asarray(betas, dtype=np.float64)


@dataclass(frozen=True)
class Schedule:
    betas: np.ndarray  # (T,) float64

    @classmethod
    def from_config(cls, cfg: DiffusionConfig) -> Schedule:
        if cfg.schedule == "cosine":
            return cls(cosine_betas(cfg.timesteps))
        return cls(linear_betas(cfg.timesteps, cfg.beta_start, cfg.beta_end))

    @property
    def timesteps(self) -> int:
        return len(self.betas)

    @property
    def alphas(self) -> np.ndarray:
        return 1.0 - self.betas

    @property
    def alphabar(self) -> np.ndarray:
        return np.cumprod(self.alphas)

    def alphabar_at(self, t: np.ndarray | int) -> np.ndarray:
        """alphabar(t) with alphabar(-1) = 1 (the clean image)."""
        ab = np.concatenate([[1.0], self.alphabar])
        return ab[np.asarray(t) + 1]


def _column(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """float64 numbers -> (B,1,1,1) tensor in x's dtype/device (computed in float64 first)."""
    v = torch.as_tensor(np.asarray(values, dtype=np.float64), device=like.device)
    return v.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def q_sample(
    sched: Schedule, x0: torch.Tensor, t: np.ndarray, noise: torch.Tensor
) -> torch.Tensor:
    """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps. t: (B,) ints."""
    ab = sched.alphabar_at(t)
    return _column(np.sqrt(ab), x0) * x0 + _column(np.sqrt(1.0 - ab), x0) * noise


def q_step(
    sched: Schedule, x_s: torch.Tensor, s: np.ndarray, t: np.ndarray, noise: torch.Tensor
) -> torch.Tensor:
    """Forward from x_s to x_t (s < t): x_t = sqrt(ab_t/ab_s) x_s + sqrt(1 - ab_t/ab_s) eps."""
    a = sched.alphabar_at(t) / sched.alphabar_at(s)
    return _column(np.sqrt(a), x_s) * x_s + _column(np.sqrt(1.0 - a), x_s) * noise


def posterior_coefficients(
    sched: Schedule, s: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(c0, ct, var) of q(x_s | x_t, x_0) for s < t, in float64 (see the module docstring)."""
    ab_s, ab_t = sched.alphabar_at(s), sched.alphabar_at(t)
    a = ab_t / ab_s
    c0 = np.sqrt(ab_s) * (1.0 - a) / (1.0 - ab_t)
    ct = np.sqrt(a) * (1.0 - ab_s) / (1.0 - ab_t)
    var = (1.0 - ab_s) * (1.0 - a) / (1.0 - ab_t)
    return c0, ct, var


def posterior_mean_var(
    sched: Schedule, x0: torch.Tensor, x_t: torch.Tensor, s: np.ndarray, t: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (B,C,H,W) and variance (B,1,1,1) of q(x_s | x_t, x_0)."""
    c0, ct, var = posterior_coefficients(sched, s, t)
    return _column(c0, x0) * x0 + _column(ct, x0) * x_t, _column(var, x0)


def predict_x0(sched: Schedule, x_t: torch.Tensor, t: np.ndarray, eps: torch.Tensor) -> torch.Tensor:
    """The paper's Y-hat (Eq. 16 `where`): x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)."""
    ab = sched.alphabar_at(t)
    return (x_t - _column(np.sqrt(1.0 - ab), x_t) * eps) / _column(np.sqrt(ab), x_t)


def eps_from_x0(sched: Schedule, x_t: torch.Tensor, t: np.ndarray, x0: torch.Tensor) -> torch.Tensor:
    ab = sched.alphabar_at(t)
    return (x_t - _column(np.sqrt(ab), x_t) * x0) / _column(np.sqrt(1.0 - ab), x_t)


def v_target(sched: Schedule, x0: torch.Tensor, t: np.ndarray, eps: torch.Tensor) -> torch.Tensor:
    """v = sqrt(ab_t) eps - sqrt(1 - ab_t) x0 (the `v` prediction target)."""
    ab = sched.alphabar_at(t)
    return _column(np.sqrt(ab), x0) * eps - _column(np.sqrt(1.0 - ab), x0) * x0


def eps_from_v(sched: Schedule, x_t: torch.Tensor, t: np.ndarray, v: torch.Tensor) -> torch.Tensor:
    """eps = sqrt(1 - ab_t) x_t + sqrt(ab_t) v (exact inverse of v_target given x_t)."""
    ab = sched.alphabar_at(t)
    return _column(np.sqrt(1.0 - ab), x_t) * x_t + _column(np.sqrt(ab), x_t) * v


def to_eps(
    sched: Schedule, prediction: str, x_t: torch.Tensor, t: np.ndarray, output: torch.Tensor
) -> torch.Tensor:
    """The network's output as eps, whatever it was trained to predict."""
    return output if prediction == "eps" else eps_from_v(sched, x_t, t, output)


def select_timesteps(timesteps: int, steps: int, rule: str = "uniform") -> np.ndarray:
    """K increasing timesteps tau_1 < ... < tau_K in [0, T), the last one T - 1.

    uniform: evenly spaced; quadratic: denser near t = 0 (where detail is decided).
    """
    if not 1 <= steps <= timesteps:
        raise SamplingError(f"steps must be in 1..{timesteps}, got {steps}")
    if rule not in TIMESTEP_RULES:
        raise SamplingError(f"unknown timestep rule {rule!r}; valid: {', '.join(TIMESTEP_RULES)}")
    u = np.arange(1, steps + 1, dtype=np.float64) / steps
    if rule == "quadratic":
        u = u**2
    taus = np.round(u * timesteps).astype(np.int64) - 1
    # The quadratic rule rounds u^2 T to 0 for large K (e.g. T=1000, K=50): tau_1 = -1 would
    # be "clean", outside [0, T), and a 0/0 in the posterior.
    taus = np.maximum(taus, 0)
    # rounding can collide for large K; keep them strictly increasing
    for i in range(1, steps):
        taus[i] = max(taus[i], taus[i - 1] + 1)
    return np.minimum(taus, timesteps - 1)
