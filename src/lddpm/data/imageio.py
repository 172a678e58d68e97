"""The one image loader and writer of the project.

Everything that reads a photo goes through `load_image`, so every command treats odd files
the same way: EXIF orientation applied; grayscale, palette, RGBA and 16-bit images become
8-bit RGB; a missing, corrupt or non-image file, or one over the pixel limit, raises
`UserError` naming the file. Images leave this module as uint8 (H, W, 3) arrays; `to_tensor`
and `to_uint8` convert to and from float (3, H, W) tensors in [0, 1].
"""

from __future__ import annotations

import os
import struct
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

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
    path = Path(path)
    with _open(path) as im:
        _check_pixel_limit(path, im, max_pixels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": not worth a line
                im.load()
                oriented = ImageOps.exif_transpose(im)
            return _to_rgb8(oriented)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise UserError(f"{path}: corrupt or truncated image ({exc})") from None


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
    path = Path(path)
    pixels = _as_uint8_hwc(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            Image.fromarray(pixels).save(handle, format="PNG")
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
