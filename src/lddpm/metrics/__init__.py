"""Image-quality metrics, one documented convention each (see docs/metrics.md).

`METRICS` is a plain dict: metric name -> factory(MetricContext) -> Metric. A factory whose
pretrained weights are missing raises `WeightsNotFound`; `MetricSuite` records that as the
metric being unavailable, with the one-line reason, and carries on without it. A metric is
never computed with random weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lddpm.errors import UserError
from lddpm.metrics.base import Metric, Pair, SetMetric
from lddpm.weights import WeightsNotFound

__all__ = [
    "DEFAULT_METRICS", "METRICS", "Metric", "MetricContext", "MetricSuite", "MetricWeights",
    "Pair", "SetMetric", "parse_metric_names",
]  # fmt: skip


@dataclass
class MetricWeights:
    """Explicit weight-file paths (None: search the usual places) and the LPIPS backbone."""

    inception: str | Path | None = None  # pt_inception-2015-12-05-6726825d.pth (FID, IS)
    lpips: str | Path | None = None  # alex.pth / vgg.pth (LPIPS linear layers)
    lpips_net: str = "alex"  # alex | vgg
    alexnet: str | Path | None = None  # alexnet-owt-7be5be79.pth
    vgg16: str | Path | None = None  # vgg16-397923af.pth (LPIPS-VGG, DISTS)
    dists: str | Path | None = None  # weights.pt (DISTS alpha/beta)
    niqe: str | Path | None = None  # NIQE pristine model (niqe_image_params.mat, ...)


@dataclass
class MetricContext:
    """What factories need; networks shared by several metrics are built once here."""

    weights: MetricWeights = field(default_factory=MetricWeights)
    device: torch.device | str = "cpu"
    y_rounding: str = "matlab"  # PSNR-Y / SSIM-Y: matlab | none (psnr_ssim.Y_ROUNDINGS)
    _shared: dict[str, object] = field(default_factory=dict)

    def shared(self, name: str, build: Callable[[], object]) -> object:
        if name not in self._shared:
            self._shared[name] = build()
        return self._shared[name]


def _psnr(ctx: MetricContext) -> Metric:
    from lddpm.metrics.psnr_ssim import PSNRY

    return PSNRY(ctx.y_rounding)


def _ssim(ctx: MetricContext) -> Metric:
    from lddpm.metrics.psnr_ssim import SSIMY

    return SSIMY(ctx.y_rounding)


def _lr_psnr(ctx: MetricContext) -> Metric:
    from lddpm.metrics.lr_psnr import LRPSNR

    return LRPSNR()


def _niqe(ctx: MetricContext) -> Metric:
    from lddpm.metrics.niqe import NIQE, load_pristine_model

    return NIQE(load_pristine_model(ctx.weights.niqe))


def _detail(ctx: MetricContext) -> Metric:
    from lddpm.metrics.detail import DetailRatio

    return DetailRatio()


def _lpips(ctx: MetricContext) -> Metric:
    from lddpm.metrics.lpips import LPIPS, load_lpips

    net = ctx.weights.lpips_net
    backbone = ctx.weights.alexnet if net == "alex" else ctx.weights.vgg16
    return LPIPS(load_lpips(net, ctx.weights.lpips, backbone), net, ctx.device)


def _dists(ctx: MetricContext) -> Metric:
    from lddpm.metrics.dists import DISTS, load_dists

    return DISTS(load_dists(ctx.weights.dists, ctx.weights.vgg16), ctx.device)


def _inception_features(ctx: MetricContext):
    """One FID Inception for both FID and IS."""
    from lddpm.metrics.fid import InceptionFeatures
    from lddpm.metrics.inception import load_fid_inception

    def build() -> InceptionFeatures:
        return InceptionFeatures(load_fid_inception(ctx.weights.inception), ctx.device)

    return ctx.shared("inception", build)


def _fid(ctx: MetricContext) -> Metric:
    from lddpm.metrics.fid import FID

    return FID(_inception_features(ctx))


def _inception_score(ctx: MetricContext) -> Metric:
    from lddpm.metrics.inception_score import InceptionScore

    return InceptionScore(_inception_features(ctx))


# name -> factory. Order is the report's column order.
METRICS: dict[str, Callable[[MetricContext], Metric]] = {
    "psnr": _psnr,
    "ssim": _ssim,
    "lr_psnr": _lr_psnr,
    "niqe": _niqe,
    "detail": _detail,
    "lpips": _lpips,
    "dists": _dists,
    "fid": _fid,
    "is": _inception_score,
}
DEFAULT_METRICS = ("psnr", "ssim", "lr_psnr", "niqe", "detail")
LPIPS_NETS = ("alex", "vgg")


def parse_metric_names(text: str | Iterable[str]) -> tuple[str, ...]:
    """'psnr,ssim,fid' -> ('psnr', 'ssim', 'fid') in registry order; unknown -> UserError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip().lower() for n in items if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UserError(f"unknown metric '{unknown[0]}'; valid metrics: {', '.join(METRICS)}")
    if not names:
        raise UserError(f"no metrics given; valid metrics: {', '.join(METRICS)}")
    return tuple(n for n in METRICS if n in names)


class MetricSuite:
    """The requested metrics that could be built, and why the others could not.

    `metrics`: name -> Metric, in registry order. `unavailable`: name -> one-line reason
    (which weight file, where it was looked for). A wrong explicit path is a UserError, not
    an unavailable metric: the user asked for that file.
    """

    def __init__(
        self,
        names: Iterable[str] = DEFAULT_METRICS,
        weights: MetricWeights | None = None,
        device: torch.device | str = "cpu",
        y_rounding: str = "matlab",
    ):
        weights = weights or MetricWeights()
        if weights.lpips_net not in LPIPS_NETS:
            raise UserError(f"--lpips-net must be one of {', '.join(LPIPS_NETS)}")
        context = MetricContext(weights, device, y_rounding)
        self.metrics: dict[str, Metric] = {}
        self.unavailable: dict[str, str] = {}
        for name in parse_metric_names(list(names)):
            try:
                self.metrics[name] = METRICS[name](context)
            except WeightsNotFound as exc:
                self.unavailable[name] = str(exc)

    @property
    def image_metrics(self) -> dict[str, Metric]:
        return {k: m for k, m in self.metrics.items() if m.per_image}

    @property
    def set_metrics(self) -> dict[str, SetMetric]:
        return {k: m for k, m in self.metrics.items() if isinstance(m, SetMetric)}

    def drop(self, name: str, reason: str) -> None:
        """Marks a built metric unavailable after all (e.g. FID on a one-image set)."""
        if self.metrics.pop(name, None) is not None:
            self.unavailable[name] = reason

    def notes(self) -> list[str]:
        """Why some images have NaN in a column (e.g. NIQE on images under 192 px)."""
        return sorted(note for m in self.metrics.values() for note in getattr(m, "notes", ()))

    def unavailable_lines(self) -> list[str]:
        """One line per unavailable metric, for stderr and the report."""
        return [f"{name} unavailable: {reason}" for name, reason in self.unavailable.items()]

    def lpips_distance(self) -> Callable | None:
        """The LPIPS distance for LPIPS diversity, when LPIPS is in the suite."""
        metric = self.metrics.get("lpips")
        return getattr(metric, "distance", None)
