"""`--device cuda`: noise is drawn on the (CPU) generator's device and moved (issue 11, item 1).

This machine has no GPU, so the tests run the code on the "meta" device with a torch.randn
that refuses a generator of another device, exactly as CUDA does ("Expected a 'cuda' device
type for generator"); the old code failed them at its first draw.
"""

from __future__ import annotations

import pytest
import torch

from lddpm.cli import main
from lddpm.config import DiffusionConfig, build_preset
from lddpm.diffusion.samplers import sample, set_timesteps
from lddpm.diffusion.schedule import Schedule
from lddpm.losses.objective import Objective
from lddpm.models.cvae import reparameterise
from lddpm.models.discriminator import TimeDiscriminator
from lddpm.models.lddpm import LDDPMNet
from lddpm.rng import randn

META = torch.device("meta")


@pytest.fixture
def strict_randn(monkeypatch):
    """torch.randn that, like CUDA, refuses a generator living on another device."""
    real = torch.randn

    def randn_checked(*args, generator=None, device=None, **kwargs):
        wanted = torch.device(device or "cpu")
        if generator is not None and wanted.type != generator.device.type:
            raise RuntimeError(f"Expected a '{wanted.type}' device type for generator")
        return real(*args, generator=generator, device=device, **kwargs)

    monkeypatch.setattr(torch, "randn", randn_checked)


def test_the_strict_randn_refuses_what_cuda_refuses(strict_randn):
    with pytest.raises(RuntimeError, match="device type for generator"):
        torch.randn(2, generator=torch.Generator(), device=META)


def test_training_losses_draw_on_the_generator_device(strict_randn):
    cfg = build_preset("tiny+v3+gan")  # glow's data-dependent init cannot run on meta
    cfg.data.scale = 2
    net = LDDPMNet(cfg.model, 2).to(META)
    disc = TimeDiscriminator(8, cfg.diffusion.timesteps).to(META)
    obj = Objective(cfg, Schedule.from_config(cfg.diffusion))
    batch = {"hr": torch.zeros(2, 3, 32, 32, device=META), "lr": torch.zeros(2, 3, 16, 16, device=META)}
    total, terms = obj.generator_loss(net, batch, torch.Generator().manual_seed(0), disc)
    assert total.device == META and set(terms) == {"ddpm", "kl", "adv"}
    d_total, _ = obj.discriminator_loss(net, disc, batch, torch.Generator().manual_seed(0), True)
    assert d_total.device == META


def test_cvae_reparameterisation_draws_on_the_generator_device(strict_randn):
    mu = torch.zeros(2, 4, 8, 8, device=META)
    assert reparameterise(mu, mu, torch.Generator().manual_seed(0)).device == META


@pytest.mark.parametrize("sampler, steps, eta", [("ddpm", None, 0.0), ("ddim", 4, 1.0), ("lddpm", 4, 0.0)])
def test_samplers_draw_on_the_generator_device(strict_randn, sampler, steps, eta):
    sched = Schedule.from_config(DiffusionConfig(timesteps=8))
    taus = set_timesteps(sampler, steps, 8, (steps, "uniform") if sampler == "lddpm" else None)

    def denoise(x, t):
        return torch.zeros_like(x), torch.zeros_like(x)

    x_T = randn((1, 3, 8, 8), torch.Generator().manual_seed(1), META)
    out = sample(sampler, denoise, x_T, sched, taus, eta, torch.Generator().manual_seed(0))
    assert out.device == META


def test_a_seed_draws_the_same_numbers_whatever_the_device():
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    first = randn((2, 5), a, "cpu")
    assert torch.equal(first, torch.randn((2, 5), generator=torch.Generator().manual_seed(3)))
    assert randn((2, 5), b, META).device == META
    # the meta draw consumed the CPU generator exactly as the CPU draw did
    assert torch.equal(randn((4,), a, "cpu"), randn((4,), b, "cpu"))


@pytest.mark.parametrize("argv", [
    ["train", "--preset", "tiny", "--data", ".", "--output", "unused_run"],
    ["upscale", "unused.png", "--output", "unused_out"],
    ["evaluate", "--data", "."],
])
def test_device_cuda_without_cuda_is_one_line_and_exit_2(argv, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lddpm: error: --device cuda: no CUDA device")
    assert not (tmp_path / "unused_run").exists() and not (tmp_path / "unused_out").exists()


@pytest.mark.parametrize("name, index", [("cuda", None), ("cuda:0", 0)])
def test_one_process_on_plain_cuda_sets_no_device_index(name, index, monkeypatch):
    """`lddpm train --device cuda` died in torch.cuda.set_device("cuda") (it wants an index);
    found on the first GPU run. A stub with torch's rule stands in for the GPU."""
    from lddpm.training import distributed

    calls = []

    def set_device(device):
        if torch.device(device).index is None:
            raise ValueError("Expected a torch.device with a specified index")
        calls.append(torch.device(device).index)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    dist, device = distributed.setup(name)
    assert not dist.active and device == torch.device(name)
    assert calls == ([] if index is None else [index]) and torch.backends.cudnn.benchmark
