"""Training throughput (fp32 vs bf16 autocast) and sampling time per image, side by side.

    python benchmarks/speed.py [--preset small] [--train-steps 30] [--out docs/speed.md]

Training: the trainer's own step (`Trainer.train_step`: forward, loss, backward, AdamW, EMA)
on 64 px HR crops of the example photos, batch 16, same batches for both precisions.
Sampling: `Upscaler.upscale` of one 64x64 LR to 256x256 with ddpm-1000, ddim-50 and ddim-4.
Weights are freshly initialised: speed does not depend on what the weights are.
The report is written as produced; paste nothing by hand.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from lddpm.config import apply_overrides, build_preset
from lddpm.inference import Upscaler
from lddpm.training.trainer import Trainer


def train_rate(preset: str, precision: str, steps: int, batches: list[dict], tmp: Path) -> float:
    cfg = apply_overrides(build_preset(preset), [f"train.precision={precision}", "data.crop=64"])
    trainer = Trainer(cfg, ROOT / "examples", tmp / precision, progress=False)
    trainer.train_step(batches[0])  # warm-up: allocator, autocast caches
    start = time.perf_counter()
    for i in range(steps):
        trainer.train_step(batches[i % len(batches)])
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


def sample_seconds(preset: str, sampler: str, steps: int | None) -> float:
    cfg = build_preset(preset)
    torch.manual_seed(0)
    from lddpm.models.lddpm import LDDPMNet

    up = Upscaler(LDDPMNet(cfg.model, cfg.data.scale), cfg)
    lr = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    up.upscale(lr, sampler, steps, seed=0)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "docs" / "speed.md"))
    ap.add_argument("--skip-ddpm", action="store_true", help="skip the slow ddpm-1000 timing")
    args = ap.parse_args()
    tmp = ROOT / "bench_runs" / "speed"
    cfg = apply_overrides(build_preset(args.preset), ["data.crop=64"])
    probe = Trainer(cfg, ROOT / "examples", tmp / "probe", progress=False)
    loader = probe.batches()
    batches = [next(loader) for _ in range(4)]

    lines = [
        "# Speed (measured by `benchmarks/speed.py`)",
        "",
        f"Command: `python benchmarks/speed.py --preset {args.preset} --train-steps {args.train_steps}`",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "",
        "## Training throughput, 64 px HR crops, batch 16",
        "",
        "| precision | img/s | ratio to fp32 |",
        "|---|---|---|",
    ]
    rates = {p: train_rate(args.preset, p, args.train_steps, batches, tmp) for p in ("fp32", "bf16")}
    for p, r in rates.items():
        lines.append(f"| {p} | {r:.1f} | {r / rates['fp32']:.2f}x |")
    lines += ["", "## Sampling, one 64x64 LR -> 256x256 (x4), fp32", "",
              "| sampler | model evaluations | seconds / image |", "|---|---|---|"]
    runs = [("ddim", 4), ("ddim", 50)] + ([] if args.skip_ddpm else [("ddpm", None)])
    for sampler, steps in runs:
        secs = sample_seconds(args.preset, sampler, steps)
        nfe = steps or 1000
        lines.append(f"| {sampler}-{nfe} | {nfe} | {secs:.2f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
