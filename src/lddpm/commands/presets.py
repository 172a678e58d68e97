"""`lddpm presets`: the named presets, one line each, with parameter counts."""

from __future__ import annotations

import argparse

from lddpm.config import SIZES, build_preset, describe_presets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale", type=int, default=4, help="scale used to build the models counted (default 4)"
    )


def _params(name: str, scale: int) -> str:
    import torch

    from lddpm.models.build import build_discriminator, build_network
    from lddpm.models.lddpm import count_parameters

    cfg = build_preset(name)
    cfg.data.scale = scale
    with torch.device("meta"):  # shapes only: counting needs no memory and no init time
        net = count_parameters(build_network(cfg))
        disc = build_discriminator(cfg)
    extra = f" + D {count_parameters(disc) / 1e6:.2f}M" if disc is not None else ""
    return f"{net / 1e6:.2f}M{extra}"


def run(args: argparse.Namespace) -> int:
    print("Presets are a size plus method parts joined by '+', e.g. small+v3+glow+gan.")
    print("A bare size means +v1. Descriptions:")
    for name, desc in describe_presets():
        print(f"  {name:<10} {desc}")
    print("\nParameter counts (denoiser [+ discriminator]):")
    for size in SIZES:
        combos = ["v1", "v2", "v3", "v3+glow", "v3+glow+gan", "lddpm"]
        cells = [f"{c}: {_params(f'{size}+{c}', args.scale)}" for c in combos]
        print(f"  {size:<6} " + " | ".join(cells))
    return 0
