"""`lddpm upscale`: super-resolve image files or folders with a trained checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lddpm.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    parser.add_argument("--output", required=True,
                        help="output folder, or a .png file when there is one input image")
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory or run directory")
    parser.add_argument("--scale", type=int, help="must match the checkpoint's scale (checked)")
    parser.add_argument("--sampler", default="ddim", choices=["ddpm", "ddim", "lddpm"])
    parser.add_argument("--steps", type=int, help="sampling steps (ddim default 50; lddpm: the trained K)")
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


def _targets(files: list[Path], output: Path, num_samples: int) -> list[list[Path]]:
    """Output paths per input: one per sample (`stem.png` or `stem_s{k}.png`)."""
    single_file = output.suffix.lower() == ".png"
    if single_file and len(files) > 1:
        raise UserError(f"--output {output} is a file but there are {len(files)} inputs: give a folder")
    stems = [f.stem for f in files]
    dupes = {s for s in stems if stems.count(s) > 1}
    if dupes and not single_file:
        raise UserError(f"several inputs share the name {sorted(dupes)[0]!r}; outputs would collide")
    out = []
    for f in files:
        base = output if single_file else output / f"{f.stem}.png"
        if num_samples == 1:
            out.append([base])
        else:
            out.append([base.with_name(f"{base.stem}_s{k}.png") for k in range(num_samples)])
    return out


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

    _check_args(args)
    files = _inputs(args.inputs)
    targets = _targets(files, Path(args.output), args.num_samples)
    existing = [p for group in targets for p in group if p.exists()]
    if existing and not args.overwrite:
        raise UserError(f"{existing[0]} exists (and {len(existing) - 1} more); pass --overwrite to replace")
    up = Upscaler.from_checkpoint(args.checkpoint, device=args.device, use_ema=not args.raw_weights)
    if args.scale is not None and args.scale != up.scale:
        raise UserError(f"--scale {args.scale}: this checkpoint was trained for x{up.scale}")
    refs = [to_tensor(load_image(r))[None] for r in args.reference]
    up.spec(args.sampler, args.steps, args.eta)  # fail on a bad sampler/steps before any work
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
        sr = up.upscale(lr, args.sampler, args.steps, args.seed, args.num_samples, args.eta,
                        references=refs, tile=args.tile)
        for k, path in enumerate(outs):
            save_image(path, sr[k, 0])
        bar.update(1)
    bar.close()
    done = len(files) - failures
    print(f"wrote {done * args.num_samples} image(s) to {args.output}")
    if failures:
        print(f"lddpm: error: {failures} input(s) could not be read (see above)", file=sys.stderr)
        return 2
    return 0
