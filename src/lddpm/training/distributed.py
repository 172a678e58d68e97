"""Training on several processes: torchrun + DistributedDataParallel (gloo on CPU, nccl on CUDA).

    torchrun --nproc_per_node N -m lddpm train --preset small+lddpm --data photos/ --output runs/x

What the N ranks share, and how:
- `data.batch_size` is the GLOBAL batch B. Each rank takes b = B / N samples of it (an error
  when N does not divide B), so a config means the same optimisation on any N.
- Every rank walks the same epoch permutation (EpochSampler, seeded by (seed, epoch)) and keeps
  its slice of each global batch: rank r reads items [r*b, (r+1)*b) of every B in a row.
  The data order therefore depends on (seed, step) only, and --resume continues it on any N.
- The per-step draws (t, noise, z, the chain step k) come from the step generator, identical on
  every rank. `ShardedDraws` makes each rank draw the numbers of the whole global batch and
  keep its slice, so N ranks compute what one process computes on B samples, up to the order
  of floating-point sums (tests/test_distributed.py measures how close).
- DDP averages the gradients; clipping, the optimiser step and the EMA then run identically on
  every rank. Parameters and buffers are broadcast from rank 0 when wrapped; the only buffer a
  forward pass changes is ActNorm's `initialized` flag, and its data-dependent initialisation
  reduces over all ranks (lddpm.models.flow), so the replicas stay equal. `check_in_sync`
  verifies that at every checkpoint.
- Rank 0 alone writes checkpoints (atomically, as in one process), TensorBoard, the progress
  bar and validation; the other ranks wait at a barrier. A checkpoint holds the bare network
  (never DDP's `module.` wrapper), so it loads in a single process for upscaling.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.data import Sampler

from lddpm.errors import UserError
from lddpm.precision import resolve_device

RANK_SEED_STRIDE = 1 << 40  # offsets the global (dropout) seed of each rank


# ------------------------------------------------------------------------------ who am I
@dataclass(frozen=True)
class Distributed:
    """This process's place among the ranks; the default is one process alone."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def local_batch(self, global_batch: int) -> int:
        if global_batch % self.world:
            raise UserError(
                f"data.batch_size {global_batch} is the global batch and must divide evenly "
                f"among the {self.world} processes (e.g. --set data.batch_size="
                f"{max(1, global_batch // self.world) * self.world})"
            )
        return global_batch // self.world

    def describe(self, global_batch: int, device: torch.device) -> str:
        if not self.active:
            return f"lddpm: 1 process on {device}, batch {global_batch}"
        return (f"lddpm: {self.world} processes ({self.backend}) x {self.local_batch(global_batch)} "
                f"samples = global batch {global_batch}, rank 0 on {device}")

    # ---------------------------------------------------------------- collectives
    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def on_main(self, fn: Callable[[], object]) -> object:
        """fn() on rank 0 while the others wait (checkpoints, validation); None elsewhere."""
        result = fn() if self.is_main else None
        self.barrier()
        return result

    def mean(self, logs: dict[str, float]) -> dict[str, float]:
        """The logged values averaged over the ranks (each saw its own slice of the batch)."""
        if not self.active:
            return logs
        keys = list(logs)  # the same order on every rank: the same code ran
        values = self._on_backend(torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64))
        tdist.all_reduce(values)
        return {k: float(v) / self.world for k, v in zip(keys, values.tolist())}

    def check_in_sync(self, *modules: nn.Module | None) -> None:
        """Raises when the replicas' weights differ: a bug, never bad input (hence not a
        UserError), caught before a checkpoint made from rank 0 alone hides it. Compares one
        float64 sum per tensor; the tolerance only absorbs summation kernels that differ
        between machines (a diverged replica differs by far more)."""
        if not self.active:
            return
        named = [(n, t) for m in modules if m is not None
                 for n, t in itertools.chain(m.named_parameters(), m.named_buffers())]
        sums = self._on_backend(torch.stack([t.detach().double().sum() for _, t in named]))
        gathered = [torch.empty_like(sums) for _ in range(self.world)]
        tdist.all_gather(gathered, sums)
        for rank, other in enumerate(gathered):
            close = torch.isclose(other, gathered[0], rtol=1e-7, atol=1e-9)
            if not close.all():
                name = named[int((~close).nonzero()[0])][0]
                raise RuntimeError(f"rank {rank}'s replica differs from rank 0's, first at {name}")

    def _on_backend(self, t: torch.Tensor) -> torch.Tensor:
        """nccl moves CUDA tensors only; gloo takes CPU ones."""
        return t.cuda() if self.backend == "nccl" else t

    # ---------------------------------------------------------------- data and randomness
    def shard(self, sampler: Sampler, global_batch: int) -> Sampler:
        return sampler if not self.active else ShardSampler(sampler, global_batch, self.rank, self.world)

    def draws(self, generator: torch.Generator, local_batch: int):
        return nullcontext() if not self.active else ShardedDraws(generator, local_batch, self.rank, self.world)

    def dropout_seed(self, base: int) -> int:
        """Rank 0 keeps the single-process seed; other ranks get their own dropout masks (the
        global RNG draws per local batch, so equal seeds would repeat rank 0's masks)."""
        return (base + self.rank * RANK_SEED_STRIDE) % (1 << 63)

    # ---------------------------------------------------------------- DDP
    def wrap(self, trained: nn.Module, loss_fn: Callable) -> nn.Module:
        """A module whose forward(batch, gen, ...) is loss_fn(batch, gen, ...) with `trained`'s
        parameters registered: DDP under torchrun, the bare module in one process.

        One forward() runs the whole loss, so every parameter takes part in every step: the
        CVAE posterior (unused by the prior-sampled GAN chain) is used by the L_DDPM branch of
        the same forward, and with G and D in separate modules each optimiser's parameters
        all receive gradients (checked for every preset). So DDP needs no
        find_unused_parameters graph walk; were a parameter ever left out, DDP stops with an
        error naming it instead of training on silently."""
        module = LossModule(trained, loss_fn, self)
        if not self.active:
            return module
        device = next(trained.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)


class LossModule(nn.Module):
    """One forward() around a whole loss computation. DDP prepares its gradient reduction in
    forward() only, while the objective calls several methods of the network (condition,
    forward_train, forward); a forward() that runs the loss covers them all."""

    def __init__(self, trained: nn.Module, loss_fn: Callable, dist: Distributed):
        super().__init__()
        self.trained = trained  # registered: these are the parameters DDP reduces
        self.loss_fn, self.dist = loss_fn, dist

    def forward(self, batch: dict, gen: torch.Generator, *args, **kwargs):
        with self.dist.draws(gen, batch["hr"].shape[0]):
            return self.loss_fn(batch, gen, *args, **kwargs)


# ------------------------------------------------------------------------------ data shards
class ShardSampler(Sampler):
    """Rank r's items of an endless sampler: [r*b, (r+1)*b) of every `global_batch` in a row."""

    def __init__(self, base: Sampler, global_batch: int, rank: int, world: int):
        self.base, self.global_batch, self.rank = base, global_batch, rank
        self.local = global_batch // world

    def __iter__(self) -> Iterator:
        items = iter(self.base)
        start = self.rank * self.local
        while chunk := list(itertools.islice(items, self.global_batch)):
            yield from chunk[start:start + self.local]

    def __len__(self) -> int:
        return len(self.base)


# ------------------------------------------------------------------------------ draws
_SIZED_DRAWS = {torch.randn, torch.rand, torch.randint}


class ShardedDraws(TorchFunctionMode):
    """Inside it, a draw from `generator` whose first dimension is the rank's batch b draws the
    global batch's numbers (first dimension b * world) and returns this rank's slice; other
    draws from it are left alone (they are then the same on every rank, as in one process).
    So every rank advances the generator exactly as a single process on the global batch does,
    and sample i of the global batch gets the same noise, t and z whatever the number of ranks.
    """

    def __init__(self, generator: torch.Generator, local_batch: int, rank: int, world: int):
        super().__init__()
        self.generator, self.local, self.rank, self.world = generator, local_batch, rank, world

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func not in _SIZED_DRAWS or kwargs.get("generator") is not self.generator:
            return func(*args, **kwargs)
        lead, size = _split_size(func, args, kwargs)
        if not size or size[0] != self.local:
            return func(*lead, size, **kwargs)
        full = func(*lead, (self.local * self.world, *size[1:]), **kwargs)
        start = self.rank * self.local
        return full[start:start + self.local].clone()


def _split_size(func, args: tuple, kwargs: dict) -> tuple[tuple, tuple[int, ...]]:
    """(leading arguments, size) of randn(*size) / randn(size) / randint(low, high, size)."""
    if "size" in kwargs:
        return args, tuple(kwargs.pop("size"))
    if func is torch.randint:
        return args[:-1], tuple(args[-1])
    if len(args) == 1 and not isinstance(args[0], int):
        return (), tuple(args[0])
    return (), tuple(args)


# ------------------------------------------------------------------------------ setup
def from_environment() -> Distributed:
    """The rank layout torchrun exports (WORLD_SIZE, RANK, LOCAL_RANK); one process without."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def select_device(name: str, dist: Distributed) -> torch.device:
    """--device cpu | cuda | cuda:N | auto (lddpm.precision.resolve_device); under torchrun
    `cuda` means cuda:LOCAL_RANK, one GPU per rank."""
    device = resolve_device(name)
    if not dist.active or device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UserError(f"--device {name}: several processes train on cpu or cuda only")
    if ":" in str(name):
        raise UserError(f"--device {name} names one GPU for {dist.world} processes: give "
                        "--device cuda (or auto) and each rank takes cuda:LOCAL_RANK")
    return resolve_device(f"cuda:{dist.local_rank}")


def setup(device_name: str) -> tuple[Distributed, torch.device]:
    """Picks the device and, under torchrun, joins the process group (nccl on CUDA, else gloo)."""
    dist = from_environment()
    device = select_device(device_name, dist)
    if device.type == "cuda":
        if device.index is not None:  # set_device refuses a plain "cuda" (the current GPU)
            torch.cuda.set_device(device)
        # Training crops have one fixed size, so cuDNN's per-shape kernel search pays once.
        torch.backends.cudnn.benchmark = True
    if not dist.active:
        return dist, device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend, device_id=device if backend == "nccl" else None)
    return Distributed(dist.rank, dist.world, dist.local_rank, backend), device


def teardown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
