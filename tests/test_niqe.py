"""NIQE, the detail ratio and seed diversity, and their columns in `lddpm evaluate`.

NIQE is checked against two independent implementations on real photos (scikit-image's):
BasicSR's `niqe` (MATLAB's pristine model, the default here) and scikit-video's
`skvideo.measure.niqe` (its own model). Both are only read from their installed packages
(`make setup` installs them with --no-deps); neither is imported as a whole (BasicSR's
package needs OpenCV, scikit-video's NIQE needs two aliases that numpy and scipy dropped).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lddpm.cli import main
from lddpm.data.layouts import open_dataset, resolve_layout
from lddpm.data.resize import imresize_numpy
from lddpm.errors import UserError
from lddpm.evaluation import NFE, SECONDS, BicubicMethod, evaluate_method
from lddpm.metrics import MetricSuite, Pair
from lddpm.metrics import niqe as niqe_module
from lddpm.metrics.detail import DetailRatio, detail_ratio
from lddpm.metrics.diversity import pixel_diversity
from lddpm.metrics.niqe import (
    NIQE,
    NIQETooSmall,
    PristineModel,
    load_pristine_model,
    niqe,
    niqe_features,
)
from lddpm.metrics.psnr_ssim import rgb_to_y
from lddpm.weights import ShippedCopy, WeightsNotFound, package_root

skimage_data = pytest.importorskip("skimage.data")


def _photo(name: str, height: int = 288, width: int = 384) -> np.ndarray:
    """A real photo from scikit-image, top-left crop (3x4 NIQE patches at the default)."""
    image = getattr(skimage_data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[:height, :width])


def _blur(image: np.ndarray, scale: int = 4) -> np.ndarray:
    """Bicubic down and up by `scale`: a photo with its fine detail gone."""
    h, w = image.shape[:2]
    small = imresize_numpy(image.astype(np.float64), scale=1 / scale)
    return np.clip(np.round(imresize_numpy(small, scale=scale, size=(h, w))), 0, 255).astype(
        np.uint8
    )


def _noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model() -> PristineModel:
    return load_pristine_model()  # MATLAB's, from the installed basicsr package


# ----------------------------------------------------------------------------------------------
# NIQE against independent implementations
# ----------------------------------------------------------------------------------------------
def _basicsr_niqe():
    """BasicSR's `niqe` function, loaded from its file with stand-ins for the imports it does
    not use here (OpenCV, its registry, its colour helpers)."""
    root = package_root("basicsr")
    if root is None:
        pytest.skip("basicsr is not installed (make setup installs it with --no-deps)")
    spec = importlib.util.spec_from_file_location("_bsr_mf", root / "utils/matlab_functions.py")
    matlab_functions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(matlab_functions)
    registry = types.SimpleNamespace(register=lambda: (lambda f: f))
    stubs = {
        "cv2": {}, "basicsr": {}, "basicsr.metrics": {}, "basicsr.utils": {},
        "basicsr.metrics.metric_util": {"reorder_image": None, "to_y_channel": None},
        "basicsr.utils.matlab_functions": {"imresize": matlab_functions.imresize},
        "basicsr.utils.registry": {"METRIC_REGISTRY": registry},
    }  # fmt: skip
    saved = {name: sys.modules.get(name) for name in stubs}
    for name, attrs in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
    try:
        spec = importlib.util.spec_from_file_location("_bsr_niqe", root / "metrics/niqe.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return module.niqe


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_niqe_matches_basicsr_with_matlabs_model(name, model):
    # BasicSR's reimplementation of MATLAB's niqe.m (it reproduces MATLAB's 5.7296 on its
    # baboon.png; so does lddpm's: 5.72957 vs MATLAB R2021a's 5.7295734, docs/metrics.md)
    basicsr_niqe = _basicsr_niqe()
    params = np.load(Path(model.path))
    y = rgb_to_y(_photo(name))
    theirs = basicsr_niqe(y, params["mu_pris_param"], params["cov_pris_param"],
                          params["gaussian_window"])  # fmt: skip
    assert niqe(_photo(name), model) == pytest.approx(theirs, rel=2e-3)


def _skvideo_niqe(monkeypatch, grey: np.ndarray) -> float:
    """skvideo.measure.niqe, with the two names that numpy 2 and scipy >= 1.3 no longer have:
    `np.int` and `scipy.misc.imresize` (Pillow's bicubic resize of a float image, as it was)."""
    pytest.importorskip("skvideo")
    import scipy.misc

    def imresize(array, size, interp="bicubic", mode="F"):
        image = Image.fromarray(np.asarray(array, dtype=np.float32), mode="F")
        new = tuple((np.array(image.size) * size).astype(int))
        return np.array(image.resize(new, resample=Image.BICUBIC))

    monkeypatch.setattr(np, "int", int, raising=False)
    monkeypatch.setattr(scipy.misc, "imresize", imresize, raising=False)
    import skvideo.measure

    return float(skvideo.measure.niqe(grey.astype(np.float64))[0])


def _skvideo_conventions(monkeypatch) -> None:
    """What skvideo.measure.niqe does differently from MATLAB's niqe.m: zero padding in the
    MSCN filter, Pillow's bicubic for scale 2, and zeros counted as positive in the AGGD."""
    window = niqe_module._window_1d()

    def zero_padded_filter(image):
        padded = np.pad(image, 3)
        h, w = image.shape
        rows = sum(window[k] * padded[k : k + h, :] for k in range(7))
        return sum(window[k] * rows[:, k : k + w] for k in range(7))

    def pillow_half(image, scale):
        small = Image.fromarray(image.astype(np.float32), mode="F")
        new = (image.shape[1] // 2, image.shape[0] // 2)
        return np.array(small.resize(new, resample=Image.BICUBIC), dtype=np.float64)

    aggd = niqe_module.aggd
    # 1e-300 squares to 0 but counts as positive: skvideo's `x >= 0` for the right side
    monkeypatch.setattr(niqe_module, "aggd", lambda v: aggd(np.where(v == 0, 1e-300, v)))
    monkeypatch.setattr(niqe_module, "_filter", zero_padded_filter)
    monkeypatch.setattr(niqe_module, "imresize_numpy", pillow_half)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_niqe_matches_scikit_video_under_its_conventions(name, monkeypatch):
    skvideo_root = package_root("skvideo")
    if skvideo_root is None:
        pytest.skip("scikit-video is not installed (make setup installs it with --no-deps)")
    skvideo_model = load_pristine_model(skvideo_root / "measure/data/niqe_image_params.mat")
    assert skvideo_model.layout == "skvideo"
    y = rgb_to_y(_photo(name))
    theirs = _skvideo_niqe(monkeypatch, y)
    ours = niqe(y, skvideo_model)
    # MATLAB's conventions against scikit-video's: within 15% on these 288x384 crops (the
    # zero padding weighs most on small images; 1-8% on whole photos, docs/metrics.md) ...
    assert ours == pytest.approx(theirs, rel=0.15)
    # ... and with scikit-video's three conventions swapped in, the same algorithm
    _skvideo_conventions(monkeypatch)
    assert niqe(y, skvideo_model) == pytest.approx(theirs, rel=2e-3)


def test_skvideo_layout_repeats_the_left_scale_of_the_diagonal_products():
    y = rgb_to_y(_photo("coffee", 192, 192))
    matlab, skvideo = niqe_features(y, "matlab"), niqe_features(y, "skvideo")
    for diagonal_right in (13, 17, 31, 35):  # D1 and D2 at both scales
        np.testing.assert_array_equal(skvideo[:, diagonal_right], skvideo[:, diagonal_right - 1])
        assert not np.allclose(matlab[:, diagonal_right], matlab[:, diagonal_right - 1])
    others = [k for k in range(36) if k not in (13, 17, 31, 35)]
    np.testing.assert_array_equal(skvideo[:, others], matlab[:, others])


# ----------------------------------------------------------------------------------------------
# NIQE properties
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_niqe_is_higher_for_blurred_and_noisy_photos(name, model):
    clean = _photo(name)
    score = niqe(clean, model)
    assert 2.0 < score < 8.0  # a natural photo
    assert niqe(_blur(clean), model) > score + 1.0
    assert niqe(_noisy(clean, 20.0), model) > score + 1.0


def test_niqe_ignores_colour_beyond_y_and_takes_greyscale(model):
    photo = _photo("coffee", 192, 192)
    assert niqe(photo, model) == niqe(rgb_to_y(photo), model)


def test_small_images_are_refused_and_reported_as_nan(model):
    with pytest.raises(NIQETooSmall, match="at least 192x192"):
        niqe(_photo("coffee", 191, 384), model)
    metric = NIQE(model)
    small = _photo("coffee", 120, 160)
    assert np.isnan(metric(Pair(small, small, small[::4, ::4], 4)))
    assert any("192x192" in note for note in metric.notes)


def test_flat_image_gives_nan_not_a_number_from_nothing(model):
    assert np.isnan(niqe(np.full((192, 192, 3), 128, np.uint8), model))


# ----------------------------------------------------------------------------------------------
# The pristine model file
# ----------------------------------------------------------------------------------------------
def test_model_files_of_each_kind_are_read(tmp_path, model):
    scipy_io = pytest.importorskip("scipy.io")
    matlab = tmp_path / "modelparameters.mat"
    scipy_io.savemat(matlab, {"mu_prisparam": model.mu[None], "cov_prisparam": model.cov})
    loaded = load_pristine_model(matlab)
    assert loaded.layout == "matlab"
    np.testing.assert_array_equal(loaded.mu, model.mu)
    skvideo = tmp_path / "niqe_image_params.mat"
    scipy_io.savemat(skvideo, {"pop_mu": model.mu[None], "pop_cov": model.cov})
    assert load_pristine_model(skvideo).layout == "skvideo"


def test_bad_model_files_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="weight file not found"):
        load_pristine_model(tmp_path / "missing.mat")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="cannot read NIQE model"):
        load_pristine_model(junk)
    other = tmp_path / "other.npz"
    np.savez(other, mu=np.zeros(36))
    with pytest.raises(UserError, match="it has: mu"):
        load_pristine_model(other)
    short = tmp_path / "short.npz"
    np.savez(short, mu_pris_param=np.zeros(18), cov_pris_param=np.eye(18))
    with pytest.raises(UserError, match="36-d mean"):
        load_pristine_model(short)


def _no_model_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(niqe_module, "DEFAULT_COPY", ShippedCopy("no_such_package_xyz", "m"))


def test_no_model_anywhere_makes_niqe_unavailable(monkeypatch, tmp_path):
    _no_model_installed(monkeypatch, tmp_path)
    with pytest.raises(WeightsNotFound, match="pip install --no-deps basicsr"):
        load_pristine_model()
    suite = MetricSuite(["psnr", "niqe"])
    assert list(suite.metrics) == ["psnr"]
    assert "niqe_pris_params.npz not found" in suite.unavailable["niqe"]


# ----------------------------------------------------------------------------------------------
# Detail ratio
# ----------------------------------------------------------------------------------------------
def test_detail_ratio_closed_forms():
    hr = _photo("astronaut", 192, 256)
    assert detail_ratio(hr, hr, 4) == 1.0
    # Y - 16 is linear in RGB and bicubic down-up keeps constants: halving the image (even
    # values, so exactly) quarters the energy
    even = (hr // 2) * 2
    assert detail_ratio(even // 2, even, 4) == pytest.approx(0.25, rel=1e-9)
    assert np.isnan(detail_ratio(hr, hr, 1))
    flat = np.full_like(hr, 90)
    assert np.isnan(detail_ratio(hr, flat, 4))


def test_detail_ratio_orders_blur_bicubic_and_noise():
    hr = _photo("coffee", 192, 256)
    bicubic_of_lr = _blur(hr, 4)  # LR by bicubic imresize, then bicubic upsampling
    softened = _blur(hr, 2)
    assert detail_ratio(bicubic_of_lr, hr, 4) < 0.15
    assert detail_ratio(bicubic_of_lr, hr, 4) < detail_ratio(softened, hr, 4) < 1.0
    assert detail_ratio(_noisy(hr, 8.0), hr, 4) > 1.1
    metric = DetailRatio()
    assert metric(Pair(softened, hr, hr[::4, ::4], 4)) == detail_ratio(softened, hr, 4)
    assert metric.higher_is_better is None  # descriptive: never bolded


# ----------------------------------------------------------------------------------------------
# Seed diversity
# ----------------------------------------------------------------------------------------------
def test_two_sample_diversity_is_half_the_mean_absolute_difference():
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(2))
    mad = np.abs(a.astype(float) - b).mean()
    assert 2 * pixel_diversity([a, b]) == pytest.approx(mad)


class _NoisyMethod:
    """A stochastic evaluation method: bicubic plus noise of the seed, one NFE per sample."""

    label, stochastic = "noisy", True

    def upscale(self, lr, seed, num_samples):
        base = BicubicMethod(2).upscale(lr, seed, 1)[0]
        self._nfe = num_samples
        return torch.stack([
            (base + 0.05 * torch.randn(base.shape, generator=torch.Generator().manual_seed(seed + s))
             ).clamp(0, 1) for s in range(num_samples)
        ])  # fmt: skip

    def warm_up(self, lr):
        pass

    def model_evaluations(self):
        return self._nfe

    def describe(self):
        return {"name": self.label, "kind": "model"}


def test_diversity_flag_draws_seed_plus_one_for_the_column_only(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(_photo("coffee", 32, 32)).save(folder / "a.png")
    dataset = open_dataset(resolve_layout(folder, 2), 2)
    suite = MetricSuite(["psnr"])
    method = _NoisyMethod()
    plain = evaluate_method(method, dataset, suite, 2, seed=3)
    flagged = evaluate_method(method, dataset, suite, 2, seed=3, diversity=True)
    two = evaluate_method(method, dataset, suite, 2, seed=3, num_samples=2)
    assert "diversity" not in plain.means
    assert flagged.means["PSNR-Y"] == plain.means["PSNR-Y"]  # sample 0 (seed 3) only
    assert flagged.means[NFE] == plain.means[NFE] == 1.0  # the extra sample is not counted
    assert flagged.means["diversity"] == two.means["diversity"]  # seeds 3 and 4 both ways
    assert 5.0 < flagged.means["diversity"] < 15.0  # std of 0.05 noise ~ 12.75 before clipping
    bicubic = evaluate_method(BicubicMethod(2), dataset, suite, 2, diversity=True)
    assert "diversity" not in bicubic.means  # deterministic: no second sample to draw
    assert SECONDS in flagged.means


# ----------------------------------------------------------------------------------------------
# `lddpm evaluate`
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def photos_192(tmp_path) -> Path:
    """Two 192x192 crops of real photos (NIQE's smallest) and one 48x48 image."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(_photo("astronaut", 192, 192)).save(folder / "a_astronaut.png")
    Image.fromarray(_photo("coffee", 192, 192)).save(folder / "b_coffee.png")
    return folder


def _rows(out: str) -> list[list[str]]:
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_evaluate_compare_reports_niqe_detail_and_diversity(tiny_run, photos_192, tmp_path,
                                                            capsys):  # fmt: skip
    report, table = tmp_path / "r.json", tmp_path / "r.csv"
    code = main(["evaluate", "--compare", f"{tiny_run}:ddim:1", "bicubic", "--data",
                 str(photos_192), "--diversity", "--report", str(report), "--csv", str(table),
                 "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    rows = _rows(out)
    assert rows[0] == ["method", "PSNR-Y", "SSIM-Y", "LR-PSNR", "NIQE", "detail", SECONDS, NFE,
                       "diversity"]  # fmt: skip
    bicubic = dict(zip(rows[0], rows[2]))
    assert bicubic["method"] == "bicubic" and bicubic["diversity"] == ""
    assert float(bicubic["NIQE"].strip("*")) > 0 and float(bicubic["detail"]) < 0.3
    model = dict(zip(rows[0], rows[3]))
    assert float(model["diversity"]) > 0.0
    saved = json.loads(report.read_text())
    assert saved["metrics"]["settings"]["NIQE"]["layout"] == "matlab"
    assert "NIQE" in saved["conventions"] and "detail" in saved["conventions"]
    for method in saved["methods"]:
        assert all(image["NIQE"] > 0 and image["detail"] > 0 for image in method["images"])
    header = table.read_text().splitlines()[0].split(",")
    assert header[2:] == ["PSNR-Y", "SSIM-Y", "LR-PSNR", "NIQE", "detail", SECONDS, NFE,
                          "diversity"]  # fmt: skip


def test_evaluate_per_image_table_with_a_small_image(tiny_run, photos_192, capsys):
    Image.fromarray(_photo("chelsea", 48, 48)).save(photos_192 / "c_small.png")
    code = main(["evaluate", "--checkpoint", str(tiny_run), "--steps", "1", "--data",
                 str(photos_192), "--diversity", "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert "lddpm: NIQE needs at least 192x192 px (2x2 patches of 96 px): nan for smaller " \
        "images, left out of the mean" in captured.err
    rows = {row[0]: dict(zip(_rows(captured.out)[0], row)) for row in _rows(captured.out)[2:]}
    assert _rows(captured.out)[0] == ["image", "PSNR-Y", "SSIM-Y", "LR-PSNR", "NIQE", "detail",
                                      SECONDS, "diversity"]  # fmt: skip
    assert rows["c_small"]["NIQE"] == "nan" and float(rows["c_small"]["detail"]) > 0
    measured = [float(rows[name]["NIQE"]) for name in ("a_astronaut", "b_coffee")]
    assert float(rows["**mean**"]["NIQE"]) == pytest.approx(np.mean(measured), abs=2e-3)
    assert float(rows["**mean**"]["diversity"]) > 0


def test_evaluate_drops_niqe_when_no_image_is_big_enough(image_dir, capsys):
    code = main(["evaluate", "--compare", "bicubic", "--scale", "2", "--data", str(image_dir),
                 "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert "lddpm: niqe unavailable: no image measured (NIQE needs at least 192x192" in captured.err
    assert "NIQE" not in _rows(captured.out)[0]


def test_evaluate_missing_niqe_params_is_a_one_line_error(photos_192, tmp_path, capsys):
    code = main(["evaluate", "--compare", "bicubic", "--scale", "2", "--data", str(photos_192),
                 "--niqe-params", str(tmp_path / "nope.mat"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"lddpm: error: weight file not found: {tmp_path}/nope.mat"]


def test_evaluate_without_any_niqe_model_says_so_and_carries_on(photos_192, monkeypatch,
                                                                tmp_path, capsys):  # fmt: skip
    _no_model_installed(monkeypatch, tmp_path)
    code = main(["evaluate", "--compare", "bicubic", "--scale", "2", "--data", str(photos_192),
                 "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert "lddpm: niqe unavailable: pretrained weights niqe_pris_params.npz not found" in (
        captured.err
    )
    assert "NIQE" not in _rows(captured.out)[0] and "detail" in _rows(captured.out)[0]
