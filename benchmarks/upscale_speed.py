"""Upscaling photos: bf16 vs fp32 (speed and PSNR between the two outputs), and time and peak
memory of `lddpm upscale` for 2048x2048 and 4096x4096 outputs (512 / 1024 px LR).

    python benchmarks/upscale_speed.py [--checkpoint lddpm-x4] [--steps 4] [--out docs/speed.md]

The checkpoint: the shipped model when present, else the newest checkpoint of runs/default.
Each large run is a separate `lddpm upscale` process measured by /usr/bin/time -v (wall time,
maximum resident set size). The section "## Upscaling photos" of --out is replaced by the
report as produced (the rest of the file is kept); paste nothing by hand.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Upscaling photos"

from lddpm.data.imageio import load_image, to_tensor
from lddpm.data.resize import imresize
from lddpm.inference import Upscaler
from lddpm.metrics.psnr_ssim import psnr
from lddpm.pretrained import shipped_models


def default_checkpoint() -> str:
    if "lddpm-x4" in shipped_models():
        return "lddpm-x4"
    return str(ROOT / "runs" / "default")


def precision_rows(ckpt: str, steps: int, side: int) -> list[str]:
    """fp32 and bf16 on one side x side LR crop of an example photo: seconds, PSNR between."""
    hr = to_tensor(load_image(ROOT / "examples" / "chelsea.png"))[:, : side * 4, : side * 4]
    lr = imresize(hr[None], scale=0.25).clamp(0, 1)
    outs, rows = {}, []
    for precision in ("fp32", "bf16"):
        up = Upscaler.from_pretrained(ckpt, precision=precision)
        up.upscale(lr[..., :16, :16], "ddim", steps)  # warm-up
        start = time.perf_counter()
        outs[precision] = up.upscale(lr, "ddim", steps, seed=0)[0, 0]
        secs = time.perf_counter() - start
        rows.append((precision, secs))
    diff = psnr((outs["bf16"] * 255).round().numpy().transpose(1, 2, 0).astype(np.uint8),
                (outs["fp32"] * 255).round().numpy().transpose(1, 2, 0).astype(np.uint8))
    fp32 = rows[0][1]
    lines = [f"| {p} | {s:.2f} | {fp32 / s:.2f}x |" for p, s in rows]
    return lines + ["", f"PSNR between the bf16 and the fp32 output (8-bit RGB): {diff:.2f} dB"]


def timed_upscale(ckpt: str, lr_side: int, steps: int, precision: str, tmp: Path) -> tuple[float, float]:
    """`lddpm upscale` of a lr_side^2 photo under /usr/bin/time -v -> (seconds, peak RSS GiB)."""
    src = tmp / f"lr{lr_side}.png"
    photo = Image.open(ROOT / "examples" / "astronaut.png").convert("RGB")
    photo.resize((lr_side, lr_side), Image.BICUBIC).save(src)
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "lddpm", "upscale", str(src),
           "--checkpoint", ckpt, "--sampler", "ddim", "--steps", str(steps), "--precision", precision,
           "--output", str(tmp / f"out{lr_side}.png"), "--overwrite"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    secs = time.perf_counter() - start
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return secs, rss_kib / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=default_checkpoint())
    ap.add_argument("--steps", type=int, default=4, help="DDIM steps")
    ap.add_argument("--precision-side", type=int, default=64, help="LR side of the bf16/fp32 run")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="LR sides")
    ap.add_argument("--large-precision", default="auto", help="--precision of the large runs")
    ap.add_argument("--out", default=str(ROOT / "docs" / "speed.md"))
    args = ap.parse_args()
    up = Upscaler.from_pretrained(args.checkpoint)
    shown = os.path.relpath(args.checkpoint, ROOT) if os.path.exists(args.checkpoint) else args.checkpoint
    lines = [
        SECTION,
        "",
        (f"Command: `python benchmarks/upscale_speed.py --checkpoint {shown} --steps {args.steps} "
         f"--precision-side {args.precision_side} --sizes {' '.join(map(str, args.sizes))} "
         f"--large-precision {args.large_precision}`"),
        (f"Model: {shown} (preset {up.cfg.preset}, x{up.scale}), DDIM {args.steps} steps, "
         f"automatic tiles ({up.auto_tile()} LR px). Machine: {platform.machine()}, "
         f"{torch.get_num_threads()} threads, torch {torch.__version__}, shared with other jobs."),
        "",
        (f"### bf16 vs fp32, one {args.precision_side}x{args.precision_side} LR -> "
         f"{args.precision_side * up.scale}x{args.precision_side * up.scale}"),
        "",
        "| precision | seconds | speed-up |",
        "|---|---|---|",
        *precision_rows(args.checkpoint, args.steps, args.precision_side),
        "",
        f"### Large outputs: `lddpm upscale --precision {args.large_precision}`, one process each (/usr/bin/time -v)",
        "",
        "| LR | output | megapixels | seconds | seconds / MP | peak RSS (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sizes:
            secs, rss = timed_upscale(args.checkpoint, side, args.steps, args.large_precision, Path(tmp))
            hr = side * up.scale
            mp = hr * hr / 1e6
            lines.append(f"| {side}² | {hr}² | {mp:.1f} | {secs:.0f} | {secs / mp:.1f} | {rss:.2f} |")
            print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    print(report)
    out = Path(args.out)
    text = out.read_text() if out.exists() else ""
    kept = text.split(SECTION)[0].rstrip("\n")
    out.write_text((kept + "\n\n" if kept else "") + report)


if __name__ == "__main__":
    main()
