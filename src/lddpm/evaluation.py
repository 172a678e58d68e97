"""Evaluation: dataset layouts, the per-method loop, and the Markdown / JSON / CSV reports.

    layout = resolve_layout(data, scale, lr_data)       # which folders hold HR and LR
    dataset = open_dataset(layout, scale, degradation, seed)
    result = evaluate_method(method, dataset, suite, seed, num_samples)
    print(compare_table([bicubic_result, result, ...]))

Layouts understood by `--data` (checked in this order; `--scale` picks the LR subfolder):
- `--lr-data DIR` given: HR and LR folders paired by name;
- `ROOT/HR` + `ROOT/LR_bicubic/X{s}` (the common Set5/Set14/B100/Urban100 packs);
- `ROOT/GTmod12` + `ROOT/LRbicx{s}` (the "GTmod12" benchmark packs);
- `ROOT/<P>_HR` + `ROOT/<P>_LR_bicubic/X{s}` (DIV2K: `DIV2K_valid_HR` + `DIV2K_valid_LR_bicubic/X4`);
- `ROOT/HR` + `ROOT/LR` (what `lddpm degrade --save-hr` writes);
- otherwise ROOT is a folder of HR images and the LR is made from each (cropped to a multiple
  of the scale) with the chosen degradation and seed.
`--data` may also point at the HR folder of a benchmark layout (`Set5/HR`, `.../GTmod12`,
`.../DIV2K_valid_HR`); its LR folder is then found beside it.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from lddpm import __version__
from lddpm.errors import UserError
from lddpm.metrics import MetricSuite, Pair
from lddpm.metrics.diversity import lpips_diversity, pixel_diversity

SECONDS = "sec/img"
NFE = "NFE/img"
DIVERSITY = "diversity"
LPIPS_DIVERSITY = "LPIPS-div"


# ----------------------------------------------------------------------------------------------
# Dataset layouts
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Where the HR images are, and the LR images if the set has them (None: degrade HR)."""

    kind: str  # paired | set-hr-lr_bicubic | gtmod12 | div2k | hr-lr | hr-folder
    hr_dir: Path
    lr_dir: Path | None


def _scale_folder(parent: Path, name: str, scale: int, option_hint: str) -> Path:
    """parent/name, which must exist; else a UserError listing the scales that do."""
    folder = parent / name
    if folder.is_dir():
        return folder
    pattern = re.sub(r"\d+$", "", name)
    present = sorted(p.name for p in parent.iterdir() if p.is_dir() and p.name.startswith(pattern))
    have = f"; found: {', '.join(present)}" if present else ""
    raise UserError(f"no x{scale} LR folder {folder}{have} ({option_hint})")


def _benchmark_layouts(root: Path, scale: int) -> Layout | None:
    """The standard benchmark layouts, for `root` being the set's folder."""
    hint = "pick another --scale or give --lr-data"
    if (root / "HR").is_dir() and (root / "LR_bicubic").is_dir():
        lr = _scale_folder(root / "LR_bicubic", f"X{scale}", scale, hint)
        return Layout("set-hr-lr_bicubic", root / "HR", lr)
    if (root / "GTmod12").is_dir() and any(root.glob("LRbicx*")):
        return Layout(
            "gtmod12", root / "GTmod12", _scale_folder(root, f"LRbicx{scale}", scale, hint)
        )
    pairs = [p for p in sorted(root.glob("*_HR")) if (root / f"{p.name[:-3]}_LR_bicubic").is_dir()]
    if len(pairs) > 1:
        names = ", ".join(str(p) for p in pairs)
        raise UserError(f"{root} holds several HR/LR sets ({names}): point --data at one of them")
    if pairs:
        lr_parent = root / f"{pairs[0].name[:-3]}_LR_bicubic"
        return Layout("div2k", pairs[0], _scale_folder(lr_parent, f"X{scale}", scale, hint))
    if (root / "HR").is_dir() and (root / "LR").is_dir():
        return Layout("hr-lr", root / "HR", root / "LR")
    return None


def _sibling_layout(hr_dir: Path, scale: int) -> Layout | None:
    """`--data` pointing at a benchmark's HR folder: look for its LR beside it."""
    parent = hr_dir.parent
    if hr_dir.name == "HR" and (parent / "LR_bicubic").is_dir():
        return _benchmark_layouts(parent, scale)
    if hr_dir.name == "GTmod12" and any(parent.glob("LRbicx*")):
        return _benchmark_layouts(parent, scale)
    if hr_dir.name.endswith("_HR") and (parent / f"{hr_dir.name[:-3]}_LR_bicubic").is_dir():
        hint = "pick another --scale or give --lr-data"
        lr_parent = parent / f"{hr_dir.name[:-3]}_LR_bicubic"
        return Layout("div2k", hr_dir, _scale_folder(lr_parent, f"X{scale}", scale, hint))
    return None


def resolve_layout(data: str | Path, scale: int, lr_data: str | Path | None = None) -> Layout:
    """Which folders hold the HR and LR images (see the module docstring)."""
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"--data folder not found: {root}")
    if lr_data is not None:
        if not Path(lr_data).is_dir():
            raise UserError(f"--lr-data folder not found: {lr_data}")
        return Layout("paired", root, Path(lr_data))
    found = _benchmark_layouts(root, scale) or _sibling_layout(root, scale)
    return found or Layout("hr-folder", root, None)


def open_dataset(
    layout: Layout, scale: int, degradation: str = "bicubic", seed: int = 0
) -> torch.utils.data.Dataset:
    """PairedFolder for layouts with LR images, else EvalFolder degrading the HR images.

    Items: {"lr": (3, h, w), "hr": (3, h*s, w*s), "name": str}, float32 in [0, 1].
    """
    from lddpm.config import DataConfig
    from lddpm.data.datasets import EvalFolder, PairedFolder
    from lddpm.data.pipeline import Degradation

    if layout.lr_dir is not None:
        return PairedFolder(layout.hr_dir, layout.lr_dir, scale)
    data_cfg = DataConfig(scale=scale, degradation=degradation)
    return EvalFolder(layout.hr_dir, scale, Degradation(data_cfg), seed=seed)


# ----------------------------------------------------------------------------------------------
# Methods: what turns an LR into SR samples
# ----------------------------------------------------------------------------------------------
class Method(Protocol):
    label: str

    def upscale(self, lr: torch.Tensor, seed: int, num_samples: int) -> torch.Tensor:
        """(1, 3, h, w) in [0, 1] -> (N, 1, 3, h*s, w*s) in [0, 1]."""

    def warm_up(self, lr: torch.Tensor) -> None:
        """One cheap call before timing, so one-off set-up costs do not land on image 1."""

    def model_evaluations(self) -> int:
        """Network evaluations the last `upscale` call ran (all tiles and samples)."""

    def describe(self) -> dict[str, Any]: ...


class BicubicMethod:
    """The baseline: MATLAB-compatible bicubic upsampling; one deterministic sample."""

    label = "bicubic"

    def __init__(self, scale: int):
        self.scale = scale

    def upscale(self, lr: torch.Tensor, seed: int, num_samples: int) -> torch.Tensor:
        from lddpm.data.resize import imresize

        del seed, num_samples  # deterministic: one sample says everything
        h, w = lr.shape[-2:]
        up = imresize(lr.double(), scale=self.scale, size=(h * self.scale, w * self.scale))
        return up.clamp(0, 1).float()[None]

    def warm_up(self, lr: torch.Tensor) -> None:
        pass

    def model_evaluations(self) -> int:
        return 0

    def describe(self) -> dict[str, Any]:
        return {"name": self.label, "kind": "bicubic"}


class ModelMethod:
    """A checkpoint sampled with one sampler and step count (`lddpm.inference.Upscaler`)."""

    def __init__(
        self,
        upscaler: Any,
        label: str,
        sampler: str,
        steps: int | None,
        checkpoint: str,
        eta: float = 0.0,
        tile: int | None = None,
        consistency: str = "none",
    ):
        self.upscaler, self.label, self.checkpoint = upscaler, label, checkpoint
        self.sampler, self.steps, self.eta, self.tile = sampler, steps, eta, tile
        self.consistency = consistency
        upscaler.model_evaluations(sampler, steps)  # validates sampler/steps up front
        self._nfe = 0  # counted by the upscaler over the tiles and samples of the last call

    @property
    def scale(self) -> int:
        return int(self.upscaler.scale)

    def upscale(self, lr: torch.Tensor, seed: int, num_samples: int) -> torch.Tensor:
        kwargs: dict[str, Any] = {}
        if self.eta:
            kwargs["eta"] = self.eta
        if self.tile is not None:
            kwargs["tile"] = self.tile
        before = self.upscaler.evaluations
        out = self.upscaler.upscale(  # consistency always: None would mean the model's default
            lr, sampler=self.sampler, steps=self.steps, seed=seed, num_samples=num_samples,
            consistency=self.consistency, **kwargs,
        )
        self._nfe = self.upscaler.evaluations - before
        return out

    def warm_up(self, lr: torch.Tensor) -> None:
        # One network evaluation on a small crop is enough to initialise kernels and caches.
        self.upscaler.upscale(lr[..., :16, :16], sampler="ddim", steps=1, seed=0, num_samples=1)

    def model_evaluations(self) -> int:
        return self._nfe

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.label,
            "kind": "model",
            "checkpoint": self.checkpoint,
            "sampler": self.sampler,
            "steps": self.steps,
            "eta": self.eta,
            "consistency": self.consistency,
        }


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------
@dataclass
class MethodResult:
    label: str
    info: dict[str, Any]
    rows: list[dict[str, Any]]  # per image: {"image": name, column: value, ...}
    means: dict[str, float]  # column -> mean over images; set metrics; sec/img; NFE/img
    extra: dict[str, float] = field(default_factory=dict)  # e.g. IS spread over splits


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float [0, 1] -> uint8 (H, W, 3), as saving the PNG would."""
    from lddpm.data.imageio import to_uint8

    return to_uint8(image)


def _image_row(
    name: str,
    samples: list[np.ndarray],
    hr: np.ndarray,
    lr: np.ndarray,
    scale: int,
    suite: MetricSuite,
) -> dict[str, Any]:
    """Per-image metrics, each the mean over the samples; diversity when N > 1."""
    row: dict[str, Any] = {"image": name}
    try:
        for metric in suite.image_metrics.values():
            row[metric.column] = float(np.mean([metric(Pair(s, hr, lr, scale)) for s in samples]))
        if len(samples) > 1:
            row[DIVERSITY] = pixel_diversity(samples)
            distance = suite.lpips_distance()
            if distance is not None:
                row[LPIPS_DIVERSITY] = lpips_diversity(samples, distance)
    except UserError as exc:
        raise UserError(f"image {name}: {exc}") from None
    return row


def _means(rows: list[dict[str, Any]]) -> dict[str, float]:
    columns = [c for c in rows[0] if c != "image"] if rows else []
    return {c: float(np.mean([r[c] for r in rows])) for c in columns}


def evaluate_method(
    method: Method,
    dataset: Sequence[dict],
    suite: MetricSuite,
    scale: int,
    seed: int = 0,
    num_samples: int = 1,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> MethodResult:
    """Runs `method` on every image of `dataset` and measures it with `suite`.

    Every image uses the same `seed` (as `lddpm upscale --seed` does), so the SR images
    measured are the ones `lddpm upscale` writes. FID and IS see sample 0 of each image.
    """
    for metric in suite.set_metrics.values():
        metric.reset()
    rows: list[dict[str, Any]] = []
    indices = range(len(dataset))
    for index in progress(indices) if progress else indices:
        item = dataset[index]
        lr = item["lr"][None]
        if index == 0:
            method.warm_up(lr)
        start = time.perf_counter()
        out = method.upscale(lr, seed, num_samples)  # (N, 1, 3, H, W)
        seconds = time.perf_counter() - start
        samples = [_to_uint8(out[k, 0]) for k in range(out.shape[0])]
        hr, lr8 = _to_uint8(item["hr"]), _to_uint8(item["lr"])
        if samples[0].shape != hr.shape:
            raise UserError(f"image {item['name']}: SR {samples[0].shape} but HR {hr.shape}")
        row = _image_row(item["name"], samples, hr, lr8, scale, suite)
        row[SECONDS] = seconds
        row[NFE] = float(method.model_evaluations())  # counted: all tiles and samples
        rows.append(row)
        for metric in suite.set_metrics.values():
            metric.update(Pair(samples[0], hr, lr8, scale))
    means = _means(rows)
    extra: dict[str, float] = {}
    for metric in suite.set_metrics.values():
        means[metric.column] = metric.compute()
        if hasattr(metric, "last_std"):
            extra[f"{metric.column}-std"] = metric.last_std
    info = {**method.describe(), "num_samples": num_samples, "seed": seed}
    return MethodResult(method.label, info, rows, means, extra)


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    name: str
    higher_is_better: bool | None  # None: descriptive, never bold
    decimals: int


def report_columns(suite: MetricSuite, num_samples: int) -> list[Column]:
    """The columns of a report, in order: available metrics, then cost, then diversity."""
    columns = [Column(m.column, m.higher_is_better, m.decimals) for m in suite.metrics.values()]
    columns += [Column(SECONDS, False, 3), Column(NFE, False, 0)]
    if num_samples > 1:
        columns.append(Column(DIVERSITY, None, 2))
        if suite.lpips_distance() is not None:
            columns.append(Column(LPIPS_DIVERSITY, None, 4))
    return columns


def _format(value: float | None, decimals: int) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{decimals}f}"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def per_image_table(result: MethodResult, columns: list[Column]) -> str:
    """Markdown: one row per image, then the mean (set metrics only in the mean row)."""
    shown = [c for c in columns if c.name != NFE]
    body = [
        [row["image"]] + [_format(row.get(c.name), c.decimals) for c in shown]
        for row in result.rows
    ]
    mean = ["**mean**"] + [_format(result.means.get(c.name), c.decimals) for c in shown]
    return _markdown(["image"] + [c.name for c in shown], body + [mean])


def _best(values: list[float | None], higher_is_better: bool) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return None
    return max(finite) if higher_is_better else min(finite)


COST_COLUMNS = (SECONDS, NFE)


def _competes(result: MethodResult, column: Column) -> bool:
    """The bicubic baseline does not compete in the cost columns: it would win them trivially."""
    return not (column.name in COST_COLUMNS and result.info.get("kind") == "bicubic")


def compare_table(results: list[MethodResult], columns: list[Column]) -> str:
    """Markdown: one row per method, the mean of each column, the best in bold."""
    cells: list[list[str]] = [[r.label] for r in results]
    for column in columns:
        values = [r.means.get(column.name) for r in results]
        competing = [v if _competes(r, column) else None for v, r in zip(values, results)]
        best = None
        if column.higher_is_better is not None:
            best = _best(competing, column.higher_is_better)
        for row, value, candidate in zip(cells, values, competing):
            text = _format(value, column.decimals)
            bold = best is not None and candidate == best and text != ""
            row.append(f"**{text}**" if bold else text)
    return _markdown(["method"] + [c.name for c in columns], cells)


def _json_number(value: Any) -> Any:
    """Strict JSON has no inf/nan: inf -> "inf" (a perfect PSNR), nan -> null."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return _json_number(obj)


def report_dict(
    results: list[MethodResult], dataset_info: dict[str, Any], suite: MetricSuite
) -> dict[str, Any]:
    """Everything in one JSON-ready dict: dataset, metrics (and why some are missing), and
    per method its settings, means and per-image rows."""
    methods = [{**r.info, "means": r.means, "extra": r.extra, "images": r.rows} for r in results]
    return _clean(
        {
            "lddpm_version": __version__,
            "dataset": dataset_info,
            "metrics": {
                "available": [m.column for m in suite.metrics.values()],
                "unavailable": dict(suite.unavailable),
            },
            "conventions": CONVENTIONS,
            "methods": methods,
        }
    )


CONVENTIONS = {
    "PSNR-Y/SSIM-Y": "Y of ITU-R BT.601 (MATLAB rgb2ycbcr, rounded), scale-pixel border "
    "cropped, SSIM with 11x11 Gaussian window sigma 1.5 (ssim_index.m)",
    "LR-PSNR": "RGB PSNR in [0, 255] between bicubic imresize(SR, 1/scale) and the LR",
    "LPIPS": "v0.1, AlexNet (or VGG-16) backbone, inputs in [-1, 1], full image",
    "DISTS": "VGG-16 with L2 pooling, full resolution, no resizing",
    "FID": "pool3 of the FID Inception (pt_inception-2015-12-05), each full SR and HR image "
    "resized to 299x299; one SR sample per image; as many samples as images",
    "IS": "softmax over the FID Inception's 1008 logits, 10 splits, SR images only",
    "sec/img": "wall-clock seconds of the SR call per image (all samples), after a warm-up",
    "NFE/img": "network evaluations per image (all samples)",
    "per-image metrics with --num-samples > 1": "mean over the samples",
    "seed": "every image uses the same seed, as `lddpm upscale --seed` does",
}


def write_json(path: str | Path, report: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")


def write_csv(path: str | Path, results: list[MethodResult], columns: list[Column]) -> None:
    """One row per (method, image), then a `mean` row per method (the only one with FID/IS)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in columns]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "image", *names])
        for result in results:
            for row in result.rows:
                writer.writerow(
                    [result.label, row["image"], *[_csv_value(row.get(n)) for n in names]]
                )
            writer.writerow(
                [result.label, "mean", *[_csv_value(result.means.get(n)) for n in names]]
            )


def _csv_value(value: float | None) -> str:
    if value is None:
        return ""
    return repr(float(value)) if not math.isinf(value) else ("inf" if value > 0 else "-inf")
