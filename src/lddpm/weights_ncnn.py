"""ncnn models (`.param` + `.bin`) read and run in PyTorch: a small graph interpreter.

Used for the comparison rows of `lddpm evaluate --compare` (`lddpm.peers`): published
super-resolution networks whose ncnn exports ship in PyPI packages. `load_ncnn(param, bin)`
gives an `NcnnNet`, an `nn.Module` that runs the graph's layers in file order in fp32.

The formats, as ncnn writes them:
- `.param` is text: the magic line `7767517`, a line `LAYER_COUNT BLOB_COUNT`, then one line
  per layer: `TYPE NAME N_IN N_OUT IN_BLOBS... OUT_BLOBS... KEY=VALUE...`. A value with `.`
  or an exponent is a float, else an int; a key at or below -23300 holds an array:
  `-233KK=N,v1,...,vN` is array parameter KK.
- `.bin` holds the layers' weights, in layer order, with nothing between them. A "tagged"
  blob starts with a 4-byte little-endian tag that says its storage (0x01306B47: fp16, padded
  to a multiple of 4 bytes; 0 or 0x0002C056: fp32); an untagged one is raw fp32. Convolution:
  the weight blob (tagged), (out, in / group, kh, kw) like PyTorch's, then the bias (`5=1`,
  raw). MemoryData: its data, raw fp32 (tagged when `21=0`).
Every byte is accounted for: the .bin must end exactly after the last layer's weights, every
weight count must match its layer's parameters, and a layer type, parameter, weight storage
(int8, quantised tables) or activation that this interpreter does not implement is refused
with a UserError naming the layer, never skipped or guessed.

Blobs are PyTorch tensors with a leading batch axis: an ncnn (c, h, w) blob is (B, c, h, w),
a MemoryData blob (1, ...). Layers implemented, with ncnn's semantics (see `LAYERS`):
Input, MemoryData, Convolution, ConvolutionDepthWise (dilation, stride, asymmetric and SAME
padding, pad value, bias, fused activation none/ReLU/leaky/Clip/Sigmoid/Mish/HardSwish),
ReLU (slope: leaky), Clip, Sigmoid, Swish, TanH, Mish, HardSigmoid, HardSwish, Split,
Concat, Eltwise (prod/sum with coefficients/max), BinaryOp (12 ops, a scalar `1=1 2=B` or a
second blob, broadcast as ncnn does: a blob of fewer dimensions lines up with the outer
ones, e.g. a 1-D (c) blob against (c, h, w) is per channel), PixelShuffle (PyTorch and DCR
orders), Interp (nearest, bilinear, bicubic by scale or to a size, align_corner),
Dropout (scale), Noop.

How it was checked against ncnn itself (the official Python binding `ncnn`, 1.0.20261020,
CPU, fp32 storage and arithmetic): tests/test_ncnn_graph.py runs a hand-built graph of most
of these layers and the three models of `lddpm.peers` through both and compares (it is
skipped where `ncnn` is not installed); the Real-ESRGAN graph also matches the project's
hand-written RRDBNet (`lddpm.models.rrdbnet`) loaded with the same weights.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lddpm.errors import UserError, display_path

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x00000000
TAG_FP32_SCALED = 0x0002C056  # fp32 "with extra scaling": the values are stored as they are
ARRAY_KEY_BASE = -23300
SAME_UPPER, SAME_LOWER = -233, -234  # Convolution pad values meaning "same" padding

# Convolution parameter ids (ncnn's Convolution layer).
NUM_OUTPUT, KERNEL_W, DILATION_W, STRIDE_W, PAD_LEFT, BIAS_TERM, WEIGHT_SIZE = 0, 1, 2, 3, 4, 5, 6
GROUP, INT8_SCALE_TERM, ACTIVATION, ACTIVATION_PARAMS, KERNEL_H = 7, 8, 9, 10, 11
DILATION_H, STRIDE_H, PAD_TOP, PAD_RIGHT, PAD_BOTTOM, PAD_VALUE, DYNAMIC_WEIGHT = (
    12, 13, 14, 15, 16, 18, 19,
)
LEAKY_RELU = 2


@dataclass(frozen=True)
class Layer:
    """One line of a .param file; `params` maps the integer key to int, float or a list."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, int | float | list]


# ----------------------------------------------------------------------------------------------
# .param
# ----------------------------------------------------------------------------------------------
def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _params(tokens: Sequence[str], where: str) -> dict[int, int | float | list]:
    """`KEY=VALUE` tokens -> {key: value}; array keys (< -23300) become plain keys with lists."""
    params: dict[int, int | float | list] = {}
    for token in tokens:
        key_text, sep, value = token.partition("=")
        try:
            if not sep:
                raise ValueError("no '='")
            key = int(key_text)
            if key <= ARRAY_KEY_BASE:
                count, *values = value.split(",")
                if int(count) != len(values):
                    raise ValueError(f"array of {count} holds {len(values)} values")
                params[ARRAY_KEY_BASE - key] = [_number(v) for v in values]
            else:
                params[key] = _number(value)
        except ValueError as exc:
            raise UserError(f"{where}: bad parameter {token!r} ({exc})") from None
    return params


def _layer(line: str, where: str) -> Layer:
    tokens = line.split()
    try:
        n_in, n_out = int(tokens[2]), int(tokens[3])
    except (IndexError, ValueError):
        raise UserError(f"{where}: not an ncnn layer line: {line[:60]!r}") from None
    blobs = tokens[4 : 4 + n_in + n_out]
    if len(blobs) != n_in + n_out:
        raise UserError(f"{where}: layer {tokens[1]} lists fewer blobs than {n_in} + {n_out}")
    params = _params(tokens[4 + n_in + n_out :], f"{where} ({tokens[1]})")
    return Layer(tokens[0], tokens[1], tuple(blobs[:n_in]), tuple(blobs[n_in:]), params)


def read_param(path: str | Path) -> list[Layer]:
    """The layers of an ncnn `.param` text file, in file order."""
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        raise UserError(f"ncnn param file not found: {display_path(path)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read ncnn param file {display_path(path)}: {exc}") from None
    shown = display_path(path)
    if not lines or lines[0].strip() != str(MAGIC):
        raise UserError(f"{shown} is not an ncnn .param file (its first line is not {MAGIC})")
    try:
        layer_count, blob_count = (int(v) for v in lines[1].split()[:2])
    except ValueError:
        raise UserError(f"{shown}: second line must be 'LAYER_COUNT BLOB_COUNT'") from None
    layers = [_layer(line, f"{shown} line {i + 3}") for i, line in enumerate(lines[2:])]
    if len(layers) != layer_count:
        raise UserError(f"{shown} declares {layer_count} layers but lists {len(layers)}")
    blobs = {b for layer in layers for b in layer.inputs + layer.outputs}
    if len(blobs) != blob_count:
        raise UserError(f"{shown} declares {blob_count} blobs but its layers name {len(blobs)}")
    return layers


# ----------------------------------------------------------------------------------------------
# .bin
# ----------------------------------------------------------------------------------------------
class _Reader:
    """Sequential reads from the .bin bytes, with errors that name the layer."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.offset, self.shown = data, 0, display_path(path)

    def take(self, size: int, layer: str) -> bytes:
        if self.offset + size > len(self.data):
            raise UserError(
                f"{self.shown} ends early (at byte {len(self.data)}) inside layer {layer}: "
                "truncated, or not the .bin of this .param"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def weight_blob(self, count: int, layer: str) -> np.ndarray:
        """A tagged weight blob of `count` values -> float32 (count,)."""
        (tag,) = struct.unpack("<I", self.take(4, layer))
        if tag == TAG_FP16:
            raw = self.take((count * 2 + 3) // 4 * 4, layer)  # fp16 is padded to 4 bytes
            return np.frombuffer(raw[: count * 2], dtype="<f2").astype(np.float32)
        if tag in (TAG_FP32, TAG_FP32_SCALED):
            return self.raw_fp32(count, layer)
        raise UserError(
            f"{self.shown}: layer {layer} stores its weights as tag {tag:#010x} "
            "(int8 or quantised, or not a weight blob); only fp16 and fp32 are read"
        )

    def raw_fp32(self, count: int, layer: str) -> np.ndarray:
        return np.frombuffer(self.take(count * 4, layer), dtype="<f4").astype(np.float32)


def _tensor(values: np.ndarray, *shape: int) -> torch.Tensor:
    return torch.from_numpy(values.reshape(shape).copy())


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------
class _Params:
    """A layer's parameters, read with ncnn's defaults; a key the layer does not know is
    refused (it might change what the layer computes)."""

    def __init__(self, layer: Layer, known: Sequence[int]):
        self.layer = layer
        unknown = sorted(set(layer.params) - set(known))
        if unknown:
            raise self.error(f"has parameter(s) {unknown} that lddpm's ncnn executor does "
                             "not implement")

    def error(self, message: str) -> UserError:
        return UserError(f"ncnn layer {self.layer.type} {self.layer.name} {message}")

    def int(self, key: int, default: int) -> int:
        value = self.layer.params.get(key, default)
        if not isinstance(value, int):
            raise self.error(f"parameter {key} must be an integer, not {value!r}")
        return value

    def float(self, key: int, default: float) -> float:
        value = self.layer.params.get(key, default)
        if isinstance(value, list):
            raise self.error(f"parameter {key} must be a number, not an array")
        return float(value)

    def floats(self, key: int) -> list[float]:
        value = self.layer.params.get(key, [])
        if not isinstance(value, list):
            raise self.error(f"parameter {key} must be an array, not {value!r}")
        return [float(v) for v in value]

    def choice(self, key: int, default: int, allowed: Sequence[int], what: str) -> int:
        value = self.int(key, default)
        if value not in allowed:
            raise self.error(f"has {what} {value} (parameter {key}), which lddpm's ncnn "
                             f"executor does not implement (it does: {list(allowed)})")
        return value


# ----------------------------------------------------------------------------------------------
# Layers: each an nn.Module whose forward takes the input blobs and returns the output blobs
# ----------------------------------------------------------------------------------------------
def _activation(p: _Params) -> Callable[[torch.Tensor], torch.Tensor]:
    """Convolution's fused activation (ncnn's activation_type 0-6 and activation_params)."""
    kind = p.choice(ACTIVATION, 0, range(7), "activation_type")
    params = p.floats(ACTIVATION_PARAMS)
    needed = {0: 0, 1: 0, 2: 1, 3: 2, 4: 0, 5: 0, 6: 2}[kind]
    if len(params) < needed:
        raise p.error(f"activation_type {kind} needs {needed} activation_params, has {params}")
    if kind == 0:
        return lambda x: x
    if kind == 1:
        return F.relu
    if kind == 2:
        return lambda x: F.leaky_relu(x, params[0])
    if kind == 3:
        return lambda x: x.clamp(params[0], params[1])
    if kind == 4:
        return torch.sigmoid
    if kind == 5:
        return F.mish
    return lambda x: x * (x * params[0] + params[1]).clamp(0, 1)  # HardSwish(alpha, beta)


class Conv(nn.Module):
    """Convolution / ConvolutionDepthWise: weight (out, in / group, kh, kw) and bias, fp32."""

    def __init__(self, layer: Layer, reader: _Reader):
        super().__init__()
        depthwise = layer.type == "ConvolutionDepthWise"
        keys = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19] + [7] * depthwise
        p = _Params(layer, keys)
        self.name = layer.name
        out, size = p.int(NUM_OUTPUT, 0), p.int(WEIGHT_SIZE, 0)
        kw = p.int(KERNEL_W, 0)
        kh = p.int(KERNEL_H, kw)
        self.group = p.int(GROUP, 1) if depthwise else 1
        p.choice(INT8_SCALE_TERM, 0, [0], "int8_scale_term (int8 weights)")
        p.choice(DYNAMIC_WEIGHT, 0, [0], "dynamic_weight")
        per_group = out * kh * kw
        if (out <= 0 or kw <= 0 or kh <= 0 or size <= 0 or self.group <= 0
                or out % self.group or size % per_group):
            raise p.error(f"has inconsistent sizes (num_output {out}, kernel {kh}x{kw}, "
                          f"group {self.group}, weight_data_size {size})")
        self.in_channels = size // per_group * self.group  # weight: (out, in / group, kh, kw)
        dw = p.int(DILATION_W, 1)
        sw = p.int(STRIDE_W, 1)
        self.dilation = (p.int(DILATION_H, dw), dw)
        self.stride = (p.int(STRIDE_H, sw), sw)
        left = p.int(PAD_LEFT, 0)
        top = p.int(PAD_TOP, left)
        self.pads = (left, p.int(PAD_RIGHT, left), top, p.int(PAD_BOTTOM, top))
        if any(v < 0 and v not in (SAME_UPPER, SAME_LOWER) for v in self.pads):
            raise p.error(f"has padding {self.pads}; only >= 0, -233 and -234 are defined")
        self.pad_value = p.float(PAD_VALUE, 0.0)
        self.act = _activation(p)
        self.activation = p.int(ACTIVATION, 0)
        self.activation_params = p.floats(ACTIVATION_PARAMS)
        weight = reader.weight_blob(size, layer.name)
        self.register_buffer("weight", _tensor(weight, out, size // per_group, kh, kw))
        bias = reader.raw_fp32(out, layer.name) if p.int(BIAS_TERM, 0) else None
        self.register_buffer("bias", None if bias is None else _tensor(bias, out))

    def _padding(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom); -233/-234 is "same" padding, the odd pixel at the end
        (SAME_UPPER) or at the start (SAME_LOWER), computed as ncnn does."""
        left, right, top, bottom = self.pads
        if left in (SAME_UPPER, SAME_LOWER) or top in (SAME_UPPER, SAME_LOWER):
            kh, kw = self.weight.shape[-2:]
            extent_h = self.dilation[0] * (kh - 1) + 1
            extent_w = self.dilation[1] * (kw - 1) + 1
            wpad = extent_w + (w - 1) // self.stride[1] * self.stride[1] - w
            hpad = extent_h + (h - 1) // self.stride[0] * self.stride[0] - h
            mode = left if left < 0 else top
            if mode == SAME_UPPER:
                return wpad // 2, wpad - wpad // 2, hpad // 2, hpad - hpad // 2
            return wpad - wpad // 2, wpad // 2, hpad - hpad // 2, hpad // 2
        return left, right, top, bottom

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise UserError(
                f"ncnn layer {self.name}: weights for {self.in_channels} input channels, "
                f"its input is {tuple(x.shape[1:])}"
            )
        pads = self._padding(*x.shape[-2:])
        padding: tuple[int, int] | str = 0
        if pads[0] == pads[1] and pads[2] == pads[3] and self.pad_value == 0:
            padding = (pads[2], pads[0])  # symmetric zero padding: let the convolution pad
        elif any(pads):
            x = F.pad(x, pads, value=self.pad_value)
        y = F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.group)
        return [self.act(y)]


class MemoryData(nn.Module):
    """A constant blob: `0=w 1=h 11=d 2=c` (ncnn's order: c, d, h, w), raw fp32 in the .bin."""

    def __init__(self, layer: Layer, reader: _Reader):
        super().__init__()
        p = _Params(layer, [0, 1, 2, 11, 21])
        w, h, c, d = p.int(0, 0), p.int(1, 0), p.int(2, 0), p.int(11, 0)
        load_type = p.choice(21, 1, [0, 1], "load_type")
        if c:
            shape = (c, d, h, w) if d else (c, h, w)
        elif h:
            shape = (h, w)
        else:
            shape = (w,) if w else ()
        count = math.prod(shape)
        if count <= 0:
            raise p.error(f"has an empty shape {shape}")
        values = reader.weight_blob(count, layer.name) if load_type == 0 else \
            reader.raw_fp32(count, layer.name)
        self.register_buffer("data", _tensor(values, 1, *(shape or (1,))))

    def forward(self) -> list[torch.Tensor]:
        return [self.data]


class Elementwise(nn.Module):
    """A weightless layer: `fn(*inputs) -> list of outputs`."""

    def __init__(self, fn: Callable[..., list[torch.Tensor]], layer: Layer):
        super().__init__()
        self.fn, self.name = fn, layer.name

    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        return self.fn(*inputs)


def _ncnn_axis(axis: int, x: torch.Tensor) -> int:
    """An ncnn axis (0 = the outermost axis of the blob, negative from the end) -> torch dim
    (the batch axis comes first)."""
    dims = x.dim() - 1
    positive = axis + dims if axis < 0 else axis
    if not 0 <= positive < dims:
        raise UserError(f"axis {axis} is outside a {dims}-D blob")
    return positive + 1


def _broadcast(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ncnn's broadcast: the blob of fewer dimensions lines up with the outer axes of the other
    (a (c) blob against (c, h, w) is per channel); then every axis must match or be 1."""
    rank = max(a.dim(), b.dim())
    a = a.reshape(*a.shape, *[1] * (rank - a.dim()))
    b = b.reshape(*b.shape, *[1] * (rank - b.dim()))
    for i in range(1, rank):
        if a.shape[i] != b.shape[i] and 1 not in (a.shape[i], b.shape[i]):
            raise UserError(
                f"cannot broadcast blobs {tuple(a.shape[1:])} and {tuple(b.shape[1:])}"
            )
    return a, b


BINARY_OPS: dict[int, Callable] = {
    0: torch.add,
    1: torch.sub,
    2: torch.mul,
    3: torch.div,
    4: torch.maximum,
    5: torch.minimum,
    6: torch.pow,
    7: lambda a, b: b - a,  # RSUB
    8: lambda a, b: b / a,  # RDIV
    9: lambda a, b: torch.pow(b, a),  # RPOW
    10: torch.atan2,
    11: lambda a, b: torch.atan2(b, a),  # RATAN2
}


def _binary_op(layer: Layer) -> Callable[..., list[torch.Tensor]]:
    p = _Params(layer, [0, 1, 2])
    op = BINARY_OPS[p.choice(0, 0, sorted(BINARY_OPS), "op_type")]
    if p.int(1, 0):  # with_scalar: one input, B is parameter 2
        scalar = p.float(2, 0.0)
        _arity(layer, 1, 1)
        return lambda a: [op(a, a.new_tensor(scalar))]
    _arity(layer, 2, 1)
    return lambda a, b: [op(*_broadcast(a, b))]


def _eltwise(layer: Layer) -> Callable[..., list[torch.Tensor]]:
    p = _Params(layer, [0, 1])
    kind = p.choice(0, 0, [0, 1, 2], "op_type")
    coeffs = p.floats(1)
    if len(layer.inputs) < 2:
        raise p.error("needs at least 2 inputs")
    if coeffs and kind == 1 and len(coeffs) != len(layer.inputs):
        raise p.error(f"has {len(coeffs)} coefficients for {len(layer.inputs)} inputs")

    def run(*xs: torch.Tensor) -> list[torch.Tensor]:
        if kind == 0:
            return [math.prod(xs[1:], start=xs[0])]
        if kind == 2:
            out = xs[0]
            for x in xs[1:]:
                out = torch.maximum(out, x)
            return [out]
        if not coeffs:
            return [sum(xs[1:], start=xs[0])]
        return [sum((c * x for c, x in zip(coeffs[1:], xs[1:])), start=coeffs[0] * xs[0])]

    return run


def _pixel_shuffle(layer: Layer) -> Callable[..., list[torch.Tensor]]:
    p = _Params(layer, [0, 1])
    r = p.int(0, 1)
    mode = p.choice(1, 0, [0, 1], "mode")  # 0: PyTorch's (c, r, r) order; 1: DCR (r, r, c)

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        if mode == 0:
            return [F.pixel_shuffle(x, r)]
        b, c, h, w = x.shape
        x = x.reshape(b, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)
        return [x.reshape(b, c // (r * r), h * r, w * r)]

    return run


def _interp(layer: Layer) -> Callable[..., list[torch.Tensor]]:
    p = _Params(layer, [0, 1, 2, 3, 4, 5, 6])
    kind = p.choice(0, 0, [1, 2, 3], "resize_type (1 nearest, 2 bilinear, 3 bicubic)")
    hs, ws = p.float(1, 1.0), p.float(2, 1.0)
    oh, ow = p.int(3, 0), p.int(4, 0)
    p.choice(5, 0, [0], "dynamic_target_size")
    align = bool(p.int(6, 0))
    mode = {1: "nearest", 2: "bilinear", 3: "bicubic"}[kind]

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        size = (oh or int(h * hs), ow or int(w * ws))
        if mode == "nearest":
            return [F.interpolate(x, size=size, mode="nearest")]
        return [F.interpolate(x, size=size, mode=mode, align_corners=align)]

    return run


def _concat(layer: Layer) -> Callable[..., list[torch.Tensor]]:
    axis = _Params(layer, [0]).int(0, 0)
    return lambda *xs: [torch.cat(xs, dim=_ncnn_axis(axis, xs[0]))]


def _unary(fn: Callable[[torch.Tensor], torch.Tensor], keys: Sequence[int] = ()):
    """A one-in one-out weightless layer; `keys` are the parameters `fn` reads itself."""

    def build(layer: Layer) -> Callable[..., list[torch.Tensor]]:
        _Params(layer, keys)
        _arity(layer, 1, 1)
        return lambda x: [fn(x)]

    return build


def _with_params(make: Callable[[_Params], Callable[[torch.Tensor], torch.Tensor]],
                 keys: Sequence[int]):
    def build(layer: Layer) -> Callable[..., list[torch.Tensor]]:
        fn = make(_Params(layer, keys))
        _arity(layer, 1, 1)
        return lambda x: [fn(x)]

    return build


def _split(layer: Layer) -> Callable[..., list[torch.Tensor]]:
    _Params(layer, [])
    _arity(layer, 1, None)
    count = len(layer.outputs)
    return lambda x: [x] * count


def _arity(layer: Layer, inputs: int, outputs: int | None) -> None:
    if len(layer.inputs) != inputs or (outputs is not None and len(layer.outputs) != outputs):
        raise UserError(
            f"ncnn layer {layer.type} {layer.name} has {len(layer.inputs)} inputs and "
            f"{len(layer.outputs)} outputs; it takes {inputs}"
            + (f" and gives {outputs}" if outputs is not None else "")
        )


def _relu(p: _Params) -> Callable[[torch.Tensor], torch.Tensor]:
    slope = p.float(0, 0.0)
    return F.relu if slope == 0 else (lambda x: F.leaky_relu(x, slope))


def _clip(p: _Params) -> Callable[[torch.Tensor], torch.Tensor]:
    low, high = p.float(0, -math.inf), p.float(1, math.inf)
    return lambda x: x.clamp(low, high)


def _hard(p: _Params, swish: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    alpha, beta = p.float(0, 0.2), p.float(1, 0.5)
    if swish:
        return lambda x: x * (x * alpha + beta).clamp(0, 1)
    return lambda x: (x * alpha + beta).clamp(0, 1)


def _dropout(p: _Params) -> Callable[[torch.Tensor], torch.Tensor]:
    scale = p.float(0, 1.0)
    return (lambda x: x) if scale == 1 else (lambda x: x * scale)


# The weightless layer types: type -> builder(layer) -> fn(*inputs) -> outputs.
WEIGHTLESS: dict[str, Callable[[Layer], Callable[..., list[torch.Tensor]]]] = {
    "Split": _split,
    "Concat": _concat,
    "Eltwise": _eltwise,
    "BinaryOp": _binary_op,
    "PixelShuffle": _pixel_shuffle,
    "Interp": _interp,
    "ReLU": _with_params(_relu, [0]),
    "Clip": _with_params(_clip, [0, 1]),
    "HardSigmoid": _with_params(lambda p: _hard(p, swish=False), [0, 1]),
    "HardSwish": _with_params(lambda p: _hard(p, swish=True), [0, 1]),
    "Dropout": _with_params(_dropout, [0]),
    "Sigmoid": _unary(torch.sigmoid),
    "Swish": _unary(F.silu),
    "TanH": _unary(torch.tanh),
    "Mish": _unary(F.mish),
    "Noop": _unary(lambda x: x),
}
# Layer types with weights in the .bin: type -> module(layer, reader).
WEIGHTED: dict[str, Callable[[Layer, _Reader], nn.Module]] = {
    "Convolution": Conv,
    "ConvolutionDepthWise": Conv,
    "MemoryData": MemoryData,
}
LAYERS = sorted({"Input", *WEIGHTLESS, *WEIGHTED})


def _build(layer: Layer, reader: _Reader) -> nn.Module | None:
    """The module of one layer, reading its weights (None for Input)."""
    if layer.type == "Input":
        _Params(layer, [0, 1, 2, 11])  # shape hints only
        _arity(layer, 0, 1)
        return None
    if layer.type in WEIGHTED:
        if layer.type == "MemoryData":
            _arity(layer, 0, 1)
        else:
            _arity(layer, 1, 1)
        return WEIGHTED[layer.type](layer, reader)
    if layer.type in WEIGHTLESS:
        return Elementwise(WEIGHTLESS[layer.type](layer), layer)
    raise UserError(
        f"{reader.shown}: layer type {layer.type} ({layer.name}) is not supported by lddpm's "
        f"ncnn executor (it runs: {', '.join(LAYERS)})"
    )


# ----------------------------------------------------------------------------------------------
# The graph
# ----------------------------------------------------------------------------------------------
class NcnnNet(nn.Module):
    """An ncnn graph run by PyTorch: forward((B, c, h, w)) -> the graph's output blob.

    The input is the one Input layer's blob, the output the one blob that no layer consumes.
    Each blob is dropped after its last use, so memory is that of the live blobs only.
    """

    def __init__(self, layers: Sequence[Layer], modules: Sequence[nn.Module | None],
                 source: str = "ncnn model"):
        super().__init__()
        self.layers, self.source = list(layers), source
        self.steps = nn.ModuleList([m if m is not None else nn.Identity() for m in modules])
        inputs = [layer for layer in layers if layer.type == "Input"]
        if len(inputs) != 1:
            raise UserError(f"{source}: has {len(inputs)} Input layers; lddpm runs graphs of one")
        self.input = inputs[0].outputs[0]
        produced: dict[str, int] = {}
        self._last_use: dict[str, int] = {}
        for i, layer in enumerate(layers):
            for blob in layer.inputs:
                if blob not in produced:
                    raise UserError(f"{source}: layer {layer.name} reads blob {blob} before "
                                    "any layer writes it")
                self._last_use[blob] = i
            for blob in layer.outputs:
                if blob in produced:
                    raise UserError(f"{source}: blob {blob} is written twice")
                produced[blob] = i
        unused = [b for b in produced if b not in self._last_use]
        if len(unused) != 1:
            raise UserError(f"{source}: has {len(unused)} output blobs {unused[:5]}; lddpm "
                            "runs graphs of one")
        self.output = unused[0]
        # blobs freed after layer i (those whose last reader it is)
        self._free: list[list[str]] = [[] for _ in layers]
        for blob, i in self._last_use.items():
            self._free[i].append(blob)

    def count(self, layer_type: str) -> int:
        return sum(layer.type == layer_type for layer in self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blobs: dict[str, torch.Tensor] = {self.input: x}
        for i, (layer, step) in enumerate(zip(self.layers, self.steps)):
            if layer.type == "Input":
                continue
            try:
                outs = step(*[blobs[b] for b in layer.inputs])
            except (RuntimeError, UserError) as exc:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise UserError(
                    f"{self.source}: layer {layer.type} {layer.name} failed: {message}"
                ) from None
            for blob in self._free[i]:
                del blobs[blob]
            blobs.update(zip(layer.outputs, outs))
        return blobs[self.output]


def read_layers(layers: Sequence[Layer], bin_path: str | Path) -> list[nn.Module | None]:
    """Every layer's module, its weights read from `bin_path` (None for Input).

    The whole file must be consumed exactly: a leftover or a shortfall means the .bin does
    not belong to this .param, and is an error rather than a silently shifted read.
    """
    bin_path = Path(bin_path)
    try:
        reader = _Reader(bin_path.read_bytes(), bin_path)
    except FileNotFoundError:
        raise UserError(f"ncnn weight file not found: {display_path(bin_path)}") from None
    except OSError as exc:
        raise UserError(f"cannot read ncnn weight file {display_path(bin_path)}: {exc}") from None
    modules = [_build(layer, reader) for layer in layers]
    left = len(reader.data) - reader.offset
    if left:
        raise UserError(
            f"{reader.shown} has {left} bytes after the last layer's weights: "
            "not the .bin of this .param"
        )
    return modules


def load_ncnn(param: str | Path, bin_path: str | Path, device: str = "cpu") -> NcnnNet:
    """The graph of `param` with the weights of `bin_path`, eval mode, fp32 on `device`."""
    layers = read_param(param)
    net = NcnnNet(layers, read_layers(layers, bin_path), display_path(param))
    return net.eval().to(device)


# ----------------------------------------------------------------------------------------------
# Mapping onto a hand-written PyTorch network (the RRDBNet cross-check of the executor)
# ----------------------------------------------------------------------------------------------
def read_convolutions(layers: Sequence[Layer], bin_path: str | Path) -> list[Conv]:
    """Every Convolution layer's module (weight, bias, stride, ...), in layer order."""
    return [m for m in read_layers(layers, bin_path) if isinstance(m, Conv)]


def _check_conv(conv: Conv, name: str, module: nn.Conv2d, leaky: bool, what: str) -> None:
    """The ncnn layer must compute what `module` (+ LeakyReLU 0.2 when `leaky`) computes."""
    expected = (tuple(module.weight.shape), module.stride, module.dilation,
                (module.padding[1],) * 2 + (module.padding[0],) * 2)
    found = (tuple(conv.weight.shape), conv.stride, conv.dilation, conv.pads)
    if found != expected or conv.group != module.groups or conv.pad_value != 0:
        raise UserError(
            f"{what}: ncnn layer {conv.name} (weight, stride, dilation, pads) {found} does not "
            f"match {name} {expected}"
        )
    if conv.bias is None and module.bias is not None:
        raise UserError(f"{what}: ncnn layer {conv.name} has no bias, {name} needs one")
    want = (LEAKY_RELU, [0.2]) if leaky else (0, [])
    got = (conv.activation, [round(float(v), 6) for v in conv.activation_params])
    if got != want:
        raise UserError(
            f"{what}: ncnn layer {conv.name} has activation {got}, {name} expects {want}"
        )


def conv_state_dict(
    convs: Sequence[Conv],
    targets: Sequence[tuple[str, nn.Conv2d, bool]],
    what: str,
) -> dict[str, torch.Tensor]:
    """Maps the ncnn convolutions, in order, onto `targets` (name, conv, followed by
    LeakyReLU); checks the count, every shape and every activation. Returns a state dict."""
    if len(convs) != len(targets):
        raise UserError(
            f"{what}: the ncnn model has {len(convs)} Convolution layers, "
            f"the network {len(targets)}"
        )
    state: dict[str, torch.Tensor] = {}
    for conv, (name, module, leaky) in zip(convs, targets):
        _check_conv(conv, name, module, leaky, what)
        state[f"{name}.weight"] = conv.weight
        if module.bias is not None:
            state[f"{name}.bias"] = conv.bias
    return state


def check_nearest_x2_upsampling(layers: Sequence[Layer], count: int, what: str) -> None:
    """The network upsamples with `count` nearest-neighbour x2 Interp layers; a model that
    resizes otherwise would load fine here and then compute something else."""
    interps = [layer for layer in layers if layer.type == "Interp"]
    nearest_x2 = [
        layer for layer in interps
        if layer.params.get(0) == 1 and layer.params.get(1) == 2.0 and layer.params.get(2) == 2.0
    ]
    if len(interps) != count or len(nearest_x2) != count:
        raise UserError(
            f"{what}: expected {count} nearest x2 Interp layers, the ncnn model has "
            f"{len(interps)} Interp layers ({len(nearest_x2)} nearest x2)"
        )
