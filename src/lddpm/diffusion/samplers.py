"""Samplers: ddpm (ancestral), ddim (any step count, eta), lddpm (the K-step GAN chain).

All three share one interface and one loop shape:

    spec = sampler_spec("ddim", 20, sched.timesteps, trained_chain(cfg.gan))
    x0 = sample(denoise, shape, sched, spec, generator)

`denoise(x_t, t) -> (x0-hat, eps)` is a `lddpm.diffusion.denoiser.Denoiser` (it owns the
parameterisation and the clip) or any function of that shape; t is a (B,) int64 array.
Every random number comes from `generator`, so a seed fixes the sample.

The step count is decided in one place, `set_timesteps` (as diffusers' scheduler method of
that name): (sampler, steps, the checkpoint's trained chain) -> the timesteps visited, with
the one default per sampler and the one error type (`SamplingError`). It is chosen at
sampling time, never baked into a checkpoint; the training GAN chain uses it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lddpm.config import SAMPLERS, GANConfig
from lddpm.diffusion.schedule import Schedule, _column, posterior_mean_var, select_timesteps
from lddpm.errors import SamplingError
from lddpm.rng import randn

__all__ = ["SAMPLERS", "SamplerSpec", "SamplingError", "sample", "sampler_spec", "set_timesteps"]

DenoiseFn = Callable[[torch.Tensor, np.ndarray], tuple[torch.Tensor, torch.Tensor]]
DEFAULT_DDIM_STEPS = 50  # ddim's step count when none is given (at most T)

# The K-step chain a checkpoint's GAN was trained for: (K, timestep rule); None without gan.
Chain = tuple[int, str]


@dataclass
class SamplerSpec:
    """What `sample` runs. For lddpm, `steps` and `timestep_rule` are the trained chain."""

    name: str = "ddim"
    steps: int | None = None  # None: the sampler's default (`set_timesteps`)
    eta: float = 0.0
    timestep_rule: str = "uniform"


def trained_chain(gan: GANConfig) -> Chain | None:
    """The K-step chain of a config's gan part (gan.chain_steps, gan.timestep_rule); None
    without the gan part."""
    return (gan.chain_steps, gan.timestep_rule) if gan.enabled else None


def set_timesteps(sampler: str, steps: int | None, timesteps: int,
                  chain: Chain | None = None) -> np.ndarray:
    """The decreasing timesteps (int64, (N,)) that `sampler` visits on a T-step schedule.

    steps None = the default: ddpm all T, ddim min(50, T), lddpm the trained K. ddpm runs
    only its T steps; lddpm only the `chain` it was trained for (None: the checkpoint has
    no gan part). Anything else is a SamplingError (UserError and ValueError) naming the fix.
    """
    if sampler not in SAMPLERS:
        raise SamplingError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if sampler == "ddpm":
        if steps not in (None, timesteps):
            raise SamplingError(f"ddpm runs all {timesteps} steps; for {steps} steps use --sampler ddim")
        return np.arange(timesteps - 1, -1, -1)
    if sampler == "lddpm":
        if chain is None:
            raise SamplingError(
                "the lddpm sampler needs a checkpoint trained with the gan part; use --sampler ddim")
        k, rule = chain
        if steps not in (None, k):
            raise SamplingError(
                f"this checkpoint's GAN was trained for {k} steps, not {steps}: "
                f"use --steps {k}, or --sampler ddim --steps {steps}")
        return select_timesteps(timesteps, k, rule)[::-1]
    steps = min(DEFAULT_DDIM_STEPS, timesteps) if steps is None else steps
    if not 1 <= steps <= timesteps:
        raise SamplingError(f"--steps must be in 1..{timesteps}, got {steps}")
    return select_timesteps(timesteps, steps)[::-1]


def sampler_spec(sampler: str, steps: int | None, timesteps: int, chain: Chain | None = None,
                 eta: float = 0.0) -> SamplerSpec:
    """A checked SamplerSpec with its step count filled in (`set_timesteps` decides both)."""
    count = len(set_timesteps(sampler, steps, timesteps, chain))
    if sampler == "lddpm":
        return SamplerSpec("lddpm", count, 0.0, chain[1])
    return SamplerSpec(sampler, count, eta)


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
    """The decreasing timesteps a spec visits (`set_timesteps`; lddpm's chain is the spec's)."""
    chain = (spec.steps, spec.timestep_rule) if spec.name == "lddpm" and spec.steps else None
    return set_timesteps(spec.name, spec.steps, sched.timesteps, chain)


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
    """Runs the reverse chain from x_T ~ N(0, I) to x0: `shape` (B,C,H,W), x_T of that
    shape (default: drawn from `generator`). Returns x0-hat (B,C,H,W). `progress(1)` after
    every network evaluation."""
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
    """Network evaluations of one `sample` call: one per timestep visited."""
    return len(timesteps_for(sched, spec))
