"""One owner of the parameterisation (as k-diffusion's `Denoiser` and EDM's preconditioning).

Two spaces:
    image space       HR images in [-1, 1]
    diffusion space   x0 = hr                              (diffusion.target = image)
                      x0 = (hr - up) * residual_scale      (diffusion.target = residual)
where up = bicubic(LR). The network's output means eps (Eq. 7), v = sqrt(ab) eps -
sqrt(1 - ab) x0 (Salimans & Ho) or x0 itself (diffusion.prediction). Everything else (the
objective, the samplers, the GAN chain in training, the Upscaler) asks this module for the
loss target, for (x0-hat, eps) and for the image, and never interprets the output itself.

Timesteps are one type everywhere here: a (B,) int64 NumPy array, 0 .. T-1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lddpm.config import DiffusionConfig
from lddpm.diffusion.schedule import Schedule, _column, eps_from_x0, predict_x0, v_target
from lddpm.precision import autocast


def clamp_straight_through(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Clamps the value to [-bound, bound] but passes the gradient unchanged (identity).

    A plain clamp zeroes the gradient wherever x0-hat leaves the range, which at large t is
    most pixels of an eps model: the adversarial and perceptual terms would then teach
    nothing there.
    """
    return x + (x.clamp(-bound, bound) - x).detach()


@dataclass(frozen=True)
class Parameterisation:
    sched: Schedule
    target: str = "image"  # image | residual
    prediction: str = "eps"  # eps | v | x0
    residual_scale: float = 1.0

    @classmethod
    def from_config(cls, cfg: DiffusionConfig, sched: Schedule | None = None) -> Parameterisation:
        return cls(sched or Schedule.from_config(cfg), cfg.target, cfg.prediction, cfg.residual_scale)

    # ------------------------------------------------------------------ image <-> x0
    @property
    def clip(self) -> float:
        """Bound of x0 in diffusion space: images in [-1, 1], residuals in [-2, 2] scaled."""
        return 2.0 * self.residual_scale if self.target == "residual" else 1.0

    def x0_from_image(self, hr: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) image-space HR and bicubic-up(LR) -> diffusion-space x0."""
        if self.target == "residual":
            return (hr - up) * self.residual_scale
        return hr

    def to_image(self, x0: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """Inverse of x0_from_image."""
        if self.target == "residual":
            return x0 / self.residual_scale + up
        return x0

    # ------------------------------------------------------------------ network output
    def loss_target(self, x0: torch.Tensor, t: np.ndarray, noise: torch.Tensor) -> torch.Tensor:
        """What the network regresses (Eq. 7 for eps) at x_t = q_sample(x0, t, noise)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "v":
            return v_target(self.sched, x0, t, noise)
        return x0

    def split(
        self, x_t: torch.Tensor, t: np.ndarray, output: torch.Tensor, clip: str | None = "hard"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's output -> (x0-hat, eps), consistent with each other given x_t.

        clip: "hard" clamps x0-hat to `self.clip` (sampling), "straight_through" clamps the
        value but not the gradient (training terms on x0-hat), None leaves it.
        """
        ab = self.sched.alphabar_at(t)
        a, b = _column(np.sqrt(ab), x_t), _column(np.sqrt(1.0 - ab), x_t)
        if self.prediction == "eps":
            eps, x0 = output, predict_x0(self.sched, x_t, t, output)
        elif self.prediction == "v":
            # v = a eps - b x0 and x_t = a x0 + b eps (a^2 + b^2 = 1) invert to:
            x0, eps = a * x_t - b * output, b * x_t + a * output
        else:
            x0, eps = output, eps_from_x0(self.sched, x_t, t, output)
        if clip is None:
            return x0, eps
        clipped = (
            x0.clamp(-self.clip, self.clip) if clip == "hard" else clamp_straight_through(x0, self.clip)
        )
        return clipped, eps_from_x0(self.sched, x_t, t, clipped)


# A projection of the clean estimate, in image space (e.g. LR back-projection).
Projection = Callable[[torch.Tensor], torch.Tensor]


class Denoiser:
    """What a sampler calls: (x_t (B,3,H,W), t (B,) int64) -> (x0-hat, eps), diffusion space.

    Closes over the network, the condition (LR, tokens) and the sample's latent noise, and
    counts the network evaluations it runs (the NFE that reports show).
    """

    def __init__(
        self,
        net,
        cond,
        param: Parameterisation,
        prior_noise: torch.Tensor | None = None,
        autocast: torch.dtype | None = None,
        projection: Projection | None = None,
    ):
        self.net, self.cond, self.param = net, cond, param
        self.prior_noise, self.autocast, self.projection = prior_noise, autocast, projection
        self.evaluations = 0

    def __call__(self, x_t: torch.Tensor, t: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        tt = torch.as_tensor(np.asarray(t), device=x_t.device)
        with autocast(x_t.device.type, self.autocast):
            out = self.net(x_t, tt, self.cond, self.prior_noise)
        self.evaluations += 1
        x0, eps = self.param.split(x_t, t, out.float())
        if self.projection is not None:
            image = self.projection(self.param.to_image(x0, self.cond.up))
            x0 = self.param.x0_from_image(image, self.cond.up)
            eps = eps_from_x0(self.param.sched, x_t, t, x0)
        return x0, eps
