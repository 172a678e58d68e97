"""Datasets: random HR crops for training, full images for evaluation.

HRFolder     training: random crop + flips/rotations, LR made on the fly.
PairedFolder evaluation: HR and LR folders matched by name.
EvalFolder   evaluation: HR folder, LR made by a Degradation.

One value range for every dataset: float32 in [0, 1], as images are read (`to_tensor`) and
as `lddpm.inference.Upscaler` takes and gives them. The network's [-1, 1] is made where the
network is fed (`Trainer.train_step`, `Upscaler.upscale`), nowhere else.

An image's name is its path relative to the folder without the extension, '/'-separated
(the file stem in a flat folder).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from lddpm.data.imageio import DEFAULT_MAX_PIXELS, image_size, list_images, load_image, to_tensor
from lddpm.data.pipeline import Degradation, generator_for, name_index
from lddpm.errors import UserError


def image_name(path: Path, root: Path) -> str:
    """'sub/photo' for root/sub/photo.jpg; the file stem for a file given as the root."""
    if path == root:
        return path.stem
    return path.relative_to(root).with_suffix("").as_posix()


def named_images(root: str | Path) -> dict[str, Path]:
    """name -> path for the images under `root`; UserError if empty or if two files share a
    name (photo.png and photo.jpg would write, or match, the same output)."""
    root = Path(root)
    named: dict[str, Path] = {}
    for path in list_images(root):
        name = image_name(path, root)
        if name in named:
            raise UserError(f"two images named '{name}' in {root}: {named[name].name}, {path.name}")
        named[name] = path
    if not named:
        raise UserError(f"no images (png, jpg, jpeg, bmp, tif, tiff, webp) found in {root}")
    return named


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Top-left crop to a multiple of the scale (the 'GTmod' convention of SR benchmarks)."""
    height, width = image.shape[0] - image.shape[0] % scale, image.shape[1] - image.shape[1] % scale
    return image[:height, :width]


def pad_to_at_least(image: np.ndarray, size: int) -> np.ndarray:
    """Mirror-pads (edge-repeating) an image smaller than `size` on a side, bottom/right."""
    pad_h, pad_w = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if pad_h == 0 and pad_w == 0:
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    top = int(rng.integers(image.shape[0] - size + 1))
    left = int(rng.integers(image.shape[1] - size + 1))
    return image[top : top + size, left : left + size]


# The 8 symmetries of the square: (quarter turns, then a left-right flip or not). The
# training augmentation draws one (`dihedral`, numpy HWC); self-ensemble runs all
# (`dihedral_tensor` and its inverse, torch CHW).
DIHEDRAL = tuple((k, flip) for k in range(4) for flip in (False, True))


def dihedral(image: np.ndarray, rotations: int, flip: bool) -> np.ndarray:
    """One of the 8 flips/90-degree rotations of a square (H, W, C) patch."""
    out = np.rot90(image, k=rotations, axes=(0, 1))
    return out[:, ::-1] if flip else out


def dihedral_tensor(x: torch.Tensor, rotations: int, flip: bool) -> torch.Tensor:
    """`dihedral` of a (..., H, W) tensor: quarter turns, then a left-right flip."""
    x = torch.rot90(x, rotations, (-2, -1))
    return torch.flip(x, (-1,)) if flip else x


def undo_dihedral_tensor(x: torch.Tensor, rotations: int, flip: bool) -> torch.Tensor:
    """The inverse of `dihedral_tensor(., rotations, flip)`."""
    x = torch.flip(x, (-1,)) if flip else x
    return torch.rot90(x, -rotations, (-2, -1))


class _ImageCache:
    """Decoded images kept in memory, least recently used evicted beyond `max_bytes`.

    Photos can be 16 MP JPEGs: decoding one per sample would dominate a training step.
    Each DataLoader worker holds its own cache.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used = 0
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, key: int) -> np.ndarray | None:
        image = self._items.get(key)
        if image is not None:
            self._items.move_to_end(key)
        return image

    def put(self, key: int, image: np.ndarray) -> None:
        if image.nbytes > self.max_bytes or key in self._items:
            return
        while self.used + image.nbytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.used -= evicted.nbytes
        self._items[key] = image
        self.used += image.nbytes


class HRFolder(torch.utils.data.Dataset):
    """Random HR crops of any folder of images (recursive), LR made by a Degradation.

    `dataset[index]` or `dataset[(index, epoch)]` ->
        {"lr": (3, crop/s, crop/s) float32 in [0, 1], "hr": (3, crop, crop) float32 in
         [0, 1], "index": int}
    and with `references`, "ref": the LR (3, crop/s, crop/s) of another random crop of the
    same photo, degraded the same way: a related view for the cross-attention's reference
    tokens (Fig. 11), drawn after the main crop so the main crop does not change.
    All randomness (crop, flip/rotation, degradation) comes from generator_for(seed, epoch,
    index): the same (index, epoch) always gives the same tensors, in any worker, after a
    resume. `crop` is rounded down to a multiple of the scale. An image smaller than the
    crop is mirror-padded up to it (never skipped, so indices stay stable).
    """

    def __init__(
        self,
        root: str | Path,
        scale: int,
        crop: int,
        degradation: Degradation,
        seed: int = 0,
        augment: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        cache_bytes: int = 2**31,
        references: bool = False,
    ):
        if degradation.scale != scale:
            raise ValueError(f"degradation scale {degradation.scale} != dataset scale {scale}")
        self.crop = crop - crop % scale
        if self.crop < scale:
            raise UserError(f"data.crop={crop} is smaller than the scale {scale}")
        self.files = list(named_images(root).values())
        self.scale, self.degradation, self.seed = scale, degradation, seed
        self.augment, self.max_pixels, self.references = augment, max_pixels, references
        self._cache = _ImageCache(cache_bytes)
        for file in self.files:
            # Read every header now: an unreadable file fails here, by name, as one line,
            # rather than minutes into training inside a DataLoader worker.
            image_size(file)

    def __len__(self) -> int:
        return len(self.files)

    def _image(self, index: int) -> np.ndarray:
        image = self._cache.get(index)
        if image is None:
            image = load_image(self.files[index], self.max_pixels)
            self._cache.put(index, image)
        return image

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        index, epoch = int(index), int(epoch)
        if not 0 <= index < len(self.files):
            raise IndexError(f"index {index} out of range for {len(self.files)} images")
        rng = generator_for(self.seed, epoch, index)
        image = pad_to_at_least(self._image(index), self.crop)
        hr, lr = self._crop_pair(image, rng)
        item = {"lr": lr, "hr": hr, "index": index}
        if self.references:
            item["ref"] = self._crop_pair(image, rng)[1]
        return item

    def _crop_pair(self, image: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A random (augmented) HR crop in [0, 1] and its degraded LR."""
        patch = random_crop(image, self.crop, rng)
        if self.augment:
            patch = dihedral(patch, int(rng.integers(4)), bool(rng.integers(2)))
        hr = to_tensor(np.ascontiguousarray(patch))
        lr, _ = self.degradation(hr, rng)
        return hr, lr


def _lr_key(name: str, scale: int, hr_names: set[str]) -> str:
    """Accepts DIV2K-style LR names ('0801x4' for HR '0801') as well as identical ones."""
    suffix = f"x{scale}"
    if name not in hr_names and name.endswith(suffix) and name[: -len(suffix)] in hr_names:
        return name[: -len(suffix)]
    return name


class PairedFolder(torch.utils.data.Dataset):
    """HR and LR folders matched by name, full images, for evaluation.

    `dataset[i]` -> {"lr": (3, h, w), "hr": (3, h*s, w*s), "name": str}, float32 in [0, 1].
    LR files may also carry an `x{s}` suffix ('0801x4.png' for '0801.png'). An HR image
    larger than LR * s by less than s (a benchmark HR not divisible by s) is cropped
    top-left to LR * s; any other size mismatch, or a name without a partner, is a
    UserError (checked from the file headers when the dataset is made).
    """

    def __init__(
        self,
        hr_root: str | Path,
        lr_root: str | Path,
        scale: int,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.scale, self.max_pixels = scale, max_pixels
        hr = named_images(hr_root)
        lr = {_lr_key(n, scale, set(hr)): p for n, p in named_images(lr_root).items()}
        self._report_unpaired(hr, lr, hr_root, lr_root)
        self.names = sorted(hr)
        self.pairs = [(hr[n], lr[n]) for n in self.names]
        for hr_path, lr_path in self.pairs:
            self._check_sizes(hr_path, lr_path)

    @staticmethod
    def _report_unpaired(hr: dict, lr: dict, hr_root, lr_root) -> None:
        lonely = [f"{hr[n]} (no LR in {lr_root})" for n in sorted(set(hr) - set(lr))]
        lonely += [f"{lr[n]} (no HR in {hr_root})" for n in sorted(set(lr) - set(hr))]
        if lonely:
            more = f" and {len(lonely) - 5} more" if len(lonely) > 5 else ""
            raise UserError("unpaired images: " + ", ".join(lonely[:5]) + more)

    def _check_sizes(self, hr_path: Path, lr_path: Path) -> None:
        (hr_h, hr_w), (lr_h, lr_w) = image_size(hr_path), image_size(lr_path)
        if hr_h // self.scale != lr_h or hr_w // self.scale != lr_w:
            raise UserError(
                f"{lr_path}: LR {lr_h}x{lr_w} times scale {self.scale} does not match "
                f"HR {hr_path} ({hr_h}x{hr_w})"
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        hr_path, lr_path = self.pairs[index]
        lr = load_image(lr_path, self.max_pixels)
        hr = load_image(hr_path, self.max_pixels)
        hr = hr[: lr.shape[0] * self.scale, : lr.shape[1] * self.scale]
        if hr.shape[0] != lr.shape[0] * self.scale or hr.shape[1] != lr.shape[1] * self.scale:
            raise UserError(f"{lr_path}: LR size times {self.scale} does not match {hr_path}")
        return {"lr": to_tensor(lr), "hr": to_tensor(np.ascontiguousarray(hr)),
                "name": self.names[index]}


class EvalFolder(torch.utils.data.Dataset):
    """Full HR images cropped to a multiple of the scale ('GTmod'), LR by a Degradation.

    `dataset[i]` -> {"lr": (3, H/s, W/s), "hr": (3, H, W), "name": str}, float32 in [0, 1],
    as PairedFolder. Each image's draws come from generator_for(seed, 0, crc32(name)), so an
    image gets the same LR whatever else is in the folder, and the same LR as
    `lddpm degrade --seed` writes for it.
    """

    def __init__(
        self,
        hr_root: str | Path,
        scale: int,
        degradation: Degradation,
        seed: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        if degradation.scale != scale:
            raise ValueError(f"degradation scale {degradation.scale} != dataset scale {scale}")
        named = named_images(hr_root)
        self.names = list(named)
        self.files = list(named.values())
        self.scale, self.degradation, self.seed = scale, degradation, seed
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def item_with_params(self, index: int) -> tuple[dict, dict]:
        """The sample and the degradation parameters drawn for it (for `lddpm degrade`)."""
        path, name = self.files[index], self.names[index]
        image = modcrop(load_image(path, self.max_pixels), self.scale)
        if min(image.shape[:2]) < self.scale:
            raise UserError(f"{path}: smaller than the scale {self.scale}")
        hr = to_tensor(np.ascontiguousarray(image))
        lr, params = self.degradation(hr, generator_for(self.seed, 0, name_index(name)))
        return {"lr": lr, "hr": hr, "name": name}, params

    def __getitem__(self, index: int) -> dict:
        return self.item_with_params(index)[0]
