"""Samplers: ddpm (ancestral), ddim (any step count, eta), lddpm (the K-step GAN chain).

Each takes the timesteps array it visits, as k-diffusion's samplers take `sigmas`:

    taus = set_timesteps("ddim", 20, sched.timesteps)        # decided once, e.g. in a SamplingPlan
    x0 = sample("ddim", denoise, x_T, sched, taus, eta=0.0, generator=gen)

`denoise(x_t, t) -> (x0-hat, eps)` is a `lddpm.diffusion.denoiser.Denoiser` (it owns the
parameterisation and the clip) or any function of that shape; t is a (B,) int64 array.
Every random number comes from `generator`, so a seed fixes the sample; one network
evaluation per timestep.

The timesteps are decided in one place, `set_timesteps` (as diffusers' scheduler method of
that name): (sampler, steps, the checkpoint's trained chain) -> the timesteps visited, with
the one default per sampler and the one error type (`SamplingError`). ddim's step count is
chosen at sampling time; ddpm runs all T; lddpm runs the K-step chain its checkpoint's GAN
was trained for, or n < K of its steps (`chain_subset`; the training GAN chain asks
`set_timesteps` too).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lddpm.config import SAMPLERS, GANConfig
from lddpm.diffusion.schedule import Schedule, _column, posterior_mean_var, select_timesteps
from lddpm.errors import SamplingError
from lddpm.rng import randn

__all__ = ["SAMPLERS", "SamplingError", "sample", "sample_ancestral", "sample_ddim", "set_timesteps",
           "trained_chain"]

DenoiseFn = Callable[[torch.Tensor, np.ndarray], tuple[torch.Tensor, torch.Tensor]]
Progress = Callable[[int], None]
DEFAULT_DDIM_STEPS = 50  # ddim's step count when none is given (at most T)

# The K-step chain a checkpoint's GAN was trained for: (K, timestep rule); None without gan.
Chain = tuple[int, str]


def trained_chain(gan: GANConfig) -> Chain | None:
    """The K-step chain of a config's gan part (gan.chain_steps, gan.timestep_rule); None
    without the gan part."""
    return (gan.chain_steps, gan.timestep_rule) if gan.enabled else None


def set_timesteps(sampler: str, steps: int | None, timesteps: int,
                  chain: Chain | None = None) -> np.ndarray:
    """The decreasing timesteps (int64, (N,)) that `sampler` visits on a T-step schedule.

    steps None = the default: ddpm all T, ddim min(50, T), lddpm the trained K. ddpm runs
    only its T steps; lddpm 1..K steps of the `chain` it was trained for (`chain_subset`;
    None: the checkpoint has no gan part). Anything else is a SamplingError (UserError and ValueError) naming the
    choice at fault (`option`: "sampler" or "steps"), in words, not in command-line flags.
    """
    if sampler not in SAMPLERS:
        raise SamplingError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}", option="sampler")
    if sampler == "ddpm":
        if steps not in (None, timesteps):
            raise SamplingError(f"ddpm runs all {timesteps} steps, not {steps}; "
                                "the ddim sampler takes any step count", option="steps")
        return np.arange(timesteps - 1, -1, -1)
    if sampler == "lddpm":
        if chain is None:
            raise SamplingError("the lddpm sampler needs a checkpoint trained with the gan part; "
                                "the ddim sampler works with any checkpoint", option="sampler")
        k, rule = chain
        if steps is not None and not 1 <= steps <= k:
            raise SamplingError(
                f"this checkpoint's GAN was trained for a {k}-step chain: use 1..{k} steps, "
                f"or the ddim sampler with {steps} steps", option="steps")
        return chain_subset(select_timesteps(timesteps, k, rule)[::-1], steps or k)
    steps = min(DEFAULT_DDIM_STEPS, timesteps) if steps is None else steps
    if not 1 <= steps <= timesteps:
        raise SamplingError(f"steps must be in 1..{timesteps}, got {steps}", option="steps")
    return select_timesteps(timesteps, steps)[::-1]


def chain_subset(chain: np.ndarray, n: int) -> np.ndarray:
    """n of the trained chain's decreasing timesteps, evenly spread and always the first
    (T-1) and the last (the step closest to the image): 4 of (999, 561, 249, 61) -> all,
    2 -> (999, 61), 1 -> (999,). Each step the sampler runs is then one the generator was
    trained at, and the posterior q(x_s | x_t, x0-hat) (Eq. 15) spans the skipped ones."""
    return chain[np.round(np.linspace(0, len(chain) - 1, n)).astype(np.int64)]


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


def sample_ddim(denoise: DenoiseFn, x_T: torch.Tensor, sched: Schedule, timesteps: np.ndarray,
                eta: float = 0.0, generator: torch.Generator | None = None,
                progress: Progress | None = None) -> torch.Tensor:
    """DDIM (Song et al.) from x_T down the decreasing `timesteps`; eta = 0 is deterministic,
    eta = 1 on the full grid is DDPM. Returns x0-hat (B,C,H,W)."""
    x = x_T
    for i, t in enumerate(timesteps):
        s = int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1
        x0, eps = denoise(x, np.full(x.shape[0], int(t), dtype=np.int64))
        x = ddim_step(sched, x, x0, eps, s, int(t), eta, generator)  # Song et al. Eq. 12
        if progress is not None:
            progress(1)
    return x


def sample_ancestral(denoise: DenoiseFn, x_T: torch.Tensor, sched: Schedule, timesteps: np.ndarray,
                     generator: torch.Generator | None = None,
                     progress: Progress | None = None) -> torch.Tensor:
    """Posterior sampling x_s ~ q(x_s | x_t, x0-hat) down the decreasing `timesteps`: ddpm
    on all T (s = t - 1, Eq. 5-6), lddpm on its respaced K-step chain (Eq. 15). Returns
    x0-hat (B,C,H,W)."""
    x = x_T
    for i, t in enumerate(timesteps):
        s = int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1
        x0, _ = denoise(x, np.full(x.shape[0], int(t), dtype=np.int64))
        x = ddpm_step(sched, x, x0, s, int(t), generator)  # Eq. 5-6 (ddpm), Eq. 15 (lddpm)
        if progress is not None:
            progress(1)
    return x


@torch.no_grad()
def sample(sampler: str, denoise: DenoiseFn, x_T: torch.Tensor, sched: Schedule,
           timesteps: np.ndarray, eta: float = 0.0, generator: torch.Generator | None = None,
           progress: Progress | None = None) -> torch.Tensor:
    """Runs `sampler`'s reverse chain from x_T (B,C,H,W) over `timesteps` (`set_timesteps`);
    x0-hat (B,C,H,W). `progress(1)` after every network evaluation. eta: ddim only."""
    if sampler == "ddim":
        return sample_ddim(denoise, x_T, sched, timesteps, eta, generator, progress)
    if sampler in ("ddpm", "lddpm"):
        return sample_ancestral(denoise, x_T, sched, timesteps, generator, progress)
    raise SamplingError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}", option="sampler")
