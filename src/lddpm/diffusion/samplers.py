"""Samplers: ddpm (ancestral), ddim (any step count, eta), lddpm (the K-step GAN chain).

All three share one interface and one loop shape:

    x0 = sample(denoise, shape, sched, SamplerSpec("ddim", steps=20, eta=0.0), generator)

`denoise(x_t, t) -> (x0-hat, eps)` is a `lddpm.diffusion.denoiser.Denoiser` (it owns the
parameterisation and the clip) or any function of that shape; t is a (B,) int64 array.
Every random number comes from `generator`, so a seed fixes the sample. The step count is
chosen here, at sampling time, never baked into a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lddpm.diffusion.schedule import Schedule, _column, posterior_mean_var, select_timesteps
from lddpm.rng import randn

DenoiseFn = Callable[[torch.Tensor, np.ndarray], tuple[torch.Tensor, torch.Tensor]]
SAMPLERS = ("ddpm", "ddim", "lddpm")


@dataclass
class SamplerSpec:
    name: str = "ddim"
    steps: int | None = None  # None: ddpm -> T, ddim -> min(50, T), lddpm -> the trained K
    eta: float = 0.0
    timestep_rule: str = "uniform"


def _randn(shape, generator, like: torch.Tensor) -> torch.Tensor:
    return randn(shape, generator, like.device, like.dtype)  # drawn on the generator's device


def ddpm_step(sched, x_t, x0, s, t, generator):
    """x_s ~ q(x_s | x_t, x0-hat) (Eq. 5-6 for s = t-1; Eq. 15 for the respaced chain)."""
    ss, tt = np.full(x_t.shape[0], s), np.full(x_t.shape[0], t)
    mean, var = posterior_mean_var(sched, x0, x_t, ss, tt)
    if s < 0:
        return mean  # the last step returns the clean estimate itself (var = 0)
    return mean + var.sqrt() * _randn(x_t.shape, generator, x_t)


def ddim_step(sched, x_t, x0, eps, s, t, eta, generator):
    """Song et al. Eq. 12: x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s - sigma^2) eps + sigma z."""
    ab_s, ab_t = float(sched.alphabar_at(s)), float(sched.alphabar_at(t))
    sigma = eta * np.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
    x_s = np.sqrt(ab_s) * x0 + np.sqrt(max(1 - ab_s - sigma**2, 0.0)) * eps
    if sigma > 0 and s >= 0:
        x_s = x_s + _column(np.array([sigma]), x_t) * _randn(x_t.shape, generator, x_t)
    return x_s


def timesteps_for(sched: Schedule, spec: SamplerSpec) -> np.ndarray:
    """The decreasing list of timesteps a sampler visits."""
    if spec.name == "ddpm":
        steps = spec.steps or sched.timesteps
        if steps != sched.timesteps:
            raise ValueError(
                f"ddpm is the full {sched.timesteps}-step ancestral chain; "
                f"for {steps} steps use --sampler ddim"
            )
        return np.arange(sched.timesteps - 1, -1, -1)
    steps = spec.steps or min(50, sched.timesteps)
    return select_timesteps(sched.timesteps, steps, spec.timestep_rule)[::-1]


@torch.no_grad()
def sample(
    denoise: DenoiseFn,
    shape: tuple[int, ...],
    sched: Schedule,
    spec: SamplerSpec,
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
    x_T: torch.Tensor | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Runs the reverse chain from x_T ~ N(0, I) to x0. Returns (B,C,H,W) x0-hat."""
    if spec.name not in SAMPLERS:
        raise ValueError(f"unknown sampler {spec.name!r}; valid: {', '.join(SAMPLERS)}")
    taus = timesteps_for(sched, spec)
    x = x_T if x_T is not None else randn(shape, generator, device)
    for i, t in enumerate(taus):
        s = int(taus[i + 1]) if i + 1 < len(taus) else -1
        x0, eps = denoise(x, np.full(x.shape[0], int(t), dtype=np.int64))
        if spec.name == "ddim":
            x = ddim_step(sched, x, x0, eps, s, int(t), spec.eta, generator)
        else:  # ddpm (s = t-1) and lddpm (respaced K-step chain): posterior sampling
            x = ddpm_step(sched, x, x0, s, int(t), generator)
        if progress is not None:
            progress(1)
    return x


def model_evaluations(sched: Schedule, spec: SamplerSpec) -> int:
    return len(timesteps_for(sched, spec))
