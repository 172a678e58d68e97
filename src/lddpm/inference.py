"""upscale(): LR images of any size -> SR images, with any sampler and step count.

    up = Upscaler.from_checkpoint("runs/x")            # EMA weights by default
    sr = up.upscale(lr, sampler="ddim", steps=20, seed=0, num_samples=2)
    # lr: (B,3,h,w) float [0,1]  ->  sr: (num_samples, B, 3, h*s, w*s) float [0,1]

    plan = up.plan(sampler="ddim", steps=4)             # every choice resolved and checked once
    plan.evaluations(h, w)                               # what upscaling an (h, w) LR costs
    sr = up.upscale(lr, seed=0, plan=plan)

    up = Upscaler.from_pretrained()                      # the shipped model, PIL in and out
    out = up(Image.open("photo.png"), seed=0)           # keeps alpha, greyscale, ICC, EXIF
    up.save_pretrained("my-model")                       # loadable by from_pretrained("my-model")

Value range: images in [0, 1] at every boundary of this module (tensors in and out, PIL
images as 8/16-bit), as every dataset of lddpm.data gives them; [-1, 1] only inside, where
the network works (`Condition`, `Denoiser`).

The choices of a run (sampler, steps, eta, LR consistency, tiling, samples) are resolved
once into a `SamplingPlan` (lddpm.diffusion.plan) by `Upscaler.plan`, from the call's
choices and the checkpoint's defaults; `upscale` runs a plan, its `evaluations(h, w)` counts
the network evaluations. Sizes that the network cannot take as they are (HR not a multiple
of `size_multiple`) are reflect-padded on the LR side and cropped back. Large inputs are
processed in overlapping tiles (`tile`, in LR pixels; by default bounded by the
self-attention cost and the training crop, see `auto_tile`) blended with linear ramps across
each overlap (lddpm.data.tiles), written into one output tensor tile by tile, so memory and
the quadratic cost of self-attention stay bounded.

Each sample s of a call uses the seed `seed + s`: the same seed gives the same image, and
sample s of a run does not depend on how many samples were asked for. Two noises are drawn
image-wide, so that a tile sees what the untiled run sees at its pixels:
- the starting noise x_T (`anchored_noise`): drawn in blocks seeded by (seed + s, block);
- the CVAE latent z (spatial, at HR/f, f = the UNet's downsampling; `latent_field`): drawn
  once per sample for the whole (padded) image from the generator seeded with seed + s, a
  stream distinct from x_T's, before anything else is drawn from it. A tile takes its
  region (`latent_region`); tile starts are aligned so that their HR origins are multiples
  of f (`latent_align`), so the tile's latent cells cover the same pixels as the image's.
The posterior noise of the ddpm and lddpm samplers (and of ddim with eta > 0) is still
drawn per tile, from that generator, in tile order.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lddpm import checkpoint as ckpt
from lddpm.config import Config
from lddpm.data.datasets import DIHEDRAL, dihedral_tensor, undo_dihedral_tensor
from lddpm.data.imageio import Photo, photo_from_pil, photo_to_pil
from lddpm.data.resize import imresize
from lddpm.data.tiles import run_tiled
from lddpm.diffusion.consistency import project_to_lr
from lddpm.diffusion.denoiser import Denoiser, Parameterisation
from lddpm.diffusion.plan import FALLBACK_DEFAULTS, SamplingChoices, SamplingPlan, build_plan
from lddpm.diffusion.samplers import sample, trained_chain
from lddpm.diffusion.schedule import Schedule
from lddpm.errors import UserError
from lddpm.models.build import build_network
from lddpm.models.lddpm import LDDPMNet
from lddpm.precision import resolve_device, resolve_precision

__all__ = ["FALLBACK_DEFAULTS", "SamplingChoices", "SamplingPlan", "Upscaler", "anchored_noise",
           "auto_tile_side", "final_size", "latent_region"]


def auto_tile_side(cfg: Config) -> int:
    """A model's default LR tile side, from its config alone. Self-attention is quadratic in
    its token count, so the HR tile is bounded to at most 32x32 tokens at the finest
    self-attention level, and to 4x the training crop (the model has seen content at about
    that size)."""
    u = cfg.model.unet
    attn_side = 32 * u.unshuffle * 2 ** min(u.attn_levels) if u.attn_levels else 1 << 30
    hr_tile = min(attn_side, 4 * cfg.data.crop)
    return max(16, hr_tile // cfg.data.scale)


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
        self.device = resolve_device(device)
        self.sched = Schedule.from_config(cfg.diffusion)
        self.param = Parameterisation.from_config(cfg.diffusion, self.sched)
        self.defaults = {**FALLBACK_DEFAULTS, **(defaults or {})}
        self.autocast = resolve_precision(precision, self.device)
        self.evaluations = 0  # network evaluations run by this Upscaler (all tiles, samples)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        use_ema: bool = True,
    ) -> Upscaler:
        """A shipped model by name (None = the default, see `lddpm models`) or a checkpoint,
        run or exported directory."""
        from lddpm.pretrained import resolve_model

        return cls.from_checkpoint(resolve_model(name_or_path), device=device, use_ema=use_ema,
                                   precision=precision)

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
        net = build_network(cfg)
        try:
            ckpt.load_weights(net, ckpt.weights_file(cdir, use_ema), ckpt.TRAINING_ONLY)
        except UserError as exc:
            diff = ckpt.config_differences(saved, cfg, ignore=("train.", "loss.", "data.bsrgan", "preset"))
            detail = f" (config differs: {'; '.join(diff[:4])})" if diff else ""
            raise UserError(f"{exc}{detail}") from None
        defaults = ckpt.read_meta(cdir).get("inference")
        device = resolve_device(device)
        return cls(net.float().to(device), cfg, device, defaults, precision)

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        """Writes an inference-only directory (as `lddpm export`: weights in `dtype`, the
        config and this Upscaler's sampling defaults) that `from_pretrained` loads."""
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        meta = {"config": self.cfg.to_dict(), "inference": self.defaults}
        return ckpt.write_export(Path(directory), state, meta, dtype)

    @property
    def scale(self) -> int:
        return self.cfg.data.scale

    # ------------------------------------------------------------------ the plan
    def plan(self, choices: SamplingChoices | None = None, **changes) -> SamplingPlan:
        """The resolved, checked SamplingPlan of `choices` (and/or keyword `changes` over
        them: sampler=, steps=, eta=, consistency=, tile=, tile_overlap=, num_samples=,
        self_ensemble=) on
        this model: None = its defaults (`self.defaults`). A bad choice is a UserError
        naming it (`option`)."""
        choices = (choices or SamplingChoices()).merged(**changes)
        return build_plan(choices, defaults=self.defaults, timesteps=self.sched.timesteps,
                          chain=trained_chain(self.cfg.gan), auto_tile=self.auto_tile(),
                          tile_align=self.latent_align, device=self.device, autocast=self.autocast)

    @property
    def latent_align(self) -> int:
        """LR multiple of tile starts: their HR origins are then multiples of the latent z's
        cell side f (the UNet's downsampling); 1 for a model without z."""
        if self.net.cvae is None:
            return 1
        f = self.net.unet.downsampling
        return f // math.gcd(f, self.scale)

    def auto_tile(self) -> int:
        """Default LR tile side (`auto_tile_side` of this model's config)."""
        return auto_tile_side(self.cfg)

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
        tile_overlap: int | None = None,
        plan: SamplingPlan | None = None,
        self_ensemble: bool | None = None,
    ) -> torch.Tensor:
        """(B,3,h,w) [0,1] -> (num_samples,B,3,h*s,w*s) [0,1], on the CPU.

        Either `plan` (from `self.plan`) or the choices, which `self.plan` resolves:
        sampler/steps/consistency: None = this model's defaults (`self.defaults`).
        tile: LR tile side; None = `auto_tile()`, 0 = the whole image at once.
        tile_overlap: LR pixels shared by neighbouring tiles (None = min(8, tile // 4)).
        consistency: "none", "end" or "step" (lddpm.diffusion.consistency).
        self_ensemble: the mean over the input's 8 rotations/flips (None = the model's default).
        progress: called with 1 after every network evaluation (`plan.evaluations` in all).
        references: reference images (B,3,h',w') in [0, 1] for the LR encoder's tokens.
        """
        if plan is None:
            plan = self.plan(sampler=sampler, steps=steps, eta=eta, consistency=consistency,
                             tile=tile, tile_overlap=tile_overlap, num_samples=num_samples,
                             self_ensemble=self_ensemble)
        elif ((sampler, steps, tile, consistency, tile_overlap, self_ensemble) != (None,) * 6
              or eta or num_samples != 1):
            raise TypeError("give either plan= or the sampling choices (sampler=, steps=, ...), not both")
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise UserError(f"expected LR images (B,3,h,w), got {tuple(lr.shape)}")
        if references and self.net.encoder is None:
            raise UserError("reference images need a checkpoint with the LR encoder (preset part v2 or v3)",
                            option="reference")
        if not plan.self_ensemble:
            return self._upscale_planned(lr, plan, seed, references, progress)
        # Self-ensemble: each rotation/flip of the input upscaled with the same seed and
        # turned back; the mean of the 8 (EDSR's "+"). Sums in place: one extra buffer.
        out = None
        for k, flip in DIHEDRAL:
            sr = self._upscale_planned(dihedral_tensor(lr, k, flip), plan, seed, references, progress)
            sr = undo_dihedral_tensor(sr, k, flip)
            out = sr if out is None else out.add_(sr)
        return out.div_(len(DIHEDRAL))

    def _upscale_planned(self, lr, plan, seed, references, progress) -> torch.Tensor:
        """One pass of `upscale`: (B,3,h,w) [0,1] -> (num_samples,B,3,h*s,w*s) [0,1]."""
        lr = lr.to(self.device, torch.float32) * 2 - 1
        refs = [r.to(self.device, torch.float32) * 2 - 1 for r in references or []]
        b, _, h, w = lr.shape
        tiling = plan.tiling(h, w)
        out = torch.zeros(plan.num_samples, b, 3, h * self.scale, w * self.scale)  # the only full-size buffer
        for s in range(plan.num_samples):
            gen = torch.Generator(device="cpu").manual_seed(seed + s)
            field = self.latent_field(b, h, w, gen)  # first from gen: the untiled run's z
            run = partial(self._sample_padded, plan=plan, gen=gen, refs=refs, progress=progress,
                          seed=seed + s, field=field)
            run_tiled(run, lr, tiling, self.scale, out[s])
            out[s].add_(1).div_(2).clamp_(0, 1)  # in place: no second full-size copy
        return out

    def upscale_photo(self, photo: Photo, outscale: float | None = None, **kwargs) -> list[Photo]:
        """LR Photo -> one Photo per sample at `outscale` x its size (default: the model's
        scale; other scales resample the model's output with imresize, as Real-ESRGAN's -s).
        The colour goes through the model, the alpha is resized bicubically; greyscale,
        depth, ICC and EXIF carry over. kwargs: those of `upscale`."""
        h, w = photo.rgb.shape[-2:]
        size = (h * self.scale, w * self.scale) if outscale is None else final_size(h, w, outscale)
        sr = self.upscale(photo.rgb[None], **kwargs)[:, 0]  # (S, 3, H, W)
        alpha = None if photo.alpha is None else imresize(photo.alpha, size=size).clamp_(0, 1)
        return [replace(photo, rgb=_resized(image, size), alpha=alpha) for image in sr]

    def __call__(self, images, *, outscale: float | None = None, color: bool = False, **kwargs):
        """PIL image (or a list of them) -> upscaled PIL image (or list), like a diffusers
        pipeline. Alpha, greyscale (unless `color`), ICC and EXIF are kept as `lddpm upscale`
        keeps them. kwargs: those of `upscale` (steps=, seed=, sampler=, tile=, plan=, ...)."""
        single = not isinstance(images, (list, tuple))
        outs = []
        for image in [images] if single else images:
            photo = photo_from_pil(image)
            photo.grey = photo.grey and not color
            outs.append(photo_to_pil(self.upscale_photo(photo, outscale, **kwargs)[0]))
        return outs[0] if single else outs

    def latent_field(self, b: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor | None:
        """The CVAE's N(0, I) latent draw for a whole (b, 3, h, w) LR image (padded as the
        untiled run pads it), from `gen`; None for a model without z. CPU, float32."""
        if self.net.cvae is None:
            return None
        s, m = self.scale, self.net.size_multiple
        hr_shape = (b, 3, (h + _pad_amount(h, s, m)) * s, (w + _pad_amount(w, s, m)) * s)
        return torch.randn(self.net.latent_shape(hr_shape), generator=gen)

    def _sample_padded(self, lr, origin, plan, gen, refs, progress, seed, field) -> torch.Tensor:
        """LR tile (B,3,h,w) at LR position `origin` (y, x) of the image -> HR (B,3,h*s,w*s).
        Pads the LR so the HR is a multiple of the network's size multiple; crops back."""
        s, m = self.scale, self.net.size_multiple
        h, w = lr.shape[-2:]
        ph, pw = _pad_amount(h, s, m), _pad_amount(w, s, m)
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            lr = F.pad(lr, (0, pw, 0, ph), mode=mode)
        cond = self.net.condition(lr, refs or None)
        shape = tuple(cond.up.shape)
        noise = None
        if field is not None:
            f = self.net.unet.downsampling
            cells = self.net.latent_shape(shape)[-2:]
            noise = latent_region(field, (origin[0] * s // f, origin[1] * s // f), cells).to(self.device)
        project = partial(project_to_lr, lr=lr, scale=s)
        denoise = Denoiser(self.net, cond, self.param, noise, plan.autocast,
                           projection=project if plan.consistency == "step" else None)
        x_T = anchored_noise(shape, (origin[0] * s, origin[1] * s), seed).to(self.device)
        x0 = sample(plan.sampler, denoise, x_T, self.sched, plan.timesteps, plan.eta, gen, progress)
        self.evaluations += denoise.evaluations
        image = self.param.to_image(x0, cond.up)
        if plan.consistency != "none":
            image = project(image)  # exact at the end too (x0 was clipped after the last one)
        return image[..., : h * s, : w * s]


def latent_region(field: torch.Tensor, origin: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """The (size) cells of the image-wide latent `field` (B,C,H',W') at cell `origin` (y, x):
    a tile's z. A tile origin maps to cell origin // f (exact: tile starts are aligned, see
    `Upscaler.latent_align`). Cells past the field's edge (a tile padded beyond the padded
    image, pixels that are cropped away) mirror the field, as the LR is mirrored there."""
    (y0, x0), (hh, ww) = origin, size
    _, _, fh, fw = field.shape
    if (y0, x0) == (0, 0) and (hh, ww) == (fh, fw):
        return field
    rows, cols = _mirrored(y0, hh, fh), _mirrored(x0, ww, fw)
    return field.index_select(-2, rows).index_select(-1, cols)


def _mirrored(start: int, length: int, n: int) -> torch.Tensor:
    """Indices start..start+length-1 into 0..n-1, those past the end reflected back."""
    i = torch.arange(start, start + length)
    return torch.where(i >= n, 2 * (n - 1) - i, i).clamp(0, n - 1)


def _pad_amount(n: int, scale: int, multiple: int) -> int:
    """Smallest p >= 0 with (n + p) * scale divisible by `multiple`."""
    p = 0
    while ((n + p) * scale) % multiple:
        p += 1
    return p


def final_size(h: int, w: int, outscale: float) -> tuple[int, int]:
    """HR size of an (h, w) input at `outscale` x (rounded, at least 1 pixel)."""
    if not outscale > 0:
        raise UserError(f"the output scale must be > 0, got {outscale}", option="outscale")
    return max(1, round(h * outscale)), max(1, round(w * outscale))


def _resized(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C,H,W) -> (C,*size) with imresize, channel by channel (imresize works in float64)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return torch.cat([imresize(c[None], size=size).clamp_(0, 1) for c in image])


NOISE_BLOCK = 64  # HR pixels: the side of the square blocks the noise field is drawn in


def _block_seed(seed: int, by: int, bx: int) -> int:
    state = np.random.SeedSequence((seed % 2**64, by, bx)).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def anchored_noise(shape: tuple[int, ...], origin: tuple[int, int], seed: int) -> torch.Tensor:
    """N(0, I) of `shape` (B,C,H,W): the HR region at `origin` (y, x) of one image-wide noise
    field. The field is drawn in NOISE_BLOCK-pixel blocks, block (i, j) from a generator
    seeded with (seed, i, j), so a region's noise depends on where it is, not on the tiling:
    tiles agree where they overlap and equal the untiled run's noise. CPU, float32."""
    b, c, h, w = shape
    y0, x0, n = origin[0], origin[1], NOISE_BLOCK
    out = torch.empty(shape)
    for by in range(y0 // n, (y0 + h - 1) // n + 1):
        for bx in range(x0 // n, (x0 + w - 1) // n + 1):
            gen = torch.Generator().manual_seed(_block_seed(seed, by, bx))
            block = torch.randn(b, c, n, n, generator=gen)
            ys, ye = max(y0, by * n), min(y0 + h, (by + 1) * n)
            xs, xe = max(x0, bx * n), min(x0 + w, (bx + 1) * n)
            out[..., ys - y0 : ye - y0, xs - x0 : xe - x0] = \
                block[..., ys - by * n : ye - by * n, xs - bx * n : xe - bx * n]
    return out
