"""Configuration: dataclasses, named presets that compose with `+`, strict overrides.

A preset name is one size part plus any number of method parts, e.g. `small+v3+glow+gan`.
A bare size means `+v1`. Unknown parts and unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lddpm.errors import UserError

PREDICTIONS = ("eps", "v", "x0")
# The samplers (lddpm.diffusion.samplers) and the rules that pick the K-step chain's timesteps.
SAMPLERS = ("ddpm", "ddim", "lddpm")
TIMESTEP_RULES = ("uniform", "quadratic")
# x4 residual HR - bicubic(LR) has a std of about RESIDUAL_STD_X4 in [-1, 1] units on the
# training photos (`python benchmarks/recipe.py --measure-only`); scaling it by this factor gives
# it about the spread of an image in [-1, 1] (std 0.5).
RESIDUAL_SCALE = 8.0
# The preset of the shipped model (src/lddpm/pretrained/).
DEFAULT_PRESET = "photo+res"

# ----------------------------------------------------------------------------------------------
# The sections
# ----------------------------------------------------------------------------------------------
@dataclass
class UNetConfig:
    """The conditional UNet eps_theta (Table 1). Input = concat(x_t, bicubic-up(LR))."""

    inner_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 4, 8, 8)
    res_blocks: int = 2
    # Levels (0 = full resolution, len(channel_mults)-1 = lowest) that get self-attention.
    # Levels rather than pixel sizes, because lddpm works on any image size.
    attn_levels: tuple[int, ...] = (3, 4)
    dropout: float = 0.2
    groups: int = 32
    heads: int = 4
    # Pixel-unshuffle factor at the input (Hoogeboom et al., "simple diffusion"): the UNet
    # runs at H/f x W/f on 6 f^2 channels and pixel-shuffles its output back, so a factor
    # of 2 costs about a quarter of the compute per HR pixel. 1 = the paper's UNet.
    unshuffle: int = 1


@dataclass
class EncoderConfig:
    """LR encoder tau_theta and adaptive multi-head cross-attention (Eq. 8, the `v2` part)."""

    enabled: bool = False
    channels: int = 64
    blocks: int = 2
    heads: int = 4
    # Where cross-attention blocks sit: "mid" (bottleneck) and/or "upN" (decoder level N
    # counted from the lowest, so "up0" is the lowest decoder level).
    sites: tuple[str, ...] = ("mid", "up0")
    gate_init: float = 1e-6


@dataclass
class CVAEConfig:
    """Conditional VAE branch fused into the UNet encoder output (Eq. 9-11, the `v3` part)."""

    enabled: bool = False
    latent_channels: int = 4
    hidden: int = 64
    gate_init: float = 1e-6


@dataclass
class GlowConfig:
    """Glow prior on the CVAE latent (Eq. 12, the `glow` part)."""

    enabled: bool = False
    levels: int = 3
    hidden: int = 64


@dataclass
class ModelConfig:
    unet: UNetConfig = field(default_factory=UNetConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    cvae: CVAEConfig = field(default_factory=CVAEConfig)
    glow: GlowConfig = field(default_factory=GlowConfig)


@dataclass
class DiffusionConfig:
    timesteps: int = 1000
    schedule: str = "linear"  # linear | cosine
    beta_start: float = 1e-4
    beta_end: float = 0.02
    # What x0 is: the HR image, or the residual HR - bicubic-up(LR) (as SRDiff does).
    target: str = "image"  # image | residual
    # The residual is multiplied by this before diffusion (and divided back after): a raw
    # x4 residual has a standard deviation of about 0.06 against unit noise, so the forward
    # process buries it at almost every t. 1.0 = unscaled (checkpoints written before the
    # option existed). `benchmarks/recipe.py` measures the residual's std and the choice.
    residual_scale: float = 1.0
    # What the network outputs: eps (the paper's Eq. 7), v = sqrt(ab) eps - sqrt(1-ab) x0
    # (Salimans & Ho), whose x0 estimate stays bounded at large t, or x0 itself.
    # lddpm.diffusion.denoiser.Parameterisation is the one place that interprets it.
    prediction: str = "eps"  # eps | v | x0


@dataclass
class GANConfig:
    """DDGAN-style adversarial denoising over a K-step chain (Eq. 13-15, the `gan` part)."""

    enabled: bool = False
    steps: int = 4  # K
    timestep_rule: str = "uniform"  # uniform | quadratic: how tau_1..tau_K are picked
    d_channels: int = 32
    d_lr: float = 1e-4
    r1_weight: float = 0.05
    r1_every: int = 4  # lazy R1 regularisation period


@dataclass
class LossConfig:
    """Weights of Eq. 18's terms and the perceptual backbone of Eq. 16-17."""

    ddpm: float = 1.0
    kl: float = 1.0  # on the KL per latent dimension (docs/loss_weights.md)
    adv: float = 1.0  # Eq. 18 weights every term 1
    content: float = 0.0
    style: float = 0.0
    backbone: str = "vgg19"  # vgg19 | mobilenet_v2
    vgg_weights: str | None = None
    mobilenet_weights: str | None = None
    # Weight of the perceptual terms at timestep t: alphabar_t (default; bounds their gradient
    # at large t, where an eps model's x0-hat is far from any image), or none (1 at every t).
    time_weighting: str = "alphabar"  # alphabar | none


@dataclass
class DegradationConfig:
    """BSRGAN random degradation probabilities and ranges (Zhang et al.).

    Ops (each applied with its probability): blur, blur again, an intermediate resize by a
    random factor in [1, 2s], the resize to exactly H/s x W/s, Gaussian noise, JPEG, camera
    sensor noise; shuffled (the intermediate resize kept before the final one), then a
    final JPEG. See lddpm.data.pipeline.
    """

    blur_prob: float = 0.85
    blur_sigma: tuple[float, float] = (0.1, 2.8)
    anisotropic_prob: float = 0.5  # of a blur being anisotropic (two sigmas and an angle)
    blur_kernel_max: int = 21  # the kernel covers +-3 sigma, up to this (odd) size
    intermediate_resize_prob: float = 0.75
    downsample_modes: tuple[str, ...] = ("nearest", "bilinear", "bicubic")
    noise_prob: float = 1.0
    noise_level: tuple[float, float] = (1.0, 25.0)  # 8-bit units
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 0.9
    jpeg_quality: tuple[int, int] = (30, 95)
    final_jpeg_prob: float = 1.0
    sensor_noise_prob: float = 0.25
    sensor_shot_noise: tuple[float, float] = (1e-4, 1e-2)  # variance per unit signal
    sensor_read_noise: tuple[float, float] = (1e-6, 1e-3)  # variance
    shuffle: bool = True


@dataclass
class DataConfig:
    scale: int = 4
    crop: int = 64  # HR crop size; rounded down to a multiple of the scale
    degradation: str = "bicubic"  # bicubic | bsrgan
    bsrgan: DegradationConfig = field(default_factory=DegradationConfig)
    batch_size: int = 16
    workers: int = 0
    max_pixels: int = 400_000_000  # images larger than this are refused before decoding
    augment: bool = True
    # Share of training batches (models with the LR encoder, v2/v3) whose cross-attention
    # also sees a reference: the LR of another crop of the same photo (Fig. 11's fusion),
    # so that `--reference` at sampling time runs a trained path. 0 = never.
    reference_prob: float = 0.25


@dataclass
class TrainConfig:
    lr: float = 3e-5
    weight_decay: float = 0.01  # AdamW (Table 1; no value given): PyTorch's default
    warmup_steps: int = 500
    max_steps: int = 100_000
    ema_decay: float = 0.9999
    grad_clip: float = 1.0
    precision: str = "auto"  # auto | fp32 | bf16
    seed: int = 0
    checkpoint_every: int = 1000
    val_every: int = 1000
    log_every: int = 20
    val_images: int = 4
    val_sampler: str = "ddim"
    val_steps: int = 20


@dataclass
class Config:
    preset: str = "paper+v1"
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------
# Presets: one size part + method parts
# ----------------------------------------------------------------------------------------------
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


def _part_res(c: Config) -> None:
    """The measured recipe (docs/recipe.md): the residual over bicubic as x0, scaled to about
    an image's spread, and v-prediction."""
    c.diffusion.target = "residual"
    c.diffusion.residual_scale = RESIDUAL_SCALE
    c.diffusion.prediction = "v"


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


def validate(cfg: Config) -> None:
    """Checks that cross sections: a clear message rather than a failure deep in a model."""
    choices = {
        "diffusion.schedule": (cfg.diffusion.schedule, ("linear", "cosine")),
        "diffusion.target": (cfg.diffusion.target, ("image", "residual")),
        "diffusion.prediction": (cfg.diffusion.prediction, PREDICTIONS),
        "gan.timestep_rule": (cfg.gan.timestep_rule, TIMESTEP_RULES),
        "loss.backbone": (cfg.loss.backbone, ("vgg19", "mobilenet_v2")),
        "loss.time_weighting": (cfg.loss.time_weighting, ("none", "alphabar")),
        "data.degradation": (cfg.data.degradation, ("bicubic", "bsrgan")),
        "train.precision": (cfg.train.precision, ("auto", "fp32", "bf16")),
        "train.val_sampler": (cfg.train.val_sampler, SAMPLERS),
    }
    for key, (value, valid) in choices.items():
        if value not in valid:
            raise UserError(f"{key}={value!r} is not one of: {', '.join(valid)}")
    if cfg.model.glow.enabled and not cfg.model.cvae.enabled:
        raise UserError("the glow part models the CVAE latent: add v3 (e.g. small+v3+glow)")
    if cfg.diffusion.residual_scale <= 0:
        raise UserError(f"diffusion.residual_scale must be > 0, got {cfg.diffusion.residual_scale}")
    if cfg.model.unet.unshuffle < 1:
        raise UserError(f"model.unet.unshuffle must be >= 1, got {cfg.model.unet.unshuffle}")
    if cfg.data.scale < 1:
        raise UserError(f"data.scale must be >= 1, got {cfg.data.scale}")
    if not 0.0 <= cfg.data.reference_prob <= 1.0:
        raise UserError(f"data.reference_prob must be in [0, 1], got {cfg.data.reference_prob}")
    if not 1 <= cfg.gan.steps <= cfg.diffusion.timesteps:
        raise UserError(f"gan.steps must be in 1..{cfg.diffusion.timesteps}")
    _validate_validation(cfg)
    for site in cfg.model.encoder.sites:
        if site != "mid" and not (site.startswith("up") and site[2:].isdigit()):
            raise UserError(f"model.encoder.sites: '{site}' is not 'mid' or 'upN'")


def _validate_validation(cfg: Config) -> None:
    """The validation sampler must be one this model can run (checked before training)."""
    t = cfg.train
    if t.val_sampler == "lddpm" and not cfg.gan.enabled:
        raise UserError("train.val_sampler=lddpm needs the gan part (the K-step chain); use ddim")
    if t.val_sampler == "ddim" and not 1 <= t.val_steps <= cfg.diffusion.timesteps:
        raise UserError(f"train.val_steps must be in 1..{cfg.diffusion.timesteps}, got {t.val_steps}")


def inert_keys(cfg: Config) -> tuple[str, ...]:
    """Keys that change nothing for this config (a part it lacks): a resumed run may differ
    there, e.g. after a default changed (loss.adv 0.1 -> 1 of a run without gan)."""
    inert = []
    if not cfg.gan.enabled:
        inert.append("loss.adv")
    if not cfg.model.cvae.enabled:
        inert.append("loss.kl")
    if cfg.loss.content == 0 and cfg.loss.style == 0:
        inert += ["loss.time_weighting", "loss.backbone", "loss.vgg_weights", "loss.mobilenet_weights"]
    if not cfg.model.encoder.enabled:
        inert.append("data.reference_prob")
    return tuple(inert)


def describe_presets() -> list[tuple[str, str]]:
    """(name, description) for `lddpm presets`."""
    rows = [(n, d) for n, (_, d) in SIZES.items()]
    rows += [(f"+{n}", d) for n, (_, d) in PARTS.items()]
    rows += [(f"+{n}", f"alias for +{exp}: {d}") for n, (exp, d) in ALIASES.items()]
    return rows


# ----------------------------------------------------------------------------------------------
# Dict / file / --set conversion with strict key checking
# ----------------------------------------------------------------------------------------------
def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{key} must be a mapping, got {value!r}")
        return _from_dict(tp, value, key + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        elem = args[0] if args else Any
        return tuple(_coerce(v, elem, key) for v in value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise UserError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        # YAML 1.1 reads '1e-4' (no dot) as a string: accept numeric strings for floats,
        # else `--set train.lr=1e-4` is refused.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        return str(value)
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise UserError(
            f"unknown config key '{prefix}{unknown[0]}'; valid keys: "
            + ", ".join(prefix + n for n in names)
        )
    obj = cls()
    for k, v in data.items():
        setattr(obj, k, _coerce(v, hints[k], prefix + k))
    return obj


def config_from_dict(data: dict[str, Any]) -> Config:
    cfg = _from_dict(Config, data)
    validate(cfg)
    return cfg


def load_config_file(path: str | Path) -> Config:
    """A YAML or JSON file: either a full config, or `preset: NAME` plus overrides."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping")
    base = build_preset(data["preset"]) if "preset" in data else Config()
    return merge(base, data)


def merge(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Deep-merges a (partial) dict into a config, strictly."""
    merged = _deep_update(cfg.to_dict(), overrides, "")
    return config_from_dict(merged)


def _deep_update(base: dict[str, Any], upd: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = dict(base)
    for k, v in upd.items():
        if k not in base:
            raise UserError(
                f"unknown config key '{prefix}{k}'; valid keys: "
                + ", ".join(prefix + n for n in base)
            )
        if isinstance(base[k], dict) and isinstance(v, dict):
            out[k] = _deep_update(base[k], v, prefix + k + ".")
        else:
            out[k] = v
    return out


def apply_overrides(cfg: Config, assignments: list[str]) -> Config:
    """`--set model.unet.dropout=0.1 --set data.scale=2` (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            raise UserError(f"--set expects key.sub=value, got '{item}'")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = nested
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return merge(cfg, nested)
