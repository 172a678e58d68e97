"""How much of its starting weights lddpm-x4-real keeps: the interpolation weight, chosen on
the choosing set (docs/real_blend.md).

    python benchmarks/real_blend.py --run runs/lddpm-x4-real --start runs/lddpm-x4-real-v1

`--run` is a fine-tuning on BSRGAN LR with 30% clean LR (`scripts/train_model.sh
lddpm-x4-real`), `--start` the weights it started from (the previously shipped lddpm-x4-real,
trained on BSRGAN LR alone). For each weight W, `lddpm export RUN --interpolate START
--interpolate-weight W` (network interpolation, as ESRGAN's net_interp and Real-ESRGAN's
denoise strength do), sampled at the shipped defaults (ddim-1, no LR consistency), is
measured on the choosing set (benchmarks/photo_sets.py) twice: degraded by `lddpm degrade
--mode bsrgan --seed 0`, and as clean bicubic LR. The rule: the W whose smaller PSNR-Y gain
over bicubic (of the two LR kinds) is largest, so the model beats bicubic on both kinds of
input by as much as it can. `scripts/ship_model.sh lddpm-x4-real` ships that W.
"""

from __future__ import annotations

import argparse

from harness import DOCS, RUNS, compare, lddpm, method_means, table, write_report
from photo_sets import choosing_set, degraded_pairs

WEIGHTS = (0.0, 0.15, 0.25, 0.35, 0.5, 1.0)
METRICS = "psnr,ssim,niqe,detail"


def export_blends(run: str, start: str, weights=WEIGHTS) -> dict[float, str]:
    """weight -> an export of (1 - weight) * run + weight * start, at the shipped defaults."""
    out = {}
    for w in weights:
        path = RUNS / "blend" / f"w{w:.2f}"
        lddpm("export", run, str(path), "--interpolate", start, "--interpolate-weight", str(w),
              "--sampler", "ddim", "--steps", "1", "--consistency", "none", "--overwrite")
        out[w] = str(path)
    return out


def gains(blends: dict[float, str], data, report_name: str) -> tuple[dict, dict]:
    """(weight -> PSNR-Y gain over bicubic, weight -> means) on one LR kind."""
    report = compare([f"{p}:ddim:1:none" for p in blends.values()], data,
                     DOCS / report_name, metrics=METRICS)
    means = method_means(report)
    bicubic = means["bicubic"]["PSNR-Y"]
    by_weight = {w: means[f"{p}:ddim:1"] for w, p in blends.items()}
    return {w: m["PSNR-Y"] - bicubic for w, m in by_weight.items()}, by_weight


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="the mixed-LR fine-tuning (run or export)")
    ap.add_argument("--start", required=True, help="the weights it was fine-tuned from")
    args = ap.parse_args()
    blends = export_blends(args.run, args.start)
    choose = choosing_set()
    bsrgan = degraded_pairs(choose, RUNS / "choose_bsrgan", "bsrgan", seed=0)
    gain_b, means_b = gains(blends, bsrgan, "real_blend_bsrgan.json")
    gain_c, means_c = gains(blends, choose, "real_blend_clean.json")
    best = max(blends, key=lambda w: min(gain_b[w], gain_c[w]))
    rows = [[f"{w:.2f}" + (" (chosen)" if w == best else ""),
             f"{means_b[w]['PSNR-Y']:.2f}", f"{gain_b[w]:+.2f}", f"{means_b[w]['detail']:.2f}",
             f"{means_c[w]['PSNR-Y']:.2f}", f"{gain_c[w]:+.2f}", f"{means_c[w]['detail']:.2f}",
             f"{min(gain_b[w], gain_c[w]):+.2f}"] for w in blends]
    write_report(DOCS / "real_blend.md", "lddpm-x4-real: the interpolation weight", [
        (f"The fine-tuning `{args.run}` (BSRGAN LR with 30% clean LR) interpolated with the "
        f"weights it started from, `{args.start}` (BSRGAN LR only): W is the share of the "
        "start (W = 0: the fine-tuning alone; W = 1: the start alone). Choosing set (crops "
        "of hubble_deep_field, retina, grass, gravel, brick; no report photo), x4, ddim-1 "
        "without LR consistency (the shipped defaults), seed 0. Rule: the largest of the "
        "smaller gain over bicubic of the two LR kinds."),
        table(["W", "bsrgan PSNR-Y", "gain", "detail", "clean PSNR-Y", "gain", "detail",
               "smaller gain"], rows),
        (f"Chosen: W = {best:.2f}; `scripts/ship_model.sh lddpm-x4-real` ships it "
        "(BLEND_WEIGHT overrides). The report set's numbers are in docs/real_world.md."),
    ], {}, {})


if __name__ == "__main__":
    main()
