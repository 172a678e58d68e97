"""The one image loader: conversions, EXIF, errors that name the file, atomic writes."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from lddpm.data.imageio import image_size, list_images, load_image, save_image, to_tensor, to_uint8
from lddpm.errors import UserError


def _random_rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png_bytes(width, height, bit_depth, colour_type, rows: bytes) -> bytes:
    """A minimal PNG (Pillow cannot write 16-bit RGB; this also fakes huge headers)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def test_png_round_trip_is_exact(tmp_path):
    pixels = _random_rgb(5, 7)
    save_image(tmp_path / "a.png", pixels)
    assert np.array_equal(load_image(tmp_path / "a.png"), pixels)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left behind


def test_tensor_conversions_invert_and_round():
    pixels = _random_rgb(4, 6)
    tensor = to_tensor(pixels)
    assert tensor.shape == (3, 4, 6) and tensor.dtype == torch.float32
    assert np.array_equal(to_uint8(tensor), pixels)
    odd = torch.tensor([-0.2, 0.301, 1.3]).view(3, 1, 1)  # clamp, round(76.755) = 77, clamp
    assert to_uint8(odd).ravel().tolist() == [0, 77, 255]


def test_save_image_accepts_a_float_tensor(tmp_path):
    pixels = _random_rgb(3, 4)
    save_image(tmp_path / "t.png", to_tensor(pixels))
    assert np.array_equal(load_image(tmp_path / "t.png"), pixels)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    old = _random_rgb(3, 3, seed=1)
    save_image(path, old)

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        save_image(path, _random_rgb(3, 3, seed=2))
    monkeypatch.undo()
    assert np.array_equal(load_image(path), old)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="not-there.png"):
        load_image(tmp_path / "not-there.png")


def test_text_file_named_png_is_named(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(UserError, match="notes.png.*not an image"):
        load_image(path)


def test_truncated_png_is_named(tmp_path):
    save_image(tmp_path / "full.png", _random_rgb(32, 32))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    # The header claims 100000 x 100000 but the data is 1 row: decoding would fail
    # differently, so the pixel-limit message proves the header was checked first.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bytes(100_000, 100_000, 8, 2, b"\x00" + b"\x00" * 300_000))
    with pytest.raises(UserError, match=r"bomb.png.*over the limit of 400000000"):
        load_image(path)
    save_image(tmp_path / "small.png", _random_rgb(10, 10))
    with pytest.raises(UserError, match="small.png.*100 pixels"):
        load_image(tmp_path / "small.png", max_pixels=99)
    assert load_image(tmp_path / "small.png", max_pixels=100).shape == (10, 10, 3)


def test_exif_orientation_is_applied(tmp_path):
    pixels = _random_rgb(2, 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the viewer turns it 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "rot.png", exif=exif)
    loaded = load_image(tmp_path / "rot.png")
    assert np.array_equal(loaded, np.rot90(pixels, k=-1))
    assert image_size(tmp_path / "rot.png") == (3, 2)


def test_sixteen_bit_gray_becomes_rgb8(tmp_path):
    values = np.array([[0, 257 * 100, 65535, 30000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    loaded = load_image(tmp_path / "g16.png")
    expected = np.round(values / 257.0).astype(np.uint8)  # 30000 / 257 = 116.7 -> 117
    assert loaded.dtype == np.uint8 and loaded.shape == (1, 4, 3)
    assert np.array_equal(loaded[..., 0], expected)
    assert np.array_equal(loaded[..., 0], loaded[..., 2])


def test_sixteen_bit_rgb_becomes_rgb8(tmp_path):
    values = np.array([[[0, 65535, 25900], [1000, 30000, 65280]]], dtype=np.uint16)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)
    (tmp_path / "rgb16.png").write_bytes(_png_bytes(2, 1, 16, 2, rows))
    loaded = load_image(tmp_path / "rgb16.png").astype(int)
    assert np.abs(loaded - values / 257.0).max() <= 1.0  # the 8-bit value, +- 1 level


def test_gray_rgba_and_palette_become_rgb8(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert np.array_equal(load_image(tmp_path / "gray.png"), np.stack([gray] * 3, axis=-1))

    rgba = np.dstack([_random_rgb(3, 4), np.array([[0, 128, 255, 7]] * 3, dtype=np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.array_equal(load_image(tmp_path / "rgba.png"), rgba[..., :3])  # alpha dropped

    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette_image.putdata([1, 0])
    palette_image.save(tmp_path / "pal.png")
    assert load_image(tmp_path / "pal.png").tolist() == [[[0, 0, 255], [255, 0, 0]]]


def test_list_images_sorted_recursive_case_insensitive(tmp_path):
    for name in ["b.PNG", "a.jpg", "sub/c.TIFF", "sub/deep/d.webp", "notes.txt", ".hidden.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.jpg", "b.PNG", "sub/c.TIFF", "sub/deep/d.webp"]
    flat = [p.name for p in list_images(tmp_path, recursive=False)]
    assert flat == ["a.jpg", "b.PNG"]
    with pytest.raises(UserError, match="nowhere"):
        list_images(tmp_path / "nowhere")



def test_saved_images_are_readable_by_others(tmp_path):
    # Bug fixed: the atomic write via mkstemp left outputs at mode 0600.
    import os
    import stat

    import numpy as np

    from lddpm.data.imageio import save_image

    path = tmp_path / "out.png"
    save_image(path, np.zeros((4, 4, 3), np.uint8))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
