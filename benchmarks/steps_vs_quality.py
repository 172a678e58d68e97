"""Quality against sampling cost for one checkpoint (the paper's Fig. 12 / Fig. 8 analogue).

    python benchmarks/steps_vs_quality.py [--checkpoint RUN] [--steps N]

Samplers ddpm-1000, ddim-100, ddim-20, ddim-4 and lddpm-K on the held-out folder, in one
`lddpm evaluate --compare` run (PSNR-Y, SSIM-Y, LR-PSNR, diversity, seconds and model
evaluations per image). Without --checkpoint it uses (training it if needed) the
`photo+res+v3+glow+gan+detail` row of Table 7 (ablation_glow_gan.py: fine-tuned from
lddpm-x4 for --steps steps, default that table's). Writes docs/steps_vs_quality.md, the plot
docs/steps_vs_quality.png and the crop grid docs/steps_vs_quality_grid.png, whose SR images
are written by `lddpm upscale`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import ablation_glow_gan
from harness import (
    DOCS,
    ROOT,
    RUNS,
    compare,
    fmt,
    lddpm,
    method_means,
    prepare_data,
    table,
    table_run,
    table_train,
    write_report,
)
from PIL import Image

GRID_IMAGE, CROP = "chelsea", (32, 32, 96, 96)  # (left, top, right, bottom) in HR pixels


def samplers(k: int) -> list[tuple[str, int]]:
    return [("ddpm", 1000), ("ddim", 100), ("ddim", 20), ("ddim", 4), ("lddpm", k)]


def plot(rows: list[tuple[str, float, float]], path: Path, bicubic_psnr: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, secs, psnr in rows:
        marker = "*" if label.startswith("lddpm") else "o"
        ax.scatter(secs, psnr, s=90 if marker == "*" else 40, marker=marker)
        ax.annotate(label, (secs, psnr), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.axhline(bicubic_psnr, color="gray", linestyle="--", linewidth=1, label="bicubic")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image (log scale, 2-core CPU)")
    ax.set_ylabel("PSNR-Y (dB)")
    ax.set_title("Quality against sampling cost (CPU scale)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def crop_grid(tiles: list[tuple[str, Path]], path: Path, zoom: int = 3) -> None:
    """The same HR crop from each source, enlarged (nearest) and labelled, side by side
    (lddpm.data.grids, the project's one grid builder)."""
    from lddpm.data.grids import panel_row
    from lddpm.data.imageio import load_image

    labels = [label for label, _ in tiles]
    images = [load_image(file) for _, file in tiles]
    Image.fromarray(panel_row(images, labels, box=CROP, zoom=zoom, fill=255)).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a run or checkpoint trained with the gan part")
    ap.add_argument("--steps", type=int, default=ablation_glow_gan.STEPS,
                    help="training steps if it must train (Table 7's GAN row)")
    ap.add_argument("--k", type=int, default=4, help="the checkpoint's trained K")
    ap.add_argument("--num-samples", type=int, default=2)
    ap.add_argument("--reuse-report", action="store_true",
                    help="take the evaluation from docs/steps_vs_quality.json of an earlier run "
                         "of this script instead of sampling again")
    ap.add_argument("--max-images", type=int, default=3,
                    help="held-out images to use (ddpm-1000 costs 1000 evaluations per sample)")
    args = ap.parse_args()
    _, val = prepare_data()
    ckpt, described = args.checkpoint, f"`{args.checkpoint}`"
    if ckpt is None:
        name, preset = ablation_glow_gan.ROWS[-1]
        run = table_run(name, preset, args.steps, RUNS / "runs" / "tables")
        table_train(run, args.steps)
        ckpt = str(run.dir)
        described = (f"the `{preset}` row of ablation_glow_gan.md (Table 7): fine-tuned from "
                     f"lddpm-x4 for {args.steps} steps on a 2-core CPU (CPU scale)")
    entries = [f"{ckpt}:{s}:{n}" for s, n in samplers(args.k)]
    json_path = DOCS / "steps_vs_quality.json"
    if args.reuse_report:
        report = json.loads(json_path.read_text())
        if [m["name"] for m in report["methods"]][1:] != entries:
            sys.exit(f"{json_path} was made for other entries; run without --reuse-report")
    else:
        report = compare(entries, val, json_path, args.num_samples,
                         metrics="psnr,ssim,lr_psnr,lpips", max_images=args.max_images)
    means = method_means(report)
    rows, points = [], []
    for name, entry in [("bicubic", "bicubic")] + [(e.rsplit(":", 2)[1] + "-" + e.rsplit(":", 1)[1], e) for e in entries]:
        m = means[entry]
        rows.append([name, fmt(m.get("NFE/img") / args.num_samples if entry != "bicubic" else None, 0),
                     fmt(m.get("PSNR-Y")), fmt(m.get("SSIM-Y"), 4), fmt(m.get("LR-PSNR")),
                     fmt(m.get("LPIPS"), 4), fmt(m.get("diversity")), fmt(m.get("sec/img"), 3)])
        if entry != "bicubic":
            points.append((name, m["sec/img"], m["PSNR-Y"]))
    plot(points, DOCS / "steps_vs_quality.png", means["bicubic"]["PSNR-Y"])

    out = RUNS / "steps_vs_quality_sr"
    # the LR of the grid image, made the way the evaluation makes it (bicubic, x4)
    lddpm("degrade", str(val), "--output", str(out / "degraded"), "--scale", "4", "--mode",
          "bicubic", "--seed", "0", "--overwrite")
    lr_file = out / "degraded" / "LR" / f"{GRID_IMAGE}.png"
    tiles = [("HR", val / f"{GRID_IMAGE}.png")]
    for s, n in samplers(args.k):
        target = out / f"{GRID_IMAGE}_{s}{n}.png"
        lddpm("upscale", str(lr_file), "--checkpoint", ckpt, "--sampler", s,
              "--steps", str(n), "--seed", "0", "--output", str(target), "--overwrite")
        tiles.append((f"{s}-{n}", target))
    crop_grid(tiles, DOCS / "steps_vs_quality_grid.png")

    write_report(DOCS / "steps_vs_quality.md",
                 "Steps against quality (the paper's Fig. 12 / Fig. 8 analogue, CPU scale)", [
        f"Checkpoint `{os.path.relpath(ckpt, ROOT)}`: {described}.",
        (f"Evaluation: {len(report['methods'][0]['images'])} held-out 128x128 images, "
         f"{args.num_samples} samples per image, seed 0; NFE = network evaluations per sample; "
         "sec/img counts all samples of an image."),
        table(["sampler", "NFE", "PSNR-Y", "SSIM-Y", "LR-PSNR", "LPIPS", "diversity", "sec/img"], rows),
        "![quality against seconds](steps_vs_quality.png)",
        f"The same crop of `{GRID_IMAGE}` from each sampler (seed 0, written by `lddpm upscale`):",
        "![crops](steps_vs_quality_grid.png)",
    ], {}, report)


if __name__ == "__main__":
    main()
