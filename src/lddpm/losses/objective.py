"""Training objective (Eq. 18): L = L_DDPM + l_kl KL + l_adv L_adv + l_c L_content + l_s L_style.

The terms themselves live beside it: lddpm.losses.perceptual (content, style),
lddpm.losses.adversarial (Eq. 13, R1), lddpm.losses.kl (Eq. 11-12).

Each loss returns `(total, terms)` where `terms` maps a name to the *weighted* contribution of
that term, so that `sum(terms.values()) == total` (what the progress bar and TensorBoard show).

    x0 = hr (target "image") or (hr - up) * residual_scale (target "residual", as SRDiff);
    all (B,3,H,W); lddpm.diffusion.denoiser.Parameterisation owns these conversions.

L_DDPM (Eq. 7):   t ~ U{0..T-1}, eps ~ N(0, I), || eps - eps_theta(sqrt(ab_t) x0 + sqrt(1-ab_t) eps) ||^2
                  (or the v / x0 target of diffusion.prediction)
Few-step chain:   k ~ U{1..K}; real pair (x_{tau_{k-1}}, x_{tau_k}) from the forward process;
                  fake: x0-hat from eps_theta with z from the prior, x'_{tau_{k-1}} ~ q(. | x_{tau_k}, x0-hat)
                  (Eq. 14-15); D(x_prev, x_t, t, up) scores both (Eq. 13).
Content / style:  on the clean estimate x0-hat of the L_DDPM branch, as an image (Eq. 16-17).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lddpm.config import Config
from lddpm.diffusion.denoiser import Parameterisation, clamp_straight_through
from lddpm.diffusion.samplers import set_timesteps
from lddpm.diffusion.schedule import (
    Schedule,
    posterior_mean_var,
    q_sample,
    q_step,
)
from lddpm.losses.adversarial import d_loss, g_loss, r1_penalty
from lddpm.losses.kl import latent_kl
from lddpm.losses.perceptual import time_weight
from lddpm.models.lddpm import Condition, LDDPMNet
from lddpm.rng import randn


@dataclass
class ChainPair:
    """One step k of the K-step chain, batched. Tensors (B,3,H,W); t (B,) long."""

    x_prev_real: torch.Tensor
    x_t: torch.Tensor
    t: torch.Tensor
    x_prev_fake: torch.Tensor


class Objective:
    def __init__(self, cfg: Config, sched: Schedule, perceptual: torch.nn.Module | None = None):
        self.cfg = cfg
        self.sched = sched
        self.perceptual = perceptual
        self.param = Parameterisation.from_config(cfg.diffusion, sched)
        # The K-step chain's timesteps, increasing (tau_1 < ... < tau_K): sampling's own choice
        self.taus = set_timesteps("lddpm", None, sched.timesteps,
                                  (cfg.gan.chain_steps, cfg.gan.timestep_rule))[::-1].copy()

    # ------------------------------------------------------------------ helpers
    def _randn(self, like: torch.Tensor, gen: torch.Generator, shape=None) -> torch.Tensor:
        return randn(shape or like.shape, gen, like.device, like.dtype)  # drawn on gen's device

    def _prior_noise(self, net: LDDPMNet, x: torch.Tensor, gen: torch.Generator):
        shape = net.latent_shape(tuple(x.shape))
        return None if shape is None else self._randn(x, gen, shape)

    # ------------------------------------------------------------------ L_DDPM
    def ddpm_terms(
        self, net: LDDPMNet, x0: torch.Tensor, cond: Condition, gen: torch.Generator
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, np.ndarray]:
        """Eq. 7 (+ KL of the CVAE, Eq. 11-12). Returns raw terms, x0-hat, and the t drawn."""
        b = x0.shape[0]
        t = torch.randint(0, self.sched.timesteps, (b,), generator=gen).numpy()
        noise = self._randn(x0, gen)
        x_t = q_sample(self.sched, x0, t, noise)
        out, posterior = net.forward_train(x_t, torch.as_tensor(t, device=x0.device), cond, x0, gen)
        out = out.float()
        target = self.param.loss_target(x0, t, noise)
        terms = {"ddpm": F.mse_loss(out, target.float())}  # Eq. 7 (or its v / x0 form)
        if posterior is not None:  # a CVAE: z came from q(z | x0, up)
            terms["kl"] = latent_kl(net.prior, posterior).float().mean()
        x0_hat, _ = self.param.split(x_t.float(), t, out, clip=None)
        return terms, x0_hat, t

    def perceptual_terms(
        self, x0_hat: torch.Tensor, hr: torch.Tensor, up: torch.Tensor, t: np.ndarray
    ) -> dict[str, torch.Tensor]:
        """Eq. 16-17 on the clean estimate as an image, weighted by alphabar_t by default.

        The image is clamped to [-1, 1] straight-through: the backbone only sees values an
        image can have (an eps model's x0-hat reaches +-55 at t = T-1), while every pixel
        keeps its gradient, which points back into the range since the HR lies inside it.
        The magnitude is bounded by the weight: for eps-prediction d x0-hat / d eps =
        sqrt(1 - ab) / sqrt(ab), so the weight ab leaves sqrt(ab (1 - ab)) <= 1/2 at every t.
        """
        lc = self.cfg.loss
        if self.perceptual is None or (lc.content == 0 and lc.style == 0):
            return {}
        image_hat = clamp_straight_through(self.param.to_image(x0_hat, up), 1.0)
        ab = torch.as_tensor(self.sched.alphabar_at(t), dtype=torch.float32, device=hr.device)
        w = time_weight(ab, lc.time_weighting)
        if lc.content and lc.style:  # both from one pass of the backbone per image
            content, style = self.perceptual(image_hat, hr, w)
            return {"content": content, "style": style}
        if lc.content:
            return {"content": self.perceptual.content(image_hat, hr, w)}
        return {"style": self.perceptual.style(image_hat, hr, w)}

    # ------------------------------------------------------------------ K-step chain
    def chain_pair(
        self, net: LDDPMNet, x0: torch.Tensor, cond: Condition, gen: torch.Generator
    ) -> ChainPair:
        """Real and fake (x_{tau_{k-1}}, x_{tau_k}) pairs for a random step k per sample."""
        b = x0.shape[0]
        k = torch.randint(0, len(self.taus), (b,), generator=gen).numpy()
        t = self.taus[k]
        s = np.where(k > 0, self.taus[np.maximum(k - 1, 0)], -1)  # tau_0 = "clean"
        x_prev = q_sample(self.sched, x0, s, self._randn(x0, gen))
        x_t = q_step(self.sched, x_prev, s, t, self._randn(x0, gen))
        tt = torch.as_tensor(t, device=x0.device)
        out = net(x_t, tt, cond, self._prior_noise(net, x0, gen))  # z from the prior
        # straight-through: the clamp bounds x0-hat but keeps the adversarial gradient
        x0_hat, _ = self.param.split(x_t, t, out.float(), clip="straight_through")
        mean, var = posterior_mean_var(self.sched, x0_hat, x_t, s, t)  # Eq. 15
        x_fake = mean + var.sqrt() * self._randn(x0, gen)
        return ChainPair(x_prev, x_t, tt, x_fake)

    # ------------------------------------------------------------------ composites
    def generator_loss(
        self,
        net: LDDPMNet,
        batch: dict[str, torch.Tensor],
        gen: torch.Generator,
        disc: torch.nn.Module | None = None,
        references: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 18 for the denoiser: (total, weighted terms)."""
        lc = self.cfg.loss
        cond = net.condition(batch["lr"], references)
        x0 = self.param.x0_from_image(batch["hr"], cond.up)
        raw, x0_hat, t = self.ddpm_terms(net, x0, cond, gen)
        raw.update(self.perceptual_terms(x0_hat, batch["hr"], cond.up, t))
        if disc is not None:
            pair = self.chain_pair(net, x0, cond, gen)
            raw["adv"] = g_loss(disc(pair.x_prev_fake, pair.x_t, pair.t, cond.up).float())
        weights = {"ddpm": lc.ddpm, "kl": lc.kl, "adv": lc.adv, "content": lc.content, "style": lc.style}
        terms = {name: weights[name] * value for name, value in raw.items()}
        return sum(terms.values()), terms

    def discriminator_loss(
        self,
        net: LDDPMNet,
        disc: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        gen: torch.Generator,
        with_r1: bool,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 13 for D on detached fakes, plus the lazy R1 penalty on real pairs."""
        with torch.no_grad():
            cond = net.condition(batch["lr"])
            x0 = self.param.x0_from_image(batch["hr"], cond.up)
            pair = self.chain_pair(net, x0, cond, gen)
        x_real = pair.x_prev_real.detach().requires_grad_(with_r1)
        real = disc(x_real, pair.x_t, pair.t, cond.up).float()
        fake = disc(pair.x_prev_fake.detach(), pair.x_t, pair.t, cond.up).float()
        terms = {"d_adv": d_loss(real, fake)}
        if with_r1:
            # lazy regularisation: scaled by the period so its average weight is r1_weight
            r1 = r1_penalty(real, x_real)
            terms["r1"] = 0.5 * self.cfg.gan.r1_weight * self.cfg.gan.r1_every * r1
        return sum(terms.values()), terms
