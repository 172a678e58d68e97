"""The default model's recipe, setting by setting, at an equal budget (docs/recipe.md).

    python benchmarks/recipe.py [--steps 400] [--measure-only]

First measures the x4 residual's spread on the training photos (what `residual_scale` is
chosen from). Then trains one run per variant of the `photo+res` preset, each differing from
it in one setting, with the same data, seed, steps, batch and crop, and measures them all in
one `lddpm evaluate --compare` run on held-out photos, at ddim-1 (the shipped model's
default step count) and ddim-4, without LR consistency: the network's own quality. Writes docs/recipe.md (+ .json/.csv beside it).
"""

from __future__ import annotations

import argparse

import torch
from harness import (
    DOCS,
    RUNS,
    Run,
    cells,
    compare,
    fmt,
    method_means,
    parameters,
    prepare_data,
    prepare_photos,
    table,
    train,
    write_report,
)

BUDGET = ["data.batch_size=8", "train.seed=0", "train.warmup_steps=50",
          "train.val_every=100000", "train.checkpoint_every=100000"]
G = "recipe"
VARIANTS = [
    Run("recipe: photo+res (residual x8, v, unshuffle 4, lr 2e-4)", "photo+res", [], G),
    Run("residual unscaled (x1)", "photo+res", ["diffusion.residual_scale=1"], G),
    Run("residual x16 (unit std)", "photo+res", ["diffusion.residual_scale=16"], G),
    Run("image target (no residual)", "photo+res", ["diffusion.target=image"], G),
    Run("eps prediction (Eq. 7)", "photo+res", ["diffusion.prediction=eps"], G),
    Run("x0 prediction", "photo+res", ["diffusion.prediction=x0"], G),
    Run("lr 1e-4", "photo+res", ["train.lr=1e-4"], G),
    Run("lr 5e-4", "photo+res", ["train.lr=5e-4"], G),
    Run("crop 64", "photo+res", ["data.crop=64"], G),
    Run("no unshuffle: small UNet at HR resolution", "small+res", ["data.crop=128"], G),
]


def residual_std(photos, crops: int = 256) -> float:
    """Std of HR - bicubic(LR) over random 128 px crops, in [-1, 1] units (x4, bicubic LR)."""
    from lddpm.config import build_preset
    from lddpm.data.datasets import HRFolder
    from lddpm.data.pipeline import Degradation
    from lddpm.data.resize import imresize

    cfg = build_preset("photo+res")
    data = HRFolder(photos, 4, 128, Degradation(cfg.data), seed=1)
    values = []
    for i in range(crops):
        item = data[(i % len(data), i // len(data))]
        values.append(2 * (item["hr"] - imresize(item["lr"], scale=4)).flatten())  # [0, 1] -> [-1, 1] units
    return float(torch.cat(values).std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400, help="training steps per run")
    ap.add_argument("--measure-only", action="store_true", help="only the residual statistics")
    args = ap.parse_args()
    photos = prepare_photos(RUNS / "photos")
    _, val = prepare_data()
    std = residual_std(photos)
    measured = (f"Residual HR - bicubic(LR) on the training photos (256 random 128 px crops, x4): "
                f"std {std:.4f} in [-1, 1] units; an image in [-1, 1] has a std of about 0.5, so "
                f"the scale that gives the residual that spread is {0.5 / std:.1f} "
                f"(the recipe uses 8).")
    print(measured)
    if args.measure_only:
        return
    seconds = {r.name: train(r, photos, args.steps, BUDGET) for r in VARIANTS}
    entries = [f"{r.dir}:ddim:{k}:none" for r in VARIANTS for k in (1, 4)]
    report = compare(entries, val, DOCS / "recipe.json", metrics="psnr,ssim")
    means = method_means(report)
    columns = [("PSNR-Y", 2), ("SSIM-Y", 4)]
    rows = [["bicubic", *cells(means["bicubic"], columns), "-", "-", "-", "-"]]
    one, four = (lambda r: means[f"{r.dir}:ddim:1"]), (lambda r: means[f"{r.dir}:ddim:4"])
    base = one(VARIANTS[0])["PSNR-Y"]
    for run in VARIANTS:
        rows.append([run.name, *cells(one(run), columns), *cells(four(run), columns),
                     f"{parameters(run) / 1e6:.2f}M", fmt(seconds[run.name] / args.steps, 3)])
    write_report(DOCS / "recipe.md", "The default model's recipe, one setting at a time", [
        measured,
        (f"Each run: {args.steps} steps, batch 8, 128 px HR crops (unless the row says otherwise), "
        f"seed 0, bf16 autocast, on {len(list(photos.iterdir()))} images of real photos "
        "(benchmarks/prepare_photos.py); each row changes one setting of `photo+res`. "
        f"Evaluation: {len(report['methods'][0]['images'])} held-out 128x128 photos, ddim-1 and "
        "ddim-4, seed 0, no LR consistency, PSNR/SSIM on Y with a 4-pixel border cropped. "
        "Sec/step is the training wall time per step on the shared 2-core machine (another "
        "training ran beside these; a few when a finished run is reused)."),
        table(["variant", "PSNR-Y ddim-1", "SSIM-Y ddim-1", "PSNR-Y ddim-4", "SSIM-Y ddim-4",
               "params", "sec/step"], rows),
        "PSNR-Y at ddim-1 of each variant minus the recipe's (dB): " + ", ".join(
            f"{r.name} {one(r)['PSNR-Y'] - base:+.2f}" for r in VARIANTS[1:]) + ".",
    ], seconds, report)


if __name__ == "__main__":
    main()
