"""`lddpm degrade`: make an LR set from a folder of HR images.

Writes OUTPUT/LR/<name>.png (same names as the inputs, subfolders kept), with --save-hr
also OUTPUT/HR/<name>.png (the HR cropped to a multiple of the scale, 'GTmod'), and
OUTPUT/degradations.json with the parameters drawn per image. The pair
OUTPUT/HR + OUTPUT/LR is what `lddpm evaluate --data OUTPUT/HR --lr-data OUTPUT/LR` reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from lddpm import __version__
from lddpm.config import DEGRADATIONS, Config, DataConfig, apply_overrides
from lddpm.data.datasets import EvalFolder
from lddpm.data.imageio import save_image
from lddpm.data.pipeline import Degradation
from lddpm.errors import UserError

SIDECAR = "degradations.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n", 1)[1].replace("\n", " ")
    parser.add_argument("input", metavar="INPUT_DIR", help="folder of HR images (recursive)")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="writes DIR/LR, DIR/HR (with --save-hr) and DIR/" + SIDECAR)
    parser.add_argument("--scale", type=int, default=4, help="downsampling factor (default 4)")
    parser.add_argument("--mode", choices=DEGRADATIONS, default="bicubic",
                        help="bicubic: MATLAB imresize; bsrgan: random blur/resize/noise/JPEG")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bsrgan draws")
    parser.add_argument("--save-hr", action="store_true",
                        help="also write the HR images cropped to a multiple of the scale")
    parser.add_argument("--set", action="append", default=[], metavar="data.bsrgan.KEY=VALUE",
                        help="override a degradation setting (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")


def _data_config(args: argparse.Namespace) -> DataConfig:
    if args.scale < 1:
        raise UserError(f"--scale must be >= 1, got {args.scale}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    bad = [s for s in args.set if not s.startswith("data.bsrgan.")]
    if bad:
        raise UserError(f"--set only takes data.bsrgan.* keys here, not '{bad[0]}'")
    data = apply_overrides(Config(), args.set).data
    return dataclasses.replace(data, scale=args.scale, degradation=args.mode)


def _targets(dataset: EvalFolder, output: Path, save_hr: bool) -> list[list[Path]]:
    """Per image: the files it writes (LR, and HR with --save-hr)."""
    folders = [output / "LR"] + ([output / "HR"] if save_hr else [])
    return [[folder / f"{name}.png" for folder in folders] for name in dataset.names]


def _refuse_existing(paths: list[Path]) -> None:
    for path in paths:
        if path.exists():
            raise UserError(f"{path} exists; use --overwrite to replace it")


def _write_json_atomically(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    data_cfg = _data_config(args)
    dataset = EvalFolder(args.input, args.scale, Degradation(data_cfg), seed=args.seed,
                         max_pixels=data_cfg.max_pixels)
    output = Path(args.output)
    if output.resolve().is_relative_to(Path(args.input).resolve()):
        raise UserError(f"--output {output} is inside INPUT_DIR: a rerun would degrade the LRs")
    targets = _targets(dataset, output, args.save_hr)
    if not args.overwrite:
        _refuse_existing([p for paths in targets for p in paths] + [output / SIDECAR])

    drawn: dict[str, dict] = {}
    failed: list[str] = []
    for index in tqdm(range(len(dataset)), desc="degrade", unit="img"):
        try:
            sample, params = dataset.item_with_params(index)
        except UserError as exc:  # one bad file must not cost the rest of the set
            tqdm.write(f"lddpm: skipped {exc}", file=sys.stderr)
            failed.append(str(dataset.files[index]))
            continue
        for path, image in zip(targets[index], (sample["lr"], sample["hr"])):
            save_image(path, image)
        drawn[sample["name"]] = params

    _write_json_atomically(output / SIDECAR, {
        "lddpm_version": __version__,
        "mode": args.mode,
        "scale": args.scale,
        "seed": args.seed,
        "bsrgan": dataclasses.asdict(data_cfg.bsrgan) if args.mode == "bsrgan" else None,
        "images": drawn,
        "failed": failed,
    })
    print(f"wrote {len(drawn)} LR images to {output / 'LR'}"
          + (f" and HR to {output / 'HR'}" if args.save_hr else "")
          + (f"; {len(failed)} unreadable (listed above)" if failed else ""))
    return 2 if failed else 0
