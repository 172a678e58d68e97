"""The trainer: learning, exact resume, atomic checkpoints, the G/D alternation."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST_SETTINGS, SCALE, train_args

from lddpm import checkpoint as ckpt
from lddpm.cli import main
from lddpm.config import Config, apply_overrides, build_preset
from lddpm.data.imageio import load_image, to_tensor
from lddpm.errors import UserError
from lddpm.inference import Upscaler
from lddpm.training.trainer import LRPlan, Trainer


def tiny_config(preset: str = "tiny", *overrides: str) -> Config:
    return apply_overrides(build_preset(preset), [*FAST_SETTINGS, *overrides])


def run_steps(trainer: Trainer, n: int) -> list[dict[str, float]]:
    """n training steps without validation or checkpoints; the logs of each."""
    batches = trainer.batches()
    return [trainer.train_step(next(batches)) for _ in range(n)]


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module, what: str) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    differing = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differing, f"{what}: {len(differing)} tensors differ, e.g. {differing[0]}"


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters()))


# ------------------------------------------------------------------------------ learning
@pytest.mark.slow  # a training run (make test-fast leaves the runs out)
def test_loss_falls_and_trained_model_samples(image_dir, tmp_path):
    cfg = tiny_config("tiny", "train.lr=5e-3", "train.warmup_steps=5", "train.max_steps=40",
                      "data.batch_size=4")
    trainer = Trainer(cfg, image_dir, tmp_path / "run", progress=False)
    losses = [logs["ddpm"] for logs in run_steps(trainer, 40)]
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    # The untrained eps-prediction loss is ~1 (unit-variance noise); 40 steps at a high
    # learning rate bring it well below half of that on these smooth images.
    assert first > 0.6
    assert last < 0.5 * first, f"loss did not fall: first {first:.3f}, last {last:.3f}"

    lr = to_tensor(load_image(image_dir / "img4.png"))[None, :, :20, :28]
    sr = Upscaler(trainer.model, cfg).upscale(lr, "ddim", steps=3, seed=0)
    assert sr.shape == (1, 1, 3, 20 * SCALE, 28 * SCALE)
    assert torch.isfinite(sr).all() and sr.min() >= 0 and sr.max() <= 1


# ------------------------------------------------------------------------------ resume
def straight_and_resumed(cfg: Config, data: Path, root: Path, n: int) -> tuple[Trainer, Trainer]:
    """n steps in one run, and n/2 + (new process state) --resume to n: the two trainers."""
    straight = Trainer(cfg, data, root / "straight", progress=False)
    straight.fit(n)
    Trainer(cfg, data, root / "split", progress=False).fit(n // 2)  # then "killed"
    resumed = Trainer(cfg, data, root / "split", resume=True, progress=False)
    assert resumed.step == n // 2
    resumed.fit(n)
    return straight, resumed


@pytest.mark.slow
def test_resume_gives_identical_weights(image_dir, tmp_path):
    # dropout on, so that the per-step seeding of dropout is part of what is checked
    cfg = tiny_config("tiny", "model.unet.dropout=0.1", "train.max_steps=4")
    straight, resumed = straight_and_resumed(cfg, image_dir, tmp_path, 4)
    assert straight.step == resumed.step == 4
    assert_same_state(straight.model, resumed.model, "model")
    assert_same_state(straight.ema, resumed.ema, "EMA")
    assert straight.lr_sched.get_last_lr() == resumed.lr_sched.get_last_lr()
    # the optimiser moments too, so the run continues identically
    sa, sb = straight.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)


@pytest.mark.slow
def test_resume_with_discriminator_gives_identical_weights_and_losses(image_dir, tmp_path):
    cfg = tiny_config("tiny+v3+glow+gan", "train.max_steps=4")
    straight, resumed = straight_and_resumed(cfg, image_dir, tmp_path, 4)
    assert (ckpt.list_checkpoints(tmp_path / "split")[-1] / ckpt.DISC_FILE).is_file()
    assert_same_state(straight.model, resumed.model, "model")
    assert_same_state(straight.ema, resumed.ema, "EMA")
    assert_same_state(straight.disc, resumed.disc, "discriminator")
    # the step after the resume point: same G and D losses, bit for bit
    next_straight, next_resumed = run_steps(straight, 1)[0], run_steps(resumed, 1)[0]
    assert {"d_adv", "adv", "ddpm", "kl"} <= next_straight.keys()
    assert next_straight == next_resumed


# ------------------------------------------------------------------------------ LR plan
def test_lr_plan_is_warmup_then_cosine_to_zero():
    plan = LRPlan(10, 110)
    assert [plan(s) for s in (0, 4, 9, 10)] == pytest.approx([0.1, 0.5, 1.0, 1.0])
    assert plan(60) == pytest.approx(0.5) and plan(110) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("at", [60, 110])  # extended mid-run, and after the run finished
def test_extending_a_run_joins_the_longer_cosine_without_a_jump(at):
    old, longer = LRPlan(10, 110), LRPlan(10, 210)
    new = old.extended(at, 210)
    assert new(at) == old(at)  # the first resumed step keeps the current LR
    factors = [new(s) for s in range(at, 211)]
    # recomputing the cosine over the new total jumped 0 -> 0.52 at the end of the run
    assert max(abs(b - a) for a, b in itertools.pairwise(factors)) < 0.06
    assert factors[10:] == pytest.approx([longer(s) for s in range(at + 10, 211)])
    assert old.extended(at, 110) is old  # same max_steps: the plan is untouched


@pytest.mark.slow
@pytest.mark.parametrize("old_state", [False, True])
def test_resume_with_a_larger_max_steps_continues_the_lr(image_dir, tmp_path, old_state):
    cfg = tiny_config("tiny", "train.max_steps=4", "train.warmup_steps=2")
    first = Trainer(cfg, image_dir, tmp_path / "run", progress=False)
    first.fit(4)
    lr_at_end = first.opt.param_groups[0]["lr"]
    if old_state:  # a trainer_state.pt written before the plan was stored
        state_file = ckpt.list_checkpoints(tmp_path / "run")[-1] / ckpt.STATE_FILE
        state = torch.load(state_file, weights_only=True)
        del state["lr_plan"]
        torch.save(state, state_file)
    longer = tiny_config("tiny", "train.max_steps=8", "train.warmup_steps=2")
    resumed = Trainer(longer, image_dir, tmp_path / "run", resume=True, progress=False)
    assert resumed.opt.param_groups[0]["lr"] == lr_at_end
    logged = [logs["lr"] for logs in run_steps(resumed, 4)]
    expected = LRPlan(2, 4).extended(4, 8)
    assert logged == pytest.approx([cfg.train.lr * expected(s) for s in range(5, 9)])
    assert logged[0] < 0.5 * cfg.train.lr * LRPlan(2, 8)(5)  # a ramp, not the old jump

def test_resume_with_a_different_preset_names_the_differing_keys(tiny_run, image_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    rc = main(train_args("tiny+v2", image_dir, run, 8, "--resume"))
    err = capsys.readouterr().err
    assert rc == 2
    assert "model.encoder.enabled: False -> True" in err
    assert "different config" in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("preset, sampler", [("tiny+gan", "lddpm"), ("tiny", "ddpm")])
def test_validation_uses_the_samplers_own_step_count(image_dir, tmp_path, preset, sampler):
    # train.val_steps=2 used to reach the 4-step lddpm chain and the T-step ddpm: a crash
    cfg = tiny_config(preset, f"train.val_sampler={sampler}", "diffusion.timesteps=10")
    trainer = Trainer(cfg, image_dir, tmp_path / "run", progress=False)
    assert np.isfinite(trainer.validate())
    assert (tmp_path / "run" / "val" / "step_0000000.png").is_file()


@pytest.mark.parametrize("overrides, message", [
    (["train.val_sampler=lddpm"], "needs the gan part"),
    (["train.val_steps=0"], "train.val_steps must be in 1..1000"),
])
def test_impossible_validation_settings_are_refused_up_front(overrides, message):
    with pytest.raises(UserError, match=message):
        tiny_config("tiny", *overrides)

# ------------------------------------------------------------------------------ checkpoints
@pytest.fixture
def saved_once(image_dir, tmp_path) -> Trainer:
    """A tiny trainer (no steps needed) with one complete checkpoint, step_0000001."""
    trainer = Trainer(tiny_config(), image_dir, tmp_path / "run", progress=False)
    trainer.step = 1
    trainer.save()
    return trainer


def _fail_midway(real_save):
    """A save function that writes half a file, then fails (as a kill or a full disk would)."""
    def save(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:10])
        raise OSError("simulated crash while writing")
    return save


@pytest.mark.parametrize("target", ["save_file", "torch_save"])
def test_half_written_checkpoint_never_replaces_a_good_one(saved_once, image_dir, monkeypatch, target):
    run, good = saved_once.output, saved_once.output / "checkpoints" / "step_0000001"
    if target == "save_file":  # dies on the first weights file
        monkeypatch.setattr(ckpt, "save_file", _fail_midway(ckpt.save_file))
    else:  # dies on the very last file, after config.json was written
        monkeypatch.setattr(ckpt.torch, "save", _fail_midway(torch.save))
    saved_once.step = 2
    with pytest.raises(OSError, match="simulated"):
        saved_once.save()
    monkeypatch.undo()

    # An incomplete step_* directory (e.g. copied by hand, no config.json) is ignored too.
    (run / "checkpoints" / "step_0000003").mkdir()
    (run / "checkpoints" / "step_0000003" / ckpt.MODEL_FILE).write_bytes(b"partial")

    assert ckpt.list_checkpoints(run) == [good]
    assert ckpt.resolve_checkpoint(run) == good
    assert not (run / "checkpoints" / "step_0000002").exists()
    resumed = Trainer(saved_once.cfg, image_dir, run, resume=True, progress=False)
    assert resumed.step == 1
    assert_same_state(saved_once.model, resumed.model, "model")


def test_checkpoints_are_pruned_to_the_newest(saved_once):
    for step in (2, 3, 4):
        saved_once.step = step
        saved_once.save()
    names = [p.name for p in ckpt.list_checkpoints(saved_once.output)]
    assert names == [f"step_{s:07d}" for s in range(5 - ckpt.KEEP_LAST, 5)]
    assert sorted(p.name for p in (saved_once.output / "checkpoints").iterdir()) == names


def test_checkpoint_holds_the_documented_files(gan_run):
    path = ckpt.resolve_checkpoint(gan_run)
    assert path.name == f"step_{6:07d}"
    files = {p.name for p in path.iterdir()}
    assert files == {ckpt.MODEL_FILE, ckpt.EMA_FILE, ckpt.DISC_FILE, ckpt.CONFIG_FILE, ckpt.STATE_FILE}
    meta = ckpt.read_meta(path)
    assert meta["step"] == 6 and meta["config"]["preset"] == "tiny+v3+glow+gan"
    assert ckpt.read_config(path).gan.enabled


# ------------------------------------------------------------------------------ G / D
def test_one_gan_step_updates_both_networks_with_d_frozen_during_g(image_dir, tmp_path):
    trainer = Trainer(tiny_config("tiny+v3+glow+gan"), image_dir, tmp_path / "run", progress=False)
    g_before, d_before = params(trainer.model), params(trainer.disc)
    seen = {}
    real_generator_loss = trainer.objective.generator_loss

    def spying_generator_loss(net, batch, gen, disc=None, references=None):
        # Called after the D step: G must be untouched by it, D must be frozen for this one.
        seen["d_frozen"] = all(not p.requires_grad for p in trainer.disc.parameters())
        seen["d_given"] = disc is trainer.disc
        seen["g_changed_by_d_step"] = changed(g_before, trainer.model)
        seen["d_after_d_step"] = params(trainer.disc)
        return real_generator_loss(net, batch, gen, disc, references)

    trainer.objective.generator_loss = spying_generator_loss
    logs = run_steps(trainer, 1)[0]
    assert seen["d_given"], "the generator loss was not given the discriminator"
    assert seen["d_frozen"], "D still requires grad during the generator step"
    assert not seen["g_changed_by_d_step"], "the discriminator step moved G (fakes not detached?)"
    assert changed(d_before, trainer.disc), "the discriminator step did not update D"
    assert changed(g_before, trainer.model), "the generator step did not update G"
    assert not changed(seen["d_after_d_step"], trainer.disc), "the G step moved D"
    assert logs["adv"] > 0 and logs["d_adv"] > 0


# ------------------------------------------------------------------------------ sampling
def test_lddpm_sampler_repeats_with_the_same_seed(gan_run, image_dir):
    up = Upscaler.from_checkpoint(gan_run)
    lr = to_tensor(load_image(image_dir / "img0.png"))[None, :, :16, :16]
    a = up.upscale(lr, "lddpm", seed=5)
    b = up.upscale(lr, "lddpm", seed=5)
    c = up.upscale(lr, "lddpm", seed=6)
    assert a.shape == (1, 1, 3, 16 * SCALE, 16 * SCALE)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ------------------------------------------------------------------------------ references (Fig. 11)
@pytest.mark.parametrize("prob, expected", [("1.0", [True, True, True]), ("0.0", [False, False, False])])
def test_training_feeds_references_to_the_cross_attention(image_dir, tmp_path, monkeypatch, prob, expected):
    from lddpm.losses.objective import Objective

    seen = []
    original = Objective.generator_loss

    def spy(self, net, batch, gen, disc=None, references=None):
        seen.append(references is not None)
        if references is not None:
            assert references[0].shape == batch["lr"].shape
        return original(self, net, batch, gen, disc, references)

    monkeypatch.setattr(Objective, "generator_loss", spy)
    cfg = tiny_config("tiny+v2", f"data.reference_prob={prob}")
    run_steps(Trainer(cfg, image_dir, tmp_path / "run", progress=False), 3)
    assert seen == expected


def test_reference_probability_draws_per_batch(image_dir, tmp_path):
    cfg = tiny_config("tiny+v2", "data.reference_prob=0.5")
    trainer = Trainer(cfg, image_dir, tmp_path / "run", progress=False)
    batch = {"ref": torch.zeros(1)}
    draws = [trainer._references(batch, torch.Generator().manual_seed(s)) is not None for s in range(200)]
    assert 70 < sum(draws) < 130
    assert trainer._references({}, torch.Generator()) is None  # v1 data: no draw at all


# ------------------------------------------------------------------------------ changed defaults
@pytest.mark.parametrize("preset, resumes", [("tiny", True), ("tiny+gan", False)])
def test_resume_ignores_only_the_keys_a_model_does_not_use(image_dir, tmp_path, preset, resumes):
    # runs written before loss.adv became 1 and the perceptual terms alphabar-weighted
    cfg = tiny_config(preset, "train.max_steps=1")
    Trainer(cfg, image_dir, tmp_path / "run", progress=False).fit(1)
    config_file = ckpt.list_checkpoints(tmp_path / "run")[-1] / ckpt.CONFIG_FILE
    meta = json.loads(config_file.read_text())
    meta["config"]["loss"].update(adv=0.1, time_weighting="none")
    config_file.write_text(json.dumps(meta))
    if resumes:  # no gan, no perceptual terms: neither value changes this run
        assert Trainer(cfg, image_dir, tmp_path / "run", resume=True, progress=False).step == 1
    else:
        with pytest.raises(UserError, match=r"loss.adv: 0.1 -> 1.0"):
            Trainer(cfg, image_dir, tmp_path / "run", resume=True, progress=False)
