"""The configuration schema: the sections as dataclasses, their choices and their checks.

Constructors that take a section (`Degradation`, `PerceptualLoss`) check it with the
functions here (`check_choice`, `check_data`) instead of re-implementing the checks, and
import the choice tuples from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lddpm.errors import UserError

# ----------------------------------------------------------------------------------------------
# The choices (argparse `choices=` and the constructors use these tuples)
# ----------------------------------------------------------------------------------------------
SCHEDULES = ("linear", "cosine")
TARGETS = ("image", "residual")
PREDICTIONS = ("eps", "v", "x0")
# The samplers (lddpm.diffusion.samplers) and the rules that pick the K-step chain's timesteps.
SAMPLERS = ("ddpm", "ddim", "lddpm")
TIMESTEP_RULES = ("uniform", "quadratic")
PERCEPTUAL_BACKBONES = ("vgg19", "mobilenet_v2")
TIME_WEIGHTINGS = ("none", "alphabar")
DEGRADATIONS = ("bicubic", "bsrgan")
DOWNSAMPLE_MODES = ("nearest", "bilinear", "bicubic")  # lddpm.data.degradations.RESIZE_MODES
PRECISIONS = ("auto", "fp32", "bf16")  # lddpm.precision.resolve_precision
BSRGAN_PROBABILITIES = ("blur_prob", "anisotropic_prob", "intermediate_resize_prob", "noise_prob",
                        "gray_noise_prob", "jpeg_prob", "final_jpeg_prob", "sensor_noise_prob",
                        "clean_prob")


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
    chain_steps: int = 4  # K, the length of the few-step chain (was `steps`)
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
    # Share of samples left clean: the plain bicubic LR instead of the random chain, so that a
    # blind model also keeps the clean-LR quality (a downscaled sharp photo is an input too).
    # 0 draws nothing extra: a config without it degrades exactly as before.
    clean_prob: float = 0.0


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
# Checks
# ----------------------------------------------------------------------------------------------
def check_choice(key: str, value: Any, valid: tuple[str, ...]) -> None:
    """UserError "key='x' is not one of: a, b" unless value is one of `valid`."""
    if value not in valid:
        raise UserError(f"{key}={value!r} is not one of: {', '.join(valid)}")


def check_bsrgan(cfg: DegradationConfig) -> None:
    """Probabilities in [0, 1], known non-empty downsample modes, JPEG quality in 1..100."""
    for key in BSRGAN_PROBABILITIES:
        value = getattr(cfg, key)
        if not 0.0 <= value <= 1.0:
            raise UserError(f"data.bsrgan.{key}={value} is not a probability in [0, 1]")
    unknown = [m for m in cfg.downsample_modes if m not in DOWNSAMPLE_MODES]
    if unknown or not cfg.downsample_modes:
        raise UserError(
            f"data.bsrgan.downsample_modes: {unknown or 'empty'}; valid: "
            + ", ".join(DOWNSAMPLE_MODES)
        )
    low, high = cfg.jpeg_quality
    if not 1 <= low <= high <= 100:
        raise UserError(f"data.bsrgan.jpeg_quality={cfg.jpeg_quality} must be within 1..100")


def _check_mode_and_scale(cfg: DataConfig) -> None:
    check_choice("data.degradation", cfg.degradation, DEGRADATIONS)
    if cfg.scale < 1:
        raise UserError(f"data.scale must be >= 1, got {cfg.scale}")


def check_data(cfg: DataConfig) -> None:
    """The data section on its own (what `Degradation` needs): mode, scale, BSRGAN ranges."""
    _check_mode_and_scale(cfg)
    check_bsrgan(cfg.bsrgan)


def validate(cfg: Config) -> None:
    """Checks that cross sections: a clear message rather than a failure deep in a model."""
    choices = {
        "diffusion.schedule": (cfg.diffusion.schedule, SCHEDULES),
        "diffusion.target": (cfg.diffusion.target, TARGETS),
        "diffusion.prediction": (cfg.diffusion.prediction, PREDICTIONS),
        "gan.timestep_rule": (cfg.gan.timestep_rule, TIMESTEP_RULES),
        "loss.backbone": (cfg.loss.backbone, PERCEPTUAL_BACKBONES),
        "loss.time_weighting": (cfg.loss.time_weighting, TIME_WEIGHTINGS),
        "train.precision": (cfg.train.precision, PRECISIONS),
        "train.val_sampler": (cfg.train.val_sampler, SAMPLERS),
    }
    for key, (value, valid) in choices.items():
        check_choice(key, value, valid)
    if cfg.model.glow.enabled and not cfg.model.cvae.enabled:
        raise UserError("the glow part models the CVAE latent: add v3 (e.g. small+v3+glow)")
    if cfg.diffusion.residual_scale <= 0:
        raise UserError(f"diffusion.residual_scale must be > 0, got {cfg.diffusion.residual_scale}")
    if cfg.model.unet.unshuffle < 1:
        raise UserError(f"model.unet.unshuffle must be >= 1, got {cfg.model.unet.unshuffle}")
    _check_mode_and_scale(cfg.data)
    if not 0.0 <= cfg.data.reference_prob <= 1.0:
        raise UserError(f"data.reference_prob must be in [0, 1], got {cfg.data.reference_prob}")
    if not 1 <= cfg.gan.chain_steps <= cfg.diffusion.timesteps:
        raise UserError(f"gan.chain_steps must be in 1..{cfg.diffusion.timesteps}")
    _validate_validation(cfg)
    _validate_crop(cfg)
    for site in cfg.model.encoder.sites:
        if site != "mid" and not (site.startswith("up") and site[2:].isdigit()):
            raise UserError(f"model.encoder.sites: '{site}' is not 'mid' or 'upN'")


def hr_size_multiple(model: ModelConfig) -> int:
    """HR sizes a network of this config takes as they are: the UNet's downsampling
    (unshuffle x 2^(levels-1)), times 2^glow.levels with the Glow prior, whose every level
    squeezes the latent (at the UNet bottleneck) by 2x2. LDDPMNet.size_multiple reads this."""
    m = model.unet.unshuffle * 2 ** (len(model.unet.channel_mults) - 1)
    if model.glow.enabled:
        m *= 2 ** model.glow.levels
    return m


def _validate_crop(cfg: Config) -> None:
    """The training crop must be one the network takes as it is (training does not pad)."""
    m = hr_size_multiple(cfg.model)
    if cfg.data.crop % m == 0:
        return
    hint = ""
    if cfg.model.glow.enabled:
        bottleneck = m // 2 ** cfg.model.glow.levels
        fits = max(0, (cfg.data.crop // bottleneck).bit_length() - 1)
        hint = (f": the Glow prior squeezes the latent (HR/{bottleneck}) {cfg.model.glow.levels} "
                f"times; use data.crop={-(-cfg.data.crop // m) * m} or model.glow.levels<={fits}")
    raise UserError(f"data.crop={cfg.data.crop} is not a multiple of {m}, the HR size multiple "
                    f"of this network{hint}")


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
