"""The models a `lddpm serve` page offers: listed from their configs, loaded on first use.

    models = ModelCatalog.for_server(checkpoint, label, choices, load)   # shipped (+ --checkpoint)
    models.info()                      # GET /api/models: each model's samplers, steps, description
    models.check(name, choices)        # a request's plan, checked without loading any weights
    up = models.get(name)              # the Upscaler: loaded on first use, the last `cache` kept

The list and each request's checks need only a model's config and sampling defaults, so the
page shows every shipped model at once and a bad request is refused before its upload is read;
the weights are loaded by the worker thread when a request for that model runs (requests run
one at a time), and only the `cache` models used last stay in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from lddpm import checkpoint as ckpt
from lddpm.config import Config
from lddpm.diffusion.plan import FALLBACK_DEFAULTS, SamplingChoices, SamplingPlan, build_plan
from lddpm.diffusion.samplers import SAMPLERS, trained_chain
from lddpm.errors import UserError
from lddpm.inference import Upscaler, auto_tile_side

DEFAULT_CACHE = 3  # models kept loaded at once (each x4 model: ~30 MB of fp32 weights)


@dataclass(frozen=True)
class ModelEntry:
    """One model of the page's list. `name` is what a request sends (a shipped model's name;
    a --checkpoint's label); `path` its resolved checkpoint or export directory."""

    name: str
    path: Path
    cfg: Config
    defaults: dict  # its sampling defaults (an export's "inference"), over FALLBACK_DEFAULTS
    description: str = ""
    source: str = "shipped"  # shipped | checkpoint
    choices: SamplingChoices = field(default_factory=SamplingChoices)  # the server's, over this model

    @classmethod
    def read(cls, name: str, path: str | Path, *, description: str | None = None,
             source: str = "shipped", choices: SamplingChoices | None = None) -> ModelEntry:
        """The entry of a checkpoint, run or export directory (a run: its newest checkpoint),
        from its config.json alone. `description`: None = the export's own."""
        cdir = ckpt.resolve_checkpoint(path)
        meta = ckpt.read_meta(cdir)
        cfg = ckpt.read_config(cdir)
        if description is None:
            description = meta.get("description") or ""
        return cls(name, cdir, cfg, {**FALLBACK_DEFAULTS, **(meta.get("inference") or {})},
                   description, source, choices or SamplingChoices())

    @property
    def scale(self) -> int:
        return self.cfg.data.scale

    @property
    def timesteps(self) -> int:
        return self.cfg.diffusion.timesteps

    def plan(self, choices: SamplingChoices | None = None) -> SamplingPlan:
        """`Upscaler.plan` of this model without its weights: the same checks and the same
        sampler and steps (tile starts not aligned to the latent grid: for checking only)."""
        return build_plan(choices or self.choices, defaults=self.defaults,
                          timesteps=self.timesteps, chain=trained_chain(self.cfg.gan),
                          auto_tile=auto_tile_side(self.cfg), tile_align=1,
                          device=torch.device("cpu"), autocast=None)

    def info(self) -> dict:
        """What the page needs to offer only this model's valid choices: each sampler it can
        run with its steps as the plan would run them (the default sampler's as the server's
        choices give them)."""
        samplers = {}
        for sampler in sorted(SAMPLERS, key=lambda n: n == "ddpm"):  # the menu: all-T-step ddpm last
            try:
                default_steps = self.plan(replace(self.choices, sampler=sampler, steps=None)).steps
            except UserError:
                continue  # e.g. lddpm without the gan part
            # ddpm and lddpm run a fixed number of steps; ddim takes any count up to T
            fixed = sampler != "ddim"
            samplers[sampler] = {"default_steps": default_steps,
                                 "min_steps": default_steps if fixed else 1,
                                 "max_steps": default_steps if fixed else self.timesteps}
        default = self.plan()
        if default.sampler in samplers:
            samplers[default.sampler]["default_steps"] = default.steps
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "scale": self.scale,
            "preset": self.cfg.preset,
            "samplers": samplers,
            "default_sampler": default.sampler,
            "consistency": default.consistency,
        }


class ModelCatalog:
    """The models a server offers, in the page's order (the default first), and the loaded
    ones: at most `cache`, the least recently used dropped first. `load` turns an entry into
    its Upscaler (the server's --device, --precision, --raw-weights)."""

    def __init__(self, entries: list[ModelEntry], load: Callable[[ModelEntry], Upscaler] | None = None,
                 cache: int = DEFAULT_CACHE, loaded: dict[str, Upscaler] | None = None):
        if not entries:
            raise UserError("no model to serve: give --checkpoint")
        if cache < 1:
            raise ValueError(f"cache must be >= 1, got {cache}")
        self.entries: dict[str, ModelEntry] = {}
        for entry in entries:
            if entry.name in self.entries:
                raise ValueError(f"two models named {entry.name!r}")
            self.entries[entry.name] = entry
        self.default = entries[0].name
        self.cache = cache
        self._load = load or (lambda entry: Upscaler.from_checkpoint(entry.path))
        self._loaded: OrderedDict[str, Upscaler] = OrderedDict()
        self._lock = threading.Lock()
        for name, up in (loaded or {}).items():
            self.entry(name)
            self._keep(name, up)

    @classmethod
    def for_server(cls, checkpoint: str | None, label: str | None = None,
                   choices: SamplingChoices | None = None,
                   load: Callable[[ModelEntry], Upscaler] | None = None,
                   cache: int = DEFAULT_CACHE) -> ModelCatalog:
        """`lddpm serve [--checkpoint X]`: every shipped model, the default one first; with a
        checkpoint that is not a shipped name, that checkpoint first (named `label`, e.g. its
        path as given). `choices` (the server's sampling options) are the default model's;
        the other models keep their own sampler, steps and consistency, and take the rest
        (eta, tiles)."""
        from lddpm.pretrained import DEFAULT_MODEL, describe, resolve_model, shipped_models

        choices = choices or SamplingChoices()
        others = replace(choices, sampler=None, steps=None, consistency=None)
        shipped = shipped_models()
        entries = []
        if checkpoint is None or checkpoint in shipped:
            default = checkpoint or DEFAULT_MODEL
            resolve_model(checkpoint)  # the shipped default missing: one clear error
        else:
            default = None
            path = resolve_model(checkpoint)
            name = label or checkpoint
            if name in shipped:  # a folder that happens to bear a shipped model's name
                name = f"{name} (checkpoint)"
            entry = ModelEntry.read(name, path, source="checkpoint", choices=choices)
            if not entry.description:
                entry = replace(entry, description=f"the checkpoint {name}: x{entry.scale}, "
                                                   f"preset {entry.cfg.preset}")
            entries.append(entry)
        order = sorted(shipped, key=lambda n: (n != default, n != DEFAULT_MODEL, n))
        for name in order:
            entries.append(ModelEntry.read(name, shipped[name], description=describe(name)["description"],
                                           choices=choices if name == default else others))
        return cls(entries, load, cache)

    # ------------------------------------------------------------------ the list
    def entry(self, name: str | None) -> ModelEntry:
        """The entry a request names (empty or None: the default); an unknown name is a
        UserError listing the models offered."""
        name = name or self.default
        if name not in self.entries:
            raise UserError(f"unknown model {name!r}; this server offers: {', '.join(self.entries)}")
        return self.entries[name]

    def check(self, name: str | None, choices: SamplingChoices) -> SamplingPlan:
        """A request's choices checked against its model, without loading it (UserError)."""
        return self.entry(name).plan(choices)

    def info(self) -> dict:
        """GET /api/models: the models in the page's order, each with its defaults."""
        return {"default": self.default,
                "models": [{**e.info(), "default": e.name == self.default}
                           for e in self.entries.values()]}

    # ------------------------------------------------------------------ the loaded models
    def get(self, name: str | None) -> Upscaler:
        """The model's Upscaler, loaded on first use (in the caller's thread: the worker's),
        kept among the `cache` used last."""
        entry = self.entry(name)
        with self._lock:
            up = self._loaded.get(entry.name)
            if up is None:
                up = self._load(entry)
            self._keep(entry.name, up)
            return up

    def is_loaded(self, name: str | None) -> bool:
        with self._lock:
            return self.entry(name).name in self._loaded

    def loaded(self) -> list[str]:
        """The loaded models, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def _keep(self, name: str, up: Upscaler) -> None:
        self._loaded[name] = up
        self._loaded.move_to_end(name)
        while len(self._loaded) > self.cache:
            self._loaded.popitem(last=False)  # its weights are freed with the last reference
