"""Training throughput on several processes: 2 gloo ranks x 1 thread vs 1 process x 2 threads.

    python benchmarks/scaling.py [--preset small] [--batch 8] [--steps 40] [--out docs/scaling.md]

Both configurations run the real command (`python -m lddpm train`, and `torchrun
--nproc_per_node 2 -m lddpm train`) on the same data at the same GLOBAL batch, fp32, and
are timed from the wall clock at which the log line of step `--warmup` appears to the one
of step `--steps` (start-up, the first steps, the final validation and checkpoint excluded).
Then the `paper` preset is timed the same way in one process for the per-100k-steps
arithmetic. The photos are generated (smooth random patterns, 320 px): throughput does not
depend on what the pixels are. The report is written as produced; paste nothing by hand.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["train.precision=fp32", "train.val_every=100000", "train.checkpoint_every=100000",
          "train.val_images=1", "train.val_steps=2"]


def make_photos(folder: Path, count: int = 8, side: int = 320) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (side // 16, side // 16, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((side, side), Image.BICUBIC).save(folder / f"p{i}.png")
    return folder


def timed_run(launcher: list[str], threads: int, preset: str, sets: list[str], data: Path,
              run: Path, warmup: int, steps: int) -> float:
    """Seconds per step between the log lines of step `warmup` and step `steps`."""
    shutil.rmtree(run, ignore_errors=True)
    sets = [*COMMON, *sets, "train.log_every=1"]  # a time stamp per step
    cmd = [*launcher, "-m", "lddpm", "train", "--preset", preset, "--data", str(data),
           "--output", str(run), "--max-steps", str(steps), "--no-progress", "--device", "cpu",
           *[a for s in sets for a in ("--set", s)]]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    seen: dict[int, float] = {}
    for line in proc.stdout:
        if line.startswith("step ") and line.split()[1].isdigit():
            seen[int(line.split()[1])] = time.monotonic()
        if steps in seen:  # timed: skip the final validation and checkpoint
            proc.terminate()
            break
    proc.wait()
    if warmup not in seen or steps not in seen:
        raise SystemExit(f"run failed or logged no step {warmup}/{steps}: {' '.join(cmd)}")
    return (seen[steps] - seen[warmup]) / (steps - warmup)


def hours(seconds_per_step: float, steps: int = 100_000) -> float:
    return seconds_per_step * steps / 3600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8, help="global batch of both configurations")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--paper-batch", type=int, default=2)
    ap.add_argument("--paper-steps", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "docs" / "scaling.md"))
    args = ap.parse_args()
    tmp = ROOT / "bench_runs" / "scaling"
    data = make_photos(tmp / "photos")
    py = [sys.executable]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    sets = [f"data.crop={args.crop}", f"data.batch_size={args.batch}"]
    load = os.getloadavg()[0]
    one = timed_run(py, 2, args.preset, sets, data, tmp / "one", args.warmup, args.steps)
    two = timed_run(torchrun, 1, args.preset, sets, data, tmp / "two", args.warmup, args.steps)
    paper_sets = [f"data.batch_size={args.paper_batch}"]
    paper = timed_run(py, 2, "paper", paper_sets, data, tmp / "paper", 1, 1 + args.paper_steps)
    load_after = os.getloadavg()[0]
    paper_img_s = args.paper_batch / paper
    rows = [
        f"| 1 process x 2 threads | {args.batch} | {one:.2f} | {args.batch / one:.1f} | 1.00x |",
        f"| 2 gloo ranks x 1 thread | {args.batch // 2} per rank | {two:.2f} | {args.batch / two:.1f} | {one / two:.2f}x |",
    ]
    report = f"""# Scaling: several processes and GPUs (measured by `benchmarks/scaling.py`)

Command: `python benchmarks/scaling.py --preset {args.preset} --batch {args.batch} --steps {args.steps}`
Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; load average
{load:.1f} before and {load_after:.1f} after (the cores were shared with other work, so the
numbers carry that noise: read the ratio, not the third digit).

## 2 gloo ranks x 1 thread vs 1 process x 2 threads, `{args.preset}`, {args.crop} px crops, fp32

Same data, same global batch ({args.batch}); steps {args.warmup}..{args.steps} timed from the log lines.

| configuration | batch | s / step | img/s | speed-up |
|---|---|---|---|---|
{chr(10).join(rows)}

Both configurations use the same two cores for the same arithmetic; the ranks trade
intra-op threading (one process's OpenMP threads split each convolution) for a gradient
all-reduce per step over gloo ({sum(p.numel() for p in _params(args.preset)) / 1e6:.1f} M
parameters). {_reading(load, one / two)}

## Commands

One machine, all its GPUs (nccl; `data.batch_size` is the global batch, split over the ranks):

```bash
torchrun --standalone --nproc_per_node 8 -m lddpm train --preset paper+lddpm \\
    --data photos/ --output runs/paper --max-steps 100000 --device cuda \\
    --set data.workers=6
```

Several machines (run on each node, with its own `--node_rank`; the same `--master_addr`):

```bash
torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --master_addr node0.example --master_port 29500 \\
    -m lddpm train --preset paper+lddpm --data photos/ --output runs/paper --device cuda
```

CPU ranks (gloo): the same with `--device cpu` and `OMP_NUM_THREADS` = cores / ranks.
Resume with the same command plus `--resume`. `benchmarks/gpu_smoke.sh` checks a GPU machine
in under 10 minutes and prints its img/s.

## How long the `paper` preset takes per 100k steps

Measured here: `paper` (Table 1 UNet, 256 px crops), 1 process x 2 threads, fp32, batch
{args.paper_batch}: {paper:.1f} s / step = **{paper_img_s:.3f} img/s**
(steps 1..{1 + args.paper_steps}).

100k steps at the paper's batch of 16 = 1.6 M images, so at throughput R img/s the run takes
1.6e6 / R seconds:

| throughput | hours per 100k steps (batch 16) | days |
|---|---|---|
| {paper_img_s:.3f} img/s (this CPU, measured) | {1.6e6 / paper_img_s / 3600:,.0f} | {1.6e6 / paper_img_s / 86400:,.0f} |
| R img/s (yours: `benchmarks/gpu_smoke.sh` prints it) | 444 / R | 18.5 / R |

So the paper model is GPU work: at a throughput of, say, 100 img/s for all ranks together
the 100k steps take 4.4 hours; at 10 img/s, 44 hours. N ranks multiply R by at most N.
"""
    Path(args.out).write_text(report)
    print(report)


def _reading(load: float, speedup: float) -> str:
    """What the measured ratio says, given how busy the machine was."""
    if load > (os.cpu_count() or 1) and speedup > 1.5:
        return (f"With the cores oversubscribed (load {load:.1f}), the 2-thread process loses "
                "most of its time at OpenMP barriers whenever one of its threads is descheduled "
                "(tests/conftest.py saw the same 10-30x), which single-threaded ranks never wait "
                "at: the speed-up measures that, not a gain from DDP on an idle machine, where "
                "the two should be close (not measured here). Several processes pay off across "
                "GPUs and machines.")
    return ("The difference is the overheads only; several processes pay off across GPUs and "
            "machines, not on one small CPU.")


def _params(preset: str):
    from lddpm.config import build_preset
    from lddpm.models.lddpm import LDDPMNet

    cfg = build_preset(preset)
    with torch.device("meta"):
        return list(LDDPMNet(cfg.model, cfg.data.scale).parameters())


if __name__ == "__main__":
    main()
