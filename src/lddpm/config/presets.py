"""Named presets that compose with `+`: one size part plus method parts.

A preset name is one size part plus any number of method parts, e.g. `small+v3+glow+gan`.
A bare size means `+v1`. Unknown parts are errors that list the valid ones.
"""

from __future__ import annotations

import typing

from lddpm.config.schema import Config, UNetConfig, validate
from lddpm.errors import UserError

# The x4 residual HR - bicubic(LR) has a std of 0.079 in [-1, 1] units on the training
# photos (`python benchmarks/recipe.py --measure-only`); scaling it by this factor gives it
# about the spread of an image in [-1, 1] (std 0.5).
RESIDUAL_SCALE = 8.0
# The preset of the shipped model (src/lddpm/pretrained/).
DEFAULT_PRESET = "photo+res"


def _size_paper(c: Config) -> None:
    c.model.unet = UNetConfig()  # Table 1
    c.train.lr, c.train.ema_decay, c.data.batch_size, c.data.crop = 3e-5, 0.9999, 16, 256


def _size_small(c: Config) -> None:
    c.model.unet = UNetConfig(
        inner_channels=32, channel_mults=(1, 2, 4, 4), res_blocks=2, attn_levels=(3,),
        dropout=0.1, groups=16, heads=4,
    )
    c.model.encoder.channels, c.model.cvae.hidden, c.model.glow.hidden = 64, 64, 64
    c.gan.d_channels = 32
    c.train.lr, c.train.ema_decay, c.train.warmup_steps = 2e-4, 0.999, 200
    c.train.checkpoint_every, c.train.val_every = 500, 500
    c.data.batch_size, c.data.crop = 16, 64


def _size_tiny(c: Config) -> None:
    c.model.unet = UNetConfig(
        inner_channels=16, channel_mults=(1, 2, 2), res_blocks=1, attn_levels=(2,),
        dropout=0.0, groups=8, heads=2,
    )
    c.model.encoder.channels, c.model.encoder.blocks, c.model.encoder.heads = 16, 1, 2
    c.model.cvae.hidden, c.model.cvae.latent_channels = 16, 4
    c.model.glow.hidden, c.model.glow.levels = 16, 2
    c.gan.d_channels = 16
    c.diffusion.timesteps = 1000
    c.train.lr, c.train.ema_decay, c.train.warmup_steps = 1e-3, 0.99, 10
    c.train.checkpoint_every, c.train.val_every, c.train.log_every = 50, 50, 5
    c.train.val_images, c.train.val_steps = 2, 10
    c.data.batch_size, c.data.crop = 4, 32


def _size_photo(c: Config) -> None:
    """The shipped x4 model's network: a UNet behind a 4x pixel-unshuffle, so it runs at the
    LR resolution (as SR networks of the EDSR/ESRGAN family do) and trains on 128 px crops
    faster than `small` on 64 px ones (docs/recipe.md measures it against `small`)."""
    c.model.unet = UNetConfig(
        inner_channels=64, channel_mults=(1, 1, 2, 2), res_blocks=2, attn_levels=(3,),
        dropout=0.0, groups=16, heads=4, unshuffle=4,
    )
    c.model.encoder.channels, c.model.cvae.hidden, c.model.glow.hidden = 64, 64, 64
    c.gan.d_channels = 32
    c.train.lr, c.train.ema_decay, c.train.warmup_steps = 2e-4, 0.999, 200
    c.train.checkpoint_every, c.train.val_every = 250, 1000
    c.data.batch_size, c.data.crop = 16, 128
    c.train.weight_decay = 0.0  # the recipe docs/recipe.md measured (and runs/default trains)
    # The CVAE latent sits at the bottleneck, HR/32 here: two Glow squeezes fit a 128 px crop
    # (4x4 -> 1x1), the paper's three would need 256 px crops (4x the pixels per step).
    c.model.glow.levels = 2


def _part_res(c: Config) -> None:
    """The measured recipe (docs/recipe.md): the residual over bicubic as x0, scaled to about
    an image's spread, and v-prediction."""
    c.diffusion.target = "residual"
    c.diffusion.residual_scale = RESIDUAL_SCALE
    c.diffusion.prediction = "v"


def _part_detail(c: Config) -> None:
    """The paper model's recipe on top of `res` (docs/paper_model.md): what makes Eq. 13-17
    act on a v-prediction residual model that samples in K = 4 steps.

    - Perceptual terms unweighted in t: a v model's x0-hat is bounded at every t (its
      derivative in v is sqrt(1 - alphabar) <= 1), so the alphabar weighting, made for eps
      models, would only switch them off (4e-5 at t = T-1).
    - The chain on the quadratic rule (tau = 61, 249, 561, 999 for K = 4): on the linear
      schedule the uniform rule's x_749 carries x0 at amplitude 0.06 under unit noise, so the
      discriminator would judge noise at three of its four steps.
    - KL at the ELBO's balance: L_DDPM is a mean over 3 H W values, the KL a mean over
      Cz H W / f^2 latent values, so weight Cz / (3 f^2) makes them the ELBO's sum ratio
      (weight 1 would be a beta-VAE with beta = 3 f^2 / Cz, 768 for `photo`).
    """
    if not c.diffusion.target == "residual":
        raise UserError("the detail part tunes the res recipe: put res before it (e.g. photo+res+lddpm+detail)")
    c.loss.time_weighting = "none"
    c.gan.timestep_rule = "quadratic"
    f = c.model.unet.unshuffle * 2 ** (len(c.model.unet.channel_mults) - 1)
    c.loss.kl = c.model.cvae.latent_channels / (3 * f * f)


def _part_v1(c: Config) -> None:
    """LR stacked on the noisy image only: the SR3 baseline."""
    c.model.encoder.enabled = False
    c.model.cvae.enabled = False


def _part_v2(c: Config) -> None:
    c.model.encoder.enabled = True


def _part_v3(c: Config) -> None:
    c.model.encoder.enabled = True
    c.model.cvae.enabled = True


def _part_glow(c: Config) -> None:
    c.model.glow.enabled = True


def _part_gan(c: Config) -> None:
    c.gan.enabled = True


def _part_cl(c: Config) -> None:
    c.loss.content = 1.0


def _part_sl(c: Config) -> None:
    c.loss.style = 1.0


SIZES: dict[str, tuple[typing.Callable[[Config], None], str]] = {
    "paper": (_size_paper, "Table 1 UNet: 64 channels, mults (1,2,4,8,8), 2 blocks, dropout 0.2"),
    "small": (_size_small, "CPU-sized UNet (32 ch, mults 1,2,4,4) that the benchmarks train"),
    "photo": (_size_photo, "the shipped x4 model's size: 64 ch, mults 1,1,2,2 behind a 4x pixel-unshuffle"),
    "tiny": (_size_tiny, "seconds-per-step UNet (16 ch, mults 1,2,2) for tests and smoke runs"),
}

PARTS: dict[str, tuple[typing.Callable[[Config], None], str]] = {
    "res": (_part_res, "the measured recipe: scaled residual target, v-prediction (docs/recipe.md)"),
    "v1": (_part_v1, "LR stacked on the noisy input (SR3 baseline, Table 6 V1)"),
    "v2": (_part_v2, "+ LR encoder with adaptive cross-attention (Eq. 8, Table 6 V2)"),
    "v3": (_part_v3, "+ conditional VAE branch (Eq. 9-11, Table 6 V3)"),
    "glow": (_part_glow, "Glow prior on the CVAE latent (Eq. 12); needs v3"),
    "gan": (_part_gan, "DDGAN-style adversarial K-step denoising (Eq. 13-15)"),
    "detail": (_part_detail, "the paper model's recipe on res: unweighted perceptual terms, quadratic chain, ELBO-balanced KL"),
    "cl": (_part_cl, "VGG-19 content loss + L1 (Eq. 16)"),
    "sl": (_part_sl, "VGG-19 style loss, AdaIN statistics (Eq. 17)"),
}

ALIASES: dict[str, tuple[str, str]] = {
    "lddpm": ("v3+glow+gan+cl+sl", "the full model: v3 + glow + gan + content + style losses"),
}


def _expand(name: str) -> tuple[str, list[str]]:
    tokens = [t.strip() for t in name.split("+") if t.strip()]
    if not tokens:
        raise UserError("empty preset name; valid sizes: " + ", ".join(SIZES))
    size, rest = tokens[0], tokens[1:]
    if size not in SIZES:
        raise UserError(
            f"preset '{name}' must start with a size ({', '.join(SIZES)}), not '{size}'"
        )
    parts: list[str] = []
    for tok in rest:
        parts.extend(ALIASES[tok][0].split("+") if tok in ALIASES else [tok])
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        valid = ", ".join(list(PARTS) + list(ALIASES))
        raise UserError(f"unknown preset part '{unknown[0]}'; valid parts: {valid}")
    return size, parts or ["v1"]


def build_preset(name: str) -> Config:
    """`small+v3+glow` -> Config. The size first, then the parts in order."""
    size, parts = _expand(name)
    cfg = Config()
    SIZES[size][0](cfg)
    for part in parts:
        PARTS[part][0](cfg)
    cfg.preset = "+".join([size] + parts)
    validate(cfg)
    return cfg


def describe_presets() -> list[tuple[str, str]]:
    """(name, description) for `lddpm presets`."""
    rows = [(n, d) for n, (_, d) in SIZES.items()]
    rows += [(f"+{n}", d) for n, (_, d) in PARTS.items()]
    rows += [(f"+{n}", f"alias for +{exp}: {d}") for n, (exp, d) in ALIASES.items()]
    return rows
