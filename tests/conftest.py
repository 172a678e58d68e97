"""Shared fixtures: generated photos and tiny checkpoints trained once per session.

The checkpoints are made through the real CLI (`lddpm train ...`), so every test that uses
them also exercises train -> checkpoint -> load. They are tiny (a few steps of the `tiny`
preset at x2 on 32 px crops): the weights are meaningless, only their plumbing is tested.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lddpm.cli import main

# The test tensors are tiny, so intra-op threads buy nothing; and when other processes share
# the (2-core) machine, OpenMP threads spinning at barriers made the same steps 10-30x slower
# (measured: 6 tiny+gan training steps 1.2 s with 1 thread, 13-40 s with 2 under load).
torch.set_num_threads(1)

SCALE = 2
TRAIN_STEPS = 6

# Keeps a CLI training run to a few seconds of CPU: fp32 (repeatable everywhere), small
# crops and batches, no validation or checkpoint until the end of the run.
FAST_SETTINGS = [
    "train.precision=fp32",
    f"data.scale={SCALE}",
    "data.crop=32",
    "data.batch_size=2",
    "train.val_every=1000",
    "train.checkpoint_every=1000",
    "train.log_every=1000",
    "train.val_images=1",
    "train.val_steps=2",
]


def smooth_pattern(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3): a coarse random grid enlarged bicubically (photo-like, smooth)."""
    coarse = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))


def write_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """Writes one PNG per (height, width) into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = folder / f"img{i}.png"
        Image.fromarray(smooth_pattern(rng, h, w)).save(path)
        paths.append(path)
    return paths


def train_args(preset: str, data: Path, output: Path, steps: int = TRAIN_STEPS, *extra: str) -> list[str]:
    sets = [arg for s in FAST_SETTINGS for arg in ("--set", s)]
    return ["train", "--preset", preset, "--data", str(data), "--output", str(output),
            "--max-steps", str(steps), "--no-progress", *sets, *extra]


@pytest.fixture(scope="session")
def fast_settings() -> list[str]:
    """The `--set` values the session checkpoints were trained with."""
    return list(FAST_SETTINGS)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """Five small RGB photos (one non-square). Shared: do not modify, copy instead."""
    folder = tmp_path_factory.mktemp("photos")
    write_images(folder, [(48, 48)] * 4 + [(40, 56)], seed=0)
    return folder


def _train_once(tmp_path_factory, preset: str, image_dir: Path) -> Path:
    run = tmp_path_factory.mktemp("run") / preset.replace("+", "_")
    rc = main(train_args(preset, image_dir, run))
    assert rc == 0, f"training the {preset} fixture failed with exit code {rc}"
    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, image_dir) -> Path:
    """Run directory of a `tiny` (v1) x2 model trained for TRAIN_STEPS steps. Read-only."""
    return _train_once(tmp_path_factory, "tiny", image_dir)


@pytest.fixture(scope="session")
def gan_run(tmp_path_factory, image_dir) -> Path:
    """Run directory of a `tiny+v3+glow+gan` x2 model (K = 4 chain steps). Read-only."""
    return _train_once(tmp_path_factory, "tiny+v3+glow+gan", image_dir)
