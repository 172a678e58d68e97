"""Makes docs/degradations.png: one photo through each degradation op and five BSRGAN draws.

    python benchmarks/degradation_sheet.py [--image examples/astronaut.png]
                                           [--output docs/degradations.png] [--seed 0]

Ops are shown with fixed, deliberately strong parameters so the effect is visible; the
BSRGAN tiles are random draws of the default `DataConfig.bsrgan` at scale 4 (seeds
seed..seed+4). LR tiles are enlarged by pixel repetition to the HR size, so the
resampling is shown as it is, not smoothed by a display upscaler.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from lddpm.config import DataConfig
from lddpm.data import degradations as ops
from lddpm.data.datasets import modcrop
from lddpm.data.imageio import load_image, save_image, to_uint8
from lddpm.data.pipeline import Degradation, generator_for

SCALE = 4
LABEL_HEIGHT = 26  # two lines of Pillow's default font
COLUMNS = 5
# Short codes for the BSRGAN steps, explained in a legend under the sheet.
STEP_CODES = {"blur": "bl", "resize_intermediate": "ri", "resize_final": "rf", "noise": "no",
              "jpeg": "jp", "sensor": "sn", "final_jpeg": "fj"}
LEGEND = ("BSRGAN steps in order: bl blur, ri intermediate resize, rf final resize, no noise, "
          "jp JPEG, sn sensor noise, fj final JPEG")


def _enlarge(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pixel repetition up to `size` (H, W), for tiles smaller than the HR."""
    factor_h, factor_w = size[0] // image.shape[0], size[1] // image.shape[1]
    return np.repeat(np.repeat(image, factor_h, axis=0), factor_w, axis=1)


def _op_tiles(hr: np.ndarray, seed: int) -> list[tuple[str, np.ndarray]]:
    """(label, float image in [0, 1]) for each op with fixed parameters."""
    rng = np.random.default_rng(seed)
    lr_size = (hr.shape[0] // SCALE, hr.shape[1] // SCALE)
    camera = ops.draw_sensor_noise(rng, (1e-4, 1e-2), (1e-6, 1e-3))["rgb_to_cam"]
    return [
        ("HR", hr),
        ("isotropic blur\nsigma 2.5", ops.blur(hr, 2.5, 2.5, 0.0, ops.kernel_size_for(2.5))),
        ("anisotropic blur\nsigma 3.5 / 0.8, 45 deg",
         ops.blur(hr, 3.5, 0.8, math.pi / 4, ops.kernel_size_for(3.5))),
        ("Gaussian noise\ncolour, level 25", ops.gaussian_noise(hr, 25.0, False, rng=rng)),
        ("Gaussian noise\ngray, level 25", ops.gaussian_noise(hr, 25.0, True, rng=rng)),
        ("JPEG\nquality 20", ops.jpeg(hr, 20)),
        ("sensor noise (rev. ISP)\nshot 1e-2, read 1e-3",
         ops.sensor_noise(hr, camera, 1e-2, 1e-3, rng=rng)),
        ("nearest\nx1/4", ops.resize(hr, "nearest", lr_size)),
        ("bilinear (no antialias)\nx1/4", ops.resize(hr, "bilinear", lr_size)),
        ("bicubic (MATLAB imresize)\nx1/4", ops.resize(hr, "bicubic", lr_size)),
    ]


def _bsrgan_tiles(hr: np.ndarray, seed: int, count: int = 5) -> list[tuple[str, np.ndarray]]:
    degrade = Degradation(DataConfig(scale=SCALE, degradation="bsrgan"))
    hr_tensor = torch.from_numpy(hr.transpose(2, 0, 1).copy()).float()
    tiles = []
    for draw in range(count):
        lr, params = degrade(hr_tensor, generator_for(seed + draw, 0, 0))
        steps = ",".join(STEP_CODES[step["op"]] for step in params["steps"])
        tiles.append((f"BSRGAN #{draw + 1}\n{steps}", lr.permute(1, 2, 0).double().numpy()))
    return tiles


def make_sheet(hr_uint8: np.ndarray, seed: int) -> np.ndarray:
    hr = hr_uint8.astype(np.float64) / 255.0
    tiles = _op_tiles(hr, seed) + _bsrgan_tiles(hr, seed)
    height, width = hr.shape[:2]
    rows = math.ceil(len(tiles) / COLUMNS)
    grid_height = rows * (height + LABEL_HEIGHT)
    sheet = Image.new("RGB", (COLUMNS * width, grid_height + LABEL_HEIGHT // 2 + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for position, (label, image) in enumerate(tiles):
        pixels = to_uint8(torch.from_numpy(image.transpose(2, 0, 1).copy()))
        pixels = _enlarge(pixels, (height, width))
        left = (position % COLUMNS) * width
        top = (position // COLUMNS) * (height + LABEL_HEIGHT)
        sheet.paste(Image.fromarray(pixels), (left, top + LABEL_HEIGHT))
        draw.multiline_text((left + 3, top + 1), label, fill="black", spacing=1)
    draw.text((3, grid_height + 2), LEGEND, fill="black")
    return np.asarray(sheet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="examples/astronaut.png")
    parser.add_argument("--output", default="docs/degradations.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    hr = modcrop(load_image(args.image), SCALE)
    save_image(Path(args.output), make_sheet(hr, args.seed))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
