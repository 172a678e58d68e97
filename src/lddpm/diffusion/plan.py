"""The sampling plan: every choice of an upscaling run, resolved once, before the first
network evaluation (as diffusers' scheduler after `set_timesteps`, or k-diffusion's `sigmas`
handed to a sampler).

    plan = up.plan(sampler="ddim", steps=4, consistency="end")   # lddpm.inference.Upscaler
    plan.timesteps             # array([999, 749, 499, 249]): what the sampler visits
    plan.evaluations(h, w)     # network evaluations for one (h, w) LR: samples x passes x tiles x steps
    sr = up.upscale(lr, seed=0, plan=plan)

`build_plan` is the one place a choice is filled in from the model's defaults and checked:
`Upscaler.plan` calls it with the checkpoint's facts, `lddpm upscale`, `evaluate`, `serve`
and `export` build their plans through `Upscaler.plan` from one shared argument group
(`lddpm.commands.sampling`). A bad choice is a UserError whose `option` names it
("steps", "tile", ...), worded without command-line flags.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from lddpm.data.datasets import DIHEDRAL
from lddpm.data.tiles import Tiling, tile_grid
from lddpm.diffusion.consistency import CONSISTENCY
from lddpm.diffusion.samplers import Chain, set_timesteps
from lddpm.errors import UserError

MIN_TILE = 4  # LR pixels: the smallest tile side (0 = no tiling)
# The sampling defaults an export may store ("inference" in its config.json); a key it
# lacks falls back to these.
DEFAULT_KEYS = ("sampler", "steps", "consistency", "self_ensemble")
FALLBACK_DEFAULTS = {"sampler": "ddim", "steps": None, "consistency": "none", "self_ensemble": False}
# Self-ensemble (EDSR's "+", Lim et al. 2017): one pass per symmetry of the square.
ENSEMBLE_SIZE = len(DIHEDRAL)


@dataclass(frozen=True)
class SamplingChoices:
    """What a user chooses (command line, web page, Python call); None = the model's default
    (steps: the model's default only when the sampler is its default one too, else that
    sampler's own default; tile: automatic, see `Upscaler.auto_tile`; tile_overlap:
    min(8, tile // 4); self_ensemble: the mean over the input's 8 rotations/flips, each
    output turned back, at 8x the cost)."""

    sampler: str | None = None
    steps: int | None = None
    eta: float = 0.0
    consistency: str | None = None
    tile: int | None = None
    tile_overlap: int | None = None
    num_samples: int = 1
    self_ensemble: bool | None = None

    def merged(self, **changes: Any) -> SamplingChoices:
        """These choices with the `changes` that are not None (a request over a server's)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown sampling choices: {', '.join(sorted(unknown))}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update({k: v for k, v in changes.items() if v is not None})
        return SamplingChoices(**values)


@dataclass(frozen=True, eq=False)
class SamplingPlan:
    """A resolved, checked run: what `Upscaler.upscale` does, and what it costs."""

    sampler: str  # ddpm | ddim | lddpm
    timesteps: np.ndarray  # (N,) int64, decreasing: the timesteps visited, one evaluation each
    eta: float  # DDIM eta in [0, 1] (0 for ddpm and lddpm, which sample the posterior)
    consistency: str  # LR consistency: none | end | step (lddpm.diffusion.consistency)
    tile: int  # LR tile side; 0 = every image in one piece
    tile_overlap: int  # LR pixels neighbouring tiles share, blended linearly
    tile_align: int  # tile starts are multiples of this (LR pixels): the latent z's grid
    num_samples: int  # samples per image; sample s uses seed + s
    device: torch.device  # where the network runs
    precision: str  # fp32 | bf16: the network's autocast (lddpm.precision)
    self_ensemble: bool = False  # the mean over the input's 8 rotations/flips

    @property
    def passes(self) -> int:
        """Whole upscaling passes per sample: 8 with self-ensemble, else 1."""
        return ENSEMBLE_SIZE if self.self_ensemble else 1

    @property
    def steps(self) -> int:
        """Network evaluations per tile and sample."""
        return len(self.timesteps)

    @property
    def autocast(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None

    def tiling(self, h: int, w: int) -> Tiling:
        """The LR tiles of an (h, w) image (lddpm.data.tiles)."""
        return tile_grid(h, w, self.tile, self.tile_overlap, self.tile_align)

    def evaluations(self, h: int, w: int) -> int:
        """Network evaluations that upscaling one (h, w) LR image runs (what `progress`
        counts): samples x passes x tiles x steps (a rotated pass has the transposed tiling,
        as many tiles)."""
        return self.num_samples * self.passes * len(self.tiling(h, w)) * self.steps

    def describe(self) -> dict[str, Any]:
        """JSON-ready: what reports and the web page show."""
        return {"sampler": self.sampler, "steps": self.steps,
                "timesteps": [int(t) for t in self.timesteps], "eta": self.eta,
                "consistency": self.consistency, "tile": self.tile,
                "tile_overlap": self.tile_overlap, "num_samples": self.num_samples,
                "self_ensemble": self.self_ensemble,
                "device": str(self.device), "precision": self.precision}


def build_plan(choices: SamplingChoices, *, defaults: dict, timesteps: int, chain: Chain | None,
               auto_tile: int, tile_align: int, device: torch.device,
               autocast: torch.dtype | None) -> SamplingPlan:
    """`choices` resolved against a model: `defaults` (its sampling defaults, DEFAULT_KEYS),
    its T-step schedule and trained GAN chain, its automatic tile side and latent grid, and
    where and how its network runs. Every check of a choice is here."""
    c = choices
    defaults = {**FALLBACK_DEFAULTS, **(defaults or {})}
    sampler, steps = c.sampler, c.steps
    if sampler is None:
        sampler = defaults["sampler"]
        steps = defaults["steps"] if steps is None else steps
    taus = set_timesteps(sampler, steps, timesteps, chain)
    taus.setflags(write=False)
    consistency = c.consistency or defaults["consistency"]
    if consistency not in CONSISTENCY:
        raise UserError(f"consistency {consistency!r} is not one of: {', '.join(CONSISTENCY)}",
                        option="consistency")
    if not 0.0 <= c.eta <= 1.0:
        raise UserError(f"eta must be in [0, 1], got {c.eta}", option="eta")
    if c.num_samples < 1:
        raise UserError(f"the number of samples must be >= 1, got {c.num_samples}", option="num_samples")
    tile = auto_tile if c.tile is None else c.tile
    if tile != 0 and tile < MIN_TILE:
        raise UserError(f"the tile side must be 0 (the whole image) or at least {MIN_TILE} LR pixels, "
                        f"got {tile}", option="tile")
    overlap = c.tile_overlap
    if overlap is None:
        overlap = min(8, tile // 4)
    elif tile and not 0 <= overlap < tile:
        raise UserError(f"the tile overlap must be in 0..{tile - 1} (below the tile side {tile}), "
                        f"got {overlap}", option="tile_overlap")
    elif overlap < 0:
        raise UserError(f"the tile overlap must be >= 0, got {overlap}", option="tile_overlap")
    return SamplingPlan(
        sampler=sampler, timesteps=taus, eta=c.eta if sampler == "ddim" else 0.0,
        consistency=consistency, tile=tile, tile_overlap=overlap if tile else 0,
        tile_align=tile_align, num_samples=c.num_samples, device=device,
        precision="bf16" if autocast == torch.bfloat16 else "fp32",
        self_ensemble=bool(defaults["self_ensemble"] if c.self_ensemble is None else c.self_ensemble),
    )
