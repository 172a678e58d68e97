"""Where the metric-specific weight files (LPIPS linear layers, DISTS alpha/beta) are found.

Like `lddpm.weights.find_weight_file` (explicit path, then `$TORCH_HOME/hub/checkpoints`),
plus the copies that the `lpips`, `DISTS_pytorch` and `torchmetrics` packages ship. Those
packages are located without being imported: importing them needs torchvision, which lddpm
does not use, and a file inside a package folder is all we need.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lddpm.errors import display_path
from lddpm.models.backbones import FeatureNet, load_backbone
from lddpm.weights import WeightsNotFound, find_weight_file, hub_checkpoint_dir

# The `lddpm evaluate` option that gives each backbone's weight file.
BACKBONE_OPTIONS = {"alexnet": "--alexnet-weights", "vgg16": "--vgg16-weights"}


@dataclass(frozen=True)
class ShippedCopy:
    """A copy of a weight file shipped by a package: <package dir>/<folder>/<file>.

    `package=None` means the environment's prefix (`sys.prefix`), where some wheels install
    their data files (DISTS_pytorch 0.1 puts `weights.pt` there as well).
    """

    package: str | None  # top-level import name, e.g. "lpips"
    folder: str = ""  # relative to the package directory, e.g. "weights/v0.1"


def _package_root(package: str) -> Path | None:
    """Directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _candidates(filename: str, copies: Sequence[ShippedCopy]) -> list[tuple[str, Path | None]]:
    """(description, path or None when the package is absent) for each shipped copy."""
    found: list[tuple[str, Path | None]] = []
    for copy in copies:
        if copy.package is None:
            path = Path(sys.prefix) / copy.folder / filename
            found.append((display_path(path), path))
            continue
        root = _package_root(copy.package)
        if root is None:
            found.append((f"package {copy.package} (not installed)", None))
        else:
            path = root / copy.folder / filename
            found.append((display_path(path), path))
    return found


def find_metric_weights(
    filename: str,
    explicit: str | Path | None,
    copies: Sequence[ShippedCopy],
    how_to_get: str,
) -> Path:
    """Path of `filename`: explicit path, hub cache, then the packages' copies.

    Raises UserError for an explicit path that does not exist, WeightsNotFound (one line:
    the file, every place looked, how to get it) when no place has it.
    """
    if explicit is not None:
        return find_weight_file(filename, explicit)
    cached = hub_checkpoint_dir() / filename
    looked = [display_path(cached)]
    if cached.is_file():
        return cached
    for description, path in _candidates(filename, copies):
        if path is not None and path.is_file():
            return path
        looked.append(description)
    raise WeightsNotFound(
        f"pretrained weights {filename} not found (looked in: {', '.join(looked)}); {how_to_get}"
    )


def load_pretrained_backbone(
    name: str, weights_path: str | Path | None, normalize: bool
) -> FeatureNet:
    """`load_backbone`, with the not-found message naming the `lddpm evaluate` option."""
    try:
        return load_backbone(name, weights_path, normalize=normalize)
    except WeightsNotFound as exc:
        option = BACKBONE_OPTIONS.get(name)
        extra = f", or pass its path with {option}" if option else ""
        raise WeightsNotFound(f"{exc}{extra}") from None
