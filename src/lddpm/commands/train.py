"""`lddpm train`: train a model on a folder of photos; `--resume` continues a killed run."""

from __future__ import annotations

import argparse
from pathlib import Path

from lddpm.config import Config, apply_overrides, build_preset, load_config_file
from lddpm.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--preset", help="e.g. tiny, small+v3, small+v3+glow+gan, paper+lddpm (see `lddpm presets`)")
    src.add_argument("--config", help="YAML/JSON config file (full, or `preset:` plus overrides)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set data.scale=2 (repeatable)")
    parser.add_argument("--data", required=True, help="folder of HR training images (recursive)")
    parser.add_argument("--output", required=True, help="run directory (checkpoints, logs, grids)")
    parser.add_argument("--val-data", help="folder of HR validation images (default: --data)")
    parser.add_argument("--max-steps", type=int, help="the run's total number of steps")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    parser.add_argument("--init-from", metavar="CKPT",
                        help="start from these weights (a checkpoint, run, export or shipped model "
                             "name) with a fresh optimiser; a resumed run ignores it")
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:N or auto (CUDA when present); under torchrun each "
                             "rank uses cuda:LOCAL_RANK (README: several processes / GPUs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def _config(args: argparse.Namespace, output: Path) -> Config:
    from lddpm import checkpoint as ckpt

    found = ckpt.list_checkpoints(output)
    if args.config:
        cfg = load_config_file(args.config)
    elif args.preset:
        cfg = build_preset(args.preset)
    elif args.resume and found:
        cfg = ckpt.read_config(found[-1])  # the run describes itself
    else:
        raise UserError("give --preset NAME or --config FILE (or --resume an existing run)")
    cfg = apply_overrides(cfg, args.set)
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise UserError(f"--max-steps must be >= 1, got {args.max_steps}")
        cfg.train.max_steps = args.max_steps
    return cfg


def run(args: argparse.Namespace) -> int:
    from lddpm import checkpoint as ckpt
    from lddpm.training import distributed
    from lddpm.training.trainer import Trainer

    output = Path(args.output)
    data = Path(args.data)
    if not data.exists():
        raise UserError(f"--data folder not found: {data}")
    if args.val_data and not Path(args.val_data).exists():
        raise UserError(f"--val-data folder not found: {args.val_data}")
    if ckpt.list_checkpoints(output) and not args.resume:
        raise UserError(f"{output} already holds a run: pass --resume to continue it, or choose another --output")
    cfg = _config(args, output)
    init_from = None
    if args.init_from:
        from lddpm.pretrained import resolve_model

        init_from = resolve_model(args.init_from)
    output.mkdir(parents=True, exist_ok=True)
    dist, device = distributed.setup(args.device)  # joins torchrun's process group, if any
    try:
        dist.local_batch(cfg.data.batch_size)  # a global batch the ranks cannot share: exit 2
        if dist.is_main:
            print(dist.describe(cfg.data.batch_size, device), flush=True)
        trainer = Trainer(
            cfg, data, output, Path(args.val_data) if args.val_data else None,
            device=device, resume=args.resume, progress=not args.no_progress,
            init_from=init_from, dist=dist,
        )
        if trainer.step >= cfg.train.max_steps:
            print(f"already at step {trainer.step} >= --max-steps {cfg.train.max_steps}: nothing to do")
            return 0
        last = trainer.fit(cfg.train.max_steps)
        if dist.is_main:
            print(f"checkpoint: {last}")
        return 0
    finally:
        distributed.teardown()
