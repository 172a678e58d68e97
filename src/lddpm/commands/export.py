"""`lddpm export CKPT OUT`: an inference-only directory (EMA weights in bf16/fp16, no
optimiser, no CVAE posterior) that `Upscaler.from_pretrained(OUT)` and `--checkpoint OUT` load.

    lddpm export runs/default src/lddpm/pretrained/lddpm-x4 --sampler ddim --steps 4 --consistency end
    lddpm export runs/mixed out/blend --interpolate runs/bsrgan --interpolate-weight 0.25
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lddpm.commands import sampling
from lddpm.errors import UserError, display_path

DTYPES = ("bf16", "fp16", "fp32")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint or run directory (its newest checkpoint)")
    parser.add_argument("output", help="directory to write")
    parser.add_argument("--dtype", default="bf16", choices=DTYPES, help="weight storage type")
    parser.add_argument("--description", help="what the model is for, shown by `lddpm models`")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--interpolate", metavar="CKPT",
                        help="network interpolation: export (1 - W) * checkpoint + W * CKPT, two "
                             "fine-tunings of the same network (a checkpoint, run, export or "
                             "shipped model name)")
    parser.add_argument("--interpolate-weight", metavar="W", type=float,
                        help="W of --interpolate, in [0, 1] (default 0.5)")
    # the sampling defaults the export stores (`Upscaler.defaults` of whoever loads it)
    sampling.add_arguments(parser, run=False, samples=False, model=False,
                           purpose="the export's default")


def _check_defaults(source, defaults: dict) -> None:
    """The sampling defaults must be valid for the checkpoint (e.g. no lddpm sampler without
    the gan part, steps within 1..T): the plan that loading the export will make with no
    choices is built now, from the same network and `defaults`, before any file is written
    (a bad one is refused with one line, naming its flag)."""
    from lddpm.inference import Upscaler

    Upscaler(source.net, source.cfg, source.device, defaults).plan()


def run(args: argparse.Namespace) -> int:
    import torch

    from lddpm import checkpoint as ckpt
    from lddpm.diffusion.plan import DEFAULT_KEYS
    from lddpm.inference import Upscaler
    from lddpm.pretrained import resolve_model

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise UserError(f"{display_path(out)} exists; pass --overwrite to replace it")
    defaults = {k: getattr(args, k) for k in DEFAULT_KEYS if getattr(args, k) is not None}
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if args.interpolate_weight is not None and not args.interpolate:
        raise UserError("--interpolate-weight needs --interpolate CKPT (the other network)")
    _check_defaults(Upscaler.from_checkpoint(args.checkpoint), defaults)  # before writing
    interpolate = None
    if args.interpolate:
        weight = 0.5 if args.interpolate_weight is None else args.interpolate_weight
        interpolate = (resolve_model(args.interpolate), weight)
    ckpt.export_checkpoint(resolve_model(args.checkpoint), out, dtype, defaults or None,
                           args.description, interpolate=interpolate)
    check = Upscaler.from_checkpoint(out)  # what users will load: it must load
    size = (out / ckpt.MODEL_FILE).stat().st_size / 2**20
    print(f"exported {display_path(out)} ({size:.1f} MiB, {args.dtype}; defaults {check.defaults})")
    return 0
