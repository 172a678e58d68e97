"""Photo-ready upscaling (issue 13): alpha, ICC, EXIF, 16-bit, greyscale, jpg/webp, outscale,
seam-free tiles, the PIL API, save_pretrained, devices and option errors.

All through `lddpm upscale` or `Upscaler` with the session's tiny x2 checkpoint (`tiny_run`)
on images of 8-64 px; DDIM with 2 steps, since the sampler is not what is tested here.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
import torch
from conftest import SCALE, smooth_pattern
from PIL import Image, ImageCms, ImageOps
from torch import nn

from lddpm.cli import main
from lddpm.data.imageio import load_photo
from lddpm.data.png16 import _chunks, _unfilter, read_png16, write_png16
from lddpm.data.resize import imresize
from lddpm.data.tiles import run_tiled, tile_grid
from lddpm.inference import Upscaler, anchored_noise
from lddpm.models.layers import SelfAttention

FAST = ["--steps", "2"]
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def upscale(capsys, *argv) -> tuple[int, str]:
    rc = main(["upscale", *map(str, argv)])
    return rc, capsys.readouterr().err


def one_error_line(rc: int, err: str, needle: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("lddpm: error:")]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1, err
    assert needle in lines[0], lines[0]


def rgb(h: int, w: int, seed: int = 1) -> np.ndarray:
    return smooth_pattern(np.random.default_rng(seed), h, w)


# ------------------------------------------------------------------------------ 16-bit PNG codec
def test_png16_reader_undoes_every_filter_and_round_trips():
    # Pillow's own encoder picks Sub/Up/Paeth rows: the wavefront unfilter must agree with it.
    image = rgb(40, 50)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    data = buf.getvalue()
    raw = np.frombuffer(zlib.decompress(b"".join(p for k, p in _chunks(data) if k == b"IDAT")), np.uint8)
    raw = raw.reshape(40, 1 + 50 * 3)
    assert len(set(raw[:, 0].tolist())) > 1
    assert np.array_equal(_unfilter(raw[:, 0], raw[:, 1:].reshape(40, 50, 3)), image)
    deep = np.random.default_rng(0).integers(0, 65536, (5, 7, 4), dtype=np.uint16)
    assert np.array_equal(read_png16(write_png16(deep)), deep)


# ------------------------------------------------------------------------------ photos in, photos out
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_like_pillow(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb(3, 5)).save(tmp_path / "o.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")).convert("RGB"))
    photo = load_photo(tmp_path / "o.png")
    assert np.array_equal((photo.rgb * 255).round().byte().permute(1, 2, 0).numpy(), expected)
    assert photo.exif is None  # the only tag was the orientation


def test_alpha_is_upscaled_bicubically_and_written_back(tiny_run, tmp_path, capsys):
    alpha = np.tile(np.linspace(0, 255, 10).astype(np.uint8), (12, 1))
    Image.fromarray(np.dstack([rgb(12, 10), alpha])).save(tmp_path / "a.png")
    rc, err = upscale(capsys, tmp_path / "a.png", "--checkpoint", tiny_run, *FAST)
    assert rc == 0, err
    out = Image.open(tmp_path / f"a_x{SCALE}.png")
    assert out.mode == "RGBA" and out.size == (10 * SCALE, 12 * SCALE)
    want = imresize(torch.from_numpy(alpha).float()[None] / 255, scale=SCALE).clamp(0, 1)
    got = torch.from_numpy(np.asarray(out)[..., 3].copy()).float() / 255
    assert (got - want[0]).abs().max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("ext", ["png", "jpg", "webp"])
def test_icc_and_exif_are_kept_and_orientation_applied(tiny_run, tmp_path, capsys, ext):
    exif = Image.Exif()
    exif[0x010F], exif[0x0112] = "lddpm camera", 6  # Make; stored turned 90 degrees
    Image.fromarray(rgb(8, 14)).save(tmp_path / "p.jpg", quality=95, icc_profile=SRGB, exif=exif)
    rc, err = upscale(capsys, tmp_path / "p.jpg", "--ext", ext, "--checkpoint", tiny_run, *FAST)
    assert rc == 0, err
    out = Image.open(tmp_path / f"p_x{SCALE}.{ext}")
    assert out.format == {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[ext]
    assert out.size == (8 * SCALE, 14 * SCALE)  # upright: width and height swapped
    assert out.info.get("icc_profile") == SRGB
    tags = out.getexif()
    assert tags.get(0x010F) == "lddpm camera" and 0x0112 not in tags


def test_quality_and_default_extension(tiny_run, tmp_path, capsys):
    src = tmp_path / "q.png"
    Image.fromarray(rgb(32, 32)).save(src)
    sizes = {}
    for q in (20, 95):
        rc, err = upscale(capsys, src, "--ext", "jpg", "--quality", q, "--output", tmp_path / f"q{q}",
                          "--checkpoint", tiny_run, *FAST)
        assert rc == 0, err
        sizes[q] = (tmp_path / f"q{q}" / f"q_x{SCALE}.jpg").stat().st_size
    assert sizes[20] < sizes[95]
    rc, err = upscale(capsys, tmp_path / f"q95/q_x{SCALE}.jpg", "--checkpoint", tiny_run, *FAST)
    assert rc == 0 and (tmp_path / f"q95/q_x{SCALE}_x{SCALE}.png").is_file()  # default: png
    rc, err = upscale(capsys, tmp_path / f"q95/q_x{SCALE}.jpg", "--checkpoint", tiny_run, *FAST,
                      "--ext", "auto")
    assert rc == 0 and (tmp_path / f"q95/q_x{SCALE}_x{SCALE}.jpg").is_file()  # auto: as the input


def test_sixteen_bit_png_in_gives_sixteen_bit_png_out(tiny_run, tmp_path, capsys):
    deep = (rgb(10, 12).astype(np.uint16) * 257 + np.arange(12, dtype=np.uint16)[None, :, None])
    (tmp_path / "d.png").write_bytes(write_png16(deep, icc=SRGB))
    photo = load_photo(tmp_path / "d.png")
    assert photo.bits == 16 and torch.equal((photo.rgb * 65535).round().short().permute(1, 2, 0),
                                            torch.from_numpy(deep.astype(np.int16)))
    rc, err = upscale(capsys, tmp_path / "d.png", "--checkpoint", tiny_run, *FAST)
    assert rc == 0, err
    out = read_png16((tmp_path / f"d_x{SCALE}.png").read_bytes())
    assert out is not None and out.shape == (10 * SCALE, 12 * SCALE, 3)
    assert np.any(out % 257 != 0)  # real 16-bit values, not 8-bit ones scaled up
    assert Image.open(tmp_path / f"d_x{SCALE}.png").info.get("icc_profile") == SRGB


def test_greyscale_stays_greyscale_unless_color(tiny_run, tmp_path, capsys):
    Image.fromarray(rgb(9, 11)[..., 0]).save(tmp_path / "g.png")
    rc, err = upscale(capsys, tmp_path / "g.png", "--checkpoint", tiny_run, *FAST)
    assert rc == 0, err
    assert Image.open(tmp_path / f"g_x{SCALE}.png").mode == "L"
    rc, err = upscale(capsys, tmp_path / "g.png", "--color", "--output", tmp_path / "c.png",
                      "--checkpoint", tiny_run, *FAST)
    assert rc == 0 and Image.open(tmp_path / "c.png").mode == "RGB"


def test_outscale_gives_any_final_size(tiny_run, tmp_path, capsys):
    Image.fromarray(rgb(13, 10)).save(tmp_path / "s.png")
    rc, err = upscale(capsys, tmp_path / "s.png", "--outscale", "3.5", "--checkpoint", tiny_run, *FAST)
    assert rc == 0, err
    assert Image.open(tmp_path / "s_x3.5.png").size == (35, 46)  # round(10*3.5), round(13*3.5)


# ------------------------------------------------------------------------------ tiles
def _local_upscaler(run_dir) -> Upscaler:
    """The tiny model with GroupNorm and self-attention (the only non-local operations)
    removed: every output pixel then depends on a bounded neighbourhood only, so a tile
    must reproduce the untiled output wherever that neighbourhood lies inside the tile."""
    up = Upscaler.from_checkpoint(run_dir, precision="fp32")
    for module in list(up.net.modules()):
        if isinstance(module, SelfAttention):  # kept as a layer: the UNet counts its skips by type
            module.forward = lambda x, *args, **kwargs: x
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.GroupNorm):
                setattr(module, child_name, nn.Identity())
    return up


def test_tiled_equals_untiled_outside_the_overlap(tiny_run):
    up = _local_upscaler(tiny_run)
    lr = torch.from_numpy(rgb(24, 64).copy()).permute(2, 0, 1).float()[None] / 255
    kwargs = {"sampler": "ddim", "steps": 2, "eta": 0.0, "seed": 5}
    whole = up.upscale(lr, tile=0, **kwargs)[0, 0]
    tiled = up.upscale(lr, tile=48, tile_overlap=32, **kwargs)[0, 0]  # LR tiles at x 0 and 16
    band = slice(16 * SCALE, 48 * SCALE)  # the overlap, in HR pixels
    outside = torch.ones(whole.shape[-1], dtype=torch.bool)
    outside[band] = False
    assert torch.allclose(tiled[..., outside], whole[..., outside], atol=1e-5)
    assert (tiled[..., band] - whole[..., band]).abs().max() < 0.05  # blended, no seam


@pytest.mark.parametrize("tile,overlap", [(8, 0), (8, 3), (11, 5), (16, 8)])
def test_flat_colour_gives_a_flat_output_with_any_tiling(tile, overlap):
    # Any flat-preserving per-tile upscaler (here bicubic) must blend to the same flat colour.
    lr = torch.full((1, 3, 21, 30), 0.3) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1)
    tiling = tile_grid(21, 30, tile, overlap)
    out = torch.empty(1, 3, 63, 90)
    run_tiled(lambda t, origin: imresize(t, scale=3), lr, tiling, 3, out)
    assert torch.allclose(out, imresize(lr, scale=3), atol=1e-6)


def test_noise_field_does_not_depend_on_the_tiling():
    field = anchored_noise((1, 3, 150, 200), (0, 0), seed=3)
    assert torch.equal(anchored_noise((1, 3, 40, 70), (30, 100), seed=3), field[..., 30:70, 100:170])
    assert not torch.equal(anchored_noise((1, 3, 40, 70), (30, 100), seed=4), field[..., 30:70, 100:170])


def test_progress_moves_once_per_network_evaluation(tiny_run):
    up = Upscaler.from_checkpoint(tiny_run)
    calls = []
    up.upscale(torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(0)), "ddim", 2,
               tile=12, tile_overlap=4, num_samples=2, progress=calls.append)
    plan = up.plan(sampler="ddim", steps=2, tile=12, tile_overlap=4, num_samples=2)
    assert len(calls) == plan.evaluations(20, 28) == 2 * 2 * 3 * 2


# ------------------------------------------------------------------------------ Python API
def test_pil_api_keeps_modes_single_and_batched(tiny_run):
    up = Upscaler.from_pretrained(tiny_run)
    rgba = Image.fromarray(np.dstack([rgb(8, 12), np.full((8, 12), 200, np.uint8)]))
    grey = Image.fromarray(rgb(10, 9)[..., 1])
    out = up(rgba, steps=2, seed=0)
    assert isinstance(out, Image.Image) and out.mode == "RGBA" and out.size == (24, 16)
    assert np.all(np.asarray(out)[..., 3] == 200)
    batch = up([rgba, grey], steps=2, seed=0)
    assert [im.mode for im in batch] == ["RGBA", "L"] and batch[1].size == (18, 20)
    assert up(grey, steps=2, color=True).mode == "RGB"
    assert np.array_equal(np.asarray(batch[0]), np.asarray(out))  # same seed, same image


def test_save_pretrained_round_trip(tiny_run, tmp_path):
    up = Upscaler.from_checkpoint(tiny_run)
    up.defaults = {**up.defaults, "sampler": "ddim", "steps": 3}
    up.save_pretrained(tmp_path / "m")
    again = Upscaler.from_pretrained(tmp_path / "m")
    assert again.defaults["steps"] == 3
    lr = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(1))
    assert torch.equal(up.upscale(lr, seed=2), again.upscale(lr, seed=2))
    up.save_pretrained(tmp_path / "half", dtype=torch.bfloat16)
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < \
        (tmp_path / "m" / "model.safetensors").stat().st_size * 0.6


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("device,needle", [("cuda:3", "--device cuda:3"), ("mps", "--device mps"),
                                           ("tpu", "not a device")])
def test_an_unavailable_device_is_one_line(device, needle, tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    Image.fromarray(rgb(8, 8)).save(tmp_path / "x.png")
    rc, err = upscale(capsys, tmp_path / "x.png", "--device", device, "--checkpoint", tiny_run)
    one_error_line(rc, err, needle)
    assert not (tmp_path / f"x_x{SCALE}.png").exists()


@pytest.mark.parametrize("extra,needle", [
    (["--quality", "0"], "--quality"),
    (["--ext", "png", "--quality", "80"], "not png"),
    (["--tile", "16", "--tile-overlap", "16"], "overlap"),
    (["--tile-overlap", "-1"], "--tile-overlap"),
    (["--outscale", "-2"], "--outscale"),
    (["--ext", "gif"], "invalid choice"),
    (["--ext", "jpg"], "alpha"),  # the input has alpha: refused, not flattened
])
def test_bad_options_are_one_line_and_write_nothing(extra, needle, tiny_run, tmp_path, capsys):
    Image.fromarray(np.dstack([rgb(20, 20), np.full((20, 20), 9, np.uint8)])).save(tmp_path / "x.png")
    rc, err = upscale(capsys, tmp_path / "x.png", "--checkpoint", tiny_run, *FAST, *extra)
    one_error_line(rc, err, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_lpips_hint_names_both_files_and_no_absolute_root(tmp_path, monkeypatch):
    from lddpm.metrics.lpips import load_lpips
    from lddpm.weights import WeightsNotFound

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsNotFound) as info:
        load_lpips("alex")
    message = str(info.value)
    assert "alex.pth" in message and "alexnet-owt-7be5be79.pth" in message
    assert str(tmp_path) not in message and "torch/hub/checkpoints" in message
