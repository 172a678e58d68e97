"""`lddpm upscale`: super-resolve image files or folders, with the shipped model by default.

    lddpm upscale photo.jpg                 # -> photo_x4.png beside it, shipped model, its defaults
    lddpm upscale photos/ --output out/ --checkpoint runs/x --sampler ddim --steps 20
    lddpm upscale scan.png --ext webp --quality 90 --outscale 2 --tile 128 --device auto

Photos keep their alpha channel (resized bicubically), greyscale-ness (unless --color), 16-bit
depth (PNG), ICC profile and EXIF (the orientation is applied to the pixels and dropped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lddpm.commands import sampling
from lddpm.data.imageio import DEFAULT_QUALITY, SAVE_FORMATS
from lddpm.errors import UserError

OUTPUT_EXTS = ("png", "jpg", "webp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    parser.add_argument("--output",
                        help="output folder, or a .png/.jpg/.webp file when there is one input "
                             "image (default: NAME_xS.EXT beside each input)")
    parser.add_argument("--ext", default="png", choices=["auto", *OUTPUT_EXTS],
                        help="output format (default png, lossless; auto: the input's own when "
                             "png/jpg/webp, else png)")
    parser.add_argument("--quality", type=int,
                        help=f"jpg/webp quality 1-100 (default {DEFAULT_QUALITY['JPEG']})")
    parser.add_argument("--color", action="store_true",
                        help="write greyscale inputs as RGB (default: greyscale stays greyscale)")
    parser.add_argument("--outscale", type=float,
                        help="final scale, any value: the model's output is resampled with the "
                             "MATLAB-style bicubic imresize (default: the model's scale)")
    parser.add_argument("--checkpoint",
                        help="checkpoint, run or export directory, or a shipped model name "
                             "(default: the shipped model, see `lddpm models`)")
    parser.add_argument("--scale", type=int, help="must match the checkpoint's scale (checked)")
    parser.add_argument("--reference", action="append", default=[], metavar="IMG",
                        help="reference image whose tokens join the LR's in cross-attention (v2/v3)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--side-by-side", action="store_true",
                        help="also write NAME_compare.png: LR (nearest) | bicubic | result(s)")
    sampling.add_arguments(parser)


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


def _ext(f: Path, ext: str) -> str:
    """--ext for input f: as given, or (auto) the input's own format when writable, else png."""
    if ext != "auto":
        return ext
    own = f.suffix.lower().lstrip(".").replace("jpeg", "jpg")
    return own if own in OUTPUT_EXTS else "png"


def _targets(
    files: list[Path], output: Path | None, num_samples: int, label: str, ext: str
) -> list[list[Path]]:
    """Output paths per input: one per sample (`stem_x4.EXT`, or `stem_x4_s{k}.EXT` with
    several samples), beside the input or in the --output folder; or the --output file."""
    single_file = output is not None and output.suffix.lower() in SAVE_FORMATS
    if single_file and len(files) > 1:
        raise UserError(f"--output {output} is a file but there are {len(files)} inputs: give a folder")
    if single_file:
        return [_sample_names(output, num_samples)]
    names = [f"{f.stem}_{label}.{_ext(f, ext)}" for f in files]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes and output is not None:
        raise UserError(f"several inputs would be written as {min(dupes)!r} in {output}; "
                        "outputs would collide")
    return [_sample_names((output or f.parent) / name, num_samples) for f, name in zip(files, names)]


def _side_by_side_path(first_output: Path) -> Path:
    return first_output.with_name(f"{first_output.stem}_compare.png")


def _sample_names(base: Path, num_samples: int) -> list[Path]:
    if num_samples == 1:
        return [base]
    return [base.with_name(f"{base.stem}_s{k}{base.suffix}") for k in range(num_samples)]


def _check_args(args: argparse.Namespace) -> None:
    """The options of this command alone (the sampling ones are checked by the plan)."""
    if args.quality is not None and not 1 <= args.quality <= 100:
        raise UserError(f"--quality must be in 1..100, got {args.quality}")
    if args.quality is not None and args.ext == "png":
        raise UserError("--quality applies to jpg and webp output, not png (which is lossless)")
    if args.outscale is not None and not 0 < args.outscale <= 64:
        raise UserError(f"--outscale must be in (0, 64], got {args.outscale}")
    if args.outscale is not None and args.side_by_side:
        raise UserError("--side-by-side shows the model's own scale; drop --outscale")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lddpm.data.imageio import load_image, to_tensor
    from lddpm.errors import display_path

    _check_args(args)
    files = _inputs(args.inputs)
    up = sampling.load(args, args.checkpoint)
    plan = up.plan(sampling.choices(args))  # every sampling choice checked before any work
    if args.scale is not None and args.scale != up.scale:
        raise UserError(f"--scale {args.scale}: this checkpoint was trained for x{up.scale}")
    label = f"x{args.outscale:g}" if args.outscale else f"x{up.scale}"
    targets = _targets(files, Path(args.output) if args.output else None, plan.num_samples,
                       label, args.ext)
    sbs = [_side_by_side_path(group[0]) if args.side_by_side else None for group in targets]
    existing = [p for group in targets for p in group if p.exists()]
    existing += [p for p in sbs if p is not None and p.exists()]
    if existing and not args.overwrite:
        raise UserError(f"{display_path(existing[0])} exists (and {len(existing) - 1} more); "
                        "pass --overwrite to replace")
    refs = [to_tensor(load_image(r))[None] for r in args.reference]
    options = {"plan": plan, "seed": args.seed, "references": refs}
    work = [_evaluations(plan, f) for f in files]
    bar = tqdm(total=sum(work), desc="upscale", unit="eval", dynamic_ncols=True)
    failures = 0
    for i, (f, outs, sbs_path, n) in enumerate(zip(files, targets, sbs, work)):
        bar.set_postfix_str(f"image {i + 1}/{len(files)} {display_path(f)}")
        done_before = bar.n
        try:
            _upscale_one(up, f, outs, sbs_path, args, options, bar.update)
        except UserError as exc:
            if len(files) == 1:  # the only input: its error is the command's one error line
                bar.close()
                raise
            tqdm.write(f"lddpm: error: {exc}", file=sys.stderr)
            failures += 1
        bar.update(done_before + n - bar.n)  # a failed image's share, so the ETA stays right
    bar.close()
    done = len(files) - failures
    where = display_path(args.output) if args.output else "beside the input(s)"
    print(f"wrote {done * args.num_samples} image(s) {'to ' if args.output else ''}{where}")
    if failures:
        print(f"lddpm: error: {failures} input(s) could not be upscaled (see above)", file=sys.stderr)
        return 2
    return 0


def _evaluations(plan, f: Path) -> int:
    """Network evaluations that upscaling file f will run (0 if its header is unreadable:
    the error comes when it is loaded)."""
    from lddpm.data.imageio import image_size

    try:
        h, w = image_size(f)
    except UserError:
        return 0
    return plan.evaluations(h, w)


def _upscale_one(up, f: Path, outs: list[Path], sbs_path: Path | None, args, options, progress) -> None:
    """Loads f, upscales it (progress(1) per network evaluation), writes one file per sample."""
    from lddpm.data.grids import comparison_row
    from lddpm.data.imageio import check_savable, load_photo, save_image, save_photo

    photo = load_photo(f)
    photo.grey = photo.grey and not args.color
    for path in outs:
        check_savable(path, photo)  # e.g. alpha into a JPEG: refuse before the work, not after
    results = up.upscale_photo(photo, args.outscale, progress=progress, **options)
    for path, result in zip(outs, results):
        save_photo(path, result, args.quality)
    if sbs_path is not None:
        save_image(sbs_path, comparison_row(photo.rgb, [r.rgb for r in results], up.scale))
