"""upscale(): LR images of any size -> SR images, with any sampler and step count.

    up = Upscaler.from_checkpoint("runs/x")            # EMA weights by default
    sr = up.upscale(lr, sampler="ddim", steps=20, seed=0, num_samples=2)
    # lr: (B,3,h,w) float [0,1]  ->  sr: (num_samples, B, 3, h*s, w*s) float [0,1]

Sizes that the network cannot take as they are (HR not a multiple of `size_multiple`) are
reflect-padded on the LR side and cropped back. Large inputs are processed in overlapping
tiles (`tile`, in LR pixels; by default bounded by the self-attention cost and the training
crop, see `auto_tile`) blended with a linear
ramp, so memory and the quadratic cost of self-attention stay bounded.
Each sample s of a call uses the generator seeded with `seed + s`: the same seed gives the
same image, and sample s of a run does not depend on how many samples were asked for.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from lddpm.config import Config
from lddpm.diffusion.consistency import CONSISTENCY, project_to_lr
from lddpm.diffusion.denoiser import Denoiser, Parameterisation
from lddpm.diffusion.samplers import SamplerSpec, model_evaluations, sample
from lddpm.diffusion.schedule import Schedule
from lddpm.errors import UserError
from lddpm.models.lddpm import LDDPMNet
from lddpm.precision import resolve_precision
from lddpm.training import checkpoint as ckpt

OPTIONAL_FOR_INFERENCE = ("cvae.posterior.",)  # an inference export may omit the posterior


# Used when neither the call nor the checkpoint's "inference" defaults say otherwise.
FALLBACK_DEFAULTS = {"sampler": "ddim", "steps": None, "consistency": "none"}


class Upscaler:
    def __init__(
        self,
        net: LDDPMNet,
        cfg: Config,
        device: torch.device | str = "cpu",
        defaults: dict | None = None,
        precision: str = "fp32",
    ):
        self.net = net.eval()
        self.cfg = cfg
        self.device = torch.device(device)
        self.sched = Schedule.from_config(cfg.diffusion)
        self.param = Parameterisation.from_config(cfg.diffusion, self.sched)
        self.defaults = {**FALLBACK_DEFAULTS, **(defaults or {})}
        self.autocast = resolve_precision(precision, self.device)
        self.evaluations = 0  # network evaluations run by this Upscaler (all tiles, samples)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path | None = None, device: str = "cpu", precision: str = "fp32"
    ) -> Upscaler:
        """A shipped model by name (None = the default, see `lddpm models`) or a checkpoint,
        run or exported directory."""
        from lddpm.pretrained import resolve_model

        return cls.from_checkpoint(resolve_model(name_or_path), device=device, precision=precision)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "cpu",
        use_ema: bool = True,
        config: Config | None = None,
        precision: str = "fp32",
    ) -> Upscaler:
        """Loads a checkpoint (or a run's newest, or an export). `config` checks it against an
        expected one."""
        cdir = ckpt.resolve_checkpoint(path)
        saved = ckpt.read_config(cdir)
        cfg = config or saved
        net = LDDPMNet(cfg.model, cfg.data.scale)
        try:
            ckpt.load_weights(net, ckpt.weights_file(cdir, use_ema), OPTIONAL_FOR_INFERENCE)
        except UserError as exc:
            diff = ckpt.config_differences(saved, cfg, ignore=("train.", "loss.", "data.bsrgan", "preset"))
            detail = f" (config differs: {'; '.join(diff[:4])})" if diff else ""
            raise UserError(f"{exc}{detail}") from None
        defaults = ckpt.read_meta(cdir).get("inference")
        return cls(net.float().to(device), cfg, device, defaults, precision)

    @property
    def scale(self) -> int:
        return self.cfg.data.scale

    # ------------------------------------------------------------------ samplers
    def spec(self, sampler: str, steps: int | None, eta: float = 0.0) -> SamplerSpec:
        """Validates the sampler choice against what this checkpoint was trained for."""
        if sampler == "lddpm":
            k = self.cfg.gan.steps
            if not self.cfg.gan.enabled:
                raise UserError("the lddpm sampler needs a checkpoint trained with the gan part; use --sampler ddim")
            if steps not in (None, k):
                raise UserError(
                    f"this checkpoint's GAN was trained for {k} steps, not {steps}: "
                    f"use --steps {k}, or --sampler ddim --steps {steps}"
                )
            return SamplerSpec("lddpm", k, 0.0, self.cfg.gan.timestep_rule)
        if sampler == "ddpm" and steps not in (None, self.sched.timesteps):
            raise UserError(f"ddpm runs all {self.sched.timesteps} steps; for {steps} steps use --sampler ddim")
        if sampler not in ("ddpm", "ddim"):
            raise UserError(f"unknown sampler {sampler!r}; valid: ddpm, ddim, lddpm")
        if steps is not None and not 1 <= steps <= self.sched.timesteps:
            raise UserError(f"--steps must be in 1..{self.sched.timesteps}, got {steps}")
        return SamplerSpec(sampler, steps, eta)

    def model_evaluations(self, sampler: str, steps: int | None = None) -> int:
        return model_evaluations(self.sched, self.spec(sampler, steps))

    # ------------------------------------------------------------------ upscaling
    @torch.no_grad()
    def upscale(
        self,
        lr: torch.Tensor,
        sampler: str | None = None,
        steps: int | None = None,
        seed: int = 0,
        num_samples: int = 1,
        eta: float = 0.0,
        references: list[torch.Tensor] | None = None,
        tile: int | None = None,
        progress=None,
        consistency: str | None = None,
    ) -> torch.Tensor:
        """(B,3,h,w) [0,1] -> (num_samples,B,3,h*s,w*s) [0,1].

        sampler/steps/consistency: None = this model's defaults (`self.defaults`).
        tile: LR tile side; None = `auto_tile()`, 0 = the whole image at once.
        consistency: "none", "end" or "step" (lddpm.diffusion.consistency).
        """
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise UserError(f"expected LR images (B,3,h,w), got {tuple(lr.shape)}")
        sampler, steps, consistency = self.resolve(sampler, steps, consistency)
        spec = self.spec(sampler, steps, eta)
        if references and self.net.encoder is None:
            raise UserError("--reference needs a checkpoint with the LR encoder (preset part v2 or v3)")
        lr = lr.to(self.device, torch.float32) * 2 - 1
        refs = [r.to(self.device, torch.float32) * 2 - 1 for r in references or []]
        outs = []
        tile = self.auto_tile() if tile is None else tile
        for s in range(num_samples):
            gen = torch.Generator(device="cpu").manual_seed(seed + s)
            run = partial(self._sample_padded, spec=spec, gen=gen, refs=refs, progress=progress,
                          consistency=consistency)
            whole = tile == 0 or max(lr.shape[-2:]) <= tile
            out = run(lr) if whole else _tiled(run, lr, tile, self.scale)
            outs.append(((out + 1) / 2).clamp(0, 1).cpu())
        return torch.stack(outs)

    def resolve(self, sampler: str | None, steps: int | None, consistency: str | None):
        """Fills what the caller left None from the model's defaults (steps only when the
        sampler is the default one too); checks the consistency choice."""
        if sampler is None:
            sampler = self.defaults["sampler"]
            steps = self.defaults["steps"] if steps is None else steps
        consistency = consistency or self.defaults["consistency"]
        if consistency not in CONSISTENCY:
            raise UserError(f"consistency {consistency!r} is not one of: {', '.join(CONSISTENCY)}")
        return sampler, steps, consistency

    def auto_tile(self) -> int:
        """Default LR tile side. Self-attention is quadratic in its token count, so the HR
        tile is bounded to at most 32x32 tokens at the finest self-attention level, and to
        4x the training crop (the model has seen content at about that size)."""
        u = self.cfg.model.unet
        attn_side = 32 * u.unshuffle * 2 ** min(u.attn_levels) if u.attn_levels else 1 << 30
        hr_tile = min(attn_side, 4 * self.cfg.data.crop)
        return max(16, hr_tile // self.scale)

    def _sample_padded(self, lr, spec, gen, refs, progress, consistency) -> torch.Tensor:
        """Pads the LR so the HR is a multiple of the network's size multiple; crops back."""
        s, m = self.scale, self.net.size_multiple
        h, w = lr.shape[-2:]
        ph, pw = _pad_amount(h, s, m), _pad_amount(w, s, m)
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            lr = F.pad(lr, (0, pw, 0, ph), mode=mode)
        cond = self.net.condition(lr, refs or None)
        shape = tuple(cond.up.shape)
        latent_shape = self.net.latent_shape(shape)
        noise = None if latent_shape is None else torch.randn(latent_shape, generator=gen).to(self.device)
        project = partial(project_to_lr, lr=lr, scale=s)
        denoise = Denoiser(self.net, cond, self.param, noise, self.autocast,
                           projection=project if consistency == "step" else None)
        x_T = torch.randn(shape, generator=gen).to(self.device)
        x0 = sample(denoise, shape, self.sched, spec, gen, self.device, x_T=x_T, progress=progress)
        self.evaluations += denoise.evaluations
        image = self.param.to_image(x0, cond.up)
        if consistency != "none":
            image = project(image)  # exact at the end too (x0 was clipped after the last one)
        return image[..., : h * s, : w * s]


def _pad_amount(n: int, scale: int, multiple: int) -> int:
    """Smallest p >= 0 with (n + p) * scale divisible by `multiple`."""
    p = 0
    while ((n + p) * scale) % multiple:
        p += 1
    return p


def _tiled(run, lr: torch.Tensor, tile: int, scale: int) -> torch.Tensor:
    """Runs `run` on overlapping LR tiles and blends the HR tiles with linear ramps."""
    overlap = min(8, tile // 4)
    b, _, h, w = lr.shape
    out = torch.zeros(b, 3, h * scale, w * scale, device=lr.device)
    weight = torch.zeros(1, 1, h * scale, w * scale, device=lr.device)
    step = max(1, tile - overlap)
    for y in _starts(h, tile, step):
        for x in _starts(w, tile, step):
            piece = run(lr[..., y : y + tile, x : x + tile])
            ramp = _ramp(piece.shape[-2], piece.shape[-1], overlap * scale, lr.device)
            ys, xs = y * scale, x * scale
            out[..., ys : ys + piece.shape[-2], xs : xs + piece.shape[-1]] += piece * ramp
            weight[..., ys : ys + piece.shape[-2], xs : xs + piece.shape[-1]] += ramp
    return out / weight


def _starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, step))
    return starts + [n - tile]


def _ramp(h: int, w: int, width: int, device) -> torch.Tensor:
    """(1,1,h,w) weights rising linearly over `width` pixels from each edge (never 0)."""
    def axis(n: int) -> torch.Tensor:
        i = torch.arange(n, device=device, dtype=torch.float32)
        return ((torch.minimum(i + 1, n - i) / max(width, 1)).clamp(max=1.0))

    return (axis(h)[:, None] * axis(w)[None, :])[None, None]
