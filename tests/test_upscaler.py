"""The Upscaler entry point (seeds, references, padding, tiling, parameterisations) and
loading checkpoints into it. Networks are randomised as in tests/test_models.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_models import _config, _net, _rand, _randomise, _set_gates

from lddpm.checkpoint import save_checkpoint
from lddpm.config import build_preset
from lddpm.diffusion.schedule import select_timesteps
from lddpm.errors import UserError
from lddpm.inference import Upscaler
from lddpm.models.lddpm import LDDPMNet


# ---------------------------------------------------------------------------------- Upscaler
def _upscaler(preset: str, scale: int = 2, seed: int = 1) -> Upscaler:
    cfg = _config(preset, scale)
    torch.manual_seed(0)
    return Upscaler(_randomise(LDDPMNet(cfg.model, scale), seed), cfg)


@pytest.mark.parametrize("preset, sampler", [("tiny+v3", "ddim"), ("tiny+v3+glow+gan", "lddpm")])
def test_posterior_encoder_runs_in_training_only(preset, sampler, monkeypatch):
    up = _upscaler(preset)
    calls = []
    original = up.net.cvae.posterior.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(up.net.cvae.posterior, "forward", counting)
    steps = 3 if sampler == "ddim" else None
    up.upscale(_rand(1, 3, 8, 8, seed=0), sampler=sampler, steps=steps, num_samples=2)
    assert calls == []
    net = up.net
    hr = _rand(1, 3, 16, 16, seed=1) * 2 - 1
    with torch.no_grad():
        net.forward_train(
            hr, torch.tensor([3]), net.condition(hr[..., ::2, ::2]), hr, torch.Generator()
        )
    assert calls == [1]


@pytest.mark.parametrize(
    "preset, sampler, eta",
    [("tiny+v3", "ddim", 0.0), ("tiny+v1", "ddim", 0.0), ("tiny+v1", "ddim", 1.0)],
)
def test_same_seed_same_output_different_seed_different(preset, sampler, eta):
    up = _upscaler(preset)
    lr = _rand(1, 3, 8, 12, seed=0)
    run = lambda seed: up.upscale(lr, sampler=sampler, steps=3, seed=seed, eta=eta)
    a = run(0)
    assert a.shape == (1, 1, 3, 16, 24) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, run(0))
    assert (a - run(1)).abs().max() > 1e-3


def test_sample_index_uses_seed_plus_index():
    up = _upscaler("tiny+v3")
    lr = _rand(1, 3, 8, 8, seed=0)
    both = up.upscale(lr, steps=3, seed=5, num_samples=2)
    assert both.shape == (2, 1, 3, 16, 16)
    assert torch.equal(both[1], up.upscale(lr, steps=3, seed=6)[0])
    assert (both[0] - both[1]).abs().max() > 1e-3


def test_cross_attention_with_two_references_changes_the_output():
    up = _upscaler("tiny+v2")
    _set_gates(up.net, 1.0, "unet.cross.")
    lr = _rand(1, 3, 8, 8, seed=0)
    ref_a, ref_b = _rand(1, 3, 6, 10, seed=1), _rand(1, 3, 12, 12, seed=2)
    cond = up.net.condition(lr * 2 - 1, [ref_a * 2 - 1, ref_b * 2 - 1])
    assert cond.tokens.shape[1] == 8 * 8 + 6 * 10 + 12 * 12  # LR tokens, then each reference's
    plain = up.upscale(lr, steps=3, seed=0)
    one = up.upscale(lr, steps=3, seed=0, references=[ref_a])
    two = up.upscale(lr, steps=3, seed=0, references=[ref_a, ref_b])
    assert two.shape == plain.shape
    assert (two - plain).abs().max() > 1e-3
    assert (two - one).abs().max() > 1e-3


def test_references_without_an_lr_encoder_are_a_user_error():
    up = _upscaler("tiny+v1")
    with pytest.raises(UserError, match="reference"):
        up.upscale(_rand(1, 3, 8, 8, seed=0), steps=2, references=[_rand(1, 3, 8, 8, seed=1)])


@pytest.mark.parametrize("preset, scale", [("tiny+v1", 3), ("tiny+v3+glow", 2)])
def test_upscaler_pads_and_crops_back_sizes_the_net_cannot_take(preset, scale):
    up = _upscaler(preset, scale)
    h, w = 5, 7
    lr = _rand(1, 3, h, w, seed=0)
    out = up.upscale(lr, steps=2, seed=3)
    assert out.shape == (1, 1, 3, h * scale, w * scale)
    # the same as upscaling the reflect-padded LR and cropping the top-left corner
    m = up.net.size_multiple
    pad_h = next(p for p in range(m) if ((h + p) * scale) % m == 0)  # the least padding
    pad_w = next(p for p in range(m) if ((w + p) * scale) % m == 0)
    assert pad_h or pad_w
    padded = F.pad(lr, (0, pad_w, 0, pad_h), mode="reflect")
    ref = up.upscale(padded, steps=2, seed=3)[..., : h * scale, : w * scale]
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_tiling_returns_the_full_size():
    up = _upscaler("tiny+v1")
    lr = _rand(1, 3, 20, 26, seed=0)
    out = up.upscale(lr, steps=2, seed=0, tile=16)
    assert out.shape == (1, 1, 3, 40, 52)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # a tile at least as large as the image means no tiling at all
    assert torch.equal(up.upscale(lr, steps=2, seed=0, tile=26), up.upscale(lr, steps=2, seed=0))



def test_tiled_equals_untiled_for_a_network_without_spatial_context(monkeypatch):
    """With a pixelwise network the only thing tiling can change is the noise and the blend:
    the image-anchored noise and the normalised blend weights make tiled = untiled."""
    up = _upscaler("tiny+v1")
    monkeypatch.setattr(up.net, "forward", lambda x_t, t, cond, noise=None: 0.3 * x_t)
    lr = _rand(1, 3, 20, 26, seed=0)
    whole = up.upscale(lr, steps=2, seed=4, tile=0)
    for tile, overlap in ((16, None), (12, 4), (9, 0)):
        tiled = up.upscale(lr, steps=2, seed=4, tile=tile, tile_overlap=overlap)
        torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6, msg=f"tile {tile}")


def test_self_ensemble_is_the_mean_of_the_eight_turned_back_passes():
    """Known answer: x8 = mean over the rotations/flips of upscale(T(lr)) turned back, each
    pass with the same seed; the plan counts 8 passes of evaluations."""
    from lddpm.data.datasets import DIHEDRAL
    from lddpm.data.datasets import dihedral_tensor as dihedral
    from lddpm.data.datasets import undo_dihedral_tensor as undo_dihedral

    up = _upscaler("tiny+v1")
    lr = _rand(1, 3, 8, 12, seed=0)
    plain = lambda x: up.upscale(x, steps=2, seed=3, self_ensemble=False)
    expected = torch.stack([undo_dihedral(plain(dihedral(lr, k, f)), k, f) for k, f in DIHEDRAL]).mean(0)
    calls = []
    ens = up.upscale(lr, steps=2, seed=3, self_ensemble=True, progress=calls.append)
    assert ens.shape == (1, 1, 3, 16, 24)
    torch.testing.assert_close(ens, expected, rtol=0, atol=1e-6)
    assert len(calls) == up.plan(steps=2, self_ensemble=True).evaluations(8, 12) == 8 * 2
    assert (ens - plain(lr)).abs().max() > 1e-4  # the passes differ: the mean is not one of them
    for k, f in DIHEDRAL:
        assert torch.equal(undo_dihedral(dihedral(lr, k, f), k, f), lr)


def test_self_ensemble_default_comes_from_the_model():
    up = _upscaler("tiny+v1")
    assert up.plan().self_ensemble is False
    up.defaults = {**up.defaults, "self_ensemble": True}
    assert up.plan().self_ensemble is True and up.plan(self_ensemble=False).self_ensemble is False


def test_a_v_prediction_residual_checkpoint_samples(tmp_path):
    """The shipped recipe's parameterisation (v-prediction of the scaled residual), saved
    and loaded like any checkpoint: seeded, in range, and the residual is added back."""
    cfg = _config("tiny+res")
    assert (cfg.diffusion.prediction, cfg.diffusion.target) == ("v", "residual")
    net = _randomise(_net("tiny+res"), seed=3, std=0.02)
    up = Upscaler.from_checkpoint(save_checkpoint(tmp_path / "v", 1, cfg, net, net, {}))
    assert up.param.prediction == "v"
    lr = _rand(1, 3, 12, 10, seed=1)
    a, b = up.upscale(lr, steps=3, seed=2), up.upscale(lr, steps=3, seed=2)
    assert torch.equal(a, b) and a.shape == (1, 1, 3, 24, 20)
    assert torch.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
    # a near-zero network predicts a near-zero residual: the sample stays near bicubic
    from lddpm.data.resize import imresize

    bicubic = imresize(lr.double(), scale=2).float().clamp(0, 1)
    assert (a[0] - bicubic).abs().mean() < 0.1

# ---------------------------------------------------------------------------------- checkpoints
def _save(tmp_path, preset: str, name: str, strip_posterior: bool = False):
    cfg = _config(preset)
    net = _randomise(_net(preset), seed=7)
    if strip_posterior:
        del net.cvae.posterior  # an inference export: the posterior is training-only
    return save_checkpoint(tmp_path / name, 1, cfg, net, net, {"step": 1}), net


def test_v1_checkpoint_loaded_as_v3_names_the_missing_parts(tmp_path):
    path, _ = _save(tmp_path, "tiny+v1", "v1")
    with pytest.raises(UserError) as info:
        Upscaler.from_checkpoint(path, config=_config("tiny+v3"))
    msg = str(info.value)
    assert "lacks" in msg and "LR encoder" in msg and "CVAE" in msg and "cross-attention" in msg
    assert "\n" not in msg


def test_v3_checkpoint_loaded_as_v1_names_the_unexpected_parts(tmp_path):
    path, saved = _save(tmp_path, "tiny+v3", "v3")
    with pytest.raises(UserError) as info:
        Upscaler.from_checkpoint(tmp_path / "v3", config=_config("tiny+v1"))
    msg = str(info.value)
    assert "has parts the model does not" in msg and "LR encoder" in msg and "CVAE" in msg
    assert "lacks" not in msg
    # loading it as what it is works and gives back the saved weights
    up = Upscaler.from_checkpoint(path)
    assert up.cfg.model.cvae.enabled
    assert torch.equal(up.net.cvae.posterior.head.weight, saved.cvae.posterior.head.weight)


def test_inference_checkpoint_without_posterior_loads(tmp_path):
    path, saved = _save(tmp_path, "tiny+v3", "export", strip_posterior=True)
    up = Upscaler.from_checkpoint(path, config=_config("tiny+v3"))
    for name, value in saved.state_dict().items():
        assert torch.equal(up.net.state_dict()[name], value), name
    out = up.upscale(_rand(1, 3, 8, 8, seed=0), steps=2)
    assert out.shape == (1, 1, 3, 16, 16)
    # but a checkpoint missing a part that sampling needs does not load
    cfg = _config("tiny+v3")
    net = _net("tiny+v3")
    del net.cvae.fusion
    save_checkpoint(tmp_path / "broken", 1, cfg, net, net, {})
    with pytest.raises(UserError, match="CVAE branch"):
        Upscaler.from_checkpoint(tmp_path / "broken")


def test_auto_tile_bounds_self_attention_tokens_and_the_training_crop():
    # Bug fixed: whole-image sampling of a 768x576 output with the tiny preset ran
    # self-attention over 384x288 tokens (minutes per step); the default tile bounds it.
    for preset, expected in (("tiny", 32), ("small", 64), ("paper", 64)):
        cfg = build_preset(preset)
        with torch.device("meta"):
            net = LDDPMNet(cfg.model, cfg.data.scale)
        up = Upscaler(net, cfg)
        tile = up.auto_tile()
        assert tile == expected
        finest = min(cfg.model.unet.attn_levels)
        tokens_side = tile * cfg.data.scale // 2**finest
        assert tokens_side <= 32


# ---------------------------------------------------------------------------------- the plan
def test_the_plan_resolves_every_choice_once(monkeypatch):
    """One SamplingPlan per call: the timesteps decided once (`set_timesteps`), the model's
    defaults filled in, the tiling and the evaluation count derived from it."""
    import lddpm.diffusion.plan as plan_module

    up = _upscaler("tiny+v1")
    up.defaults = {**up.defaults, "sampler": "ddim", "steps": 3, "consistency": "end"}
    calls = []
    real = plan_module.set_timesteps
    monkeypatch.setattr(plan_module, "set_timesteps", lambda *a: calls.append(a) or real(*a))
    plan = up.plan()
    assert (plan.sampler, plan.steps, plan.consistency, plan.eta) == ("ddim", 3, "end", 0.0)
    expected = select_timesteps(up.sched.timesteps, 3)[::-1]
    assert list(plan.timesteps) == list(expected) and not plan.timesteps.flags.writeable
    assert (plan.tile, plan.tile_overlap, plan.num_samples) == (up.auto_tile(), 8, 1)
    assert plan.precision == "fp32" and plan.device == torch.device("cpu")
    progress = []
    lr = _rand(1, 3, 20, 44, seed=0)
    plan = up.plan(steps=2, tile=16, num_samples=2)  # the default sampler with other steps
    up.upscale(lr, seed=0, plan=plan, progress=progress.append)
    assert len(calls) == 2  # once per plan: never again while sampling
    assert len(progress) == plan.evaluations(20, 44) == 2 * (2 * 4) * 2
    # the keyword API builds the same plan
    assert torch.equal(up.upscale(lr, seed=0, plan=plan),
                       up.upscale(lr, steps=2, tile=16, num_samples=2, seed=0))
    with pytest.raises(TypeError, match="plan"):
        up.upscale(lr, steps=2, plan=plan)


@pytest.mark.parametrize("choices, option, words", [
    ({"steps": 0}, "steps", "steps must be in 1..50"),
    ({"sampler": "lddpm"}, "sampler", "needs a checkpoint trained with the gan part"),
    ({"sampler": "ddpm", "steps": 10}, "steps", "ddpm runs all"),
    ({"eta": 1.5}, "eta", "eta must be in [0, 1]"),
    ({"num_samples": 0}, "num_samples", "number of samples"),
    ({"tile": 2}, "tile", "tile side"),
    ({"tile": 16, "tile_overlap": 16}, "tile_overlap", "overlap must be in 0..15"),
    ({"consistency": "always"}, "consistency", "consistency 'always'"),
])
def test_a_bad_choice_names_itself_in_words_not_flags(choices, option, words):
    up = _upscaler("tiny+v1")
    with pytest.raises(UserError) as caught:
        up.plan(**choices)
    assert caught.value.option == option and words in str(caught.value)
    assert "--" not in str(caught.value)  # the CLI adds its flags (lddpm.cli)


def test_references_without_an_encoder_say_so_without_a_flag():
    up = _upscaler("tiny+v1")
    with pytest.raises(UserError, match="reference images need") as caught:
        up.upscale(_rand(1, 3, 8, 8, seed=0), steps=1, references=[_rand(1, 3, 8, 8, seed=1)])
    assert caught.value.option == "reference" and "--" not in str(caught.value)


# ---------------------------------------------------------------------------------- the latent z
def _pixelwise_with_z(up: Upscaler, seen: list):
    """A network whose output at a pixel depends only on x_t there and on the z cell above
    it (nearest upsampling of z by f): tiling can then change nothing but the noises."""
    f = up.net.unet.downsampling

    def forward(x_t, t, cond, noise=None):
        seen.append(noise.clone())
        return 0.3 * x_t + 0.5 * F.interpolate(noise[:, :3], scale_factor=f, mode="nearest")

    return forward


def test_tiles_take_their_region_of_one_image_wide_latent(monkeypatch):
    """Issue 18: z (spatial, HR/f) is drawn once per sample for the whole image, as the
    untiled run draws it; each tile takes its region. Tile starts sit on z's grid, so a
    network that sees no spatial context gives the untiled image from any tiling, and each
    tile's z is the untiled z at its place."""
    from lddpm.inference import latent_region

    up = _upscaler("tiny+v3")
    f, s = up.net.unet.downsampling, up.scale
    assert up.latent_align == f // 2 and f > s  # x2: tile starts on even LR pixels
    whole_z, tiled_z = [], []
    lr = _rand(1, 3, 22, 30, seed=0)
    monkeypatch.setattr(up.net, "forward", _pixelwise_with_z(up, whole_z))
    whole = up.upscale(lr, steps=2, seed=4, tile=0)
    field = whole_z[0]
    assert field.shape[-2:] == (22 * s // f + (22 * s % f > 0), 30 * s // f + (30 * s % f > 0))
    for tile, overlap in ((16, None), (12, 4), (9, 0), (7, 3)):
        tiled_z.clear()
        monkeypatch.setattr(up.net, "forward", _pixelwise_with_z(up, tiled_z))
        tiled = up.upscale(lr, steps=2, seed=4, tile=tile, tile_overlap=overlap)
        torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6, msg=f"tile {tile}")
        tiling = up.plan(tile=tile, tile_overlap=overlap).tiling(22, 30)
        origins = [(y, x) for y, _ in tiling.ys for x, _ in tiling.xs]
        assert len(tiled_z) == 2 * len(origins)  # two steps per tile
        for (y, x), z in zip(origins, tiled_z[::2]):
            assert (y * s) % f == 0 and (x * s) % f == 0  # on the latent grid
            cy, cx = y * s // f, x * s // f
            inside = z[..., : field.shape[-2] - cy, : field.shape[-1] - cx]
            assert torch.equal(inside, field[..., cy : cy + z.shape[-2], cx : cx + z.shape[-1]])
    # a different seed draws another field; sample k of a run is the seed + k field
    whole_z.clear()
    monkeypatch.setattr(up.net, "forward", _pixelwise_with_z(up, whole_z))
    up.upscale(lr, steps=1, seed=4, num_samples=2, tile=0)
    assert torch.equal(whole_z[0], field) and not torch.equal(whole_z[1], field)
    # past the field's edge a region mirrors it
    region = latent_region(field, (0, field.shape[-1] - 2), (2, 4))
    assert torch.equal(region[..., :2], field[..., :2, -2:])
    assert torch.equal(region[..., 2:], field[..., :2, [-2, -3]])


def test_the_untiled_latent_is_the_first_draw_of_the_samples_generator(monkeypatch):
    """The image-wide z is what the untiled run drew before issue 18 (the first N(0, I)
    draw of the generator seeded with seed + k), so untiled outputs are unchanged."""
    up = _upscaler("tiny+v3")
    seen = []
    monkeypatch.setattr(up.net, "forward", _pixelwise_with_z(up, seen))
    up.upscale(_rand(1, 3, 8, 12, seed=0), steps=1, seed=7, tile=0)
    shape = up.net.latent_shape((1, 3, 16, 24))
    assert torch.equal(seen[0], torch.randn(shape, generator=torch.Generator().manual_seed(7)))
