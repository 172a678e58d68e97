"""LPIPS and DISTS: weight loading from every documented place, closed-form properties,
and the unavailable-metric path when weights are missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lddpm.cli import main
from lddpm.errors import display_path
from lddpm.metrics import MetricSuite, MetricWeights
from lddpm.metrics.dists import STAGE_CHANNELS, AlphaBeta, L2Pool, load_dists
from lddpm.metrics.lpips import VARIANTS, LinearLayers, load_lpips
from lddpm.models.backbones import VGG, AlexNet


def _hub(torch_home) -> object:
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    return checkpoints


def _fake_package(site, name: str, folder: str, filename: str, state: dict) -> None:
    """An installed-looking package that ships a weight file (located, never imported)."""
    package = site / name
    (package / folder).mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    torch.save(state, package / folder / filename)


@pytest.fixture(scope="module")
def weights_home(tmp_path_factory):
    """Random backbones in a hub cache, linear layers and alpha/beta in fake packages."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    hub = _hub(root / "torch_home")
    torch.save(AlexNet().state_dict(), hub / "alexnet-owt-7be5be79.pth")
    torch.save(VGG(16).state_dict(), hub / "vgg16-397923af.pth")
    linear = LinearLayers(VARIANTS["alex"].channels)
    for p in linear.parameters():
        p.data = p.data.abs()  # the trained layers are non-negative
    _fake_package(root / "site", "lpips", "weights/v0.1", "alex.pth", linear.state_dict())
    alpha_beta = AlphaBeta()
    alpha_beta.alpha.data = torch.rand_like(alpha_beta.alpha) * 0.2
    alpha_beta.beta.data = torch.rand_like(alpha_beta.beta) * 0.2
    _fake_package(root / "site", "DISTS_pytorch", "", "weights.pt", alpha_beta.state_dict())
    return root, linear.state_dict(), alpha_beta.state_dict()


@pytest.fixture
def with_weights(weights_home, monkeypatch):
    root = weights_home[0]
    monkeypatch.setenv("TORCH_HOME", str(root / "torch_home"))
    monkeypatch.syspath_prepend(str(root / "site"))
    return weights_home


def _images(seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    return a, b


def _batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


# ----------------------------------------------------------------------------------------------
# LPIPS
# ----------------------------------------------------------------------------------------------
def test_lpips_loads_the_saved_linear_layers_from_the_package(with_weights):
    _, linear_state, _ = with_weights
    network = load_lpips("alex")
    loaded = network.linear.state_dict()
    assert loaded.keys() == linear_state.keys() == {f"lin{k}.model.1.weight" for k in range(5)}
    assert all(torch.equal(loaded[k], v) for k, v in linear_state.items())


def test_lpips_of_identical_images_is_zero_and_grows_with_difference(with_weights):
    metric = MetricSuite(["lpips"]).metrics["lpips"]
    a, b = _images()
    assert metric.distance(a, a) == 0.0
    near = metric.distance(a, b)
    far = metric.distance(a, 255 - a)
    assert 0.0 < near
    assert near == pytest.approx(metric.distance(b, a), rel=1e-5)  # symmetric
    assert far > near


def test_lpips_is_linear_in_the_linear_layers(with_weights):
    # Unit-normalised features: each layer contributes mean(w . (f_x - f_y)^2), so scaling
    # every w by k scales the distance by k.
    network = load_lpips("alex")
    a, b = _images(1)
    x, y = _batch(a) * 2 - 1, _batch(b) * 2 - 1
    before = float(network(x, y))
    for p in network.linear.parameters():
        p.data *= 3.0
    assert float(network(x, y)) == pytest.approx(3.0 * before, rel=1e-5)


def test_lpips_explicit_linear_weights_path(with_weights, tmp_path):
    layers = LinearLayers(VARIANTS["alex"].channels)
    path = tmp_path / "my_alex.pth"
    torch.save(layers.state_dict(), path)
    network = load_lpips("alex", linear_weights=path)
    assert torch.equal(network.linear.lin0.model[1].weight, layers.lin0.model[1].weight)


# ----------------------------------------------------------------------------------------------
# DISTS
# ----------------------------------------------------------------------------------------------
def test_dists_loads_alpha_beta_from_the_package(with_weights):
    _, _, alpha_beta = with_weights
    network = load_dists()
    assert network.weights.alpha.shape == (1, sum(STAGE_CHANNELS), 1, 1)
    assert torch.equal(network.weights.alpha, alpha_beta["alpha"])
    assert torch.equal(network.weights.beta, alpha_beta["beta"])


def test_dists_of_identical_images_is_zero(with_weights):
    metric = MetricSuite(["dists"]).metrics["dists"]
    a, b = _images(2)
    assert metric.distance(a, a) == pytest.approx(0.0, abs=1e-12)
    d = metric.distance(a, b)
    assert 0.0 < d <= 1.0
    assert d == pytest.approx(metric.distance(b, a), rel=1e-6)  # symmetric


def test_l2_pool_keeps_a_constant_image_constant_inside():
    pooled = L2Pool(2)(torch.full((1, 2, 8, 8), 3.0))
    assert pooled.shape == (1, 2, 4, 4)
    torch.testing.assert_close(pooled[..., 1:, 1:], torch.full((1, 2, 3, 3), 3.0))


def test_dists_weight_file_with_wrong_keys_is_refused(with_weights, tmp_path):
    from lddpm.errors import UserError

    path = tmp_path / "weights.pt"
    torch.save({"alpha": torch.zeros(1, 10, 1, 1)}, path)
    with pytest.raises(UserError, match="do not match"):
        load_dists(path)


# ----------------------------------------------------------------------------------------------
# Missing weights
# ----------------------------------------------------------------------------------------------
def test_missing_weights_give_one_line_each(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    suite = MetricSuite(["psnr", "lpips", "dists"])
    assert list(suite.metrics) == ["psnr"]
    lines = suite.unavailable_lines()
    assert [line.split(" ")[0] for line in lines] == ["lpips", "dists"]
    assert all("\n" not in line for line in lines)
    assert "alex.pth not found" in lines[0] and "--lpips-weights" in lines[0]
    assert "weights.pt not found" in lines[1] and "--dists-weights" in lines[1]
    assert display_path(tmp_path / "hub" / "checkpoints") in lines[0]


def test_missing_backbone_names_the_backbone_file(weights_home, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # linear layers found, AlexNet not
    monkeypatch.syspath_prepend(str(weights_home[0] / "site"))
    suite = MetricSuite(["lpips"], MetricWeights())
    assert "alexnet-owt-7be5be79.pth not found" in suite.unavailable["lpips"]
    assert "--alexnet-weights" in suite.unavailable["lpips"]


def test_report_is_written_without_the_unavailable_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    data = tmp_path / "hr"
    data.mkdir()
    rng = np.random.default_rng(3)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / f"{i}.png")
    report, table = tmp_path / "report.json", tmp_path / "rows.csv"
    code = main(["evaluate", "--compare", "bicubic", "--data", str(data), "--scale", "4",
                 "--metrics", "psnr,lpips,dists,fid", "--report", str(report),
                 "--csv", str(table), "--no-progress"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0
    unavailable = [line for line in err.splitlines() if "unavailable" in line]
    assert [line.split()[1] for line in unavailable] == ["lpips", "dists", "fid"]
    assert "PSNR-Y" in out and "LPIPS" not in out and "FID" not in out
    saved = json.loads(report.read_text())
    assert set(saved["metrics"]["unavailable"]) == {"lpips", "dists", "fid"}
    assert saved["methods"][0]["means"]["PSNR-Y"] > 10
    assert "LPIPS" not in table.read_text().splitlines()[0]
