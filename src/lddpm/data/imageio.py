"""The one image loader and writer of the project.

Everything that reads a photo goes through `load_image`, so every command treats odd files
the same way: EXIF orientation applied; grayscale, palette, RGBA and 16-bit images become
8-bit RGB; a missing, corrupt or non-image file, or one over the pixel limit, raises
`UserError` naming the file. Images leave this module as uint8 (H, W, 3) arrays; `to_tensor`
and `to_uint8` convert to and from float (3, H, W) tensors in [0, 1].

`load_photo` / `save_photo` (and `photo_from_pil` / `photo_to_pil`) keep what a photo
round trip must not lose: the alpha channel, greyscale-ness, 16-bit depth, the ICC profile
and the EXIF block (minus the orientation tag, which is applied to the pixels on load).
"""

from __future__ import annotations

import os
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lddpm.data.png16 import read_png16, write_png16
from lddpm.errors import UserError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
DEFAULT_MAX_PIXELS = 400_000_000

# Our own `max_pixels` check (made from the header, before decoding) replaces Pillow's
# global decompression-bomb guard, which would otherwise refuse images between its fixed
# limit (~179 MP) and ours with a message that does not name the file.
Image.MAX_IMAGE_PIXELS = None

# EXIF orientations 5-8 rotate by 90 degrees: the decoded image has width and height swapped.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_SIXTEEN_BIT_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def _open(path: Path) -> Image.Image:
    """Opens (header only) with every failure turned into a UserError naming the file."""
    if not path.exists():
        raise UserError(f"file not found: {path}")
    if not path.is_file():
        raise UserError(f"not a file: {path}")
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: cannot read image ({exc})") from None


def _oriented_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) after EXIF orientation, from the header alone."""
    width, height = im.size
    try:
        orientation = im.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        # A broken EXIF block is not worth refusing the photo for.
        orientation = 1
    if orientation in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image after EXIF orientation, read from the header only."""
    path = Path(path)
    with _open(path) as im:
        width, height = _oriented_size(im)
    return height, width


def _check_pixel_limit(path: Path, im: Image.Image, max_pixels: int) -> None:
    width, height = im.size
    if width * height > max_pixels:
        raise UserError(
            f"{path}: {width}x{height} = {width * height} pixels is over the limit of "
            f"{max_pixels} (data.max_pixels)"
        )


def _sixteen_bit_gray_to_rgb8(im: Image.Image) -> np.ndarray:
    """16-bit (or 32-bit integer) grayscale -> uint8 RGB, full 16-bit range mapped to 0..255."""
    values = np.asarray(im, dtype=np.float64)
    gray = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _float_gray_to_rgb8(im: Image.Image) -> np.ndarray:
    """32-bit float grayscale (some TIFFs), taken to be in [0, 1]."""
    values = np.asarray(im, dtype=np.float64)
    gray = np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """Any decoded Pillow image -> contiguous uint8 (H, W, 3).

    Alpha is dropped (not composited): a transparent pixel keeps the colour stored under it.
    16-bit RGB PNGs are read by Pillow as 8-bit RGB already (it keeps the high byte).
    """
    if im.mode in _SIXTEEN_BIT_GRAY_MODES:
        return _sixteen_bit_gray_to_rgb8(im)
    if im.mode == "F":
        return _float_gray_to_rgb8(im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)  # a writable copy, not a view of Pillow's buffer


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Reads an image file -> uint8 (H, W, 3), EXIF orientation applied.

    Raises UserError naming the file if it is missing, not an image, corrupt or truncated,
    or has more than `max_pixels` pixels (checked from the header, before decoding).
    """
    return _decode(Path(path), max_pixels, lambda im: _to_rgb8(ImageOps.exif_transpose(im)))


def _decode(path: Path, max_pixels: int, convert):
    """Opens, checks the pixel limit, decodes, and returns convert(decoded Pillow image);
    every decoding failure becomes a UserError naming the file."""
    with _open(path) as im:
        _check_pixel_limit(path, im, max_pixels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": not worth a line
                im.load()
                return convert(im)
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
            raise UserError(f"{path}: corrupt or truncated image ({exc})") from None


# ---------------------------------------------------------------------------- photos
@dataclass
class Photo:
    """A decoded photo and what its output must keep.

    rgb: float32 (3, H, W) in [0, 1] (a greyscale image repeated into 3 channels);
    alpha: float32 (1, H, W) in [0, 1] or None; grey: the source has one colour channel;
    bits: 8 or 16 (sample depth of the source); icc: ICC profile bytes; exif: EXIF bytes
    without the orientation tag (the pixels are already upright).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | None = None
    grey: bool = False
    bits: int = 8
    icc: bytes | None = None
    exif: bytes | None = None


SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
DEFAULT_QUALITY = {"JPEG": 95, "WEBP": 95}
_GREY_MODES = frozenset({"1", "L", "LA", "La", "F", "I"}) | _SIXTEEN_BIT_GRAY_MODES


def load_photo(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """Reads an image file -> Photo (EXIF orientation applied). 16-bit PNGs keep all 16
    bits (read by lddpm.data.png16). Errors as `load_image`: UserError naming the file."""
    path = Path(path)

    def convert(im: Image.Image) -> Photo:
        deep = read_png16(path.read_bytes()) if im.format == "PNG" else None
        return photo_from_pil(im, deep)

    return _decode(path, max_pixels, convert)


def photo_from_pil(im: Image.Image, deep: np.ndarray | None = None) -> Photo:
    """A Pillow image -> Photo with the same rules as `load_photo`. `deep`: the same image's
    uint16 (H, W, C) samples when Pillow could only decode 8 of its 16 bits."""
    exif, orientation = _exif_without_orientation(im)
    if deep is not None:
        pixels = torch.from_numpy(deep.astype(np.float32) / 65535).permute(2, 0, 1)
        grey, bits = deep.shape[2] <= 2, 16
    else:
        pixels, grey, bits = _pil_channels(im)
    colours = 1 if grey else 3
    rgb = pixels[:colours].expand(3, -1, -1) if grey else pixels[:3]
    alpha = pixels[colours:] if pixels.shape[0] > colours else None
    return Photo(_orient(rgb.contiguous(), orientation),
                 None if alpha is None else _orient(alpha, orientation),
                 grey, bits, im.info.get("icc_profile") or None, exif)


def _pil_channels(im: Image.Image) -> tuple[torch.Tensor, bool, int]:
    """Pillow image -> (float32 (C, H, W) in [0, 1] with C in 1..4, grey, bits)."""
    if im.mode in _SIXTEEN_BIT_GRAY_MODES or im.mode == "I":
        values = np.asarray(im, dtype=np.float32) / 65535  # the 16-bit range, as load_image
        return torch.from_numpy(values).clamp(0, 1)[None], True, 16
    if im.mode == "F":  # float TIFFs, taken to be in [0, 1]
        return torch.from_numpy(np.asarray(im, dtype=np.float32)).clamp(0, 1)[None], True, 16
    grey = im.mode in _GREY_MODES
    transparent = "A" in im.mode or "a" in im.mode or "transparency" in im.info
    target = ("LA" if transparent else "L") if grey else ("RGBA" if transparent else "RGB")
    values = np.array(im.convert(target) if im.mode != target else im, dtype=np.uint8)
    values = values.reshape(values.shape[0], values.shape[1], -1)
    return torch.from_numpy(values).permute(2, 0, 1).float().div(255), grey, 8


def _exif_without_orientation(im: Image.Image) -> tuple[bytes | None, int]:
    """(EXIF bytes without the orientation tag or None, the orientation 1..8)."""
    try:
        exif = im.getexif()
        orientation = int(exif.pop(0x0112, 1))
        return (exif.tobytes() if len(exif) else None), orientation
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        return None, 1  # a broken EXIF block is not worth refusing the photo for


def _orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """(C, H, W) as stored -> upright, for EXIF orientation 1..8 (as ImageOps.exif_transpose)."""
    turn = {2: lambda t: t.flip(-1), 3: lambda t: t.flip(-2, -1), 4: lambda t: t.flip(-2),
            5: lambda t: t.transpose(-2, -1), 6: lambda t: torch.rot90(t, -1, (-2, -1)),
            7: lambda t: t.transpose(-2, -1).flip(-2, -1), 8: lambda t: torch.rot90(t, 1, (-2, -1))}
    return turn[orientation](image).contiguous() if orientation in turn else image


def _quantize(image: torch.Tensor, bits: int) -> np.ndarray:
    """float (C, H, W) in [0, 1] -> uint8/uint16 (H, W, C), rounded to nearest. Converted in
    bands of rows so that a large output needs no full-size float temporaries."""
    top = 65535 if bits == 16 else 255
    c, h, w = image.shape
    out = np.empty((h, w, c), np.uint16 if bits == 16 else np.uint8)
    for r in range(0, h, 256):
        band = image[:, r : r + 256].detach().to("cpu", torch.float32)
        out[r : r + 256] = band.clamp(0, 1).mul(top).round().permute(1, 2, 0).numpy()
    return out


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> (1, H, W) with ITU-R 601 weights (what Pillow's convert("L") uses)."""
    return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None]


def _photo_array(photo: Photo, bits: int) -> np.ndarray:
    """Photo -> (H, W, C) samples, C = 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA)."""
    planes = [_luma(photo.rgb) if photo.grey else photo.rgb]
    if photo.alpha is not None:
        planes.append(photo.alpha)
    return _quantize(torch.cat(planes) if len(planes) > 1 else planes[0], bits)


def _icc_for(photo: Photo) -> bytes | None:
    """The profile only when its colour space (ICC header bytes 16-20) is the output's:
    a GRAY profile on an RGB output (or a CMYK one on anything) would be wrong."""
    wanted = b"GRAY" if photo.grey else b"RGB "
    return photo.icc if photo.icc and photo.icc[16:20] == wanted else None


def photo_to_pil(photo: Photo) -> Image.Image:
    """Photo -> Pillow image: L, LA, RGB or RGBA (8-bit; a 16-bit greyscale photo without
    alpha gives I;16, as Pillow has no 16-bit colour mode). ICC and EXIF go in `info`."""
    deep = photo.bits == 16 and photo.grey and photo.alpha is None
    pixels = _photo_array(photo, 16 if deep else 8)
    im = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    for key, value in (("icc_profile", _icc_for(photo)), ("exif", photo.exif)):
        if value:
            im.info[key] = value
    return im


def check_savable(path: Path, photo: Photo) -> str:
    """The Pillow format name for `path`'s suffix; UserError if it cannot hold the photo."""
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: cannot write {path.suffix or 'files without a suffix'}; "
                        f"use one of {', '.join(SAVE_FORMATS)}")
    if fmt == "JPEG" and photo.alpha is not None:
        raise UserError(f"{path}: JPEG has no alpha channel (the input has one); "
                        "write png or webp")
    return fmt


def save_photo(path: str | Path, photo: Photo, quality: int | None = None) -> None:
    """Writes a Photo atomically as PNG (16-bit when `photo.bits` is 16), JPEG or WebP (by
    the suffix), with its ICC profile and EXIF block. `quality` (1-100): JPEG and WebP.
    JPEG cannot store alpha: a photo with alpha is refused rather than flattened."""
    path = Path(path)
    fmt = check_savable(path, photo)
    if fmt == "PNG" and photo.bits == 16:
        data = write_png16(_photo_array(photo, 16), _icc_for(photo), photo.exif)
        _write_atomic(path, lambda handle: handle.write(data))
        return
    options = {"icc_profile": _icc_for(photo), "exif": photo.exif or b""}
    if fmt in DEFAULT_QUALITY:
        options["quality"] = quality or DEFAULT_QUALITY[fmt]
    if fmt == "JPEG":
        options["subsampling"] = 0  # 4:4:4: chroma at full resolution, an upscaler's point
    im = photo_to_pil(Photo(photo.rgb, photo.alpha, photo.grey, 8))
    _write_atomic(path, lambda handle: im.save(handle, format=fmt,
                                               **{k: v for k, v in options.items() if v}))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Float tensor (3, H, W) in [0, 1] -> uint8 (H, W, 3); rounds to nearest, clamps."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
    scaled = image.detach().to("cpu", torch.float64).clamp(0, 1).mul(255).round()
    return np.ascontiguousarray(scaled.to(torch.uint8).permute(1, 2, 0).numpy())


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 tensor (3, H, W) in [0, 1]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3), got {image.dtype} {image.shape}")
    pixels = np.require(image, requirements=["C_CONTIGUOUS", "WRITEABLE"])
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)


def _as_uint8_hwc(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        return to_uint8(image)
    if image.dtype != np.uint8:
        raise ValueError(f"numpy images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3), got {image.shape}")
    return image


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_image(path: str | Path, image: np.ndarray | torch.Tensor) -> None:
    """Writes a PNG atomically (temp file in the same folder, then rename).

    `image`: uint8 (H, W, 3) array, or float tensor (3, H, W) in [0, 1]. A reader never sees
    a half-written file, and an interrupted write leaves the old file (if any) intact.
    """
    pixels = _as_uint8_hwc(image)
    _write_atomic(Path(path), lambda handle: Image.fromarray(pixels).save(handle, format="PNG"))


def _write_atomic(path: Path, write) -> None:
    """Calls write(binary handle) on a temporary file beside `path`, then renames it over
    `path`: a reader never sees half a file; a failed write leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def is_image_file(path: Path) -> bool:
    """By extension (case-insensitive); hidden files such as macOS `._x.jpg` are skipped."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under `root` (by extension), sorted by path. A file root is returned as is."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise UserError(f"folder not found: {root}")
    candidates = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in candidates if p.is_file() and is_image_file(p))
