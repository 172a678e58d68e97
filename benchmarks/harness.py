"""Shared pieces of the benchmark scripts: data, training runs, side-by-side evaluation.

Every number in a report comes from the `lddpm` commands themselves: runs are trained with
`lddpm train` and measured with `lddpm evaluate --compare` (one run, one table), called
in-process through `lddpm.cli.main`. Re-running a script reuses finished runs (`--resume`
with the same step budget does nothing) and regenerates the report.

Data (CPU scale):
  train: real photographs from Debian's wallpaper packages (plasma-workspace-wallpapers,
         mate-backgrounds, lomiri-wallpapers-16.04; the drawings are skipped), each resized
         so its long side is 768 px.
  val:   held-out scikit-image photos and textures (never trained on), resized so the short
         side is 256 px and centre-cropped to 128x128 HR (32x32 LR at x4).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench_runs"
DOCS = ROOT / "docs"

# The photographs among the wallpapers (checked by eye on a contact sheet; drawings and
# abstract renders left out). Paths are where the Debian packages install them.
WALLPAPER_PHOTOS = [
    "wallpapers/BytheWater", "wallpapers/ColdRipple", "wallpapers/ColorfulCups",
    "wallpapers/DarkestHour", "wallpapers/EveningGlow", "wallpapers/FallenLeaf",
    "wallpapers/OneStandsOut", "wallpapers/Path", "wallpapers/summer_1am",
    "backgrounds/mate/nature/Aqua.jpg", "backgrounds/mate/nature/Blinds.jpg",
    "backgrounds/mate/nature/Dune.jpg", "backgrounds/mate/nature/FreshFlower.jpg",
    "backgrounds/mate/nature/Garden.jpg", "backgrounds/mate/nature/GreenMeadow.jpg",
    "backgrounds/mate/nature/LadyBird.jpg", "backgrounds/mate/nature/RainDrops.jpg",
    "backgrounds/mate/nature/Storm.jpg", "backgrounds/mate/nature/TwoWings.jpg",
    "backgrounds/mate/nature/Wood.jpg", "backgrounds/mate/nature/YellowFlower.jpg",
    "backgrounds/Bridge_by_Sander_Klootwijk.jpg", "backgrounds/Dragonfly_by_Bolly.jpg",
    "backgrounds/Picture_0B_by_freespace.jpg", "backgrounds/Picture_1A_by_freespace.jpg",
    "backgrounds/Wine_by_Jakkub_Mede.jpg", "backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg",
    "backgrounds/analogpattern_by_Peter_Nerlich.jpg", "backgrounds/free_by_Peter_Nerlich.jpg",
    "backgrounds/friends_by_Aitzol_Berasategi.jpg", "backgrounds/greentock_by_Peter_Nerlich.jpg",
    "backgrounds/life_by_Aitzol_Berasategi.jpg",
    "backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "backgrounds/seeding_by_Clements_Engelhardt.jpg",
    "backgrounds/sunset_by_Aitzol_Berasategi.jpg",
]
# Photos of ukui-wallpapers and lomiri-wallpapers-20.04 (the rest of those two are drawings).
EXTRA_PHOTOS = [
    "backgrounds/Kleiber_by_Lukas_Baubkus.jpg", "backgrounds/Infinite-Sea_by_Aury88.jpg",
]
EXTRA_PACKAGES = "ukui-wallpapers lomiri-wallpapers-20.04"
VAL_IMAGES = ["astronaut", "coffee", "chelsea", "rocket", "camera", "grass", "gravel", "brick"]
PACKAGES = "plasma-workspace-wallpapers mate-backgrounds lomiri-wallpapers-16.04"

# The common budget of every ablation row (same data, seed, steps, crop, batch).
DEFAULT_STEPS = 500
COMMON_SETS = [
    "data.crop=64", "data.batch_size=8", "data.scale=4", "train.seed=0",
    "diffusion.target=residual", "diffusion.prediction=v", "train.warmup_steps=50",
    "train.val_every=100000", "train.checkpoint_every=200",
    "loss.backbone=mobilenet_v2",
]


def _largest_image(path: Path) -> Path:
    if path.is_file():
        return path
    files = [p for p in path.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    files = [p for p in files if "screenshot" not in p.name and "images_dark" not in str(p)]
    return max(files, key=lambda p: p.stat().st_size)


def _load_photo(rel: str) -> Image.Image:
    im = Image.open(_largest_image(Path("/usr/share") / rel))
    im.draft("RGB", (2048, 2048))
    return im.convert("RGB")


def prepare_photos(out: Path, long_sides: tuple[int, ...] = (1024, 512)) -> Path:
    """The default model's training set: every wallpaper photo at each long side (several
    scales give the model textures at several sizes). Made once; returns `out`."""
    if out.is_dir() and any(out.iterdir()):
        return out
    rels = WALLPAPER_PHOTOS + EXTRA_PHOTOS
    missing = [p for p in rels if not (Path("/usr/share") / p).exists()]
    if missing:
        sys.exit(f"photos missing ({missing[0]}, ...): apt-get install {PACKAGES} {EXTRA_PACKAGES}")
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for rel in rels:
        photo = _load_photo(rel)
        for side in long_sides:
            im = photo.copy()
            im.thumbnail((side, side), Image.Resampling.LANCZOS)
            im.save(tmp / f"{Path(rel).stem}_{side}.png")
    tmp.rename(out)
    return out


def prepare_data() -> tuple[Path, Path]:
    """bench_runs/data/{train,val}; made once."""
    train, val = RUNS / "data" / "train", RUNS / "data" / "val"
    if not train.is_dir() or not any(train.iterdir()):
        missing = [p for p in WALLPAPER_PHOTOS if not (Path("/usr/share") / p).exists()]
        if missing:
            sys.exit(f"benchmark photos missing ({missing[0]}, ...): apt-get install {PACKAGES}")
        train.mkdir(parents=True, exist_ok=True)
        for rel in WALLPAPER_PHOTOS:
            im = _load_photo(rel)
            im.thumbnail((768, 768), Image.Resampling.LANCZOS)
            im.save(train / f"{Path(rel).stem}.png")
    if not val.is_dir() or not any(val.iterdir()):
        import skimage.data

        val.mkdir(parents=True, exist_ok=True)
        for name in VAL_IMAGES:
            arr = getattr(skimage.data, name)()
            im = Image.fromarray(arr).convert("RGB")
            short = min(im.size)
            im = im.resize((round(im.width * 256 / short), round(im.height * 256 / short)),
                           Image.Resampling.LANCZOS)
            left, top = (im.width - 128) // 2, (im.height - 128) // 2
            im.crop((left, top, left + 128, top + 128)).save(val / f"{name}.png")
    return train, val


def _project_relative(arg: str) -> str:
    """An absolute path inside the project as a path relative to it (reports name their
    inputs as given, and must not show this machine's root)."""
    if arg.startswith(str(ROOT) + os.sep):
        return os.path.relpath(arg, ROOT)
    return arg


def without_machine_paths(text: str) -> str:
    """`text` with this machine's project root and home directory written as
    `lddpm.errors.display_path` writes them (project-relative, `~/`). The commands already
    print paths that way; this keeps any that slip through out of the committed reports."""
    return text.replace(str(ROOT) + os.sep, "").replace(str(Path.home()) + os.sep, "~/")


def lddpm(*args: str) -> None:
    """Runs an lddpm command in-process from the project root, with project paths relative to
    it; a failure stops the benchmark."""
    from lddpm.cli import main

    args = tuple(_project_relative(str(a)) for a in args)
    print("$ lddpm " + " ".join(shlex.quote(a) for a in args), flush=True)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        code = main(list(args))
    finally:
        os.chdir(cwd)
    if code != 0:
        sys.exit(f"lddpm {args[0]} failed with exit code {code}")


@dataclass
class Run:
    name: str  # row label
    preset: str
    sets: list[str] = field(default_factory=list)
    group: str = ""  # a benchmark with its own common settings keeps its runs apart

    @property
    def dir(self) -> Path:
        slug = self.preset.replace("+", "_") + "".join("_" + s.replace("=", "-") for s in self.sets)
        return RUNS / "runs" / self.group / slug


def train(run: Run, data: Path, steps: int, common: list[str] = COMMON_SETS) -> float:
    """Trains (or finishes) a run; returns the wall seconds spent now."""
    sets = [x for s in common + run.sets for x in ("--set", s)]
    val = RUNS / "data" / "val"
    start = time.time()
    lddpm("train", "--preset", run.preset, *sets, "--data", str(data), "--val-data", str(val),
          "--output", str(run.dir), "--max-steps", str(steps), "--resume")
    return time.time() - start


def compare(entries: list[str], val: Path, report: Path, num_samples: int = 1,
            metrics: str = "psnr,ssim,lr_psnr,lpips,dists", max_images: int | None = None) -> dict:
    """`lddpm evaluate --compare` on the held-out folder; returns the JSON report."""
    limit = ["--max-images", str(max_images)] if max_images else []
    lddpm("evaluate", "--compare", *entries, "--data", str(val), "--scale", "4",
          "--num-samples", str(num_samples), "--metrics", metrics, "--seed", "0", *limit,
          "--report", str(report), "--csv", str(report.with_suffix(".csv")))
    for written in (report, report.with_suffix(".csv")):
        written.write_text(without_machine_paths(written.read_text()))
    return json.loads(report.read_text())


def parameters(run: Run) -> int:
    from lddpm.inference import Upscaler
    from lddpm.models.lddpm import count_parameters

    return count_parameters(Upscaler.from_checkpoint(run.dir).net)


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])


def fmt(value, decimals: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{decimals}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def unavailable_note(report: dict) -> str:
    missing = report.get("metrics", {}).get("unavailable", {})
    if not missing:
        return ""
    return "Metrics not reported (weights absent here, never computed from random weights): " + \
        "; ".join(f"{k}: {v}" for k, v in missing.items())


def method_means(report: dict) -> dict[str, dict]:
    """name -> means; a project-relative name is also found under its absolute path (what
    the scripts build their entries from)."""
    means = {m["name"]: m["means"] for m in report["methods"]}
    return {**means, **{str(ROOT / name): v for name, v in means.items()
                        if name.startswith(("bench_runs", "runs"))}}


def cells(means: dict, columns: list[tuple[str, int]]) -> list[str]:
    """Formatted metric cells of one method, in column order ('-' where absent)."""
    return [fmt(means.get(name), decimals) for name, decimals in columns]


def cpu_scale_note(steps: int) -> str:
    return (
        "**These are CPU-scale figures**: each model is the `small` preset trained for "
        f"{steps} steps (batch 8, 64 px HR crops, x4, seed 0, `diffusion.target=residual`, "
        "`diffusion.prediction=v`, 50 warm-up steps) on "
        "35 photographs on a 2-core CPU, minutes rather than the paper's GPU-days. They show "
        "that the switches work and how the variants compare at an equal budget, not the "
        "paper's numbers."
    )


def write_report(path: Path, title: str, paragraphs: list[str], seconds: dict[str, float],
                 report: dict) -> None:
    """The Markdown report: title, command, the given paragraphs/tables, costs, caveats."""
    text = "\n\n".join(
        [f"# {title}", f"Produced by `{command_line()}`."]
        + paragraphs
        + ["Training wall time this run (s; a few when a finished run is reused): "
           + ", ".join(f"{k}: {v:.0f}" for k, v in seconds.items()) if seconds else "",
           unavailable_note(report)]
    ).rstrip() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(without_machine_paths(text))
    print(text)
