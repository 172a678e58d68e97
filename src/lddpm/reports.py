"""Evaluation reports: Markdown tables, the JSON report and the CSV of `lddpm evaluate`."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lddpm import __version__
from lddpm.evaluation import DIVERSITY, LPIPS_DIVERSITY, NFE, SECONDS, MethodResult
from lddpm.metrics import MetricSuite


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
                "notes": suite.notes(),
                "settings": {m.column: m.settings for m in suite.metrics.values()
                             if getattr(m, "settings", None)},
            },
            "conventions": CONVENTIONS,
            "methods": methods,
        }
    )


CONVENTIONS = {
    "PSNR-Y/SSIM-Y": "Y of ITU-R BT.601 (MATLAB rgb2ycbcr, rounded), scale-pixel border "
    "cropped, SSIM with 11x11 Gaussian window sigma 1.5 (ssim_index.m)",
    "LR-PSNR": "RGB PSNR in [0, 255] between bicubic imresize(SR, 1/scale) and the LR",
    "NIQE": "Mittal et al. 2013 as the MATLAB release: rounded Y of the SR output (MATLAB "
    "rgb2ycbcr), no crop, 96x96 patches, MSCN with a 7x7 Gaussian (sigma 7/6, replicate "
    "padding), AGGD features at 2 scales (bicubic imresize 0.5), Mahalanobis-type distance "
    "to the pristine model named in metrics.settings (default MATLAB's, BasicSR's "
    "niqe_pris_params.npz); nan under 192x192 px, left out of the mean",
    "detail": "energy of Y - bicubic up(down(Y, 1/scale)) of SR over that of HR (HR = 1), "
    "Y of the 8-bit images unrounded, scale-pixel border cropped",
    "LPIPS": "v0.1, AlexNet (or VGG-16) backbone, inputs in [-1, 1], full image",
    "DISTS": "VGG-16 with L2 pooling, full resolution, no resizing",
    "FID": "pool3 of the FID Inception (pt_inception-2015-12-05), each full SR and HR image "
    "resized to 299x299; one SR sample per image; as many samples as images",
    "IS": "softmax over the FID Inception's 1008 logits, 10 splits, SR images only",
    "sec/img": "wall-clock seconds of the SR call per image (all samples), after a warm-up",
    "NFE/img": "network evaluations per image (all samples)",
    "per-image metrics with --num-samples > 1": "mean over the samples",
    "diversity": "per-pixel std over the samples (seed, seed+1, ...), 8-bit units, mean over "
    "the image; with 2 samples mean |a - b| = 2 x diversity; --diversity draws seed+1 for it "
    "alone (untimed, not in the other metrics)",
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
