"""`lddpm upscale`: super-resolve image files or folders, with the shipped model by default.

    lddpm upscale photo.jpg                 # -> photo_x4.png beside it, shipped model, its defaults
    lddpm upscale photos/ --output out/ --checkpoint runs/x --sampler ddim --steps 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lddpm.diffusion.consistency import CONSISTENCY
from lddpm.diffusion.samplers import SAMPLERS
from lddpm.errors import UserError
from lddpm.precision import PRECISIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    parser.add_argument("--output",
                        help="output folder, or a .png file when there is one input image "
                             "(default: NAME_xS.png beside each input)")
    parser.add_argument("--checkpoint",
                        help="checkpoint, run or export directory, or a shipped model name "
                             "(default: the shipped model, see `lddpm models`)")
    parser.add_argument("--scale", type=int, help="must match the checkpoint's scale (checked)")
    parser.add_argument("--sampler", choices=list(SAMPLERS),
                        help="default: the model's own (the shipped model: its measured best)")
    parser.add_argument("--steps", type=int,
                        help="sampling steps (default: the model's; ddim 50; lddpm: the trained K)")
    parser.add_argument("--consistency", choices=list(CONSISTENCY),
                        help="make the output's bicubic downscale equal the input: at every "
                             "step, at the end, or none (default: the model's)")
    parser.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                        help="bf16 autocast where the CPU/GPU does it fast (auto), or fp32")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta in [0, 1] (0 = deterministic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=int, default=1, help="samples per input (one-to-many)")
    parser.add_argument("--reference", action="append", default=[], metavar="IMG",
                        help="reference image whose tokens join the LR's in cross-attention (v2/v3)")
    parser.add_argument("--tile", type=int,
                        help="LR tile side for large inputs (default: automatic, see README; 0 = whole image)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--raw-weights", action="store_true", help="use the online weights, not the EMA")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _inputs(paths: list[str]) -> list[Path]:
    from lddpm.data.imageio import list_images

    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"input not found: {p}")
        found = list_images(p)
        if p.is_dir() and not found:
            raise UserError(f"no images in folder {p}")
        files += found
    return files


def _targets(
    files: list[Path], output: Path | None, num_samples: int, scale: int
) -> list[list[Path]]:
    """Output paths per input: one per sample (`stem.png` or `stem_s{k}.png` in --output;
    `stem_x4.png` beside the input without --output)."""
    if output is None:
        return [_sample_names(f.with_name(f"{f.stem}_x{scale}.png"), num_samples) for f in files]
    single_file = output.suffix.lower() == ".png"
    if single_file and len(files) > 1:
        raise UserError(f"--output {output} is a file but there are {len(files)} inputs: give a folder")
    stems = [f.stem for f in files]
    dupes = {s for s in stems if stems.count(s) > 1}
    if dupes and not single_file:
        raise UserError(f"several inputs share the name {sorted(dupes)[0]!r}; outputs would collide")
    return [_sample_names(output if single_file else output / f"{f.stem}.png", num_samples)
            for f in files]


def _sample_names(base: Path, num_samples: int) -> list[Path]:
    if num_samples == 1:
        return [base]
    return [base.with_name(f"{base.stem}_s{k}.png") for k in range(num_samples)]


def _check_args(args: argparse.Namespace) -> None:
    if args.num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {args.num_samples}")
    if not 0.0 <= args.eta <= 1.0:
        raise UserError(f"--eta must be in [0, 1], got {args.eta}")
    if args.tile is not None and args.tile != 0 and args.tile < 8:
        raise UserError(f"--tile must be 0 (whole image) or >= 8 LR pixels, got {args.tile}")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lddpm.data.imageio import load_image, save_image, to_tensor
    from lddpm.inference import Upscaler

    from lddpm.errors import display_path
    from lddpm.pretrained import resolve_model

    _check_args(args)
    files = _inputs(args.inputs)
    up = Upscaler.from_checkpoint(resolve_model(args.checkpoint), device=args.device,
                                  use_ema=not args.raw_weights, precision=args.precision)
    if args.scale is not None and args.scale != up.scale:
        raise UserError(f"--scale {args.scale}: this checkpoint was trained for x{up.scale}")
    targets = _targets(files, Path(args.output) if args.output else None, args.num_samples, up.scale)
    existing = [p for group in targets for p in group if p.exists()]
    if existing and not args.overwrite:
        raise UserError(f"{display_path(existing[0])} exists (and {len(existing) - 1} more); "
                        "pass --overwrite to replace")
    refs = [to_tensor(load_image(r))[None] for r in args.reference]
    sampler, steps, consistency = up.resolve(args.sampler, args.steps, args.consistency)
    up.spec(sampler, steps, args.eta)  # fail on a bad sampler/steps before any work
    failures = 0
    bar = tqdm(total=len(files), desc="upscale", unit="img", dynamic_ncols=True)
    for f, outs in zip(files, targets):
        try:
            lr = to_tensor(load_image(f))[None]
        except UserError as exc:
            if len(files) == 1:  # the only input: its error is the command's one error line
                bar.close()
                raise
            tqdm.write(f"lddpm: error: {exc}", file=sys.stderr)
            failures += 1
            bar.update(1)
            continue
        sr = up.upscale(lr, sampler, steps, args.seed, args.num_samples, args.eta,
                        references=refs, tile=args.tile, consistency=consistency)
        for k, path in enumerate(outs):
            save_image(path, sr[k, 0])
        bar.update(1)
    bar.close()
    done = len(files) - failures
    where = display_path(args.output) if args.output else "beside the input(s)"
    print(f"wrote {done * args.num_samples} image(s) {'to ' if args.output else ''}{where}")
    if failures:
        print(f"lddpm: error: {failures} input(s) could not be read (see above)", file=sys.stderr)
        return 2
    return 0
