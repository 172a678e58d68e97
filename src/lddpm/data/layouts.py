"""Evaluation dataset layouts: which folders hold the HR and the LR images.

Layouts understood by `--data` (checked in this order; `--scale` picks the LR subfolder):
- `--lr-data DIR` given: HR and LR folders paired by name;
- `ROOT/HR` + `ROOT/LR_bicubic/X{s}` (the common Set5/Set14/B100/Urban100 packs);
- `ROOT/GTmod12` + `ROOT/LRbicx{s}` (the "GTmod12" benchmark packs);
- `ROOT/<P>_HR` + `ROOT/<P>_LR_bicubic/X{s}` (DIV2K: `DIV2K_valid_HR` + `DIV2K_valid_LR_bicubic/X4`);
- `ROOT/HR` + `ROOT/LR` (what `lddpm degrade --save-hr` writes);
- otherwise ROOT is a folder of HR images and the LR is made from each (cropped to a multiple
  of the scale) with the chosen degradation and seed.
`--data` may also point at the HR folder of a benchmark layout (`Set5/HR`, `.../GTmod12`,
`.../DIV2K_valid_HR`); its LR folder is then found beside it.

Items of `open_dataset` are {"lr": (3, h, w), "hr": (3, h*s, w*s), "name": str}, float32 in
[0, 1] for every layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from lddpm.config import DataConfig
from lddpm.data.datasets import EvalFolder, PairedFolder
from lddpm.data.pipeline import Degradation
from lddpm.errors import UserError


@dataclass(frozen=True)
class Layout:
    """Where the HR images are, and the LR images if the set has them (None: degrade HR)."""

    kind: str  # paired | set-hr-lr_bicubic | gtmod12 | div2k | hr-lr | hr-folder
    hr_dir: Path
    lr_dir: Path | None


def _scale_folder(parent: Path, name: str, scale: int, option_hint: str) -> Path:
    """parent/name, which must exist; else a UserError listing the scales that do."""
    folder = parent / name
    if folder.is_dir():
        return folder
    pattern = re.sub(r"\d+$", "", name)
    present = sorted(p.name for p in parent.iterdir() if p.is_dir() and p.name.startswith(pattern))
    have = f"; found: {', '.join(present)}" if present else ""
    raise UserError(f"no x{scale} LR folder {folder}{have} ({option_hint})", option="scale")


def _benchmark_layouts(root: Path, scale: int) -> Layout | None:
    """The standard benchmark layouts, for `root` being the set's folder."""
    hint = "pick another scale or give the LR folder"
    if (root / "HR").is_dir() and (root / "LR_bicubic").is_dir():
        lr = _scale_folder(root / "LR_bicubic", f"X{scale}", scale, hint)
        return Layout("set-hr-lr_bicubic", root / "HR", lr)
    if (root / "GTmod12").is_dir() and any(root.glob("LRbicx*")):
        return Layout(
            "gtmod12", root / "GTmod12", _scale_folder(root, f"LRbicx{scale}", scale, hint)
        )
    pairs = [p for p in sorted(root.glob("*_HR")) if (root / f"{p.name[:-3]}_LR_bicubic").is_dir()]
    if len(pairs) > 1:
        names = ", ".join(str(p) for p in pairs)
        raise UserError(f"{root} holds several HR/LR sets ({names}): give one of them", option="data")
    if pairs:
        lr_parent = root / f"{pairs[0].name[:-3]}_LR_bicubic"
        return Layout("div2k", pairs[0], _scale_folder(lr_parent, f"X{scale}", scale, hint))
    if (root / "HR").is_dir() and (root / "LR").is_dir():
        return Layout("hr-lr", root / "HR", root / "LR")
    return None


def _sibling_layout(hr_dir: Path, scale: int) -> Layout | None:
    """The data folder being a benchmark's HR folder: look for its LR beside it."""
    parent = hr_dir.parent
    if hr_dir.name == "HR" and (parent / "LR_bicubic").is_dir():
        return _benchmark_layouts(parent, scale)
    if hr_dir.name == "GTmod12" and any(parent.glob("LRbicx*")):
        return _benchmark_layouts(parent, scale)
    if hr_dir.name.endswith("_HR") and (parent / f"{hr_dir.name[:-3]}_LR_bicubic").is_dir():
        hint = "pick another scale or give the LR folder"
        lr_parent = parent / f"{hr_dir.name[:-3]}_LR_bicubic"
        return Layout("div2k", hr_dir, _scale_folder(lr_parent, f"X{scale}", scale, hint))
    return None


def resolve_layout(data: str | Path, scale: int, lr_data: str | Path | None = None) -> Layout:
    """Which folders hold the HR and LR images (see the module docstring)."""
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}", option="data")
    if lr_data is not None:
        if not Path(lr_data).is_dir():
            raise UserError(f"LR folder not found: {lr_data}", option="lr_data")
        return Layout("paired", root, Path(lr_data))
    found = _benchmark_layouts(root, scale) or _sibling_layout(root, scale)
    return found or Layout("hr-folder", root, None)


def open_dataset(
    layout: Layout, scale: int, degradation: str = "bicubic", seed: int = 0
) -> torch.utils.data.Dataset:
    """PairedFolder for layouts with LR images, else EvalFolder degrading the HR images.

    Items: {"lr": (3, h, w), "hr": (3, h*s, w*s), "name": str}, float32 in [0, 1].
    """
    if layout.lr_dir is not None:
        return PairedFolder(layout.hr_dir, layout.lr_dir, scale)
    data_cfg = DataConfig(scale=scale, degradation=degradation)
    return EvalFolder(layout.hr_dir, scale, Degradation(data_cfg), seed=seed)
