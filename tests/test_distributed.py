"""Training on 2 gloo ranks under torchrun: one process's weights, exact resume, device errors.

The 2-rank runs are real `torchrun -m lddpm train` subprocesses (1 thread per rank). The preset
is tiny+v3+glow+gan because it holds every part DDP has to get right: the CVAE posterior
(used by the L_DDPM branch only), the Glow prior's data-initialised ActNorm, and the
discriminator with its lazy R1 penalty (a double backward).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SCALE, train_args
from safetensors.torch import load_file

from lddpm import checkpoint as ckpt
from lddpm.cli import main
from lddpm.errors import UserError
from lddpm.training.distributed import Distributed, ShardedDraws, ShardSampler

PRESET = "tiny+v3+glow+gan"
STEPS = 4
# global batch 4 = 2 ranks x 2; a checkpoint at step 2 (the resume point) and at step 4
EXTRA = ["--set", "data.batch_size=4", "--set", "train.checkpoint_every=2", "--set", "train.log_every=1"]
WEIGHT_FILES = (ckpt.MODEL_FILE, ckpt.EMA_FILE, ckpt.DISC_FILE)


def torchrun(argv: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lddpm", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}"
    return done


def logged_losses(stdout: str) -> dict[int, dict[str, float]]:
    """{step: {name: value}} from the `step N name value ... lr X R step/s` log lines."""
    out = {}
    for m in re.finditer(r"^step (\d+) (.*) lr \S+ \S+ step/s$", stdout, re.MULTILINE):
        words = m.group(2).split()
        out[int(m.group(1))] = {k: float(v) for k, v in zip(words[::2], words[1::2])}
    return out


def adam_reach(cdir: Path, steps: int) -> float:
    """The most Adam can move a weight in `steps` steps: the sum of the learning rates."""
    t = ckpt.read_config(cdir).train
    return sum(t.lr * min(1.0, (i + 1) / t.warmup_steps) for i in range(steps))


def weights(cdir: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(cdir / name))


@pytest.fixture(scope="module")
def two_ranks(image_dir, tmp_path_factory) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("ddp") / "run"
    done = torchrun(train_args(PRESET, image_dir, run, STEPS, *EXTRA))
    return run, done.stdout


@pytest.fixture(scope="module")
def one_process(image_dir, tmp_path_factory) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("single") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(train_args(PRESET, image_dir, run, STEPS, *EXTRA)) == 0
    return run, out.getvalue()


# ------------------------------------------------------------------------------ 2 ranks
@pytest.mark.slow  # a torchrun run of 2 ranks (make test-fast leaves it out)
def test_two_ranks_write_one_checkpoint_per_save(two_ranks):
    run, stdout = two_ranks
    assert "2 processes (gloo) x 2 samples = global batch 4" in stdout
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_0000002", "step_0000004"]  # rank 0 alone wrote; no temporaries left
    assert stdout.count("checkpoint: ") == 1


@pytest.mark.slow
def test_two_ranks_match_one_process_with_the_same_global_batch(two_ranks, one_process):
    """Same data, same draws (ShardedDraws), gradients averaged: the same computation up to the
    order of float sums (a batch mean of 4 vs the mean of two means of 2).

    Tolerance, and why: Adam's update is about lr * m / sqrt(v), i.e. +-lr per step whatever
    the gradient's size. A few parameters have a gradient that is zero up to rounding (the
    Glow ActNorm biases right after their data-dependent initialisation centred the batch,
    zero-initialised output biases), so rounding picks the sign of their updates: measured,
    ~0.05% of the weights differ by up to the sum of the learning rates so far (both signs
    flipped), all others by < 1e-6. So: at most 0.1% of the weights beyond 1e-6, none beyond
    Adam's largest possible move. Without the sharded draws, 39% of the weights differ by
    more than 1e-6 (and ActNorm by up to 1.0): the test tells the two apart."""
    run2, out2 = two_ranks
    run1, out1 = one_process
    losses2, losses1 = logged_losses(out2), logged_losses(out1)
    assert sorted(losses2) == sorted(losses1) == list(range(1, STEPS + 1))
    for step in losses1:  # printed to 4 decimals
        for name, value in losses1[step].items():
            assert losses2[step][name] == pytest.approx(value, abs=2e-4), (step, name)
    for step in (2, STEPS):
        d1, d2 = (run / "checkpoints" / f"step_{step:07d}" for run in (run1, run2))
        for name in WEIGHT_FILES:
            a, b = weights(d1, name), weights(d2, name)
            assert a.keys() == b.keys()
            diff = torch.cat([(a[k].double() - b[k].double()).abs().flatten() for k in a])
            assert diff.max() <= 1.05 * adam_reach(d1, step), f"{name} step {step}: max {diff.max():.2e}"
            assert (diff > 1e-6).double().mean() < 1e-3, f"{name} step {step}: too many weights differ"


@pytest.mark.slow
def test_resume_under_two_ranks_continues_exactly(two_ranks, image_dir, tmp_path):
    """Stopped after the step-2 checkpoint (as a kill then would leave it), resumed under 2
    ranks: bit for bit the uninterrupted 2-rank run."""
    run, _ = two_ranks
    stopped = tmp_path / "run"
    shutil.copytree(run, stopped)
    shutil.rmtree(stopped / "checkpoints" / f"step_{STEPS:07d}")
    done = torchrun(train_args(PRESET, image_dir, stopped, STEPS, *EXTRA, "--resume"))
    assert "at step 2" in done.stdout + done.stderr
    final, resumed = ckpt.list_checkpoints(run)[-1], ckpt.list_checkpoints(stopped)[-1]
    assert resumed.name == final.name == f"step_{STEPS:07d}"
    for name in WEIGHT_FILES:
        a, b = weights(final, name), weights(resumed, name)
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after the resume"


@pytest.mark.slow
def test_two_rank_checkpoint_upscales_in_one_process(two_ranks):
    from lddpm.inference import Upscaler

    run, _ = two_ranks
    up = Upscaler.from_checkpoint(run)
    lr = torch.rand(1, 3, 12, 16) * 2 - 1
    sr = up.upscale(lr, "lddpm", steps=None, seed=0)
    assert sr.shape[-2:] == (12 * SCALE, 16 * SCALE) and torch.isfinite(sr).all()


# ------------------------------------------------------------------------------ pieces
def test_sharded_draws_give_each_rank_its_slice_of_the_global_draws():
    def draws(rank: int, world: int, b: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(7)
        ctx = ShardedDraws(g, b, rank, world) if world > 1 else contextlib.nullcontext()
        with ctx:
            return [torch.randint(0, 1000, (b,), generator=g), torch.randn((b, 3, 4), generator=g),
                    torch.randn(b, 2, generator=g), torch.randn((5,), generator=g)]

    whole = draws(0, 1, 6)
    parts = [draws(r, 3, 2) for r in range(3)]
    for i in range(3):  # per-sample draws: rank slices of the global draw
        assert torch.equal(torch.cat([p[i] for p in parts]), whole[i])
    for p in parts:  # a draw not sized by the batch: the same on every rank, as in one process
        assert torch.equal(p[3], whole[3])


def test_shard_sampler_splits_each_global_batch_among_the_ranks():
    items = list(range(12))
    shards = [list(ShardSampler(items, 6, r, 3)) for r in range(3)]
    assert shards == [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11]]


def test_a_global_batch_the_ranks_cannot_share_is_a_user_error():
    with pytest.raises(UserError, match="global batch"):
        Distributed(rank=0, world=3).local_batch(4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_device_cuda_without_cuda_is_one_error_line(device, image_dir, tmp_path, capsys):
    rc = main(train_args("tiny", image_dir, tmp_path / "run", 1, "--device", device))
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"lddpm: error: --device {device}:") and err.count("\n") == 1, err
