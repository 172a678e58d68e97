"""Evaluation: the methods (what turns an LR into SR samples) and the per-method loop.

    layout = resolve_layout(data, scale, lr_data)       # lddpm.data.layouts
    dataset = open_dataset(layout, scale, degradation, seed)
    result = evaluate_method(method, dataset, suite, scale, seed, num_samples)
    print(compare_table([bicubic_result, result, ...], columns))   # lddpm.reports
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

from lddpm.errors import UserError
from lddpm.metrics import MetricSuite, Pair
from lddpm.metrics.diversity import lpips_diversity, pixel_diversity

SECONDS = "sec/img"
NFE = "NFE/img"
DIVERSITY = "diversity"
LPIPS_DIVERSITY = "LPIPS-div"


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
    """A checkpoint sampled with one SamplingPlan (`lddpm.inference.Upscaler.plan`), the one
    `lddpm upscale` runs for the same options: the images measured are the ones it writes."""

    stochastic = True  # another seed gives another sample (evaluate --diversity)

    def __init__(self, upscaler: Any, label: str, plan: Any, checkpoint: str):
        self.upscaler, self.label, self.plan, self.checkpoint = upscaler, label, plan, checkpoint
        self._nfe = 0  # counted by the upscaler over the tiles and samples of the last call

    @property
    def scale(self) -> int:
        return int(self.upscaler.scale)

    def upscale(self, lr: torch.Tensor, seed: int, num_samples: int) -> torch.Tensor:
        """(1, 3, h, w) in [0, 1] -> (num_samples, 1, 3, h*s, w*s) in [0, 1]."""
        plan = self.plan if num_samples == self.plan.num_samples else replace(self.plan, num_samples=num_samples)
        before = self.upscaler.evaluations
        out = self.upscaler.upscale(lr, seed=seed, plan=plan)
        self._nfe = self.upscaler.evaluations - before
        return out

    def warm_up(self, lr: torch.Tensor) -> None:
        # One network evaluation on a small crop is enough to initialise kernels and caches.
        once = replace(self.plan, timesteps=self.plan.timesteps[:1], num_samples=1,
                       self_ensemble=False)
        self.upscaler.upscale(lr[..., :16, :16], seed=0, plan=once)

    def model_evaluations(self) -> int:
        return self._nfe

    def describe(self) -> dict[str, Any]:
        plan = self.plan.describe()
        del plan["num_samples"]  # the report's own key (evaluate_method)
        return {"name": self.label, "kind": "model", "checkpoint": self.checkpoint, **plan}


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
    more: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Per-image metrics, each the mean over the samples; diversity when the samples and
    `more` (extra seeds drawn for diversity only) are 2 or more."""
    row: dict[str, Any] = {"image": name}
    spread = samples + (more or [])
    try:
        for metric in suite.image_metrics.values():
            row[metric.column] = float(np.mean([metric(Pair(s, hr, lr, scale)) for s in samples]))
        if len(spread) > 1:
            row[DIVERSITY] = pixel_diversity(spread)
            distance = suite.lpips_distance()
            if distance is not None:
                row[LPIPS_DIVERSITY] = lpips_diversity(spread, distance)
    except UserError as exc:
        raise UserError(f"image {name}: {exc}") from None
    return row


def _means(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Column means; a NaN (not measured on that image, e.g. NIQE on a small one) is left
    out, and the mean is NaN only when no image was measured."""
    columns = [c for c in rows[0] if c != "image"] if rows else []
    means = {}
    for c in columns:
        values = np.array([r[c] for r in rows], dtype=np.float64)
        measured = values[~np.isnan(values)]
        means[c] = float(np.mean(measured)) if measured.size else float("nan")
    return means


def evaluate_method(
    method: Method,
    dataset: Sequence[dict],
    suite: MetricSuite,
    scale: int,
    seed: int = 0,
    num_samples: int = 1,
    progress: Callable[[Iterable], Iterable] | None = None,
    diversity: bool = False,
    save: Callable[[str, torch.Tensor], None] | None = None,
) -> MethodResult:
    """Runs `method` on every image of `dataset` and measures it with `suite`.

    Every image uses the same `seed` (as `lddpm upscale --seed` does), so the SR images
    measured are the ones `lddpm upscale` writes. FID and IS see sample 0 of each image.
    `diversity` with one sample: a stochastic method also draws the sample of `seed + 1`
    (the second sample of `--num-samples 2`), for the diversity columns only: untimed,
    not counted in NFE/img, not in the other metrics.
    `save(name, samples)`: called with each image's SR samples (N, 1, 3, H, W) in [0, 1],
    the tensors measured (`lddpm evaluate --save-images`).
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
        nfe = float(method.model_evaluations())  # counted: all tiles and samples
        if save is not None:
            save(item["name"], out)
        samples = [_to_uint8(out[k, 0]) for k in range(out.shape[0])]
        more = []
        if diversity and len(samples) == 1 and getattr(method, "stochastic", False):
            more = [_to_uint8(method.upscale(lr, seed + 1, 1)[0, 0])]
        hr, lr8 = _to_uint8(item["hr"]), _to_uint8(item["lr"])
        if samples[0].shape != hr.shape:
            raise UserError(f"image {item['name']}: SR {samples[0].shape} but HR {hr.shape}")
        row = _image_row(item["name"], samples, hr, lr8, scale, suite, more)
        row[SECONDS] = seconds
        row[NFE] = nfe
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
