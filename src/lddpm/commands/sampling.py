"""The sampling options of every command that samples: one argument group, one loader, one plan.

    sampling.add_arguments(parser)                  # upscale, evaluate: every option
    sampling.add_arguments(parser, samples=False)   # serve: the page sends seed and samples
    sampling.add_arguments(parser, run=False, samples=False, model=False,
                           purpose="the export's default")   # export: what it stores
    up = sampling.load(args, checkpoint)            # --device, --precision, --raw-weights
    plan = up.plan(sampling.choices(args))          # lddpm.diffusion.plan: resolved and checked

The plan is built by `Upscaler.plan` (the model's defaults + these choices) and checked
there; a bad choice names itself (`UserError.option`), and `lddpm.cli` puts the flag in
front of the library's message (`--steps 3: ...`).
"""

from __future__ import annotations

import argparse

from lddpm.diffusion.consistency import CONSISTENCY
from lddpm.diffusion.samplers import SAMPLERS
from lddpm.precision import DEVICES, PRECISIONS


def add_arguments(parser: argparse.ArgumentParser, *, run: bool = True, samples: bool = True,
                  model: bool = True, purpose: str = "default") -> None:
    """The "sampling" argument group. Always --sampler, --steps, --consistency,
    --self-ensemble; `run`:
    --eta, --tile, --tile-overlap; `samples`: --seed, --num-samples; `model`: --device,
    --precision, --raw-weights. `purpose` starts the help of the first three."""
    group = parser.add_argument_group("sampling")
    group.add_argument("--sampler", choices=list(SAMPLERS),
                       help=f"{purpose}: the model's own (the shipped model: its measured best)")
    group.add_argument("--steps", type=int,
                       help=f"sampling steps ({purpose}: the model's; ddim 50; ddpm all T; "
                            "lddpm 1..K of its trained K-step chain)")
    group.add_argument("--consistency", choices=list(CONSISTENCY),
                       help="make the output's bicubic downscale equal the input: at every "
                            f"step, at the end, or none ({purpose}: the model's)")
    group.add_argument("--self-ensemble", action=argparse.BooleanOptionalAction,
                       help="the mean over the input's 8 rotations/flips (EDSR's '+'): "
                            f"8x the time, a little more PSNR ({purpose}: the model's)")
    if run:
        group.add_argument("--eta", type=float, default=0.0,
                           help="DDIM eta in [0, 1] (0 = deterministic)")
        group.add_argument("--tile", type=int,
                           help="LR tile side for large inputs (default: automatic, see README; "
                                "0 = whole image)")
        group.add_argument("--tile-overlap", type=int,
                           help="LR pixels shared by neighbouring tiles, blended linearly "
                                "(default: min(8, tile/4))")
    if samples:
        group.add_argument("--seed", type=int, default=0,
                           help="sample k of an image uses seed + k (default 0)")
        group.add_argument("--num-samples", type=int, default=1, help="samples per image (one-to-many)")
    if model:
        group.add_argument("--device", default="cpu", help=f"{' | '.join(DEVICES)} (default: cpu)")
        group.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                           help="bf16 autocast where the CPU/GPU does it fast (auto), or fp32")
        group.add_argument("--raw-weights", action="store_true",
                           help="use the online weights, not the EMA")


def choices(args: argparse.Namespace):
    """The SamplingChoices the options of `add_arguments` give (absent ones: the defaults)."""
    from lddpm.diffusion.plan import SamplingChoices

    return SamplingChoices(
        sampler=args.sampler, steps=args.steps, consistency=args.consistency,
        eta=getattr(args, "eta", 0.0), tile=getattr(args, "tile", None),
        tile_overlap=getattr(args, "tile_overlap", None),
        num_samples=getattr(args, "num_samples", 1), self_ensemble=args.self_ensemble,
    )


def load(args: argparse.Namespace, checkpoint: str | None):
    """The Upscaler of `checkpoint` (a shipped name, a directory; None = the default model)
    on --device, in --precision, with the EMA weights unless --raw-weights."""
    from lddpm.inference import Upscaler

    return Upscaler.from_pretrained(checkpoint, device=args.device, precision=args.precision,
                                    use_ema=not args.raw_weights)


def flag(option: str) -> str:
    """A choice's name ("tile_overlap") -> its command-line flag ("--tile-overlap")."""
    return "--" + option.replace("_", "-")


def with_flag(message: str, option: str | None, args: argparse.Namespace | None) -> str:
    """The library's `message` about `option`, with the flag (and the value given) in front."""
    if option is None:
        return message
    value = getattr(args, option, None) if args is not None else None
    shown = f" {value}" if isinstance(value, (int, float, str)) and not isinstance(value, bool) else ""
    return f"{flag(option)}{shown}: {message}"
