"""Glow flow and the conditional Glow prior on the CVAE latent (docs/design.md §3, paper Eq. 12).

p(z | c) = N(f(z); mu_p(c), sigma_p(c)) |det df/dz|

f is a Glow with L levels; each level is a 2x2 squeeze followed by one flow step
(ActNorm -> invertible 1x1 conv -> affine coupling). Unlike the original multi-scale Glow,
no channels are split off between levels (the paper uses "three superficial layers" of
squeeze + flow step), and after the last level the output is unsqueezed back, so
u = f(z) has exactly the shape of z: (B, C, H, W). That lets the prior's mean and
log-std be predicted per latent position straight from the context map c, which lives at
the latent's resolution.

Every piece is exactly invertible and has an exact log-determinant; the tests check
f^-1(f(z)) == z in float64 and compare log|det| with a brute-force autograd Jacobian.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lddpm.errors import UserError

# Lower bound on the per-channel std used by ActNorm's data-dependent initialisation, so a
# degenerate first batch (an almost constant channel) never amplifies by more than 10x.
_ACTNORM_MIN_STD = 0.1
# Bound on the coupling's log-scale and on the prior's log-std: a smooth clamp keeps the
# flow well-conditioned early in training without ever being non-invertible.
_COUPLING_LOG_SCALE_BOUND = 2.0
_PRIOR_LOG_SIGMA_BOUND = 5.0
_LOG_2PI = math.log(2.0 * math.pi)


def soft_clamp(x: Tensor, bound: float) -> Tensor:
    """Smoothly squash x into (-bound, bound); identity to first order around 0."""
    return bound * torch.tanh(x / bound)


def gaussian_log_prob(x: Tensor, mu: Tensor, log_sigma: Tensor) -> Tensor:
    """log N(x; mu, exp(log_sigma)^2) of a diagonal Gaussian, summed over non-batch dims.

    x: (B, ...); mu, log_sigma broadcastable to x. Returns (B,).
    """
    standardized = (x - mu) * torch.exp(-log_sigma)
    log_density = -0.5 * standardized.pow(2) - log_sigma - 0.5 * _LOG_2PI
    return log_density.expand_as(x).flatten(1).sum(dim=1)


def squeeze2x2(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 spatial block becomes 4 channels."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2)
    x = x.permute(0, 1, 3, 5, 2, 4)  # (B, C, 2, 2, H/2, W/2)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze2x2(x: Tensor) -> Tensor:
    """(B, 4C, H, W) -> (B, C, 2H, 2W): exact inverse of squeeze2x2."""
    b, c4, h, w = x.shape
    c = c4 // 4
    x = x.view(b, c, 2, 2, h, w)
    x = x.permute(0, 1, 4, 2, 5, 3)  # (B, C, H, 2, W, 2)
    return x.reshape(b, c, h * 2, w * 2)


def channel_moments(x: Tensor) -> tuple[Tensor, Tensor, int]:
    """Per-channel mean and (biased) std of x (B, C, H, W), and the values per channel.

    Under DistributedDataParallel each rank holds a slice of the batch: the moments are then
    those of the whole batch (two all-reduces), so every replica initialises the same weights
    (DDP never re-syncs parameters) and they equal a single process's on the whole batch.
    """
    dims = (0, 2, 3)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        count = x.shape[0] * x.shape[2] * x.shape[3]
        return x.mean(dims, keepdim=True), x.std(dims, keepdim=True, unbiased=False), count

    def global_mean(v: Tensor) -> Tensor:
        total = torch.cat([v.sum(dims).flatten(), v.new_tensor([v.numel() / v.shape[1]])])
        torch.distributed.all_reduce(total)
        return (total[:-1] / total[-1]).view(1, -1, 1, 1)

    mean = global_mean(x)
    count = x.shape[0] * x.shape[2] * x.shape[3] * torch.distributed.get_world_size()
    return mean, global_mean((x - mean) ** 2).sqrt(), count


class ActNorm(nn.Module):
    """Per-channel affine y = (x + bias) * exp(log_scale), data-initialised.

    On the first forward call the parameters are set so that this batch's output has zero
    mean and unit variance per channel. `initialized` is a buffer, so it travels in state
    dicts: a loaded module is never re-initialised. inverse() never initialises (at
    sampling time there is no data to initialise from).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        mean, std, count = channel_moments(x)
        self.bias.copy_(-mean)
        # One value per channel (batch 1 at a 1x1 deepest level) says nothing about the
        # spread: keep the scale at 1 then, only centre.
        if count > 1:
            self.log_scale.copy_(-torch.log(std.clamp_min(_ACTNORM_MIN_STD)))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C, H, W) -> y (B, C, H, W), logdet (B,)."""
        if not bool(self.initialized):
            self._initialize(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        logdet = self.log_scale.sum() * (x.shape[2] * x.shape[3])
        return y, logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution with LU-parameterised weight W = P L U (Glow §3.2).

    P is a fixed permutation, L lower-triangular with unit diagonal, U upper-triangular with
    diagonal sign * exp(log_s); so log|det W| = sum(log_s) exactly and the layer's
    log-determinant is H * W * sum(log_s). Initialised from a fixed orthonormal DCT-II
    matrix (deterministic, needs no RNG, mixes every channel with every other one).
    """

    def __init__(self, channels: int):
        super().__init__()
        p, lower, upper = torch.linalg.lu(_orthonormal_dct_matrix(channels))
        diag = torch.diagonal(upper)
        self.register_buffer("permutation", p)
        self.register_buffer("sign_s", torch.sign(diag))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(diag.abs()))

    def weight(self) -> Tensor:
        """The assembled (C, C) matrix W = P L U."""
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.permutation @ lower @ upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C, H, W) -> y (B, C, H, W), logdet (B,)."""
        weight = self.weight()
        y = F.conv2d(x, weight[:, :, None, None])
        logdet = self.log_s.sum() * (x.shape[2] * x.shape[3])
        return y, logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        # Invert in float64: the matrix is tiny (C x C), and float32 inversion error would
        # otherwise be the largest term in f^-1(f(z)) - z.
        weight = self.weight()
        inverse = torch.linalg.inv(weight.double()).to(weight.dtype)
        return F.conv2d(y, inverse[:, :, None, None])


def _orthonormal_dct_matrix(n: int) -> Tensor:
    """(n, n) orthonormal DCT-II matrix, a deterministic rotation used to initialise InvConv1x1."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    matrix = torch.cos(math.pi * (i + 0.5) * k / n) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix.float()


def resize_features(features: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, C, h', w') -> (B, C, *size); antialiased bilinear, so shrinking does not alias."""
    if tuple(features.shape[-2:]) == tuple(size):
        return features
    # antialiased resizing has no bf16 kernel on CPU: resize in float32 (an autocast bug fix)
    resized = F.interpolate(
        features.float(), size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return resized.to(features.dtype)


class AffineCoupling(nn.Module):
    """Affine coupling: x = (x_a, x_b) -> (x_a, x_b * exp(log_s) + shift).

    log_s and shift come from a small conv net on (x_a, cond features resized to x's
    resolution): the paper's "replace the mask matrix with the feature matrix output by the
    conditional encoder". The last conv is zero-initialised, so the layer starts as the
    identity. cond may be None (or cond_channels 0): the net then sees zeros in its place.
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int):
        super().__init__()
        if channels % 2:
            raise ValueError(f"AffineCoupling needs an even channel count, got {channels}")
        self.half = channels // 2
        self.cond_channels = cond_channels
        self.net = nn.Sequential(
            nn.Conv2d(self.half + cond_channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, 2 * (channels - self.half), 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _log_scale_and_shift(self, x_a: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.cond_channels:
            if cond is None:
                cond = x_a.new_zeros(x_a.shape[0], self.cond_channels, *x_a.shape[2:])
            else:
                cond = resize_features(cond, tuple(x_a.shape[2:])).to(x_a.dtype)
            x_a = torch.cat([x_a, cond], dim=1)
        raw_log_scale, shift = self.net(x_a).chunk(2, dim=1)
        return soft_clamp(raw_log_scale, _COUPLING_LOG_SCALE_BOUND), shift

    def forward(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """x (B, C, H, W), cond (B, cond_channels, h', w') or None -> y (B, C, H, W), logdet (B,)."""
        x_a, x_b = x[:, : self.half], x[:, self.half :]
        log_scale, shift = self._log_scale_and_shift(x_a, cond)
        y_b = x_b * torch.exp(log_scale) + shift
        return torch.cat([x_a, y_b], dim=1), log_scale.flatten(1).sum(dim=1)

    def inverse(self, y: Tensor, cond: Tensor | None) -> Tensor:
        y_a, y_b = y[:, : self.half], y[:, self.half :]
        log_scale, shift = self._log_scale_and_shift(y_a, cond)
        x_b = (y_b - shift) * torch.exp(-log_scale)
        return torch.cat([y_a, x_b], dim=1)


class FlowStep(nn.Module):
    """One Glow step: ActNorm -> InvConv1x1 -> AffineCoupling."""

    def __init__(self, channels: int, cond_channels: int, hidden: int):
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvConv1x1(channels)
        self.coupling = AffineCoupling(channels, cond_channels, hidden)

    def forward(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        x, logdet_norm = self.actnorm(x)
        x, logdet_conv = self.invconv(x)
        x, logdet_coupling = self.coupling(x, cond)
        return x, logdet_norm + logdet_conv + logdet_coupling

    def inverse(self, y: Tensor, cond: Tensor | None) -> Tensor:
        y = self.coupling.inverse(y, cond)
        y = self.invconv.inverse(y)
        return self.actnorm.inverse(y)


class Glow(nn.Module):
    """L levels of (2x2 squeeze + flow step); u = f(z) keeps z's shape (B, C, H, W).

    Level k (0-based) works on (B, C * 4^(k+1), H / 2^(k+1), W / 2^(k+1)). H and W must be
    multiples of `required_multiple` = 2**levels (the sampler entry point pads the image so
    the latent always is; anything else is rejected with a UserError).
    """

    def __init__(self, channels: int, cond_channels: int = 0, levels: int = 3, hidden: int = 64):
        super().__init__()
        if levels < 1:
            raise ValueError(f"Glow needs at least one level, got {levels}")
        self.levels = levels
        self.flow_steps = nn.ModuleList(  # one per level (checkpoints before: `steps`)
            FlowStep(channels * 4 ** (k + 1), cond_channels, hidden) for k in range(levels)
        )

    @property
    def required_multiple(self) -> int:
        return 2**self.levels

    def _check_size(self, x: Tensor) -> None:
        h, w = x.shape[-2:]
        m = self.required_multiple
        if h % m or w % m:
            raise UserError(
                f"the Glow prior with {self.levels} levels needs a latent whose height and width "
                f"are multiples of {m}, got {h}x{w}; pad the input image to a multiple of "
                f"{m} latent cells"
            )

    def forward(self, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z (B, C, H, W), cond (B, cond_channels, h', w') or None -> u (B, C, H, W), logdet (B,)."""
        self._check_size(z)
        x = z
        logdet = z.new_zeros(z.shape[0])
        for step in self.flow_steps:
            x, step_logdet = step(squeeze2x2(x), cond)
            logdet = logdet + step_logdet
        for _ in range(self.levels):
            x = unsqueeze2x2(x)
        return x, logdet

    def inverse(self, u: Tensor, cond: Tensor | None = None) -> Tensor:
        """u (B, C, H, W), cond as in forward -> z (B, C, H, W) with forward(z)[0] == u."""
        self._check_size(u)
        x = u
        for _ in range(self.levels):
            x = squeeze2x2(x)
        for step in reversed(self.flow_steps):
            x = unsqueeze2x2(step.inverse(x, cond))
        return x


class GlowPrior(nn.Module):
    """Conditional prior p(z | c) = N(f(z); mu_p(c), sigma_p(c)) |det df/dz| (Eq. 12).

    context c: the UNet encoder output F_X, (B, context_channels, h, w) at the latent's
    resolution. lr_feat: the LR encoder's features (B, lr_feat_channels, h', w'), seen by the
    coupling nets after resizing. mu_p and log_sigma_p come from a small conv net on c whose
    last conv is zero-initialised, so an untrained prior is N(f(z); 0, I).
    """

    def __init__(
        self,
        latent_channels: int,
        context_channels: int,
        lr_feat_channels: int = 0,
        levels: int = 3,
        hidden: int = 64,
    ):
        super().__init__()
        self.latent_channels = latent_channels
        self.flow = Glow(latent_channels, lr_feat_channels, levels, hidden)
        self.stats = nn.Sequential(
            nn.Conv2d(context_channels, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, 2 * latent_channels, 3, padding=1),
        )
        nn.init.zeros_(self.stats[-1].weight)
        nn.init.zeros_(self.stats[-1].bias)

    @property
    def required_multiple(self) -> int:
        return self.flow.required_multiple

    def base_stats(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """context (B, context_channels, h, w) -> mu_p, log_sigma_p, each (B, latent_channels, h, w)."""
        mu, raw_log_sigma = self.stats(context).chunk(2, dim=1)
        return mu, soft_clamp(raw_log_sigma, _PRIOR_LOG_SIGMA_BOUND)

    def log_prob(self, z: Tensor, context: Tensor, lr_feat: Tensor | None = None) -> Tensor:
        """log p(z | c) of z (B, latent_channels, h, w) -> (B,)."""
        if z.shape[-2:] != context.shape[-2:]:
            raise ValueError(
                f"context {tuple(context.shape)} must have the latent's resolution {tuple(z.shape)}"
            )
        u, logdet = self.flow(z, lr_feat)
        mu, log_sigma = self.base_stats(context)
        return gaussian_log_prob(u, mu, log_sigma) + logdet

    def sample(
        self,
        context: Tensor,
        lr_feat: Tensor | None,
        generator: torch.Generator,
        temperature: float = 1.0,
    ) -> Tensor:
        """z = f^-1(z_p), z_p ~ N(mu_p(c), (temperature * sigma_p(c))^2) -> (B, latent_channels, h, w).

        The noise is drawn on the generator's device with the explicit generator, then moved,
        so a seed gives the same z on any device.
        """
        shape = (context.shape[0], self.latent_channels, *context.shape[-2:])
        noise = torch.randn(shape, generator=generator, device=generator.device, dtype=context.dtype)
        return self.latent_from_noise(temperature * noise.to(context.device), context, lr_feat)

    def latent_from_noise(self, noise: Tensor, context: Tensor, lr_feat: Tensor | None) -> Tensor:
        """z = f^-1(mu_p(c) + sigma_p(c) * noise) for a given N(0, I) draw (Eq. 12); the sampler
        draws the noise once per sample and maps it with the context of each step."""
        mu, log_sigma = self.base_stats(context)
        return self.flow.inverse(mu + torch.exp(log_sigma) * noise, lr_feat)
