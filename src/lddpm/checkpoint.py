"""Self-describing checkpoints, written atomically.

A checkpoint is a directory `RUN/checkpoints/step_0001234/` holding
    model.safetensors          online weights
    ema.safetensors            EMA weights (what inference uses by default)
    discriminator.safetensors  only with the `gan` part
    config.json                {"lddpm_version", "step", "config": full Config}
    trainer_state.pt           optimisers, LR schedule, step, RNG states (tensors + numbers)
It is first written to a hidden temporary directory and then renamed into place, so a run
killed at any moment leaves only complete checkpoints behind; `--resume` takes the newest.
No pickled modules anywhere: weights are safetensors, the state file loads weights_only.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lddpm import __version__
from lddpm.config import Config, config_from_dict
from lddpm.errors import UserError, display_path
from lddpm.weights import Mismatch, compare_state, load_state_dict_file, load_strict

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
DISC_FILE = "discriminator.safetensors"
STATE_FILE = "trainer_state.pt"
KEEP_LAST = 2
# Weights only training uses (the CVAE posterior encoder): exports drop them, loading for
# inference or --init-from does not need them.
TRAINING_ONLY = ("cvae.posterior.",)

# What each top-level module of LDDPMNet is, for mismatch messages.
PART_NAMES = {
    "encoder": "LR encoder (part v2)",
    "unet.cross": "cross-attention blocks (part v2)",
    "cvae.posterior": "CVAE posterior encoder (part v3, training only)",
    "cvae": "CVAE branch (part v3)",
    "prior": "Glow prior (part glow)",
    "unet": "UNet",
}


def _state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def save_checkpoint(
    run_dir: Path,
    step: int,
    cfg: Config,
    model: nn.Module,
    ema: nn.Module,
    trainer_state: dict[str, Any],
    discriminator: nn.Module | None = None,
) -> Path:
    """Writes RUN/checkpoints/step_N atomically and prunes all but the newest KEEP_LAST."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp-step_{step:07d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_state_dict(model), str(tmp / MODEL_FILE))
    save_file(_state_dict(ema), str(tmp / EMA_FILE))
    if discriminator is not None:
        save_file(_state_dict(discriminator), str(tmp / DISC_FILE))
    meta = {"lddpm_version": __version__, "step": step, "config": cfg.to_dict()}
    (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    torch.save(trainer_state, tmp / STATE_FILE)
    _fsync_files(tmp)
    if final.exists():  # same step saved twice (e.g. resumed at the end): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-KEEP_LAST]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_files(path: Path) -> None:
    """Flushes every file of a directory to disk before it is renamed into place."""
    for f in path.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary directories are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step_*") if (p / CONFIG_FILE).is_file()]
    return sorted(done, key=lambda p: p.name)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (-> its newest checkpoint)."""
    p = Path(path)
    if (p / CONFIG_FILE).is_file():
        return p
    found = list_checkpoints(p)
    if found:
        return found[-1]
    if not p.exists():
        raise UserError(f"checkpoint not found: {p}")
    raise UserError(f"{p} is neither a checkpoint (no {CONFIG_FILE}) nor a run with checkpoints")


def read_meta(ckpt: Path) -> dict[str, Any]:
    try:
        meta = json.loads((ckpt / CONFIG_FILE).read_text())
        meta["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{ckpt / CONFIG_FILE}: not a valid lddpm checkpoint config ({exc})") from None
    return meta


def weights_file(cdir: Path, use_ema: bool = True) -> Path:
    """The weights inference loads: the EMA by default; an export holds only those."""
    if use_ema and not (cdir / EMA_FILE).is_file() and read_meta(cdir).get("export"):
        return cdir / MODEL_FILE
    return cdir / (EMA_FILE if use_ema else MODEL_FILE)


def export_checkpoint(
    source: Path,
    out: Path,
    dtype: torch.dtype = torch.bfloat16,
    inference: dict[str, Any] | None = None,
    description: str | None = None,
    drop_prefixes: tuple[str, ...] = TRAINING_ONLY,
    interpolate: tuple[Path, float] | None = None,
) -> Path:
    """An inference-only directory: the EMA weights in `dtype` (without the training-only
    CVAE posterior) as model.safetensors, and config.json marked `export` with the
    sampling defaults and what the model is for. `interpolate` = (other checkpoint, w):
    the weights (1 - w) * source + w * other instead (`interpolate_weights`). Written to a
    temporary directory and renamed into place."""
    cdir = resolve_checkpoint(source)
    meta = read_meta(cdir)
    meta.update(exported_from_step=meta.get("step"))
    state = load_file(str(weights_file(cdir, True)))
    if interpolate is not None:
        other, weight = resolve_checkpoint(interpolate[0]), interpolate[1]
        state = interpolate_weights(state, cdir, other, weight)
        meta["interpolated_with"] = {"checkpoint": display_path(other), "weight": weight,
                                     "step": read_meta(other).get("step")}
    if inference is not None:
        meta["inference"] = inference
    if description is not None:
        meta["description"] = description
    return write_export(Path(out), state, meta, dtype, drop_prefixes)


def interpolate_weights(
    state: dict[str, torch.Tensor], source: Path, other: Path, weight: float
) -> dict[str, torch.Tensor]:
    """Deep network interpolation (Wang et al. 2019, ESRGAN's net_interp): (1 - weight) *
    state + weight * other's EMA weights, in float32, for two fine-tunings of one network
    (e.g. trained on different degradations). The networks must be the same: the config
    keys that fix the architecture and what the weights mean (PARAMETERISATION_KEYS, the
    model parts) must agree; the training keys (data, losses, steps) may differ."""
    if not 0.0 <= weight <= 1.0:
        raise UserError(f"interpolation weight {weight} is not in [0, 1]", option="interpolate_weight")
    differ = [d for d in config_differences(read_config(source), read_config(other))
              if d.startswith(PARAMETERISATION_KEYS + ("model.",))]
    if differ:
        raise UserError(f"cannot interpolate {display_path(source)} with {display_path(other)}: "
                        "the networks differ (" + "; ".join(differ) + ")")
    theirs = migrate_keys(load_state_dict_file(weights_file(other, True)))
    ours = migrate_keys(state)
    if ours.keys() != theirs.keys():
        missing = sorted(ours.keys() ^ theirs.keys())
        raise UserError(f"cannot interpolate: weights present in only one of the two, e.g. {missing[0]}")
    return {k: torch.lerp(v.float(), theirs[k].float(), weight) if v.is_floating_point() else v
            for k, v in ours.items()}


def write_export(
    out: Path,
    state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    dtype: torch.dtype = torch.bfloat16,
    drop_prefixes: tuple[str, ...] = TRAINING_ONLY,
) -> Path:
    """The one writer of inference-only directories (`lddpm export`, `Upscaler.save_pretrained`):
    `state` in `dtype` without `drop_prefixes` as model.safetensors, `meta` (needs "config";
    marked `export`) as config.json. Written to a temporary directory, renamed into place."""
    state = {k: v.to(dtype) if v.is_floating_point() else v
             for k, v in state.items() if not k.startswith(drop_prefixes)}
    meta = {**meta, "export": True, "lddpm_version": __version__}
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(state, str(tmp / MODEL_FILE))
    (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    _fsync_files(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def read_config(ckpt: Path) -> Config:
    return config_from_dict(read_meta(ckpt)["config"])


def _part_of(key: str) -> str:
    for prefix in PART_NAMES:
        if key == prefix or key.startswith(prefix + "."):
            return prefix
    return key.split(".")[0]


def describe_parts(mismatch: Mismatch) -> str:
    """'the checkpoint lacks LR encoder (part v2) [encoder.*], ...; it has parts the model
    does not: ...' grouped by part; a shape difference only when every key matches."""
    def parts(keys: list[str]) -> str:
        names = sorted({_part_of(k) for k in keys})
        return ", ".join(f"{PART_NAMES.get(n, n)} [{n}.*]" for n in names)

    bits = []
    if mismatch.missing:
        bits.append(f"the checkpoint lacks {parts(mismatch.missing)}")
    if mismatch.unexpected:
        bits.append(f"it has parts the model does not: {parts(mismatch.unexpected)}")
    if bits:
        return "; ".join(bits)
    key, saved, own = mismatch.wrong_shape[0]
    return (f"{len(mismatch.wrong_shape)} weights differ in shape, e.g. {key}: "
            f"checkpoint {saved} vs model {own}")


# Module names renamed since checkpoints were first written: old key prefix -> new.
RENAMED_KEYS = {"prior.flow.steps.": "prior.flow.flow_steps."}  # Glow's per-level flow steps


def migrate_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict with renamed modules under their current names."""
    out = {}
    for key, value in state.items():
        old = next((p for p in RENAMED_KEYS if key.startswith(p)), None)
        out[key if old is None else RENAMED_KEYS[old] + key[len(old):]] = value
    return out


def load_weights(
    module: nn.Module, file: Path, optional_prefixes: tuple[str, ...] = ()
) -> None:
    """Loads a checkpoint's safetensors weights strictly (`lddpm.weights.load_strict`), older
    module names migrated; keys under optional_prefixes may be absent. Mismatches are named
    by model part."""
    if not file.is_file():
        raise UserError(f"checkpoint file missing: {file}")
    load_strict(module, migrate_keys(load_state_dict_file(file)), str(file.parent),
                optional_prefixes=optional_prefixes, describe=describe_parts)


# The config keys that fix what a network's weights mean: initialising from weights trained
# with other values would load without an error and compute something else.
PARAMETERISATION_KEYS = (
    "data.scale", "diffusion.beta_end", "diffusion.beta_start", "diffusion.prediction",
    "diffusion.residual_scale", "diffusion.schedule", "diffusion.target", "diffusion.timesteps",
    "model.unet.",
)


def grow_weights(module: nn.Module, source: Path, cfg: Config) -> list[str]:
    """Initialises `module` (built from `cfg`) from the checkpoint or export `source`, whose
    network may have fewer parts: every weight the file has is loaded, the parts it lacks
    keep their fresh initialisation (their gates start at 1e-6, so the grown network first
    computes what the source's did). Returns the names of those fresh parts.

    UserError when the parameterisation differs (PARAMETERISATION_KEYS: the weights would
    mean something else), or the file has weights the module has no place for."""
    cdir = resolve_checkpoint(source)
    saved = read_config(cdir)
    differ = [d for d in config_differences(saved, cfg) if d.startswith(PARAMETERISATION_KEYS)]
    if differ:
        raise UserError(f"cannot initialise from {display_path(cdir)}: it was trained with another "
                        "parameterisation (" + "; ".join(differ) + ")")
    file = weights_file(cdir, use_ema=True)
    state = migrate_keys(load_state_dict_file(file))
    own = module.state_dict().keys()
    mismatch = compare_state(module, state, optional_prefixes=tuple(own))
    if mismatch:
        raise UserError(f"{display_path(file)}: {describe_parts(mismatch)}")
    fresh = sorted(own - state.keys())
    module.load_state_dict(state, strict=False)
    return sorted({PART_NAMES.get(_part_of(k), _part_of(k)) for k in fresh})


def flat_config(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as {"section.key": value}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_config(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def config_differences(a: Config, b: Config, ignore: tuple[str, ...] = ()) -> list[str]:
    """Flat 'key: a -> b' lines for the keys whose values differ."""
    fa, fb = flat_config(a.to_dict()), flat_config(b.to_dict())
    return [
        f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}"
        for k in sorted(set(fa) | set(fb))
        if fa.get(k) != fb.get(k) and not k.startswith(ignore)
    ]
