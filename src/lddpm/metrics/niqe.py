"""NIQE (Mittal, Soundararajan and Bovik 2013): a no-reference naturalness score, lower =
more natural. It looks at the SR output alone, so it rewards detail that PSNR punishes.

The algorithm of the authors' MATLAB release (`niqe.m`, `computequality.m`,
`computefeature.m`, `estimateaggdparam.m`):
1. greyscale: the Y of MATLAB `rgb2ycbcr` (BT.601, [16, 235]) rounded to integers, the
   Y of PSNR-Y (BasicSR's `calculate_niqe(convert_to='y')`, the SR papers' NIQE; the
   MATLAB release itself applies `rgb2gray` to RGB input), float64; no border crop;
2. the image is cropped to whole 96x96 patches (the remainder on the right and at the
   bottom is dropped);
3. at each of two scales: MSCN coefficients (I - mu) / (sigma + 1) with mu, sigma from a
   normalised 7x7 Gaussian window, sigma 7/6 (`imfilter(..., 'replicate')`), then per
   non-overlapping patch (96 px at scale 1, 48 px at scale 2) 18 features: an AGGD fit of
   the coefficients (shape, mean of the left and right scales) and, for each of the 4
   neighbour products (H, V, D1, D2, circularly shifted within the patch), an AGGD fit
   (shape, mean, left scale, right scale). Scale 2 is MATLAB `imresize(I, 0.5)`, bicubic
   and antialiased (`lddpm.data.resize.imresize_numpy`);
4. as MATLAB's `nanmean`/`nancov`, each feature's mean is over the patches where it is
   defined (an AGGD fit of a flat patch is not) and the sample covariance over the patches
   with all 36 defined; they are compared with the pristine model's:
   sqrt((mu1 - mu2)^T pinv((C1 + C2) / 2) (mu1 - mu2)).

The pristine model is a file, never made up. By default the MATLAB release's own
(`modelparameters.mat`, which the published NIQE values use) in BasicSR's copy
`basicsr/metrics/niqe_pris_params.npz` (`mu_pris_param`, `cov_pris_param`), found inside the
installed `basicsr` package without importing it (`pip install --no-deps basicsr==1.4.2`;
`make setup` installs it). `--niqe-params PATH` takes that file, MATLAB's
`modelparameters.mat` (`mu_prisparam`, `cov_prisparam`) or scikit-video's
`niqe_image_params.mat` (`pop_mu`, `pop_cov`). scikit-video's is a model it trained itself,
not MATLAB's: it gives other numbers (8.87 vs 5.73 on BasicSR's baboon.png) and puts the
left scale in both scale slots of the diagonal products (its features 15-16 and 33-34 are
equal), so with it the features are laid out the same way. docs/metrics.md has the
agreement with MATLAB's published value, BasicSR and `skvideo.measure.niqe`.

An image needs at least 2x2 patches (192x192 px) for a covariance; a smaller one gets NaN
(`NIQETooSmall` from `niqe`), and `lddpm evaluate` says so.
"""

from __future__ import annotations

import functools
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lddpm.data.resize import imresize_numpy
from lddpm.errors import UserError, display_path
from lddpm.metrics.base import Metric, Pair
from lddpm.metrics.psnr_ssim import rgb_to_y
from lddpm.weights import ShippedCopy, WeightsNotFound, find_weight_file

PATCH = 96  # the patch side at scale 1 (48 at scale 2)
MIN_SIDE = 2 * PATCH  # 2x2 patches: the fewest that give a covariance worth the name
WINDOW_SIDE, WINDOW_SIGMA = 7, 7.0 / 6.0
_C = 1.0  # MSCN stabiliser, for [0, 255] images

DEFAULT_FILE = "niqe_pris_params.npz"  # MATLAB's pristine model, as BasicSR ships it
DEFAULT_COPY = ShippedCopy("basicsr", "metrics", "basicsr")
HOW_TO_GET = (
    "pip install --no-deps basicsr==1.4.2 (it ships MATLAB's NIQE model; `make setup` "
    "installs it), or pass a model file with --niqe-params (MATLAB's modelparameters.mat, "
    "or scikit-video's niqe_image_params.mat)"
)
# variable names -> feature layout (see `_patch_features`)
MODEL_KEYS = {
    ("pop_mu", "pop_cov"): "skvideo",
    ("mu_prisparam", "cov_prisparam"): "matlab",
    ("mu_pris_param", "cov_pris_param"): "matlab",  # BasicSR's .npz copy of MATLAB's
}


class NIQETooSmall(ValueError):
    """The image has fewer than 2x2 patches of 96 px."""


@dataclass(frozen=True)
class PristineModel:
    mu: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)
    layout: str  # "skvideo" | "matlab": what the diagonal products' 4th feature is
    path: str


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a .mat (scipy) or .npz (numpy) file; UserError when it is neither."""
    if path.suffix == ".npz":
        errors: tuple[type[Exception], ...] = (ValueError, OSError, zipfile.BadZipFile)
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except errors as exc:
            raise UserError(f"cannot read NIQE model {path}: {_first_line(exc)}") from None
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise WeightsNotFound(f"reading the NIQE model {path} needs scipy: pip install scipy")
    try:
        return loadmat(str(path))
    except (MatReadError, ValueError, OSError, TypeError) as exc:
        raise UserError(f"cannot read NIQE model {path}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_pristine_model(path: str | Path | None = None) -> PristineModel:
    """The pristine model from `path`, else MATLAB's from the installed basicsr package.

    A missing explicit path or an unreadable file is a UserError; no file anywhere is
    `WeightsNotFound` (the metric is then unavailable, with that one line).
    """
    found = find_weight_file(DEFAULT_FILE, path, (DEFAULT_COPY,), HOW_TO_GET)
    data = _read_arrays(found)
    for (mu_key, cov_key), layout in MODEL_KEYS.items():
        if mu_key in data and cov_key in data:
            mu = np.asarray(data[mu_key], dtype=np.float64).ravel()
            cov = np.asarray(data[cov_key], dtype=np.float64)
            if mu.shape != (36,) or cov.shape != (36, 36) or not np.isfinite(cov).all():
                raise UserError(
                    f"NIQE model {found}: expected a 36-d mean and a 36x36 covariance, "
                    f"got {mu.shape} and {cov.shape}"
                )
            return PristineModel(mu, cov, layout, str(found))
    names = ", ".join(k for k in data if not k.startswith("__"))
    raise UserError(
        f"NIQE model {found} holds none of pop_mu/pop_cov (scikit-video), "
        f"mu_prisparam/cov_prisparam (MATLAB), mu_pris_param/cov_pris_param (BasicSR); "
        f"it has: {names or 'nothing'}"
    )


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------
def greyscale(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> rounded Y of MATLAB rgb2ycbcr, float64; (H, W) [0, 255] passes."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.dtype != np.uint8:
        raise ValueError("NIQE takes uint8 RGB images")
    return rgb_to_y(image, matlab_rounding=True)


@functools.lru_cache(maxsize=1)
def _window_1d() -> np.ndarray:
    """fspecial('gaussian', 7, 7/6) is separable: the outer product of this, normalised."""
    x = np.arange(WINDOW_SIDE) - (WINDOW_SIDE - 1) / 2
    w = np.exp(-(x**2) / (2 * WINDOW_SIGMA**2))
    return w / w.sum()


def _filter(image: np.ndarray) -> np.ndarray:
    """imfilter(image, window, 'replicate'), separably."""
    w = _window_1d()
    r = WINDOW_SIDE // 2
    padded = np.pad(image, r, mode="edge")
    h, wd = image.shape
    rows = sum(w[k] * padded[k : k + h, :] for k in range(WINDOW_SIDE))
    return sum(w[k] * rows[:, k : k + wd] for k in range(WINDOW_SIDE))


def mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a [0, 255] greyscale image."""
    mu = _filter(image)
    sigma = np.sqrt(np.abs(_filter(image * image) - mu * mu))
    return (image - mu) / (sigma + _C)


# estimateaggdparam.m: the shape is looked up on a grid 0.2:0.001:10
_GAM = np.round(np.arange(0.2, 10.0 + 5e-4, 0.001), 3)


def _lgamma(x: np.ndarray) -> np.ndarray:
    return np.array([math.lgamma(v) for v in x])


_R_GAM = np.exp(2 * _lgamma(2 / _GAM) - _lgamma(1 / _GAM) - _lgamma(3 / _GAM))


def _nearest(r: np.ndarray) -> np.ndarray:
    """argmin_k (_R_GAM[k] - r)^2 per value; _R_GAM increases, so a binary search (ties: the
    lower index, as argmin)."""
    high = np.clip(np.searchsorted(_R_GAM, r), 1, len(_R_GAM) - 1)
    low = high - 1
    return np.where((r - _R_GAM[low]) ** 2 <= (_R_GAM[high] - r) ** 2, low, high)


def aggd(values: np.ndarray) -> tuple[np.ndarray, ...]:
    """AGGD fits of each row of `values` (P, N) -> (alpha, mean, left scale, right scale).

    As estimateaggdparam.m: left/right std over the negative/positive values (zeros in
    neither), r = mean|x|^2 / mean x^2 corrected for the asymmetry, alpha the grid value whose
    ratio Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) is closest. A row with no negative or no
    positive value gives NaN features (MATLAB's mean of an empty set), dropped later.
    """
    sq = values * values
    neg, pos = values < 0, values > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.sqrt((sq * neg).sum(1) / neg.sum(1))
        right = np.sqrt((sq * pos).sum(1) / pos.sum(1))
        gamma_hat = left / right
        r_hat = np.abs(values).mean(1) ** 2 / sq.mean(1)
        r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    finite = np.isfinite(r_norm)
    index = _nearest(np.where(finite, r_norm, 0.0))
    alpha = np.where(finite, _GAM[index], np.nan)
    g1 = np.array([math.gamma(1 / a) if np.isfinite(a) else np.nan for a in alpha])
    g2 = np.array([math.gamma(2 / a) if np.isfinite(a) else np.nan for a in alpha])
    g3 = np.array([math.gamma(3 / a) if np.isfinite(a) else np.nan for a in alpha])
    ratio = np.sqrt(g1 / g3)
    beta_l, beta_r = left * ratio, right * ratio
    return alpha, (beta_r - beta_l) * g2 / g1, beta_l, beta_r


def _patches(coefficients: np.ndarray, side: int) -> np.ndarray:
    """(H, W) with H, W multiples of `side` -> (P, side, side), row-major patch order."""
    h, w = coefficients.shape
    grid = coefficients.reshape(h // side, side, w // side, side).swapaxes(1, 2)
    return grid.reshape(-1, side, side)


# computefeature.m's circshift offsets (rows, columns): H, V, D1, D2
_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


def _patch_features(coefficients: np.ndarray, side: int, layout: str) -> np.ndarray:
    """(P, 18) features of the patches of one scale's MSCN coefficients."""
    patches = _patches(coefficients, side)
    flat = patches.reshape(len(patches), -1)
    alpha, _, beta_l, beta_r = aggd(flat)
    columns = [alpha, (beta_l + beta_r) / 2]
    for k, shift in enumerate(_SHIFTS):
        pair = flat * np.roll(patches, shift, axis=(1, 2)).reshape(len(patches), -1)
        alpha, mean, beta_l, beta_r = aggd(pair)
        # scikit-video's model has the left scale twice for the diagonal products
        fourth = beta_l if layout == "skvideo" and k >= 2 else beta_r
        columns += [alpha, mean, beta_l, fourth]
    return np.stack(columns, axis=1)


def niqe_features(grey: np.ndarray, layout: str = "matlab") -> np.ndarray:
    """(P, 36) patch features of a [0, 255] greyscale image (both scales side by side)."""
    h, w = grey.shape
    if h < MIN_SIDE or w < MIN_SIDE:
        raise NIQETooSmall(
            f"NIQE needs at least {MIN_SIDE}x{MIN_SIDE} px (2x2 patches of {PATCH}), "
            f"got {w}x{h}"
        )
    image = grey[: h - h % PATCH, : w - w % PATCH].astype(np.float64)
    scale1 = _patch_features(mscn(image), PATCH, layout)
    half = imresize_numpy(image, scale=0.5)
    scale2 = _patch_features(mscn(half), PATCH // 2, layout)
    return np.concatenate([scale1, scale2], axis=1)


def niqe(image: np.ndarray, model: PristineModel) -> float:
    """NIQE of a uint8 RGB (H, W, 3) or [0, 255] greyscale (H, W) image; lower = more natural.

    Raises NIQETooSmall below 192x192 px. NaN when fewer than 2 patches have finite
    features (e.g. a flat image).
    """
    features = niqe_features(greyscale(image), model.layout)
    complete = features[np.isfinite(features).all(axis=1)]
    if len(complete) < 2:
        return float("nan")
    # MATLAB: nanmean (each feature over the patches where it is defined), nancov (the
    # patches with every feature defined)
    diff = np.nanmean(features, axis=0) - model.mu
    cov = (model.cov + np.cov(complete, rowvar=False)) / 2
    return float(np.sqrt(max(diff @ np.linalg.pinv(cov) @ diff, 0.0)))


class NIQE(Metric):
    """NIQE of the SR output (no reference). NaN below 192x192 px, with a note saying why."""

    key, column, higher_is_better, decimals = "niqe", "NIQE", False, 3

    def __init__(self, model: PristineModel):
        self.model = model
        self.notes: set[str] = set()  # why some images got NaN, for the report
        self.settings = {"model": display_path(model.path), "layout": model.layout}

    def __call__(self, pair: Pair) -> float:
        try:
            return niqe(pair.sr, self.model)
        except NIQETooSmall:
            self.notes.add(
                f"NIQE needs at least {MIN_SIDE}x{MIN_SIDE} px (2x2 patches of {PATCH} px): "
                f"nan for smaller images, left out of the mean"
            )
            return float("nan")
