"""The photo sets of the benchmarks: one to choose settings on, one to report on, one of real
low-quality photos without HR. None of them is trained on (training uses Debian's wallpaper
photos, benchmarks/harness.py), and the choosing set shares no photo with the others.

    choosing_set()  bench_runs/choose/   384 px centre crops of scikit-image's hubble_deep_field,
                                         retina, grass, gravel and brick: the set the
                                         sampling defaults of a shipped model are picked on
    report_set()    bench_runs/heldout/  scikit-image's astronaut, chelsea, coffee, rocket,
                                         camera, immunohistochemistry and moon at their own sizes
                                         (cropped to a multiple of 4): what docs/ reports
    real_lr_set()   bench_runs/real_lr/  real low-quality photos, no HR (the paper's Fig. 13):
                                         see examples/CREDITS.md for their sources and licences

(`bench_runs/data/val`, the training runs' validation crops, only logs a PSNR while training.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from harness import RUNS
from PIL import Image

REPORT = ["astronaut", "chelsea", "coffee", "rocket", "camera", "immunohistochemistry", "moon"]
CHOOSING = ["hubble_deep_field", "retina", "grass", "gravel", "brick"]
CHOOSING_CROP = 384  # NIQE needs whole 96 px patches: 16 of them here


def _skimage(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def _made(out: Path, names: list[str]) -> bool:
    return out.is_dir() and sorted(p.stem for p in out.iterdir()) == sorted(names)


def report_set() -> Path:
    """bench_runs/heldout/*.png: the reporting photos as RGB, cropped to a multiple of 4."""
    out = RUNS / "heldout"
    if _made(out, REPORT):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name in REPORT:
        im = _skimage(name)
        im.crop((0, 0, im.width // 4 * 4, im.height // 4 * 4)).save(out / f"{name}.png")
    return out


def choosing_set() -> Path:
    """bench_runs/choose/*.png: CHOOSING_CROP px centre crops (large photos are first
    resized so the short side is 2 crops: a crop then holds a scene, not a few pixels)."""
    out = RUNS / "choose"
    if _made(out, CHOOSING):
        return out
    out.mkdir(parents=True, exist_ok=True)
    c = CHOOSING_CROP
    for name in CHOOSING:
        im = _skimage(name)
        if min(im.size) > 2 * c:
            f = 2 * c / min(im.size)
            im = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.LANCZOS)
        left, top = (im.width - c) // 2, (im.height - c) // 2
        im.crop((left, top, left + c, top + c)).save(out / f"{name}.png")
    return out


# name -> (loader, LR crop box (left, top, right, bottom) of the original)
def _grace_hopper() -> Image.Image:
    from matplotlib import cbook

    return Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


REAL_LR = {
    "grace_hopper": (_grace_hopper, (150, 40, 406, 296)),      # a 1980s JPEG portrait
    "clock": (lambda: _skimage("clock"), (40, 30, 360, 270)),   # camera moved: motion blur
    "coins": (lambda: _skimage("coins"), (0, 0, 384, 303)),     # an old museum scan
}


def real_lr_set() -> Path:
    """bench_runs/real_lr/*.png: the real low-quality photos, cropped as REAL_LR says, saved
    losslessly (the input is what the package ships, its JPEG blocks included)."""
    out = RUNS / "real_lr"
    if _made(out, list(REAL_LR)):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name, (load, box) in REAL_LR.items():
        load().crop(box).save(out / f"{name}.png")
    return out


def degraded_pairs(hr_dir: Path, out: Path, mode: str, seed: int = 0, jpeg: int | None = None) -> Path:
    """out/HR + out/LR as `lddpm degrade --save-hr` writes them (x4, fixed seed); with `jpeg`
    the LR is re-saved as JPEG of that quality (and read back as PNG, so `evaluate` sees the
    compressed pixels)."""
    from harness import lddpm

    tag = out / ".done"
    if tag.is_file():
        return out
    lddpm("degrade", str(hr_dir), "--output", str(out), "--scale", "4", "--mode", mode,
          "--seed", str(seed), "--save-hr", "--overwrite")
    if jpeg is not None:
        import io

        for p in sorted((out / "LR").iterdir()):
            buf = io.BytesIO()
            Image.open(p).convert("RGB").save(buf, "JPEG", quality=jpeg)
            Image.fromarray(np.asarray(Image.open(buf))).save(p)
    tag.write_text("ok")
    return out
