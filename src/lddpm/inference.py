"""upscale(): LR images of any size -> SR images, with any sampler and step count.

    up = Upscaler.from_checkpoint("runs/x")            # EMA weights by default
    sr = up.upscale(lr, sampler="ddim", steps=20, seed=0, num_samples=2)
    # lr: (B,3,h,w) float [0,1]  ->  sr: (num_samples, B, 3, h*s, w*s) float [0,1]

    up = Upscaler.from_pretrained()                      # the shipped model, PIL in and out
    out = up(Image.open("photo.png"), steps=4, seed=0)  # keeps alpha, greyscale, ICC, EXIF
    up.save_pretrained("my-model")                       # loadable by from_pretrained("my-model")

Sizes that the network cannot take as they are (HR not a multiple of `size_multiple`) are
reflect-padded on the LR side and cropped back. Large inputs are processed in overlapping
tiles (`tile`, in LR pixels; by default bounded by the self-attention cost and the training
crop, see `auto_tile`) blended with linear ramps across each overlap, written into one
output tensor tile by tile, so memory and the quadratic cost of self-attention stay bounded.
Each sample s of a call uses the generator seeded with `seed + s`: the same seed gives the
same image, and sample s of a run does not depend on how many samples were asked for. The
starting noise x_T is one image-wide field (`anchored_noise`): a tile sees the same noise
as the untiled run at the same pixels, so neighbouring tiles agree where they overlap.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lddpm import checkpoint as ckpt
from lddpm.config import Config
from lddpm.data.imageio import Photo, photo_from_pil, photo_to_pil
from lddpm.data.resize import imresize
from lddpm.diffusion.consistency import CONSISTENCY, project_to_lr
from lddpm.diffusion.denoiser import Denoiser, Parameterisation
from lddpm.diffusion.samplers import (
    SamplerSpec,
    model_evaluations,
    sample,
    sampler_spec,
    trained_chain,
)
from lddpm.diffusion.schedule import Schedule
from lddpm.errors import UserError
from lddpm.models.build import build_network
from lddpm.models.lddpm import LDDPMNet
from lddpm.precision import resolve_device, resolve_precision

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

    # ------------------------------------------------------------------ samplers
    def spec(self, sampler: str, steps: int | None, eta: float = 0.0) -> SamplerSpec:
        """Checks the sampler choice against what this checkpoint was trained for
        (`lddpm.diffusion.samplers.set_timesteps`) and fills in its step count."""
        return sampler_spec(sampler, steps, self.sched.timesteps, trained_chain(self.cfg.gan), eta)

    def model_evaluations(self, sampler: str, steps: int | None = None) -> int:
        return model_evaluations(self.sched, self.spec(sampler, steps))

    def tiles(self, h: int, w: int, tile: int | None = None, overlap: int | None = None):
        """The LR tiling of an (h, w) input: (tile, overlap, row starts, column starts).
        tile None = `auto_tile()`; 0 (or a tile >= the image) = one tile, the whole image.
        overlap None = min(8, tile // 4)."""
        tile = self.auto_tile() if tile is None else tile
        if tile == 0 or max(h, w) <= tile:
            return max(h, w), 0, [0], [0]
        overlap = min(8, tile // 4) if overlap is None else overlap
        if not 0 <= overlap < tile:
            raise UserError(f"tile overlap must be in 0..{tile - 1} (below the tile side {tile}), got {overlap}")
        step = tile - overlap
        return tile, overlap, _starts(h, tile, step), _starts(w, tile, step)

    def count_evaluations(self, h: int, w: int, sampler: str | None = None, steps: int | None = None,
                          tile: int | None = None, overlap: int | None = None,
                          num_samples: int = 1) -> int:
        """Network evaluations that `upscale` of one (h, w) LR image runs (what its
        `progress` callback counts): samples x tiles x sampler steps."""
        sampler, steps, _ = self.resolve(sampler, steps, None)
        _, _, ys, xs = self.tiles(h, w, tile, overlap)
        return num_samples * len(ys) * len(xs) * self.model_evaluations(sampler, steps)

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
    ) -> torch.Tensor:
        """(B,3,h,w) [0,1] -> (num_samples,B,3,h*s,w*s) [0,1], on the CPU.

        sampler/steps/consistency: None = this model's defaults (`self.defaults`).
        tile: LR tile side; None = `auto_tile()`, 0 = the whole image at once.
        tile_overlap: LR pixels shared by neighbouring tiles (None = min(8, tile // 4)).
        progress: called with 1 after every network evaluation (`count_evaluations` in all).
        consistency: "none", "end" or "step" (lddpm.diffusion.consistency).
        """
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise UserError(f"expected LR images (B,3,h,w), got {tuple(lr.shape)}")
        sampler, steps, consistency = self.resolve(sampler, steps, consistency)
        spec = self.spec(sampler, steps, eta)
        if references and self.net.encoder is None:
            raise UserError("--reference needs a checkpoint with the LR encoder (preset part v2 or v3)")
        tiling = self.tiles(*lr.shape[-2:], tile, tile_overlap)
        lr = lr.to(self.device, torch.float32) * 2 - 1
        refs = [r.to(self.device, torch.float32) * 2 - 1 for r in references or []]
        b, _, h, w = lr.shape
        out = torch.zeros(num_samples, b, 3, h * self.scale, w * self.scale)  # the only full-size buffer
        for s in range(num_samples):
            gen = torch.Generator(device="cpu").manual_seed(seed + s)
            run = partial(self._sample_padded, spec=spec, gen=gen, refs=refs, progress=progress,
                          consistency=consistency, seed=seed + s)
            _tiled(run, lr, tiling, self.scale, out[s])
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
        keeps them. kwargs: those of `upscale` (steps=, seed=, sampler=, tile=, ...)."""
        single = not isinstance(images, (list, tuple))
        outs = []
        for image in [images] if single else images:
            photo = photo_from_pil(image)
            photo.grey = photo.grey and not color
            outs.append(photo_to_pil(self.upscale_photo(photo, outscale, **kwargs)[0]))
        return outs[0] if single else outs

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

    def _sample_padded(self, lr, origin, spec, gen, refs, progress, consistency, seed) -> torch.Tensor:
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
        latent_shape = self.net.latent_shape(shape)
        noise = None if latent_shape is None else torch.randn(latent_shape, generator=gen).to(self.device)
        project = partial(project_to_lr, lr=lr, scale=s)
        denoise = Denoiser(self.net, cond, self.param, noise, self.autocast,
                           projection=project if consistency == "step" else None)
        x_T = anchored_noise(shape, (origin[0] * s, origin[1] * s), seed).to(self.device)
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


def final_size(h: int, w: int, outscale: float) -> tuple[int, int]:
    """HR size of an (h, w) input at `outscale` x (rounded, at least 1 pixel)."""
    if not outscale > 0:
        raise UserError(f"--outscale must be > 0, got {outscale}")
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


def _tiled(run, lr: torch.Tensor, tiling, scale: int, out: torch.Tensor) -> torch.Tensor:
    """Runs run(lr_tile, origin) -> HR tile on the LR tiles of `tiling` (`Upscaler.tiles`)
    and blends them into `out` (B,3,H*s,W*s, CPU), which it overwrites. Each tile is
    weighted by linear ramps across its overlaps, normalised so that every pixel's weights
    sum to 1: a pixel outside every overlap band is exactly its one tile's value, and tiles
    of one flat colour blend to that colour."""
    tile, overlap, ys, xs = tiling
    h, w = out.shape[-2:]
    wys = _axis_weights(h, [y * scale for y in ys], tile * scale, overlap * scale)
    wxs = _axis_weights(w, [x * scale for x in xs], tile * scale, overlap * scale)
    out.zero_()
    for y, wy in zip(ys, wys):
        for x, wx in zip(xs, wxs):
            piece = run(lr[..., y : y + tile, x : x + tile], (y, x)).float().cpu()
            ty, tx = y * scale, x * scale
            out[..., ty : ty + piece.shape[-2], tx : tx + piece.shape[-1]] += piece * (wy[:, None] * wx)
    return out


def _starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, step))
    return starts + [n - tile]


def _axis_weights(n: int, starts: list[int], length: int, width: int) -> list[torch.Tensor]:
    """Blend weights along one axis of n pixels for tiles at `starts` of `length` pixels:
    each a ramp rising linearly over `width` pixels from both ends (never 0), divided by the
    sum of all ramps at that pixel. The 2-D weight of a tile is the outer product of its
    two axes' weights; on a grid of tiles those sum to 1 at every pixel."""
    ramps, total = [], torch.zeros(n)
    for start in starts:
        span = min(length, n - start)
        i = torch.arange(span, dtype=torch.float32)
        ramps.append((torch.minimum(i + 1, span - i) / max(width, 1)).clamp(max=1.0))
        total[start : start + span] += ramps[-1]
    return [r / total[s : s + r.numel()] for r, s in zip(ramps, starts)]
