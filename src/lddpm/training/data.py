"""Training data: the sets a config trains and validates on, and the endless data order.

Reproducibility: the data order and each sample's crop/augmentation/degradation come from
(seed, epoch, index), so a resumed run continues with exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from lddpm.config import Config
from lddpm.data.datasets import EvalFolder, HRFolder
from lddpm.data.pipeline import Degradation
from lddpm.training.distributed import Distributed

STEP_SEED_STRIDE = 1_000_003  # separates the per-step seeds of runs with different seeds


# ------------------------------------------------------------------------------ data order
class EpochSampler(Sampler):
    """Endless (index, epoch) items: epoch e is a permutation seeded by (seed, e).

    Starts `skip` items in, so that a resumed run continues the exact data order.
    """

    def __init__(self, size: int, seed: int, skip: int = 0):
        self.size, self.seed, self.skip = size, seed, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.skip, self.size)
        while True:
            g = torch.Generator().manual_seed(self.seed * STEP_SEED_STRIDE + epoch)
            for i in torch.randperm(self.size, generator=g)[offset:].tolist():
                yield (i, epoch)
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # endless; DataLoader only needs it for len(loader)
        return 2**62


def training_set(cfg: Config, data_dir: Path, references: bool) -> HRFolder:
    """Random HR crops of `data_dir` and their LR (the config's degradation). `references`:
    the model has the LR encoder, so items also carry a "ref" view when data.reference_prob > 0."""
    d = cfg.data
    return HRFolder(
        data_dir, d.scale, d.crop, Degradation(d), seed=cfg.train.seed,
        augment=d.augment, max_pixels=d.max_pixels, references=references and d.reference_prob > 0,
    )


def validation_set(cfg: Config, val_dir: Path) -> EvalFolder:
    """Whole images of `val_dir` with their LR, degraded with the run's seed."""
    d = cfg.data
    return EvalFolder(val_dir, d.scale, Degradation(d), seed=cfg.train.seed)


def batch_iterator(
    dataset: HRFolder, cfg: Config, dist: Distributed, step: int, device: torch.device
) -> Iterator[dict]:
    """Batches from `step` on: data.batch_size is global, each rank loads its shard of it."""
    d = cfg.data
    sampler = EpochSampler(len(dataset), cfg.train.seed, skip=step * d.batch_size)
    loader = DataLoader(
        dataset, batch_size=dist.local_batch(d.batch_size),
        sampler=dist.shard(sampler, d.batch_size), num_workers=d.workers,
        drop_last=True, persistent_workers=d.workers > 0, pin_memory=device.type == "cuda",
    )
    return iter(loader)
