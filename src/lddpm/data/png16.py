"""16-bit PNG pixels, read and written with numpy (Pillow has no 16-bit RGB/RGBA mode: it
keeps only the high byte of each sample when it reads them, and cannot write them).

`read_png16(data)` -> uint16 (H, W, C) for a non-interlaced 16-bit PNG, else None (the
caller falls back to Pillow). `write_png16(arr, icc, exif)` -> PNG bytes. Metadata
(ICC, EXIF) is read by Pillow from the same file; only the pixels come from here.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
COLOUR_TYPE = {v: k for k, v in CHANNELS.items()}


def _chunks(data: bytes):
    """(type, payload) of each chunk; stops at IEND or at the end of the data."""
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        yield kind, data[pos + 8 : pos + 8 + length]
        if kind == b"IEND":
            return
        pos += 12 + length


def read_png16(data: bytes) -> np.ndarray | None:
    """PNG bytes -> uint16 (H, W, C), C in 1..4; None unless 16-bit and not interlaced.

    Raises ValueError on a corrupt stream (the caller names the file)."""
    if not data.startswith(SIGNATURE):
        return None
    header, idat = None, []
    for kind, payload in _chunks(data):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", payload[:13])
        elif kind == b"IDAT":
            idat.append(payload)
    if header is None:
        raise ValueError("no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 16 or interlace or colour not in CHANNELS:
        return None
    bpp = 2 * CHANNELS[colour]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    if raw.size < height * (1 + width * bpp):
        raise ValueError("pixel data is truncated")
    rows = raw[: height * (1 + width * bpp)].reshape(height, 1 + width * bpp)
    pixels = _unfilter(rows[:, 0], rows[:, 1:].reshape(height, width, bpp))
    return pixels.view(">u2").reshape(height, width, CHANNELS[colour]).astype(np.uint16)


def _unfilter(filters: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Undoes PNG's per-row filters. filters (H,), data (H, W, bpp) uint8 -> (H, W, bpp).

    Each byte depends on its left, upper and upper-left neighbours (already decoded), so
    the pixels of one anti-diagonal y + x = d are independent: H + W vectorised steps
    instead of a Python loop over every pixel (Paeth rows cannot be vectorised along x)."""
    if filters.size and filters.max() > 4:
        raise ValueError(f"unknown PNG filter type {int(filters.max())}")
    h, w, bpp = data.shape
    out = np.zeros((h + 1, w + 1, bpp), np.int32)  # a zero row/column above and to the left
    for d in range(h + w - 1):
        y = np.arange(max(0, d - w + 1), min(h, d + 1))
        x = d - y
        a, b, c = out[y + 1, x], out[y, x + 1], out[y, x]  # left, up, up-left
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        zero = np.zeros_like(a)
        predictors = np.stack([zero, a, b, (a + b) >> 1, paeth])
        pred = predictors[filters[y], np.arange(y.size)]
        out[y + 1, x + 1] = (data[y, x] + pred) & 0xFF
    return out[1:, 1:].astype(np.uint8)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def write_png16(pixels: np.ndarray, icc: bytes | None = None, exif: bytes | None = None) -> bytes:
    """uint16 (H, W, C), C in 1..4 (grey, grey+alpha, RGB, RGBA) -> 16-bit PNG bytes with the
    ICC profile (iCCP) and the EXIF block (eXIf, without the JPEG `Exif\\0\\0` prefix)."""
    h, w, c = pixels.shape
    header = struct.pack(">IIBBBBB", w, h, 16, COLOUR_TYPE[c], 0, 0, 0)
    rows = np.zeros((h, 1 + w * c * 2), np.uint8)  # filter byte 0 (none) on every row
    rows[:, 1:] = pixels.astype(">u2").view(np.uint8).reshape(h, w * c * 2)
    out = [SIGNATURE, _chunk(b"IHDR", header)]
    if icc:
        out.append(_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if exif:
        out.append(_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00")))
    out += [_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)), _chunk(b"IEND", b"")]
    return b"".join(out)
