"""Export, the shipped model, `--init-from`, and `lddpm upscale` with no other flag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SCALE, smooth_pattern, train_args
from PIL import Image
from safetensors.torch import load_file
from test_cli import assert_one_line_error, run_cli

from lddpm import checkpoint as ckpt
from lddpm import pretrained
from lddpm.data.resize import imresize
from lddpm.inference import Upscaler
from lddpm.metrics.psnr_ssim import psnr_y


@pytest.fixture
def lr_png(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(smooth_pattern(np.random.default_rng(5), 12, 16)).save(path)
    return path


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny-x2"
    rc = __import__("lddpm.cli").cli.main(
        ["export", str(tiny_run), str(out), "--sampler", "ddim", "--steps", "3",
         "--consistency", "end"])
    assert rc == 0
    return out


def test_export_holds_bf16_ema_weights_and_the_sampling_defaults(exported, tiny_run):
    meta = json.loads((exported / "config.json").read_text())
    assert meta["export"] is True and meta["inference"] == {
        "sampler": "ddim", "steps": 3, "consistency": "end"}
    state = load_file(str(exported / "model.safetensors"))
    ema = load_file(str(ckpt.resolve_checkpoint(tiny_run) / ckpt.EMA_FILE))
    assert state.keys() == {k for k in ema if not k.startswith("cvae.posterior.")}
    for k, v in state.items():
        assert v.dtype == torch.bfloat16
        torch.testing.assert_close(v, ema[k].to(torch.bfloat16), rtol=0, atol=0)
    assert sorted(p.name for p in exported.iterdir()) == ["config.json", "model.safetensors"]


def test_from_pretrained_loads_an_export_with_its_defaults(exported):
    up = Upscaler.from_pretrained(exported)
    plan = up.plan()
    assert (plan.sampler, plan.steps, plan.consistency) == ("ddim", 3, "end")
    plan = up.plan(sampler="ddim", steps=5, consistency="none")
    assert (plan.sampler, plan.steps, plan.consistency) == ("ddim", 5, "none")
    lr = torch.rand(1, 3, 8, 8)
    sr = up.upscale(lr, seed=0)
    assert sr.shape == (1, 1, 3, 8 * SCALE, 8 * SCALE)
    assert up.evaluations == 3
    # consistency "end" (the export's default) pulls the output's downscale onto the input;
    # exact before the final clamp to [0, 1], which this 6-step model's output needs
    error = lambda out: (imresize(out[0], scale=1 / SCALE) - lr).abs().mean()
    assert error(sr) < 0.5 * error(up.upscale(lr, seed=0, consistency="none"))


def test_export_description_is_what_lddpm_models_shows(tiny_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "pretrained" / "tiny-x2"
    rc, _, err = run_cli(capsys, "export", tiny_run, out, "--description", "for tests only")
    assert rc == 0, err
    monkeypatch.setattr(pretrained, "HERE", out.parent)
    rc, listing, _ = run_cli(capsys, "models")
    assert rc == 0 and "tiny-x2" in listing and "\n    for tests only" in listing


def test_export_stores_self_ensemble_as_a_default(tiny_run, tmp_path, capsys):
    out = tmp_path / "x8"
    rc, _, err = run_cli(capsys, "export", tiny_run, out, "--self-ensemble")
    assert rc == 0, err
    assert json.loads((out / "config.json").read_text())["inference"] == {"self_ensemble": True}
    up = Upscaler.from_pretrained(out)
    assert up.plan().self_ensemble is True and up.plan().evaluations(4, 4) == 8 * up.plan().steps


def test_export_refuses_to_overwrite(exported, tiny_run, capsys):
    rc, _, err = run_cli(capsys, "export", tiny_run, exported)
    assert_one_line_error(rc, err, "exists", "--overwrite")


@pytest.mark.parametrize("bad, needle", [(["--sampler", "lddpm"], "gan"),
                                         (["--sampler", "ddim", "--steps", "0"], "0")])
def test_export_checks_its_defaults_before_writing(exported, tiny_run, bad, needle, capsys):
    """Invalid sampling defaults are refused before anything is written, so an existing
    export replaced with --overwrite is still intact afterwards."""
    before = (exported / "model.safetensors").read_bytes()
    rc, _, err = run_cli(capsys, "export", tiny_run, exported, "--overwrite", *bad)
    assert_one_line_error(rc, err, needle)
    assert (exported / "model.safetensors").read_bytes() == before


@pytest.fixture(scope="module")
def other_finetune(exported, tmp_path_factory):
    """A second 'fine-tuning' of the exported network: other weights, trained on other data."""
    meta = json.loads((exported / "config.json").read_text())
    meta["config"]["data"]["degradation"] = "bsrgan"  # training keys may differ
    state = {k: v.float() + 0.5 for k, v in load_file(str(exported / "model.safetensors")).items()}
    return ckpt.write_export(tmp_path_factory.mktemp("other") / "other", state, meta)


def test_export_interpolate_is_the_weighted_mean_of_the_two_networks(
        exported, other_finetune, tiny_run, tmp_path, capsys):
    ema = load_file(str(ckpt.resolve_checkpoint(tiny_run) / ckpt.EMA_FILE))
    other = load_file(str(other_finetune / "model.safetensors"))
    for weight in (0.0, 0.25, 1.0):
        out = tmp_path / f"blend{weight}"
        rc, _, err = run_cli(capsys, "export", tiny_run, out, "--interpolate", other_finetune,
                             "--interpolate-weight", str(weight))
        assert rc == 0, err
        state = load_file(str(out / "model.safetensors"))
        for k, v in state.items():
            expected = (1 - weight) * ema[k].float() + weight * other[k].float()
            torch.testing.assert_close(v.float(), expected.to(torch.bfloat16).float(),
                                       rtol=0, atol=1e-2 * (1 + expected.abs().max().item()))
        meta = json.loads((out / "config.json").read_text())
        assert meta["interpolated_with"]["weight"] == weight
    plain = load_file(str(exported / "model.safetensors"))
    assert all(torch.equal(v, plain[k]) for k, v in
               load_file(str(tmp_path / "blend0.0" / "model.safetensors")).items())


def test_export_interpolate_refuses_another_network_or_weight(
        exported, other_finetune, tiny_run, gan_run, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "export", tiny_run, tmp_path / "x", "--interpolate", gan_run)
    assert_one_line_error(rc, err, "the networks differ", "model.")
    rc, _, err = run_cli(capsys, "export", tiny_run, tmp_path / "y", "--interpolate",
                         other_finetune, "--interpolate-weight", "1.5")
    assert_one_line_error(rc, err, "--interpolate-weight", "[0, 1]")
    rc, _, err = run_cli(capsys, "export", tiny_run, tmp_path / "z", "--interpolate-weight", "0.3")
    assert_one_line_error(rc, err, "--interpolate-weight needs --interpolate")
    assert not any((tmp_path / name).exists() for name in "xyz")


def test_upscale_writes_name_xS_beside_the_input_by_default(exported, lr_png, capsys):
    rc, _, err = run_cli(capsys, "upscale", lr_png, "--checkpoint", exported)
    assert rc == 0, err
    result = lr_png.with_name(f"photo_x{SCALE}.png")
    with Image.open(result) as im:
        assert im.size == (16 * SCALE, 12 * SCALE)
    rc, _, err = run_cli(capsys, "upscale", lr_png, "--checkpoint", exported)
    assert_one_line_error(rc, err, f"photo_x{SCALE}.png", "--overwrite")


def test_a_missing_shipped_model_is_one_clear_line(monkeypatch, lr_png, capsys):
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", "no-such-model")
    rc, _, err = run_cli(capsys, "upscale", lr_png)
    assert_one_line_error(rc, err, "shipped model", "--checkpoint")


def test_init_from_starts_from_the_given_weights(exported, image_dir, tmp_path, capsys):
    run = tmp_path / "finetune"
    rc = __import__("lddpm.cli").cli.main(train_args(
        "tiny", image_dir, run, 1, "--init-from", str(exported), "--set", "train.lr=0"))
    assert rc == 0
    model = load_file(str(ckpt.resolve_checkpoint(run) / ckpt.MODEL_FILE))
    source = load_file(str(exported / "model.safetensors"))
    for k, v in source.items():
        torch.testing.assert_close(model[k], v.float(), rtol=0, atol=0)


def test_init_from_grows_a_v1_network_into_the_full_model(exported, fast_settings):
    """--init-from a V1 export into v3+glow+gan: every UNet weight loads, the new parts start
    fresh behind their 1e-6 gates, so the grown network first computes what the V1 did."""
    from lddpm.config import apply_overrides, build_preset
    from lddpm.models.build import build_network

    cfg = apply_overrides(build_preset("tiny+v3+glow+gan"), fast_settings)
    net = build_network(cfg).eval()
    fresh = ckpt.grow_weights(net, exported, cfg)
    assert fresh == ["CVAE branch (part v3)", "CVAE posterior encoder (part v3, training only)",
                     "Glow prior (part glow)", "LR encoder (part v2)",
                     "cross-attention blocks (part v2)"]
    source = Upscaler.from_pretrained(exported).net.float().eval()
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    x_t, t = torch.randn(2, 3, 8 * SCALE, 8 * SCALE, generator=g), torch.tensor([10, 900])
    noise = torch.randn(net.latent_shape(tuple(x_t.shape)), generator=g)
    with torch.no_grad():
        grown = net(x_t, t, net.condition(lr), noise)
        old = source(x_t, t, source.condition(lr))
    torch.testing.assert_close(grown, old, atol=1e-3, rtol=0)


@pytest.mark.parametrize("preset, needle", [("tiny+res", "diffusion.target"),
                                            ("tiny+v3", "diffusion.timesteps")])
def test_init_from_refuses_another_parameterisation(exported, image_dir, tmp_path, capsys,
                                                    preset, needle):
    extra = ["--set", "diffusion.timesteps=500"] if needle == "diffusion.timesteps" else []
    rc, _, err = run_cli(capsys, *train_args(preset, image_dir, tmp_path / "run", 1,
                                             "--init-from", str(exported), *extra))
    assert_one_line_error(rc, err, "parameterisation", needle)


# ------------------------------------------------------------------------------ shipped model
SHIPPED = pretrained.shipped_models()
needs_shipped = pytest.mark.skipif(pretrained.DEFAULT_MODEL not in SHIPPED,
                                   reason="no shipped model in this checkout")


@needs_shipped
def test_lddpm_models_lists_the_shipped_default(capsys):
    rc, out, _ = run_cli(capsys, "models")
    assert rc == 0 and pretrained.DEFAULT_MODEL in out and "(default)" in out


def _astronaut_crop() -> tuple[torch.Tensor, torch.Tensor]:
    """HR (1,3,96,96) of a photo no model saw, and its x4 MATLAB-bicubic LR."""
    skimage_data = pytest.importorskip("skimage.data")
    hr = torch.from_numpy(skimage_data.astronaut()[160:256, 160:256].copy()).permute(2, 0, 1)
    hr = hr.float()[None] / 255
    return hr, imresize(hr, scale=0.25).clamp(0, 1)


@needs_shipped
def test_shipped_model_beats_bicubic_on_a_real_photo():
    """A 96x96 crop of a photo the model never saw, x4 with MATLAB bicubic LR."""
    hr, lr = _astronaut_crop()
    up = Upscaler.from_pretrained()
    sr = up.upscale(lr, seed=0)[0, 0]
    bicubic = imresize(lr, scale=4).clamp(0, 1)[0]
    to8 = lambda x: (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    truth = to8(hr[0])
    assert psnr_y(to8(sr), truth, border=4) > psnr_y(to8(bicubic), truth, border=4) + 0.3


@pytest.mark.skipif("lddpm-x4-detail" not in SHIPPED, reason="lddpm-x4-detail not shipped")
def test_shipped_detail_model_samples_its_chain_per_seed():
    """The paper model samples the lddpm chain by default: one image per seed, another for
    another seed, each keeping to the LR (its bicubic downscale) far better than chance."""
    _, lr = _astronaut_crop()
    up = Upscaler.from_pretrained("lddpm-x4-detail")
    assert up.defaults["sampler"] == "lddpm" and up.cfg.gan.enabled and up.cfg.model.glow.enabled
    a, b = up.upscale(lr, seed=0)[0, 0], up.upscale(lr, seed=1)[0, 0]
    torch.testing.assert_close(up.upscale(lr, seed=0)[0, 0], a, rtol=0, atol=0)
    assert (a - b).abs().mean() * 255 > 0.5  # seed diversity, 0-255 units
    assert (imresize(a[None], scale=0.25) - lr).abs().mean() < 0.01


@pytest.mark.skipif("lddpm-x4-real" not in SHIPPED, reason="lddpm-x4-real not shipped")
def test_shipped_real_model_beats_bicubic_on_a_noisy_jpeg_input():
    """On LR with noise and JPEG blocks, lddpm-x4-real (no LR consistency by default) is
    closer to the HR than bicubic (25.26 vs 24.97 dB on this crop)."""
    import io

    hr, lr = _astronaut_crop()
    noisy = (lr + 0.04 * torch.randn(lr.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    buf = io.BytesIO()
    Image.fromarray((noisy[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(buf, "JPEG", quality=60)
    lr_real = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1).float()[None] / 255
    to8 = lambda x: (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    truth = to8(hr[0])
    up = Upscaler.from_pretrained("lddpm-x4-real")
    assert up.defaults["consistency"] == "none"
    real = psnr_y(to8(up.upscale(lr_real, seed=0)[0, 0]), truth, border=4)
    bicubic = psnr_y(to8(imresize(lr_real, scale=4)[0]), truth, border=4)
    assert real > bicubic + 0.1


def test_side_by_side_writes_lr_bicubic_and_result_panels(exported, lr_png, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "upscale", lr_png, "--checkpoint", exported, "--output", out,
                         "--side-by-side")
    assert rc == 0, err
    with Image.open(out / "photo_x2.png") as sr, Image.open(out / "photo_x2_compare.png") as sbs:
        assert sbs.size == (3 * sr.width + 2 * 4, sr.height)
        # the last panel is the result itself
        assert np.array_equal(np.asarray(sbs)[:, -sr.width:], np.asarray(sr.convert("RGB")))


def test_evaluate_compare_entries_carry_the_consistency(exported, image_dir, tmp_path, capsys):
    report = tmp_path / "r.json"
    rc, _, err = run_cli(capsys, "evaluate", "--compare", f"{exported}:ddim:2:none",
                         f"{exported}:ddim:2:end", "--data", image_dir, "--max-images", "1",
                         "--report", report)
    assert rc == 0, err
    methods = json.loads(report.read_text())["methods"]
    assert [m.get("consistency") for m in methods[1:]] == ["none", "end"]
    lr_psnr = [m["means"]["LR-PSNR"] for m in methods[1:]]
    assert lr_psnr[1] > lr_psnr[0] + 3  # the projection makes the output agree with the input


# ------------------------------------------------------------------ checkpoints written before
PRE14 = Path(__file__).parent / "fixtures" / "pre14"


def test_an_export_written_before_the_layout_change_loads_and_samples_the_same(monkeypatch):
    """tests/fixtures/pre14: a tiny+v3+glow+gan (x2) bf16 export written by the code before
    issue 14 moved checkpoint I/O out of training/ (`lddpm.training.checkpoint.
    export_checkpoint`), with what that code sampled from it on a fixed LR. The files are
    read by today's loader and must give the same images.

    The untiled image is sampled as it was. The tiled one ("ddim3", tile 6) was made when
    each tile drew its own CVAE latent z; since issue 18 z is one image-wide field and tile
    starts sit on its grid, by design. With that old drawing put back (each tile's z the next
    draw of the sample's generator, tiles where they were), today's code gives the recording."""
    from lddpm import inference

    expected = load_file(str(PRE14 / "expected.safetensors"))
    up = Upscaler.from_pretrained(PRE14 / "export")
    assert up.defaults["sampler"] == "lddpm" and up.cfg.gan.enabled and up.cfg.model.glow.enabled
    lr = expected["lr"]
    # 1e-4: room for another CPU's float rounding; a loading mistake moves pixels by far more
    torch.testing.assert_close(up.upscale(lr, seed=0)[0], expected["lddpm"], rtol=0, atol=1e-4)

    drawn = {}

    def field_without_drawing(self, b, h, w, gen):
        drawn["gen"] = gen
        return torch.empty(b, self.net.cvae.latent_channels, 1, 1)

    monkeypatch.setattr(Upscaler, "latent_field", field_without_drawing)
    monkeypatch.setattr(Upscaler, "latent_align", property(lambda self: 1))
    monkeypatch.setattr(inference, "latent_region", lambda field, origin, size: torch.randn(
        (*field.shape[:2], *size), generator=drawn["gen"]))
    torch.testing.assert_close(up.upscale(lr, sampler="ddim", steps=3, seed=0, tile=6)[0],
                               expected["ddim3"], rtol=0, atol=1e-4)


@needs_shipped
def test_upscale_with_no_other_flag_uses_the_shipped_model(lr_png, capsys):
    rc, _, err = run_cli(capsys, "upscale", lr_png)
    assert rc == 0, err
    with Image.open(lr_png.with_name("photo_x4.png")) as im:
        assert im.size == (16 * 4, 12 * 4)
